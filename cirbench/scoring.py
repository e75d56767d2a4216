"""Chunked top-k retrieval with a fixed tie rule.

Scores are dot products of L2-normalised features (cosine similarity). The gallery is processed in
chunks so that memory stays at about ``queries x chunk`` scores whatever the gallery size. Ties are
broken by gallery order (the lower gallery index ranks first), so rankings are deterministic.
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
    """Exactly the k best columns per row; among ties at the k-th score, the leftmost columns win.

    Columns must be in ascending gallery order among equal scores (true for a chunk, and for the
    concatenation of an ordered running best with a later chunk)."""
    if scores.shape[1] <= k:
        return _order(scores, index)
    kth = torch.topk(scores, k, dim=1, sorted=False).values.min(dim=1, keepdim=True).values
    above = scores > kth
    ties = scores == kth
    need = k - above.sum(dim=1, keepdim=True)
    keep = above | (ties & (ties.cumsum(dim=1, dtype=torch.int32) <= need))
    cols = keep.nonzero()[:, 1].view(scores.shape[0], k)  # row-major: ascending columns per row
    return _order(torch.gather(scores, 1, cols), torch.gather(index, 1, cols))


@torch.no_grad()
def topk(queries: torch.Tensor, gallery: torch.Tensor, k: int, exclude: torch.Tensor | None = None,
         chunk_size: int = 16384, query_chunk: int = 1024):
    """Top-k gallery indices and scores for normalised ``queries`` (Q x D) and ``gallery`` (G x D).

    ``exclude`` (Q,) holds one gallery index per query to leave out (-1: none), e.g. the reference image.
    """
    n_gallery = gallery.shape[0]
    k = min(k, n_gallery - (1 if exclude is not None and bool((exclude >= 0).any()) else 0))
    out_scores, out_index = [], []
    for q0 in range(0, queries.shape[0], query_chunk):
        q = queries[q0:q0 + query_chunk]
        ex = exclude[q0:q0 + query_chunk] if exclude is not None else None
        best_s = torch.empty(q.shape[0], 0, device=q.device)
        best_i = torch.empty(q.shape[0], 0, dtype=torch.long, device=q.device)
        for g0 in range(0, n_gallery, chunk_size):
            g = gallery[g0:g0 + chunk_size].to(q.device, non_blocking=True)
            s = q @ g.to(q.dtype).T
            if ex is not None:
                rows = (ex >= g0) & (ex < g0 + g.shape[0])
                if rows.any():
                    s[rows, ex[rows] - g0] = float("-inf")
            idx = torch.arange(g0, g0 + g.shape[0], device=q.device).expand(q.shape[0], -1)
            cs, ci = _select(s, idx, k)
            best_s, best_i = _select(torch.cat([best_s, cs], 1), torch.cat([best_i, ci], 1), k)
        out_scores.append(best_s)
        out_index.append(best_i)
    return torch.cat(out_scores), torch.cat(out_index)


@torch.no_grad()
def target_ranks(queries: torch.Tensor, gallery: torch.Tensor, targets: torch.Tensor,
                 exclude: torch.Tensor | None = None, chunk_size: int = 16384) -> torch.Tensor:
    """1-based rank of one target per query under the same tie rule (-1 target: rank 0)."""
    valid = targets >= 0
    t_scores = (queries * gallery[targets.clamp(min=0)].to(queries.device, queries.dtype)).sum(-1)
    better = torch.zeros(queries.shape[0], dtype=torch.long, device=queries.device)
    for g0 in range(0, gallery.shape[0], chunk_size):
        g = gallery[g0:g0 + chunk_size].to(queries.device)
        s = queries @ g.to(queries.dtype).T
        if exclude is not None:
            rows = (exclude >= g0) & (exclude < g0 + g.shape[0])
            s[rows, exclude[rows] - g0] = float("-inf")
        col = torch.arange(g0, g0 + g.shape[0], device=queries.device)
        ahead = (s > t_scores[:, None]) | ((s == t_scores[:, None]) & (col[None, :] < targets[:, None]))
        better += ahead.sum(1)
    return torch.where(valid, better + 1, torch.zeros_like(better))


@torch.no_grad()
def rank_subsets(queries: torch.Tensor, gallery: torch.Tensor, members: torch.Tensor) -> torch.Tensor:
    """Rank each query's own candidate subset. ``members`` is Q x M gallery indices padded with -1.

    Returns Q x M gallery indices in ranked order (padding last, as -1)."""
    feats = gallery[members.clamp(min=0)].to(queries.device)  # Q x M x D
    s = torch.einsum("qd,qmd->qm", queries, feats.to(queries.dtype)).float()
    s[members < 0] = float("-inf")
    _s, order = _order(s, members)
    return order
