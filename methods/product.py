"""Baseline: the product of the image and text similarities, as the i-CIR and FREEDOM codes rank with it.

    score(x) = cos(image, x) * cos(text, x)

the text through the split's text prompt (the raw text on i-CIR, the target domain's name on the
domain-conversion datasets). The two codes differ in one step: i-CIR's (billpsomas/icir
utils_retrieval.calculate_rankings, "product") clamps both similarities at 0 first, FREEDOM's
(NikosEfth/freedom utils_retrieval.calculate_rankings, "product") multiplies them as they are, so two
negative similarities make a positive score. A split says which its benchmark uses
(``info["product_clamp"]``, no clamp where it says nothing); ``--option product.clamp=yes|no`` forces one.
"""

from __future__ import annotations

from cirbench.contracts.method import Method, Option, register_method
from cirbench.protocol.scoring import normalize

from ._shared import subset_groups


@register_method("product")
class Product(Method):
    description = "cos(image, x) x cos(text, x) (i-CIR: each clamped at 0 first)"
    display_order = 2.5
    scoring = "scores"
    options = {"clamp": Option(str, "split", "clamp both similarities at 0 before multiplying ('split': the "
                                             "dataset's own baseline)", ("split", "yes", "no"))}

    def prepare(self, split):
        chosen = self.option("clamp")
        self.clamp = bool(split.info.get("product_clamp", False)) if chosen == "split" else chosen == "yes"

    def _parts(self, batch):
        image = normalize(batch.reference_features.float())
        text = normalize(self.ctx.text_features(batch.prompts("text")).to(image.device).float())
        return image, text

    def _fuse(self, sim_image, sim_text):
        if self.clamp:
            sim_image, sim_text = sim_image.clamp(min=0), sim_text.clamp(min=0)
        return sim_image * sim_text

    def score(self, batch, gallery):
        image, text = self._parts(batch)
        database = normalize(gallery.features.to(image.device).float())
        return self._fuse(image @ database.T, text @ database.T)

    def score_subsets(self, batch, gallery):
        """Each query against its own candidates only (a per-query gallery is never scored whole)."""
        import torch

        image, text = self._parts(batch)
        width = max([1, *(len(s) for s in batch.subsets)])
        out = torch.zeros(len(batch), width, device=image.device)
        for members, rows in subset_groups(batch.subsets).items():  # each database gathered once
            database = normalize(gallery.features[list(members)].to(image.device).float())
            out[rows, :len(members)] = self._fuse(image[rows] @ database.T, text[rows] @ database.T)
        return out

    def config(self):
        return {"prompt": self.split.prompts["text"], "clamp": self.clamp}

    def protocol(self, config):
        return {"text": config["prompt"], "notes": ["similarities clamped at 0" if config["clamp"] else "no clamp"]}
