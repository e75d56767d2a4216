"""Baseline: the reference image's feature alone (the text is ignored)."""

from cirbench.contracts.method import Method, register_method


@register_method("image-only")
class ImageOnly(Method):
    description = "normalise(image_feature(reference)); ignores the text"
    display_order = 0

    def compose(self, reference_features, texts):
        return reference_features

    def protocol(self, config):
        return {"text": "(image only)", "notes": []}
