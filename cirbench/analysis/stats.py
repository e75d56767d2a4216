"""Confidence intervals and paired comparisons, from per-query values.

Every metric is an aggregate of per-query values (see cirbench.metrics), so the bootstrap resamples
queries with replacement and recomputes the aggregate. The resampling of a split is seeded by the
seed and the split's identity, so every method evaluated on that split sees the same resamples: the
intervals of two methods and the interval of their difference come from one set of draws.

- :func:`interval`: the 95% percentile interval of one metric.
- :func:`average_interval`: of a mean over splits (each split resampled on its own).
- :func:`paired`: the paired bootstrap of the difference between two methods on the same queries,
  with its interval and a two-sided p-value (identical methods: difference 0, interval [0, 0], p = 1).
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass

import numpy as np

DEFAULT_RESAMPLES = 1000
MIN_RESAMPLES = 100  # fewer cannot resolve a p-value below 0.01
LEVEL = 0.95


def resamples(n_queries: int, n: int = DEFAULT_RESAMPLES, seed: int = 0, key: str = "") -> np.ndarray:
    """n x Q indices of queries drawn with replacement, the same for every method on one split."""
    rng = np.random.default_rng([seed, zlib.crc32(key.encode("utf-8"))])
    return rng.integers(0, n_queries, size=(n, n_queries)) if n_queries else np.zeros((n, 0), dtype=np.int64)


def aggregate_rows(values: np.ndarray, agg: str) -> np.ndarray:
    """The aggregate of each row of an n x Q matrix of per-query values."""
    values = np.asarray(values, dtype=np.float64)
    with np.errstate(all="ignore"):  # an empty split aggregates to nan (0 / 0): no interval
        if agg == "percent":
            return 100.0 * values.sum(axis=1) / values.shape[1]  # numpy's mean, without its empty warning
        if agg == "mean":
            return np.nanmean(values, axis=1)
        if agg == "median_rank":
            return np.floor(np.nanmedian(values - 1, axis=1)) + 1
        if agg == "grouped_percent":  # a per-group statistic: resampling queries does not fit it
            return np.full(values.shape[0], np.nan)
    raise ValueError(f"unknown aggregate {agg!r}")


def _percentiles(draws: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    draws = draws[np.isfinite(draws)]
    if not draws.size:
        return float("nan"), float("nan")
    tail = 100 * (1 - level) / 2
    return float(np.percentile(draws, tail)), float(np.percentile(draws, 100 - tail))


def interval(values: np.ndarray, agg: str, n: int = DEFAULT_RESAMPLES, seed: int = 0, key: str = "",
             draws: np.ndarray | None = None) -> tuple[float, float]:
    """The percentile interval of one metric's aggregate over bootstrap resamples of the queries."""
    values = np.asarray(values, dtype=np.float64)
    idx = draws if draws is not None else resamples(len(values), n, seed, key)
    return _percentiles(aggregate_rows(values[idx], agg))


def average_interval(parts: list[tuple[np.ndarray, str, str]], n: int = DEFAULT_RESAMPLES,
                     seed: int = 0) -> tuple[float, float]:
    """The interval of the mean of several splits' aggregates; parts are (values, agg, split key) and
    each split is resampled on its own (they are independent query sets)."""
    if not parts:
        return float("nan"), float("nan")
    total = np.zeros(n)
    for values, agg, key in parts:
        values = np.asarray(values, dtype=np.float64)
        total += aggregate_rows(values[resamples(len(values), n, seed, key)], agg)
    return _percentiles(total / len(parts))


ALPHA = 0.05  # the significance level of every paired test and of its Holm-corrected family


@dataclass
class Paired:
    difference: float  # aggregate(a) - aggregate(b) on the queries both have
    low: float
    high: float
    p: float  # two-sided; the smallest reportable value is 2 / (n + 1)
    n_queries: int
    resamples: int

    @property
    def significant(self) -> bool:
        return self.p < ALPHA


def paired_draws(parts: list[tuple[np.ndarray, np.ndarray, str, str]], n: int, seed: int) -> tuple[float, np.ndarray]:
    """(observed difference, resampled differences) of the mean over parts of aggregate(a) - aggregate(b);
    parts are (values a, values b, agg, split key) over the same queries in the same order."""
    observed, total = 0.0, np.zeros(n)
    for a, b, agg, key in parts:
        a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
        if a.shape != b.shape:  # not the same queries: indexing both with one set of draws would mislead
            raise ValueError(f"paired values of split {key!r} differ in length ({len(a)} and {len(b)}): align them")
        idx = resamples(len(a), n, seed, key)
        observed += float(aggregate_rows(a[None, :], agg)[0] - aggregate_rows(b[None, :], agg)[0])
        total += aggregate_rows(a[idx], agg) - aggregate_rows(b[idx], agg)
    return observed / len(parts), total / len(parts)


def paired(a: np.ndarray, b: np.ndarray, agg: str, n: int = DEFAULT_RESAMPLES, seed: int = 0, key: str = "") -> Paired:
    """Paired bootstrap of aggregate(a) - aggregate(b), a and b per-query values over the same queries."""
    return paired_parts([(a, b, agg, key)], n, seed)


def paired_parts(parts, n: int = DEFAULT_RESAMPLES, seed: int = 0) -> Paired:
    """As :func:`paired` for a mean over several splits (each resampled on its own)."""
    observed, draws = paired_draws(parts, n, seed)
    low, high = _percentiles(draws)
    finite = draws[np.isfinite(draws)]
    below, above = int((finite <= 0).sum()), int((finite >= 0).sum())
    p = min(1.0, 2 * (min(below, above) + 1) / (len(finite) + 1)) if len(finite) else float("nan")
    return Paired(observed, low, high, p, int(sum(len(x[0]) for x in parts)), n)


def align(qids_a: list[str], values_a: np.ndarray, qids_b: list[str], values_b: np.ndarray):
    """The per-query values of two cells on the queries both have, in one order."""
    if list(qids_a) == list(qids_b):
        return values_a, values_b
    where_b = {q: i for i, q in enumerate(qids_b)}
    both = [(i, where_b[q]) for i, q in enumerate(qids_a) if q in where_b]
    ia = np.array([i for i, _ in both], dtype=np.int64)
    ib = np.array([j for _, j in both], dtype=np.int64)
    return np.asarray(values_a)[ia], np.asarray(values_b)[ib]


def format_p(p: float, n: int = DEFAULT_RESAMPLES) -> str:
    if p != p:
        return "n/a"
    floor = 2 / (n + 1)
    if p <= floor + 1e-12:
        return f"< {math.ceil(floor * 1000) / 1000:.3f}"
    return f"{p:.3f}"


def family_resamples(n_tests: int, n: int = DEFAULT_RESAMPLES) -> int:
    """Resamples for each paired test of a family of ``n_tests``: at least ``n``, and enough that the
    smallest p a bootstrap can give (2 / (n + 1)) still falls below ALPHA / 2 after Holm multiplies it by
    the family's size -- with too few, a large matrix could never show a difference, however clear."""
    import math

    return max(n, math.ceil(4 * n_tests / ALPHA))


def holm(pvalues) -> np.ndarray:
    """Holm's step-down adjustment of a family of p-values (controls the family-wise error rate): the
    i-th smallest of m becomes max over j <= i of min(1, (m - j + 1) p_(j)); NaN stays NaN, outside the
    family."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    order = ok[np.argsort(p[ok], kind="stable")]
    m, running = len(order), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out
