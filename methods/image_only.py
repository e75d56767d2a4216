"""Baseline: the reference image's feature alone (the text is ignored)."""

from cirbench.method import Method, register_method


@register_method("image-only")
class ImageOnly(Method):
    description = "normalise(image_feature(reference)); ignores the text"

    def compose(self, reference_features, texts):
        return reference_features
