"""Baseline: the average of the normalised image and text features (the text as text-only sees it)."""

from cirbench.method import Method, register_method
from cirbench.scoring import normalize


@register_method("image+text", aliases=("image-text",))
class ImageText(Method):
    description = "normalise(normalise(image) + normalise(text))"

    def encode_queries(self, batch):
        text = self.ctx.text_features(batch.prompts("text")).to(batch.reference_features.device)
        return normalize(normalize(batch.reference_features) + normalize(text))

    def config(self):
        return {"prompt": self.split.prompts["text"]}
