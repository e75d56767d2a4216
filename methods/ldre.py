"""LDRE (Yang et al., SIGIR 2024, "LDRE: LLM-based Divergent Reasoning and Ensemble for Zero-Shot
Composed Image Retrieval"; yzy-bupt/LDRE, src/divergent_caption_ensemble.py).

For each query, n = 15 sampled BLIP-2 captions of the reference and their n LLM rewrites. The official
code has one path per dataset, both reproduced (``--option ldre.ensemble=`` picks one anywhere):

- CIRCO (``circo_generate_test_dict``, the paper's relevance ensemble): for caption index i,
  f_i = normalise(CLIP text feature of the queries' i-th rewrite) and b_i the same for the i-th
  caption. The ensemble weights are computed over the whole split: for each i, the sum over every
  query of its top-5 largest drops max(0, b_i . x - f_i . x) over the gallery; then
  w = softmax(drop / max(drop) / 0.04) over i, shared by all queries (an odd, transductive habit of the
  official code, reproduced: a query's score depends on the split it is evaluated in). The score is
  (sum_i w_i f_i) . x, not renormalised.
- CIRR (``cirr_generate_test_predictions``): no relevance ensemble; the query is
  normalise(mean_i of the raw rewrite features).

Datasets the official code does not run (FashionIQ, GeneCIS, ImageNet-R, COCO, the embedded world) use
the CIRCO path, the paper's method. The reference is treated as the split's protocol says (removed on
CIRR, kept on CIRCO). Images use TargetPad (1.25), as ``main()`` sets for every dataset.

Texts: the released fields ``multi_caption_opt`` and ``multi_gpt-3.5_opt`` (the code's default
``--gpt_version gpt-3.5``), else local generation (see CaptionRewriteMethod; on FashionIQ the two
relative captions are joined as SEIZE's FashionIQ reasoner does, LDRE having none).
"""

from __future__ import annotations

from cirbench.generation.texts import CaptionRewriteMethod
from cirbench.contracts.method import Option, register_method
from cirbench.protocol.scoring import normalize

ENSEMBLES = ("relevance", "mean")
MEAN_DATASETS = ("cirr",)  # the official CIRR path averages the rewrites


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
    options = {**CaptionRewriteMethod.options,
               "ensemble": Option(str, None, "'relevance' (the official CIRCO path) or 'mean' (its CIRR path); "
                                             "default: as the official code for the dataset", ENSEMBLES),
               "topk": Option(int, 5, "largest drops per query counted in the weights"),
               "temperature": Option(float, 0.04, "softmax temperature of the weights")}

    def __init__(self, ctx):
        super().__init__(ctx)
        self.weights = None

    def prepare(self, split):
        super().prepare(split)
        given = self.option("ensemble")
        self.ensemble = given or ("mean" if split.dataset in MEAN_DATASETS else "relevance")

    def score(self, batch, gallery):
        rewrites, captions, x = self.features(batch, gallery)
        if self.ensemble == "mean":  # the official CIRR path: the raw rewrite features averaged
            self.weights = None
            return normalize(rewrites.mean(0)) @ x.T
        after, before = normalize(rewrites), normalize(captions)  # n x Q x D
        mask = candidate_mask(batch, x.shape[0], x.device)
        self.weights = ensemble_weights(after, before, x, self.option("topk"), self.option("temperature"), mask)
        ensemble = (after * self.weights[:, None, None]).sum(0)  # not renormalised, as the code
        return ensemble @ x.T

    def config(self):
        out = {**super().config(), "ensemble": self.ensemble}
        if self.ensemble == "relevance":
            out.update(topk=self.option("topk"), temperature=self.option("temperature"),
                       weights="shared by the split's queries (official)")
        return out
