"""LDRE (Yang et al., SIGIR 2024, "LDRE: LLM-based Divergent Reasoning and Ensemble for Zero-Shot
Composed Image Retrieval"; yzy-bupt/LDRE, src/divergent_caption_ensemble.py).

For each query, n = 15 sampled BLIP-2 captions of the reference and their n LLM rewrites. For caption
index i, f_i = normalise(CLIP text feature of the queries' i-th rewrite) and b_i the same for the i-th
caption. The ensemble weights are computed over the whole split, as the official code does: for each i,
the sum over every query of its top-5 largest drops max(0, b_i . x - f_i . x) over the gallery; then
w = softmax(drop / max(drop) / 0.04) over i, shared by all queries (an odd, transductive habit of the
official code, reproduced: a query's score depends on the split it is evaluated in). The score is
(sum_i w_i f_i) . x. The reference is treated as the split's protocol says (removed on CIRR, kept on
CIRCO and FashionIQ, as the code).

Texts: the released fields ``multi_caption_opt`` and ``multi_gpt-3.5_opt`` (LDRE's and SEIZE's released
CIRCO test and CIRR test1 annotation files), else local generation: 15 captions by nucleus sampling
(top_p 0.9, seeded per image) with a BLIP-2 OPT captioner and one rewrite of each by the LLM with the
official src/reasoning_and_editing.py's sys_prompt and usr_prompt (``--option ldre.prompts_file=...``).
"""

from __future__ import annotations

from cirbench.llm_texts import (LocalTexts, caption_rewrite_config, caption_rewrite_sets, prepare_caption_rewrites,
                                text_options)
from cirbench.method import Method, Option, register_method
from cirbench.scoring import normalize

from .cirevl import DEFAULT_LLM

LDRE_OPTIONS = {
    **text_options("Salesforce/blip2-opt-6.7b-coco", DEFAULT_LLM,
                   "the official src/reasoning_and_editing.py of yzy-bupt/LDRE (or SEIZE's LLM-based_editing_reasoner "
                   "script): its sys_prompt and usr_prompt (for local generation)"),
    "captions_field": Option(str, "multi_caption_opt", "the annotation field with each query's released captions"),
    "rewrites_field": Option(str, "multi_gpt-3.5_opt", "the annotation field with each query's released rewrites"),
    "n": Option(int, 15, "captions (and rewrites) per query"),
}


def text_features(method, texts: list[list[str]], n: int, device):
    """n x Q x D raw CLIP text features of the i-th text of each query."""
    flat = [t[i] for i in range(n) for t in texts]
    feats = method.ctx.text_features(flat).to(device).float()
    return feats.view(n, len(texts), -1)


class CaptionRewriteMethod(Method):
    """What LDRE and SEIZE share: n captions and n rewrites per query (released or generated locally),
    scored against the gallery."""

    external_weights = True  # needs released texts or local models: `--method all` skips it otherwise
    scoring = "scores"
    default_transform = "clip"

    def __init__(self, ctx):
        super().__init__(ctx)
        self.local = LocalTexts(self)

    def prepare(self, split):
        self.source = prepare_caption_rewrites(self, split)

    def features(self, batch, gallery):
        """(rewrites, captions, x): n x Q x D raw text features of the queries' rewrites and captions, and
        the normalised G x D gallery, on the batch's device."""
        n = self.option("n")
        device = batch.reference_features.device
        captions, rewrites = caption_rewrite_sets(self, batch, n)
        return (text_features(self, rewrites, n, device), text_features(self, captions, n, device),
                normalize(gallery.features.to(device)))


def candidate_mask(batch, n_gallery: int, device):
    """Q x G: each query's own gallery on a subset-scoped split, else None (the whole gallery)."""
    import torch

    if batch.split.scope != "subset" or batch.subsets is None:
        return None
    mask = torch.zeros(len(batch), n_gallery, dtype=torch.bool, device=device)
    for row, members in enumerate(batch.subsets):
        mask[row, members] = True
    return mask


def ensemble_weights(after, before, x, topk: int, temperature: float, mask=None):
    """LDRE's weights of the n caption indices (n x Q x D normalised rewrite and caption features, G x D
    normalised gallery): each index's drops max(0, b . x - f . x), the top k per query, summed over the
    split's queries; softmax of the sums divided by their maximum and the temperature."""
    import torch

    drops = []
    for i in range(after.shape[0]):
        drop = (before[i] @ x.T - after[i] @ x.T).clamp(min=0)
        if mask is not None:
            drop = torch.where(mask, drop, torch.zeros_like(drop))
        drops.append(torch.topk(drop, k=min(topk, drop.shape[1]), dim=-1).values.sum())
    drops = torch.stack(drops)
    return torch.softmax(drops / drops.max() / temperature, 0)


@register_method("ldre")
class LDRE(CaptionRewriteMethod):
    description = "LDRE: relevance-weighted ensemble of 15 LLM rewrites of 15 sampled captions (training-free)"
    whole_split = True  # the ensemble weights are computed over all the split's queries
    options = {**LDRE_OPTIONS,
               "topk": Option(int, 5, "largest drops per query counted in the weights"),
               "temperature": Option(float, 0.04, "softmax temperature of the weights")}

    def __init__(self, ctx):
        super().__init__(ctx)
        self.weights = None

    def score(self, batch, gallery):
        rewrites, captions, x = self.features(batch, gallery)
        after, before = normalize(rewrites), normalize(captions)  # n x Q x D
        mask = candidate_mask(batch, x.shape[0], x.device)
        self.weights = ensemble_weights(after, before, x, self.option("topk"), self.option("temperature"), mask)
        ensemble = (after * self.weights[:, None, None]).sum(0)  # not renormalised, as the code
        return ensemble @ x.T

    def config(self):
        return {**caption_rewrite_config(self), "n": self.option("n"), "topk": self.option("topk"),
                "temperature": self.option("temperature"), "weights": "shared by the split's queries (official)"}
