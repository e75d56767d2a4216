"""SEIZE (Yang et al., ACM MM 2024, "Semantic Editing Increment Benefits Zero-Shot Composed Image
Retrieval"; yzy-bupt/SEIZE, src/semantic_editing_search.py).

For each query, LDRE's n = 15 captions and rewrites: s_after = normalise(mean of the rewrites' raw
CLIP text features) . x and s_before the same for the captions; with d = s_after - s_before the score is
s_after + 2.1 min(d, 0) + 0.13 max(d, 0) (``neg_factor``, ``pos_factor``: the code's defaults), and the
reference image's score is set to -1 where it is in the gallery (CIRCO, FashionIQ; CIRR removes it).
Images use TargetPad (1.25), as ``main()`` sets.

Released texts (src/datasets.py with the code's default ``--gpt_version gpt-4o``): CIRCO and CIRR read
``multi_gpt-4o_opt``, FashionIQ always ``multi_gpt-3.5_opt``. The released CIRCO test file carries only
``multi_gpt-3.5_opt`` (the rewrites of the paper's ViT-L/14 rows), so where a split's annotations do not
carry ``multi_gpt-4o_opt`` the GPT-3.5 field is read; the result records which field was read
(``--option seize.rewrites_field=`` names one). Captions: ``multi_caption_opt``.

Local generation as LDRE (see CaptionRewriteMethod), with SEIZE's FashionIQ reasoner's instruction
``rel_caps[0] + rel_caps[1]`` (joined without a separator, unstripped). The official FashionIQ entry
point is broken (``fiq_val_retrieval`` is called without its reference names and pseudo tokens);
cirbench runs the scoring the file defines for it, with the reference set to -1.
"""

from __future__ import annotations

from cirbench.generation.texts import CaptionRewriteMethod, has_fields
from cirbench.contracts.method import Option, register_method
from cirbench.protocol.scoring import normalize

GPT4O_FIELD, GPT35_FIELD = "multi_gpt-4o_opt", "multi_gpt-3.5_opt"


@register_method("seize")
class SEIZE(CaptionRewriteMethod):
    description = "SEIZE: rewrites' similarity plus a semantic-editing increment over the captions' (training-free)"
    options = {**CaptionRewriteMethod.options,
               "rewrites_field": Option(str, None, "the annotation field with each query's released rewrites "
                                                   f"(default: {GPT4O_FIELD} where the annotations carry it, "
                                                   f"else {GPT35_FIELD}; always {GPT35_FIELD} on FashionIQ)"),
               "neg_factor": Option(float, 2.1, "weight of the increment where the rewrite lowers the similarity"),
               "pos_factor": Option(float, 0.13, "weight of the increment where the rewrite raises it")}

    def rewrites_field(self, split) -> str:
        given = self.option("rewrites_field")
        if given:
            return given
        if split.dataset == "fashioniq" or not has_fields(split, [GPT4O_FIELD]):
            return GPT35_FIELD
        return GPT4O_FIELD

    def score(self, batch, gallery):
        import torch

        rewrites, captions, x = self.features(batch, gallery)
        device = x.device
        after = normalize(rewrites.mean(0)) @ x.T
        before = normalize(captions.mean(0)) @ x.T
        diff = after - before
        score = after + self.option("neg_factor") * diff.clamp(max=0) + self.option("pos_factor") * diff.clamp(min=0)
        rows = torch.tensor([i for i, p in enumerate(batch.reference_positions) if p >= 0], dtype=torch.long)
        if len(rows):
            cols = torch.tensor([batch.reference_positions[i] for i in rows.tolist()], dtype=torch.long)
            score[rows.to(device), cols.to(device)] = -1.0  # the reference, as the official code
        return score

    def config(self):
        return {**super().config(), "neg_factor": self.option("neg_factor"), "pos_factor": self.option("pos_factor"),
                "reference": "score set to -1 where in the gallery"}
