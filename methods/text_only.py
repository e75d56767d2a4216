"""Baseline: the query text alone, through the split's text prompt.

The text prompt is the one the seed paper's code feeds its text-only baseline: the caption for CIRR
and CIRCO, "a {domain} of " for domain conversion, "a photo of {classes}" for COCO, and on FashionIQ
the full "a photo of * , {c2} and {c1}" with its literal ``*`` (what produced the paper's rows).
"""

from cirbench.contracts.method import Method, register_method


@register_method("text-only")
class TextOnly(Method):
    description = "normalise(text_feature(text prompt)); ignores the image"
    display_order = 1

    def encode_queries(self, batch):
        return self.ctx.text_features(batch.prompts("text"))

    def config(self):
        return {"prompt": self.split.prompts["text"]}
