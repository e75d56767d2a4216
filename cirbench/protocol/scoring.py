"""Chunked top-k retrieval and exact ranks with a fixed tie rule.

Scores are dot products of L2-normalised features (cosine similarity), or a method's own gallery
scores. The gallery is processed in chunks so that memory stays at about ``queries x chunk`` scores
whatever the gallery size. Ties are broken by gallery order (the lower gallery index ranks first),
so rankings are deterministic. One pass over the chunks gives each query's top ``k`` and the exact
rank of one target per query.
"""

from __future__ import annotations

import torch


def normalize(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(x.float(), dim=-1)


def _order(scores: torch.Tensor, index: torch.Tensor):
    """Sort each row by score descending; equal scores keep their column order (stable)."""
    scores, perm = torch.sort(scores, dim=1, descending=True, stable=True)
    return scores, torch.gather(index, 1, perm)


def _select(scores: torch.Tensor, index: torch.Tensor, k: int):
    """Exactly the k best columns per row, ordered; among ties at the k-th score, the leftmost win.

    Columns must be in ascending gallery order among equal scores (true for a chunk, and for the
    concatenation of an ordered running best with a later chunk)."""
    if scores.shape[1] <= k:
        return _order(scores, index)
    if k == 0:
        return scores[:, :0], index[:, :0]
    kth = torch.topk(scores, k, dim=1, sorted=False).values.min(dim=1, keepdim=True).values
    above = scores > kth
    ties = scores == kth
    need = k - above.sum(dim=1, keepdim=True)
    keep = above | (ties & (ties.cumsum(dim=1, dtype=torch.int32) <= need))
    cols = keep.nonzero()[:, 1].view(scores.shape[0], k)  # row-major: ascending columns per row
    return _order(torch.gather(scores, 1, cols), torch.gather(index, 1, cols))


class _Running:
    """Running top-k and "items ranked above the target" counts for a block of queries."""

    def __init__(self, n: int, k: int, first: torch.Tensor, device):
        self.k = k
        self.first = first  # (n,) gallery index of each query's target, -1: none
        self.best_s = torch.empty(n, 0, device=device)
        self.best_i = torch.empty(n, 0, dtype=torch.long, device=device)
        self.ahead = torch.zeros(n, dtype=torch.long, device=device)
        self.target_score = torch.full((n,), float("nan"), device=device)

    def add(self, g0: int, s: torch.Tensor, target_score: torch.Tensor) -> None:
        n, c = s.shape
        idx = torch.arange(g0, g0 + c, device=s.device).expand(n, -1)
        cs, ci = _select(s, idx, self.k)
        self.best_s, self.best_i = _select(torch.cat([self.best_s, cs], 1), torch.cat([self.best_i, ci], 1), self.k)
        t = target_score[:, None]
        col = idx
        better = (s > t) | ((s == t) & (col < self.first[:, None]))
        better &= col != self.first[:, None]  # never the target itself, whatever rounding did to its score
        self.ahead += better.sum(1)

    def ranks(self) -> torch.Tensor:
        """1-based rank of each query's target (0 where the query has none)."""
        return torch.where(self.first >= 0, self.ahead + 1, torch.zeros_like(self.ahead))


def _exclude(s: torch.Tensor, exclude: torch.Tensor | None, g0: int) -> torch.Tensor:
    if exclude is None:
        return s
    rows = (exclude >= g0) & (exclude < g0 + s.shape[1])
    if rows.any():
        s[rows, exclude[rows] - g0] = float("-inf")
    return s


@torch.no_grad()
def rank_vectors(queries: torch.Tensor, gallery: torch.Tensor, k: int, first: torch.Tensor | None = None,
                 exclude: torch.Tensor | None = None, chunk_size: int = 16384, query_chunk: int = 1024):
    """(top scores Q x k, top gallery indices Q x k, target ranks Q) for normalised ``queries`` (Q x D)
    and ``gallery`` (G x D). ``first`` holds one target per query (-1: none), ``exclude`` one gallery
    index per query to leave out (-1: none), e.g. the reference image."""
    n_gallery = gallery.shape[0]
    k = max(0, min(k, n_gallery - (1 if exclude is not None and bool((exclude >= 0).any()) else 0)))
    device = queries.device
    first = first if first is not None else torch.full((queries.shape[0],), -1, dtype=torch.long, device=device)
    out_s, out_i, out_r = [], [], []
    for q0 in range(0, queries.shape[0], query_chunk):
        q = queries[q0:q0 + query_chunk]
        f = first[q0:q0 + query_chunk].to(device)
        ex = exclude[q0:q0 + query_chunk].to(device) if exclude is not None else None
        t = (q * gallery[f.clamp(min=0)].to(device, q.dtype)).sum(-1)
        run = _Running(q.shape[0], k, f, device)
        for g0 in range(0, n_gallery, chunk_size):
            g = gallery[g0:g0 + chunk_size].to(device, non_blocking=True)
            run.add(g0, _exclude(q @ g.to(q.dtype).T, ex, g0), t)
        out_s.append(run.best_s)
        out_i.append(run.best_i)
        out_r.append(run.ranks())
    if not out_s:
        empty = torch.empty(0, k, device=device)
        return empty, empty.long(), torch.empty(0, dtype=torch.long, device=device)
    return torch.cat(out_s), torch.cat(out_i), torch.cat(out_r)


@torch.no_grad()
def rank_scores(scores: torch.Tensor, k: int, first: torch.Tensor | None = None,
                exclude: torch.Tensor | None = None):
    """As :func:`rank_vectors` for a full Q x G score matrix (a method's own gallery scores)."""
    scores = scores.float().clone()
    n, g = scores.shape
    k = max(0, min(k, g - (1 if exclude is not None and bool((exclude >= 0).any()) else 0)))
    first = first if first is not None else torch.full((n,), -1, dtype=torch.long, device=scores.device)
    first = first.to(scores.device)
    _exclude(scores, exclude.to(scores.device) if exclude is not None else None, 0)
    t = scores.gather(1, first.clamp(min=0)[:, None])[:, 0]
    run = _Running(n, k, first, scores.device)
    run.add(0, scores, t)
    return run.best_s, run.best_i, run.ranks()


def ranks_in(scores: torch.Tensor, targets: torch.Tensor, exclude: torch.Tensor | None = None) -> torch.Tensor:
    """1-based rank of each target (Q x T gallery indices, -1 padding: rank 0) in its row's full ranking
    of ``scores`` (Q x G): descending, equal scores in gallery order (the tie rule of the top-k); an
    ``exclude``d item (one per row, -1: none) ranks last, as in :func:`rank_scores`."""
    if exclude is not None:
        scores = _exclude(scores.clone(), exclude.to(scores.device), 0)
    order = torch.sort(scores, dim=1, descending=True, stable=True).indices
    position = torch.empty_like(order)
    position.scatter_(1, order, torch.arange(order.shape[1], device=order.device).expand_as(order))
    ranks = position.gather(1, targets.clamp(min=0).to(order.device)) + 1
    return torch.where(targets.to(order.device) >= 0, ranks, torch.zeros_like(ranks))


@torch.no_grad()
def exact_target_ranks(queries: torch.Tensor, gallery: torch.Tensor, targets: torch.Tensor,
                       exclude: torch.Tensor | None = None, chunk_size: int = 16384, query_chunk: int = 1024):
    """The exact rank of every target of every query in its whole ranking of ``gallery`` (Q x T, see
    :func:`ranks_in`), from the scores :func:`rank_vectors` computes (the same chunks, the excluded
    item last): what a metric over the whole ranking (AP) needs, where the top-k holds only the first K."""
    n_gallery = gallery.shape[0]
    out = []
    for q0 in range(0, queries.shape[0], query_chunk):
        q = queries[q0:q0 + query_chunk]
        ex = exclude[q0:q0 + query_chunk].to(q.device) if exclude is not None else None
        scores = torch.cat([_exclude(q @ gallery[g0:g0 + chunk_size].to(q.device, q.dtype).T, ex, g0)
                            for g0 in range(0, n_gallery, chunk_size)], 1)
        out.append(ranks_in(scores, targets[q0:q0 + query_chunk]))
    return torch.cat(out) if out else torch.zeros(0, targets.shape[1], dtype=torch.long)


@torch.no_grad()
def topk(queries: torch.Tensor, gallery: torch.Tensor, k: int, exclude: torch.Tensor | None = None,
         chunk_size: int = 16384, query_chunk: int = 1024):
    """Top-k (scores, gallery indices) for normalised ``queries`` (Q x D) and ``gallery`` (G x D)."""
    s, i, _ = rank_vectors(queries, gallery, k, exclude=exclude, chunk_size=chunk_size, query_chunk=query_chunk)
    return s, i


@torch.no_grad()
def target_ranks(queries: torch.Tensor, gallery: torch.Tensor, targets: torch.Tensor,
                 exclude: torch.Tensor | None = None, chunk_size: int = 16384) -> torch.Tensor:
    """1-based rank of one target per query under the same tie rule (-1 target: rank 0)."""
    return rank_vectors(queries, gallery, 1, targets, exclude, chunk_size)[2]


def sort_members(scores: torch.Tensor, members: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(sorted scores, members in that order) of each row's members (gallery indices, -1 padding, scored
    -inf); equal scores keep the order the members are listed in (a per-query gallery's own order)."""
    s = scores.float().clone()
    s[members < 0] = float("-inf")
    return _order(s, members)


def order_by_scores(scores: torch.Tensor, members: torch.Tensor) -> torch.Tensor:
    """Each row's members ordered by score (see sort_members); padding last."""
    return sort_members(scores, members)[1]


@torch.no_grad()
def subset_scores(queries: torch.Tensor, gallery: torch.Tensor, members: torch.Tensor) -> torch.Tensor:
    """Q x M scores of each query against its own members (``members``: Q x M gallery indices, -1 padding;
    a padding entry's score is meaningless). Queries sharing one subset (i-CIR's instance databases) are
    scored against it together; memory stays near one subset's features, never Q x M x D."""
    out = torch.zeros(members.shape, dtype=torch.float32, device=queries.device)
    if not members.numel():
        return out
    distinct, which = torch.unique(members, dim=0, return_inverse=True)
    order = torch.argsort(which, stable=True)
    bounds = torch.bincount(which, minlength=len(distinct)).cumsum(0).tolist()
    start = 0
    for u, stop in enumerate(bounds):
        rows = order[start:stop].to(queries.device)
        start = stop
        feats = gallery[distinct[u].clamp(min=0).to(gallery.device)].to(queries.device, queries.dtype)
        out[rows] = (queries[rows] @ feats.T).float()
    return out


@torch.no_grad()
def rank_subsets(queries: torch.Tensor, gallery: torch.Tensor, members: torch.Tensor) -> torch.Tensor:
    """Rank each query's own candidate subset. ``members`` is Q x M gallery indices padded with -1.

    Returns Q x M gallery indices in ranked order (padding last, as -1)."""
    return order_by_scores(subset_scores(queries, gallery, members), members.to(queries.device))
