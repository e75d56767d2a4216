"""Baseline: the average of the normalised image and text features."""

from cirbench.method import Method, register_method
from cirbench.scoring import normalize


@register_method("image+text", aliases=("image-text",))
class ImageText(Method):
    description = "normalise(normalise(image) + normalise(text))"

    def compose(self, reference_features, texts):
        text = self.ctx.text_features([self.prompt("text", t) for t in texts]).to(reference_features.device)
        return normalize(normalize(reference_features) + normalize(text))

    def config(self):
        return {"prompt": self.ctx.prompts["text"]}
