"""Baseline: the query text alone, through the split's text prompt (e.g. "a cartoon of " for domains)."""

from cirbench.method import Method, register_method


@register_method("text-only")
class TextOnly(Method):
    description = "normalise(text_feature(text prompt)); ignores the image"

    def compose(self, reference_features, texts):
        return self.ctx.text_features([self.prompt("text", t) for t in texts])

    def config(self):
        return {"prompt": self.ctx.prompts["text"]}
