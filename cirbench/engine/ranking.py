"""The one ranking of a method on a split, read by every consumer (metrics, server files, outcomes).

One pipeline for every method:

1. a producer gives each query's scores over its candidates -- query vectors against the method's
   gallery representation (``scoring = "vectors"``), or the method's own scores (``"scores"``) --
   and keeps each query's top of the whole gallery (chunked, bounded memory) and, where queries have
   candidate subsets (CIRR's img_set, GeneCIS's per-query galleries), the order of their members;
2. one re-ranking step (``rerank_depth``) re-scores each query's top candidates of the view that is
   ranked: the gallery's top, or on a subset-scoped split each query's own members; it gets the
   batches encode_queries got (``whole_split`` included), the Gallery on ``batch.gallery``, and its
   tensors on the method's device;
3. the views: the gallery ranking, and the subset ranking (on a gallery-scoped split the subset
   members follow the final gallery order, as CIRR's Recall_subset restricts the global ranking).

Every output of a hook is checked (shape, finite values, no zero vectors) before it is ranked.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cirbench.contracts.method import Gallery, Method, QueryBatch, SplitView
from cirbench.contracts.split import Split
from cirbench.errors import RunError
from cirbench.protocol import metrics as M
from cirbench.protocol.scoring import (exact_target_ranks, normalize, rank_scores, rank_vectors, ranks_in,
                                      sort_members, subset_scores)
from cirbench.storage.results import OUTCOMES_TOP


@dataclass
class Layout:
    """Where each query's targets, reference and candidates are in the gallery."""

    pos: dict  # gallery id -> index
    first: object  # Q long tensor: each query's first target (-1: none)
    exclude: object  # Q long tensor of references to leave out (None: the reference stays)
    members: list[list[int]] | None  # each query's candidate subset (gallery indices), or None
    subset_only: bool  # the split ranks each query's subset only (no gallery-wide ranking)
    depth: int  # how much of the gallery ranking is kept
    targets: object = None  # Q x T distinct targets (gallery indices, -1 padding) where a metric needs their exact ranks

    @classmethod
    def of(cls, split: Split) -> "Layout":
        import torch

        pos = {g: i for i, g in enumerate(split.gallery)}
        first = torch.tensor([pos[q.targets[0]] if q.targets else -1 for q in split.queries], dtype=torch.long)
        exclude = (torch.tensor([pos.get(q.reference, -1) for q in split.queries], dtype=torch.long)
                   if split.remove_reference else None)
        members = None
        if split.scope == "subset" or any(q.subset for q in split.queries):
            members = [[pos[m] for m in (q.subset or ()) if not (split.remove_reference and m == q.reference)]
                       for q in split.queries]
        subset_only = split.scope == "subset"
        depth = 0 if subset_only else max(M.needed_depth(split.metrics), OUTCOMES_TOP,
                                          split.submission_k if split.write_submission else 0)
        targets = None
        if not subset_only and M.EXACT_FAMILIES & set(split.metrics):
            rows = [[pos[t] for t in dict.fromkeys(q.targets)] for q in split.queries]
            width = max([1, *(len(r) for r in rows)])
            targets = torch.tensor([r + [-1] * (width - len(r)) for r in rows], dtype=torch.long)
        return cls(pos, first, exclude, members, subset_only, depth, targets)


def query_batches(split: Split, view: SplitView, refs, layout: Layout, gallery: Gallery, batch_size: int,
                  whole: bool, device, encoder=None):
    """(first query's position, QueryBatch) over the split's queries; one batch for a whole-split method.
    ``encoder`` (the method's, under its view) decodes reference images for batch.reference_pixels()."""
    from functools import partial

    from cirbench.storage.pixels import load_pixels

    loader = (partial(load_pixels, transform=encoder.preprocess, squash_transform=encoder.squash_preprocess,
                      device=device) if encoder is not None else None)
    bs = max(1, len(split.queries)) if whole else batch_size
    for i in range(0, len(split.queries), bs):
        qs = split.queries[i:i + bs]
        yield i, QueryBatch(
            ids=[q.qid for q in qs], reference_ids=[q.reference for q in qs],
            reference_images=[split.images[q.reference] for q in qs],
            reference_features=refs[i:i + bs].to(device), texts=[q.text for q in qs],
            fields=[q.fields for q in qs], split=view,
            subsets=layout.members[i:i + bs] if layout.members is not None else None,
            reference_positions=[layout.pos.get(q.reference, -1) for q in qs], gallery=gallery, load_pixels=loader)


def rank(method: Method, split: Split, view: SplitView, gallery_features, refs, *, batch_size: int,
         chunk_size: int, device, progress=None, reference_encoder=None):
    """{view name: (top, target ranks, first rank)} and the per-query metric values of a method."""
    import torch

    layout = Layout.of(split)
    gallery = Gallery(ids=list(split.gallery), images=[split.images[g] for g in split.gallery],
                      features=gallery_features.to(device), split=view)

    def batches():
        return query_batches(split, view, refs, layout, gallery, batch_size, method.whole_split, device,
                             reference_encoder)

    task = progress.task(f"rank {method.method_name} on {split.name}", total=len(split.queries), unit="queries") if progress else None
    with torch.no_grad():
        produce = _vectors if method.scoring == "vectors" else _scores
        top, scores_top, first_rank, sub_scores, exact = produce(method, layout, gallery, batches(), chunk_size, device,
                                                                 task)
    if task:
        task.done()
    sub_order = sub_sorted = None
    if layout.members is not None:
        sub_sorted, sub_order = sort_members(sub_scores, _pad(layout.members, sub_scores.device))
        sub_sorted, sub_order = sub_sorted.cpu().numpy(), sub_order.cpu().numpy()
    if method.rerank_depth:
        if layout.subset_only:
            sub_order, sub_sorted = _rerank(method, batches(), sub_order, sub_sorted, device)
        else:
            top, scores_top = _rerank(method, batches(), top, scores_top, device)
            first_rank = _first_ranks(top, first_rank, layout.first.numpy(), method.rerank_depth)
            if exact is not None:
                exact = _exact_after_rerank(top, exact, layout.targets.numpy(), method.rerank_depth)
    views: dict[str, tuple] = {}
    if not layout.subset_only:
        views["gallery"] = (top, _target_ranks(top, split, layout.pos), first_rank)
    if layout.members is not None:
        if "gallery" in views:
            sub_order = _follow_final_order(sub_order, views["gallery"][0])
        views["subset"] = _subset_view(sub_order, split, layout.pos)
    listed = np.array([len(q.targets) for q in split.queries], dtype=np.int64)
    rank_views = {name: M.RankView(*v, n_listed=listed) for name, v in views.items()}
    if exact is not None:  # each query's distinct targets, in _target_ranks' order
        rank_views["gallery"].exact_ranks = [row[:len(dict.fromkeys(q.targets))] for q, row in zip(split.queries, exact)]
    elif "subset" in rank_views:  # a subset is ranked whole: its ranks are exact
        rank_views["subset"].exact_ranks = rank_views["subset"].target_ranks
    if split.group_by:
        for v in rank_views.values():
            v.groups = [q.fields[split.group_by] for q in split.queries]
    values = M.compute(rank_views, split.metrics, split.scope) if split.has_ground_truth else {}
    return views, values


def _vectors(method, layout: Layout, gallery: Gallery, batches, chunk_size: int, device, task):
    """Query vectors against the method's gallery representation: all queries are ranked at once."""
    import torch

    rep = method.encode_gallery(gallery)
    check_output(method, rep, "the gallery representation", "gallery items", len(gallery.ids))
    rep = checked_normalize(rep.to(device), "the gallery representation", "gallery items")
    queries = []
    for _i, batch in batches:
        vectors = method.encode_queries(batch)
        check_output(method, vectors, "query vectors", "queries", len(batch))
        queries.append(checked_normalize(vectors.to(device), "query vectors", "queries"))
        if task:
            task.advance(len(batch))
    q = torch.cat(queries) if queries else torch.empty(0, rep.shape[1], device=device)
    top = scores_top = first_rank = sub = exact = None
    if not layout.subset_only:
        excl = layout.exclude.to(device) if layout.exclude is not None else None
        s, ix, fr = rank_vectors(q, rep, layout.depth, layout.first.to(device), excl, chunk_size=chunk_size)
        top, scores_top, first_rank = ix.cpu().numpy(), s.cpu().numpy(), fr.cpu().numpy()
        if layout.targets is not None:
            exact = exact_target_ranks(q, rep, layout.targets.to(device), excl, chunk_size=chunk_size).cpu().numpy()
    if layout.members is not None:
        sub = subset_scores(q, rep, _pad(layout.members, device))
    return top, scores_top, first_rank, sub, exact


def _scores(method, layout: Layout, gallery: Gallery, batches, chunk_size: int, device, task):
    """The method's own scores, ranked batch by batch: B x G over the gallery, or on a split that ranks
    per-query subsets only each query's candidates (``score_subsets``)."""
    import torch

    n_gallery = len(gallery.ids)
    tops, subs, exacts = [], [], []
    for i, batch in batches:
        sl = slice(i, i + len(batch))
        if layout.subset_only:  # only each query's own candidates are scored
            width = max([1, *(len(m) for m in layout.members[sl])])
            scores = method.score_subsets(batch, gallery)
            check_output(method, scores, "subset scores", "queries", len(batch), (len(batch), width))
            subs.append(scores.float().cpu())
            if task:
                task.advance(len(batch))
            continue
        scores = method.score(batch, gallery)
        check_output(method, scores, "scores", "queries", len(batch), (len(batch), n_gallery))
        scores = scores.float().to(device)
        excl = layout.exclude[sl] if layout.exclude is not None else None
        s, ix, fr = rank_scores(scores, layout.depth, layout.first[sl], excl)
        tops.append((s.cpu(), ix.cpu(), fr.cpu()))
        if layout.targets is not None:
            exacts.append(ranks_in(scores, layout.targets[sl], excl).cpu())
        if layout.members is not None:
            mem = _pad(layout.members[sl], device)
            subs.append(scores.gather(1, mem.clamp(min=0)).cpu())
        if task:
            task.advance(len(batch))
    top = scores_top = first_rank = sub = None
    if not layout.subset_only:
        top = torch.cat([t[1] for t in tops]).numpy() if tops else np.zeros((0, 0), dtype=np.int64)
        scores_top = torch.cat([t[0] for t in tops]).numpy() if tops else np.zeros((0, 0), dtype=np.float32)
        first_rank = torch.cat([t[2] for t in tops]).numpy() if tops else np.zeros(0, dtype=np.int64)
    if layout.members is not None:
        width = max([1, *(len(m) for m in layout.members)])
        sub = torch.cat([torch.nn.functional.pad(x, (0, width - x.shape[1])) for x in subs]) if subs \
            else torch.zeros(0, width)
    exact = torch.cat(exacts).numpy() if exacts else None
    return top, scores_top, first_rank, sub, exact


def _rerank(method: Method, batches, candidates: np.ndarray, scores: np.ndarray, device):
    """Let the method re-score each query's top ``rerank_depth`` candidates (B x R gallery indices, best
    first, -1 for padding where a query has fewer; and their scores), batch by batch on its device;
    a stable sort by the new scores re-orders them (ties keep the previous order, padding stays last)."""
    import torch

    candidates, scores = candidates.copy(), scores.copy()
    depth = min(method.rerank_depth, candidates.shape[1])
    for i, batch in batches:
        rows = slice(i, i + len(batch))
        cand = torch.from_numpy(candidates[rows, :depth].copy()).to(device)
        old = torch.from_numpy(scores[rows, :depth].copy()).to(device)
        new = method.rerank(batch, cand, old)
        new = torch.as_tensor(new, dtype=torch.float32)  # a list or an array is accepted too
        check_output(method, new, "re-ranking scores", "queries", len(batch), tuple(cand.shape))
        new = torch.where(cand >= 0, new.to(device), torch.full_like(new.to(device), float("-inf"))).cpu()
        order = torch.sort(new, dim=1, descending=True, stable=True).indices.numpy()
        candidates[rows, :depth] = np.take_along_axis(candidates[rows, :depth], order, axis=1)
        scores[rows, :depth] = np.take_along_axis(new.numpy(), order, axis=1)
    return candidates, scores


def _first_ranks(top: np.ndarray, first_rank: np.ndarray, first: np.ndarray, depth: int) -> np.ndarray:
    """The first target's rank after re-ranking (a target beyond the re-ranked depth keeps its rank)."""
    out = first_rank.copy()
    for q in range(len(out)):
        where = np.nonzero(top[q, :depth] == first[q])[0]
        if first[q] >= 0 and where.size:
            out[q] = where[0] + 1
    return out


def _exact_after_rerank(top: np.ndarray, exact: np.ndarray, targets: np.ndarray, depth: int) -> np.ndarray:
    """Every target's exact rank after re-ranking: within the re-ranked depth its new position (the
    re-ranker only reorders those candidates), beyond it the first stage's rank."""
    out = exact.copy()
    for q in range(len(out)):
        where = {g: i + 1 for i, g in enumerate(top[q, :depth].tolist()) if g >= 0}
        for j, t in enumerate(targets[q].tolist()):
            if t >= 0 and t in where:
                out[q, j] = where[t]
    return out


def check_output(method: Method, out, what: str, unit: str, n: int, shape: tuple | None = None) -> None:
    """A hook's output is a tensor of the promised shape whose rows are finite (and, for vectors, not
    zero unless the method says a zero vector means something): else the cell fails with one line
    saying how many rows are affected, instead of a ranking in gallery order recorded as real metrics."""
    import torch

    if not isinstance(out, torch.Tensor):
        raise RunError(f"{what} must be a torch tensor, got {type(out).__name__}")
    if out.ndim != 2 or out.shape[0] != n or (shape is not None and tuple(out.shape) != tuple(shape)):
        expected = f"({', '.join(map(str, shape))})" if shape is not None else f"({n}, D)"
        raise RunError(f"{what} have shape {tuple(out.shape)}, expected {expected}")
    bad_rows = _by_rows(out, lambda block: ~torch.isfinite(block).all(dim=1))
    if bool(bad_rows.any()):
        raise RunError(f"{what} of {int(bad_rows.sum())} of {n} {unit} are not finite (NaN or inf)")
    if shape is None and not method.zero_vectors_meaningful:
        zero = _peak(out) == 0  # not norm(): a row of 1e-30 is not zero (its norm underflows)
        if bool(zero.any()):
            raise RunError(f"{what} of {int(zero.sum())} of {n} {unit} are zero vectors, which rank nothing "
                           "(a method whose zero vector means something sets zero_vectors_meaningful = True)")


def checked_normalize(out, what: str, unit: str):
    """The rows normalised as they are scored, each of length 1 (or 0 where the row is all zeros, which
    check_output allowed): a finite row whose squared length overflows float32 (values near 1e20 and up)
    normalises to zeros, and one that underflows (near 1e-20 and down) to a short vector, either of which
    would score every candidate alike and rank in gallery order. Such rows fail the cell in one line."""
    scored = normalize(out)
    length = scored.norm(dim=1)
    bad = ((length - 1).abs() > 1e-3) & (_peak(out) > 0)
    if bool(bad.any()):
        peak = float(_peak(out[bad]).max())
        raise RunError(f"{what} of {int(bad.sum())} of {len(out)} {unit} cannot be normalised in float32 (largest "
                       f"|value| {peak:.3g}: the squared length over- or underflows, so every score would be alike); "
                       "scale them towards length 1")
    return scored


BLOCK_ROWS = 65536  # rows checked at a time: no temporary of the whole (gallery-sized) output


def _by_rows(out, fn):
    """fn over blocks of rows, concatenated (the checks of a gallery representation stay block-sized)."""
    import torch

    return torch.cat([fn(out[i:i + BLOCK_ROWS].float()) for i in range(0, len(out), BLOCK_ROWS)]) if len(out) \
        else fn(out.float())


def _peak(out):
    """Each row's largest magnitude."""
    return _by_rows(out, lambda block: block.abs().amax(dim=1))


def _pad(rows: list[list[int]], device):
    import torch

    width = max([1, *(len(r) for r in rows)])
    return torch.tensor([r + [-1] * (width - len(r)) for r in rows], dtype=torch.long, device=device)


def _target_ranks(top: np.ndarray, split: Split, pos: dict) -> list[np.ndarray]:
    """Each target's 1-based position within the query's top (0: beyond it)."""
    out = []
    for q, row in zip(split.queries, top):
        where = _positions(row)
        out.append(np.array([where.get(pos[t], 0) for t in dict.fromkeys(q.targets)], dtype=np.int64))
    return out


def _positions(row: np.ndarray) -> dict:
    """Gallery index -> its first 1-based position in a ranked row (an image listed twice counts once)."""
    where: dict = {}
    for i, g in enumerate(row.tolist()):
        if g >= 0:
            where.setdefault(g, i + 1)
    return where


def _subset_view(order: np.ndarray, split: Split, pos: dict):
    ranks, first = [], []
    for q, row in zip(split.queries, order):
        where = _positions(row)
        ranks.append(np.array([where.get(pos[t], 0) for t in dict.fromkeys(q.targets)], dtype=np.int64))
        first.append(where.get(pos[q.targets[0]], 0) if q.targets else 0)
    return order, ranks, np.array(first, dtype=np.int64)


def _follow_final_order(order: np.ndarray, top: np.ndarray) -> np.ndarray:
    """Subset members in the order of the final gallery ranking (CIRR's Recall_subset is the global
    ranking restricted to the subset): members within the top keep their final positions, the rest
    follow in score order. Without re-ranking this is the score order itself."""
    out = order.copy()
    for q in range(order.shape[0]):
        where = {g: i for i, g in enumerate(top[q].tolist())}
        members = [g for g in order[q].tolist() if g >= 0]
        inside = sorted((g for g in members if g in where), key=where.get)
        outside = [g for g in members if g not in where]
        out[q, :len(members)] = inside + outside
    return out
