"""Retrieval metrics (definitions in shared/docs/protocols.md), computed per query from a ranking.

Every metric is a per-query value and an aggregate: the percentage metrics are means of per-query
values x 100, so intervals, paired tests and any later recomputation read the same per-query values
that made the number. A :class:`RankView` holds, per query, the top of its ranking, the rank of each
of its targets within that top (0: beyond it) and the exact rank of its first target.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass
class RankView:
    top: np.ndarray  # Q x K gallery indices, best first (-1: padding)
    target_ranks: list[np.ndarray]  # per query: 1-based rank of each distinct target within top (0: beyond)
    first_rank: np.ndarray  # Q: exact 1-based rank of each query's first target (0: no target)
    # per query: how many ground truths the annotation lists, duplicates included (None: the distinct
    # count). CIRCO's official mAP divides by min(K, len(gt_img_ids)) as listed.
    n_listed: np.ndarray | None = None
    # per query: the exact 1-based rank of each distinct target in the whole ranking (computed where a
    # family of EXACT_FAMILIES asks for it; None otherwise)
    exact_ranks: list[np.ndarray] | None = None
    # per query: the group it belongs to (the split's ``group_by`` field, e.g. i-CIR's instance), for the
    # families that average within groups first; None where the split names none
    groups: list | None = None

    @classmethod
    def from_ranking(cls, ranked, targets: list[list[int]]) -> "RankView":
        """A view from full (or top) rankings and each query's targets (gallery indices)."""
        top = np.asarray(ranked)
        ranks, first = [], []
        for row, gt in zip(top.tolist(), targets):
            where = {g: i + 1 for i, g in enumerate(row) if g >= 0}
            distinct = list(dict.fromkeys(gt))
            ranks.append(np.array([where.get(t, 0) for t in distinct], dtype=np.int64))
            first.append(where.get(gt[0], 0) if gt else 0)
        return cls(top, ranks, np.array(first, dtype=np.int64), np.array([len(gt) for gt in targets], dtype=np.int64))


@dataclass
class MetricValues:
    """One metric: its per-query values and how they aggregate ("percent", "mean", "median_rank", or
    "grouped_percent": a percentage of per-query weights that add up to a per-group statistic -- its
    value is their mean x 100, as "percent", but a bootstrap over queries does not fit it, so it gets no
    interval and no paired test)."""

    values: np.ndarray
    agg: str = "percent"

    def value(self) -> float:
        return aggregate(self.values, self.agg)


def aggregate(values: np.ndarray, agg: str) -> float:
    values = np.asarray(values, dtype=np.float64)
    if agg in ("percent", "grouped_percent"):
        return float(100.0 * values.mean()) if values.size else float("nan")
    finite = values[np.isfinite(values)]
    if not finite.size:
        return float("nan")
    if agg == "mean":
        return float(finite.mean())
    if agg == "median_rank":  # the official COCO rule: floor(median of 0-based ranks) + 1
        return float(math.floor(np.median(finite - 1)) + 1)
    raise ValueError(f"unknown aggregate {agg!r}")


def _hits(view: RankView, k: int) -> list[np.ndarray]:
    return [(r > 0) & (r <= k) for r in view.target_ranks]


def recall_at_k(view: RankView, ks: list[int], prefix: str = "R") -> dict[str, MetricValues]:
    """1 when any ground truth is among the first K (one target: the usual Recall@K)."""
    return {f"{prefix}@{k}": MetricValues(np.array([float(h.any()) for h in _hits(view, k)])) for k in ks}


def primary_recall_at_k(view: RankView, ks: list[int]) -> dict[str, MetricValues]:
    """Recall@K of each query's first ground truth only (CIRCO's target_img_id)."""
    return {f"R@{k}": MetricValues(((view.first_rank > 0) & (view.first_rank <= k)).astype(np.float64))
            for k in ks}


def positive_recall_at_k(view: RankView, ks: list[int]) -> dict[str, MetricValues]:
    """(positives in the first K) / (positives in the gallery); 0 for a query with no positive (the
    ImageNet-R domain-conversion definition)."""
    out = {}
    for k in ks:
        values = [float(h.sum()) / len(h) if len(h) else 0.0 for h in _hits(view, k)]
        out[f"R@{k}"] = MetricValues(np.array(values))
    return out


def map_at_k(view: RankView, ks: list[int]) -> dict[str, MetricValues]:
    """CIRCO mAP@K: AP@K = sum_{i<=K} P@i * rel(i) / min(K, |GT|), as miccunifi/CIRCO src/evaluation.py
    (and SEARLE's, LinCIR's and CIReVL's copies of it): rel(i) marks a gallery item that is a ground
    truth (each item once), |GT| is the length of the annotation's gt_img_ids, a duplicated id counted
    twice."""
    out = {}
    listed = view.n_listed if view.n_listed is not None else [len(r) for r in view.target_ranks]
    for k in ks:
        values = []
        for ranks, n_gt in zip(view.target_ranks, listed):
            found = np.sort(ranks[(ranks > 0) & (ranks <= k)])
            precision_at_hits = np.arange(1, len(found) + 1) / found if len(found) else np.zeros(0)
            values.append(float(precision_at_hits.sum()) / max(1, min(k, int(n_gt))))
        out[f"mAP@{k}"] = MetricValues(np.array(values))
    return out


def _trapezoid_ap(view: RankView) -> np.ndarray:
    """mAP over the whole ranking by Radenovic's trapezoid rule, as FREEDOM's and BASIC's code computes
    it (cirtorch's compute_ap): for the j-th positive (0-based) at 0-based rank r, the precisions before
    and at it, j / r (1 at r = 0) and (j + 1) / (r + 1), averaged, times a recall step of 1 / (n + 1e-5)
    -- n the query's positives, the 1e-5 kept (an AP of 1 reads 0.999995) -- summed; 0 for a query
    without positives, which counts in the mean."""
    if view.exact_ranks is None:
        raise ValueError("mAP over the whole ranking needs every target's exact rank (the split must ask for "
                         "the 'ap' family, which has the engine compute them)")
    values = []
    for ranks in view.exact_ranks:
        found = np.sort(ranks[ranks > 0]) - 1
        step = 1.0 / (len(ranks) + 1e-5)
        before = np.where(found == 0, 1.0, np.arange(len(found)) / np.maximum(found, 1))
        at = (np.arange(len(found)) + 1) / (found + 1)
        values.append(float(((before + at) * step / 2.0).sum()))
    return np.array(values, dtype=np.float64)


def average_precision(view: RankView, _ks=None) -> dict[str, MetricValues]:
    """mAP over the whole ranking by Radenovic's trapezoid rule (see _trapezoid_ap)."""
    return {"mAP": MetricValues(_trapezoid_ap(view))}


def grouped_average_precision(view: RankView, _ks=None) -> dict[str, MetricValues]:
    """i-CIR's per-instance means (billpsomas/icir run_retrieval.py save_results): each group's (instance's)
    APs -- the trapezoid AP of ``ap`` -- averaged, then those means averaged over groups (mmAP); and each
    group's smallest AP averaged over groups (minmAP). Stored per query as weights whose mean is the
    number: AP x Q / (G x n_g) for mmAP; for minmAP, AP x Q / G at the first query holding its group's
    minimum and 0 elsewhere (Q queries, G groups, n_g queries in the group)."""
    if view.groups is None:
        raise ValueError("mmAP and minmAP need each query's group (the split's group_by field)")
    ap = _trapezoid_ap(view)
    members: dict = {}
    for i, g in enumerate(view.groups):
        members.setdefault(g, []).append(i)
    q, n_groups = len(ap), len(members)
    mean_w, min_w = np.zeros(q), np.zeros(q)
    for rows in members.values():
        rows = np.array(rows)
        mean_w[rows] = ap[rows] * q / (n_groups * len(rows))
        lowest = rows[int(np.argmin(ap[rows]))]
        min_w[lowest] = ap[lowest] * q / n_groups
    return {"mmAP": MetricValues(mean_w, "grouped_percent"), "minmAP": MetricValues(min_w, "grouped_percent")}


def recall_over_positives(view: RankView, ks: list[int]) -> dict[str, MetricValues]:
    """FREEDOM's R@K: (positives in the first K) / (positives + 1e-5), 0 for a query without positives
    (counted); the 1e-5 kept, as its code has it (ImageNet-R's Pic2Word recall has none)."""
    out = {}
    for k in ks:
        values = [float(h.sum()) / (len(h) + 1e-5) for h in _hits(view, k)]
        out[f"R@{k}"] = MetricValues(np.array(values))
    return out


def precision_over_positives(view: RankView, ks: list[int]) -> dict[str, MetricValues]:
    """FREEDOM's P@K: (positives in the first K) / (min(positives, K) + 1e-5), 0 without positives."""
    out = {}
    for k in ks:
        values = [float(h.sum()) / (min(len(h), k) + 1e-5) for h in _hits(view, k)]
        out[f"P@{k}"] = MetricValues(np.array(values))
    return out


def rank_summary(view: RankView, _ks=None) -> dict[str, MetricValues]:
    """Mean and median 1-based rank of each query's (first) target."""
    ranks = np.where(view.first_rank > 0, view.first_rank, np.nan).astype(np.float64)
    return {"mean_rank": MetricValues(ranks, "mean"), "median_rank": MetricValues(ranks, "median_rank")}


# metric family -> (function, which ranking it reads: the whole gallery, or each query's subset)
FAMILIES = {
    "recall": (recall_at_k, "gallery"),
    "primary_recall": (primary_recall_at_k, "gallery"),
    "positive_recall": (positive_recall_at_k, "gallery"),
    "map": (map_at_k, "gallery"),
    "ap": (average_precision, "gallery"),
    "ap_by_group": (grouped_average_precision, "gallery"),
    "recall_over_positives": (recall_over_positives, "gallery"),
    "precision_over_positives": (precision_over_positives, "gallery"),
    "rank": (rank_summary, "gallery"),
    "recall_subset": (lambda view, ks: recall_at_k(view, ks, prefix="Rs"), "subset"),
}


# the families that read every target's exact rank in the whole ranking, not only the top
EXACT_FAMILIES = {"ap", "ap_by_group"}


def compute(views: dict[str, RankView], families: dict[str, list[int]], scope: str = "gallery") -> dict[str, MetricValues]:
    """Every requested family on the view it reads (all on the subset view for a subset-scoped split)."""
    out: dict[str, MetricValues] = {}
    for family, ks in families.items():
        if family not in FAMILIES:
            raise KeyError(f"unknown metric family {family!r}; known: {', '.join(FAMILIES)}")
        fn, view = FAMILIES[family]
        out.update(fn(views["subset" if scope == "subset" else view], ks))
    return out


def needed_depth(families: dict[str, list[int]]) -> int:
    """The ranking depth the gallery-wide families need."""
    return max([k for f, ks in families.items() if FAMILIES.get(f, (None, ""))[1] == "gallery" for k in ks] or [0])
