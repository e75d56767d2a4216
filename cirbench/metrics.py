"""Retrieval metrics over top-k rankings (definitions in shared/docs/protocols.md).

``ranked`` is a Q x K tensor of gallery indices, best first; ``targets`` holds each query's
ground-truth gallery indices. All values are percentages (x100).
"""

from __future__ import annotations

import statistics

import torch


def _hits(ranked: torch.Tensor, targets: list[list[int]]) -> torch.Tensor:
    """Q x K boolean: is the item at each rank a ground truth of its query."""
    hits = torch.zeros(ranked.shape, dtype=torch.bool)
    ranked = ranked.cpu()
    for q, gt in enumerate(targets):
        if gt:
            hits[q] = torch.isin(ranked[q], torch.as_tensor(list(gt), dtype=ranked.dtype))
    return hits


def recall_at_k(ranked: torch.Tensor, targets: list[list[int]], ks: list[int], prefix: str = "R") -> dict:
    """Share of queries with a ground truth among the first K (one target: the usual Recall@K)."""
    hits = _hits(ranked, targets)
    return {f"{prefix}@{k}": 100.0 * hits[:, :k].any(dim=1).float().mean().item() for k in ks}


def positive_recall_at_k(ranked: torch.Tensor, targets: list[list[int]], ks: list[int]) -> dict:
    """Mean over queries of (positives in the first K) / (positives in the gallery); 0 for a query
    with no positive (the ImageNet-R domain-conversion definition)."""
    hits = _hits(ranked, targets)
    n_pos = torch.tensor([len(set(t)) for t in targets], dtype=torch.float)
    out = {}
    for k in ks:
        found = hits[:, :k].sum(dim=1).float()
        share = torch.where(n_pos > 0, found / n_pos.clamp(min=1), torch.zeros_like(found))
        out[f"R@{k}"] = 100.0 * share.mean().item()
    return out


def map_at_k(ranked: torch.Tensor, targets: list[list[int]], ks: list[int]) -> dict:
    """CIRCO mAP@K: AP@K = sum_{i<=K} P@i * rel(i) / min(K, |GT|), mean over queries."""
    hits = _hits(ranked, targets).float()
    n_gt = torch.tensor([len(set(t)) for t in targets], dtype=torch.float)
    ranks = torch.arange(1, hits.shape[1] + 1, dtype=torch.float)
    precision = hits.cumsum(dim=1) / ranks
    out = {}
    for k in ks:
        ap = (precision[:, :k] * hits[:, :k]).sum(dim=1) / torch.minimum(n_gt, torch.tensor(float(k))).clamp(min=1)
        out[f"mAP@{k}"] = 100.0 * ap.mean().item()
    return out


def rank_summary(ranks: list[int]) -> dict:
    """Mean and median 1-based rank of the target."""
    return {"mean_rank": float(sum(ranks) / len(ranks)), "median_rank": float(statistics.median(ranks))}


def primary_recall_at_k(ranked: torch.Tensor, targets: list[list[int]], ks: list[int]) -> dict:
    """Recall@K of each query's first ground truth only (CIRCO's target_img_id)."""
    return recall_at_k(ranked, [t[:1] for t in targets], ks)


# metric family -> its function over the top-K ranking (K = largest cut-off); None: computed apart
FAMILIES = {
    "recall": recall_at_k,
    "primary_recall": primary_recall_at_k,
    "positive_recall": positive_recall_at_k,
    "map": map_at_k,
    "recall_subset": None,  # computed on each query's subset ranking
    "rank": None,  # computed from full target ranks
}
