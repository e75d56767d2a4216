"""Baseline: the average of the image and text features (the text as text-only sees it).

Pic2Word's code (and so its paper's rows) averages the *normalised* features; GeneCIS's FeatureComb
averages the raw CLIP features (0.5 each) and normalises after. A split says which its benchmark uses
(``info["image_text"] == "raw"``); ``--option image+text.combine=normalized|raw`` forces one.
"""

from cirbench.contracts.method import Method, Option, register_method
from cirbench.protocol.scoring import normalize


@register_method("image+text", aliases=("image-text",))
class ImageText(Method):
    description = "normalise(normalise(image) + normalise(text)) (GeneCIS: of the raw features)"
    display_order = 2
    options = {"combine": Option(str, "split", "average normalised or raw features ('split': the dataset's "
                                               "own baseline)", ("split", "normalized", "raw"))}

    def prepare(self, split):
        chosen = self.option("combine")
        self.combine = split.info.get("image_text", "normalized") if chosen == "split" else chosen

    def encode_queries(self, batch):
        text = self.ctx.text_features(batch.prompts("text")).to(batch.reference_features.device)
        if self.combine == "raw":
            return normalize(0.5 * batch.reference_features.float() + 0.5 * text.float())
        return normalize(normalize(batch.reference_features) + normalize(text))

    def config(self):
        return {"prompt": self.split.prompts["text"], "combine": self.combine}
