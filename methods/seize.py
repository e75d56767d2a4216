"""SEIZE (Yang et al., ACM MM 2024, "Semantic Editing Increment Benefits Zero-Shot Composed Image
Retrieval"; yzy-bupt/SEIZE, src/semantic_editing_search.py).

For each query, LDRE's n = 15 captions and rewrites: s_after = normalise(mean of the rewrites' raw
CLIP text features) . x and s_before the same for the captions; with d = s_after - s_before the score is
s_after + 2.1 min(d, 0) + 0.13 max(d, 0) (``neg_factor``, ``pos_factor``: the code's defaults), and the
reference image's score is set to -1 where it is in the gallery (CIRCO, FashionIQ; CIRR removes it).

Texts: the released fields ``multi_caption_opt`` and ``multi_gpt-3.5_opt`` (the rewrites of the
paper's ViT-L/14 rows; the code's own default is GPT-4o's ``multi_gpt-4o_opt``), else local generation
as LDRE (``--option seize.prompts_file=`` one of SEIZE's src/LLM-based_editing_reasoner_*.py).
"""

from __future__ import annotations

from cirbench.llm_texts import caption_rewrite_config
from cirbench.method import Option, register_method
from cirbench.scoring import normalize

from .ldre import LDRE_OPTIONS, CaptionRewriteMethod


@register_method("seize")
class SEIZE(CaptionRewriteMethod):
    description = "SEIZE: rewrites' similarity plus a semantic-editing increment over the captions' (training-free)"
    options = {**LDRE_OPTIONS,
               "neg_factor": Option(float, 2.1, "weight of the increment where the rewrite lowers the similarity"),
               "pos_factor": Option(float, 0.13, "weight of the increment where the rewrite raises it")}

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
        return {**caption_rewrite_config(self), "n": self.option("n"), "neg_factor": self.option("neg_factor"),
                "pos_factor": self.option("pos_factor"), "reference": "score set to -1 where in the gallery"}
