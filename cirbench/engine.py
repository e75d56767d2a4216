"""The scoring engine: encode each gallery once, let every method compose or score, rank once per
(method, split), and hand that one ranking to every consumer: the metrics of every family, the
test-server files and the per-query outcomes.

The engine knows no method or dataset by name: it receives a Split and built method objects, asks
each method what it declares (its transform, vectors or scores, re-ranking), and writes one result
file per (encoder, method, dataset, split).
"""

from __future__ import annotations

import datetime as dt
import os
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from . import __version__, distributed, fsutil, results
from . import metrics as M
from .content_keys import ContentKeys
from .data import Split
from .errors import CirbenchError, DataError, MissingResourceError, RunError
from .features import FeatureStore, TextFeatures
from .images import unreadable
from .method import EncoderView, Gallery, Method, QueryBatch, SplitView
from .scoring import normalize, order_by_scores, rank_scores, rank_subsets, rank_vectors


@dataclass
class RunOptions:
    results_dir: Path | None  # None: nothing is written and nothing reused (a notebook, a training loop)
    cache_dir: Path
    batch_size: int = 64
    workers: int = 2
    chunk_size: int = 16384  # gallery rows scored at a time: memory ~ queries x chunk
    overwrite: bool = False
    skip_bad_images: bool = False
    feature_dtype: str = "float16"  # how image features are stored (and rounded): float16 or float32
    all_methods: bool = False  # the user asked for `--method all`
    prompts: dict[str, str] = field(default_factory=dict)  # user overrides of the split's prompt templates
    transform: str | None = None  # forces one image transform for every method (else each method's own)
    command: list[str] = field(default_factory=lambda: list(sys.argv))


@dataclass
class BuiltMethod:
    """A method built once for an engine's encoder (or the error its construction raised)."""

    name: str
    cls: type
    view: EncoderView
    instance: Method | None = None
    error: CirbenchError | None = None

    @property
    def transform(self) -> str:
        return self.view.transform


@dataclass
class CellOutcome:
    method: str
    dataset: str
    split: str
    status: str  # "computed", "reused", "skipped" (no released weights under --method all), "failed"
    record: results.Result | None = None
    error: CirbenchError | None = None
    path: Path | None = None


def _drop_unreadable(split: Split, bad_ids: set[str]) -> tuple[Split, dict]:
    """The split without unreadable images; queries that lose their reference or every target are counted."""
    gallery = [g for g in split.gallery if g not in bad_ids]
    kept, dropped = [], []
    for q in split.queries:
        targets = tuple(t for t in q.targets if t not in bad_ids)
        if q.reference in bad_ids or (q.targets and not targets):
            dropped.append(q.qid)
            continue
        subset = tuple(s for s in q.subset if s not in bad_ids) if q.subset is not None else None
        kept.append(replace(q, targets=targets, subset=subset))
    info = {"unreadable_images": sorted(bad_ids), "dropped_queries": dropped,
            "dropped_gallery_items": len(split.gallery) - len(gallery)}
    return replace(split, gallery=gallery, queries=kept), info


def split_content_key(split: Split) -> str:
    """What the split asks: its queries (ids, reference, text, targets, subsets, fields), gallery ids,
    prompts and protocol. Rotating captions or swapping a target changes it; the count alone does not."""
    return fsutil.stable_hash({
        "queries": [[q.qid, q.reference, q.text, list(q.targets), list(q.subset) if q.subset is not None else None,
                     dict(q.fields)] for q in split.queries],
        "gallery": split.gallery, "prompts": split.prompts, "metrics": split.metrics, "scope": split.scope,
        "remove_reference": split.remove_reference, "caption_order": split.caption_order,
        "has_ground_truth": split.has_ground_truth})[:24]


class Engine:
    """One encoder model: its features through the cache, and the evaluation of splits."""

    def __init__(self, encoder, options: RunOptions, progress=None):
        self.encoder = encoder
        self.options = options
        self.progress = progress
        self.content_keys = ContentKeys(options.cache_dir)
        self._encoders: dict[tuple[str, str], object] = {(encoder.transform, "loaded"): encoder}
        self._texts: dict[str, TextFeatures] = {}
        self._stores: dict[tuple[str, str], FeatureStore] = {}

    def encoder_for(self, transform: str, weights: str = "loaded"):
        """The run's model with another image transform and/or its weights rounded (see EncoderView);
        the weights are copied once per rounding and shared by its transforms."""
        key = (transform, weights)
        if key not in self._encoders:
            if transform == self.encoder.transform:
                self._encoders[key] = self.encoder.with_weights(weights)
            else:
                self._encoders[key] = self.encoder_for(self.encoder.transform, weights).with_transform(transform)
        return self._encoders[key]

    def texts_for(self, weights: str = "loaded") -> TextFeatures:
        """Cached text features of the run's model with these weights."""
        if weights not in self._texts:
            self._texts[weights] = TextFeatures(self.encoder_for(self.encoder.transform, weights),
                                                self.options.cache_dir)
        return self._texts[weights]

    @property
    def texts(self) -> TextFeatures:
        return self.texts_for("loaded")

    def store(self, transform: str, weights: str = "loaded") -> FeatureStore:
        key = (transform, weights)
        if key not in self._stores:
            self._stores[key] = FeatureStore(
                self.encoder_for(transform, weights), self.options.cache_dir, self.options.batch_size,
                self.options.workers, self.progress, dtype=self.options.feature_dtype, content_keys=self.content_keys)
        return self._stores[key]

    # -- one split, many methods --------------------------------------------------------------
    def evaluate(self, split: Split, built: list[BuiltMethod], result_name: str | None = None) -> list[CellOutcome]:
        """Every built method on one split."""
        result_name = result_name or split.dataset
        split.validate()
        prompts = {**split.prompts, **self.options.prompts}
        common = set.intersection(*(set(q.fields) for q in split.queries)) if split.queries else set()
        some = set().union(*(q.fields for q in split.queries)) - common  # fields only some queries carry
        partial: dict[str, str] = {}
        for q in split.queries if some else ():
            for name in some - set(q.fields) - set(partial):
                partial[name] = q.qid  # the first query without it
        view = SplitView(dataset=split.dataset, split=split.split, prompts=prompts, caption_order=split.caption_order,
                         remove_reference=split.remove_reference, scope=split.scope, n_queries=len(split.queries),
                         n_gallery=len(split.gallery), info=dict(split.info), checkpoints=dict(split.checkpoints),
                         query_fields=frozenset(common), partial_fields=partial)
        ids = list(dict.fromkeys([*split.gallery, *(q.reference for q in split.queries),
                                  *(m for q in split.queries for m in (q.subset or ()))]))
        content = split_content_key(split)
        image_keys = self.content_keys.keys([split.images[i] for i in ids], self.progress)
        images_key = fsutil.stable_hash([ids, image_keys])[:24]
        outcomes, todo = [], []
        for m in built:
            cell = self._prepare_cell(m, split, view, content, images_key, result_name)
            if isinstance(cell, CellOutcome):
                outcomes.append(cell)
            else:
                todo.append(cell)
        if not todo:
            return outcomes
        if distributed.is_main():  # every place this split's cells will write, before any work
            for _m, _key, path in todo:
                if path is not None:
                    fsutil.ensure_writable(path.parent, "result folder", "pass --results-dir PATH")
                    if split.write_submission is not None:
                        fsutil.ensure_writable(path.parent / "submissions" / path.stem, "submission folder")
        start = time.perf_counter()
        feats: dict[tuple[str, str], object] = {}
        cache: dict[tuple[str, str], dict] = {}
        skipped: dict = {}
        for group in dict.fromkeys((t[0].transform, t[0].view.weights) for t in todo):
            store = self.store(*group)
            hits0, misses0 = store.hits, store.misses
            values, bad = store.features([split.images[i] for i in ids], label=split.name, keys=image_keys)
            cache[group] = {"hits": store.hits - hits0, "misses": store.misses - misses0}
            if bad and not self.options.skip_bad_images:
                pos, err = bad[0]
                more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
                raise DataError(str(unreadable(split.images[ids[pos]], err)) + more)
            feats[group] = values
            if bad and not skipped:
                split, skipped = _drop_unreadable(split, {ids[p] for p, _ in bad})
                view.n_queries, view.n_gallery = len(split.queries), len(split.gallery)
        row = {image_id: i for i, image_id in enumerate(ids)}
        # references encoded with a transform of their own (EncoderView.reference_transform)
        ref_ids = list(dict.fromkeys(q.reference for q in split.queries))
        ref_row = {image_id: i for i, image_id in enumerate(ref_ids)}
        ref_feats: dict[tuple[str, str], object] = {}
        for group in dict.fromkeys((t[0].view.references, t[0].view.weights) for t in todo
                                   if t[0].view.references != t[0].transform):
            store = self.store(*group)
            hits0, misses0 = store.hits, store.misses
            values, _bad = store.features([split.images[i] for i in ref_ids], label=f"{split.name} references",
                                          keys=[image_keys[row[i]] for i in ref_ids])
            cache[group] = {"hits": store.hits - hits0, "misses": store.misses - misses0}
            ref_feats[group] = values  # an unreadable reference was dealt with above
        shared = time.perf_counter() - start
        for m, key, path in todo:
            t0 = time.perf_counter()
            group = (m.transform, m.view.weights)
            refs_group = (m.view.references, m.view.weights)
            if refs_group in ref_feats:
                refs = ref_feats[refs_group][[ref_row[q.reference] for q in split.queries]]
            else:
                refs = feats[group][[row[q.reference] for q in split.queries]]
            try:
                views, values = self._rank(m.instance, split, view, feats[group], row, refs)
                folder = path.parent / "submissions" / path.stem if path is not None else None
                submission = self._submission(split, views, folder)
            except CirbenchError as exc:
                outcomes.append(CellOutcome(m.name, split.dataset, split.split, "failed", error=exc))
                continue
            except Exception as exc:  # a bug in a (plugin) method fails its cell, not the whole run
                outcomes.append(CellOutcome(m.name, split.dataset, split.split, "failed", error=_method_bug(m, exc)))
                continue
            stats = {"hits": 0, "misses": 0}
            for g in dict.fromkeys([group, refs_group]):
                if g in cache:
                    stats = {k: stats[k] + cache[g][k] for k in stats}
            record = self._record(split, view, m, key, values, stats, skipped, result_name,
                                  wall=time.perf_counter() - t0 + shared)
            record.submission = [str(p) for p in submission]
            out = results.Outcomes([q.qid for q in split.queries], list(split.gallery), views,
                                   {k: (v.values, v.agg) for k, v in values.items()},
                                   texts=[q.text for q in split.queries],
                                   references=[q.reference for q in split.queries],
                                   first_targets=[q.targets[0] if q.targets else "" for q in split.queries],
                                   images=_image_table(split, views))
            if path is not None and distributed.is_main():  # under torchrun every process scores; one writes
                results.write(path, record, out)
            outcomes.append(CellOutcome(m.name, split.dataset, split.split, "computed", record, path=path))
        return outcomes

    def _prepare_cell(self, m: BuiltMethod, split: Split, view: SplitView, content: str, images_key: str,
                      result_name: str):
        """(method, cell key, result path) for a cell to compute, or its CellOutcome when it is skipped,
        failed before any work, or reused."""
        def outcome(status, **kw):
            return CellOutcome(m.name, split.dataset, split.split, status, **kw)

        def failed(exc: CirbenchError):
            # `--method all` includes methods that need outside weights or texts only when those are there
            skip = (isinstance(exc, MissingResourceError) and self.options.all_methods
                    and m.cls.external_weights)
            return outcome("skipped" if skip else "failed", error=exc)

        if m.error is not None:
            return failed(m.error)
        method = m.instance
        method.split = view
        method.ctx.prompts, method.ctx.dataset = view.prompts, view.dataset
        try:
            method.prepare(view)
            config = method.config()
            _check_json(config, "config()")
        except CirbenchError as exc:
            return failed(exc)
        except Exception as exc:
            return failed(_method_bug(m, exc))
        key = fsutil.stable_hash({
            "cirbench": __version__, "encoder": self.encoder_for(m.transform, m.view.weights).key, "method": m.name,
            "references": self.encoder_for(m.view.references, m.view.weights).key,
            "config": config, "options": method.ctx.options, "scoring": m.cls.scoring, "split": content,
            "images": images_key, "skip_bad_images": self.options.skip_bad_images,
            "feature_dtype": self.options.feature_dtype})[:24]
        if self.options.results_dir is None:
            return m, key, None
        path = results.result_path(self.options.results_dir, self.encoder.slug, result_name, split.split, m.name)
        if path.is_file() and not self.options.overwrite:
            try:
                old = results.read(path)
            except DataError:
                old = None
            if old is not None and old.cell_key == key:
                return outcome("reused", record=old, path=path)
        return m, key, path

    # -- ranking ------------------------------------------------------------------------------------
    def _batches(self, split: Split, view: SplitView, refs, pos: dict, members: list[list[int]] | None,
                 whole: bool = False):
        bs = max(1, len(split.queries)) if whole else self.options.batch_size
        device = self.encoder.device
        for i in range(0, len(split.queries), bs):
            qs = split.queries[i:i + bs]
            yield i, QueryBatch(
                ids=[q.qid for q in qs], reference_ids=[q.reference for q in qs],
                reference_images=[split.images[q.reference] for q in qs],
                reference_features=refs[i:i + bs].to(device), texts=[q.text for q in qs],
                fields=[q.fields for q in qs], split=view,
                subsets=members[i:i + bs] if members is not None else None,
                reference_positions=[pos.get(q.reference, -1) for q in qs])

    def _rank(self, method: Method, split: Split, view: SplitView, feats, row: dict, refs):
        """The one ranking of a method on a split: {view name: (top, target ranks, first rank)} and the
        per-query metric values. ``refs``: the queries' reference features (Q x D)."""
        import torch

        device = self.encoder.device
        pos = {g: i for i, g in enumerate(split.gallery)}
        n_q = len(split.queries)
        gallery = Gallery(ids=list(split.gallery), images=[split.images[g] for g in split.gallery],
                          features=feats[[row[g] for g in split.gallery]].to(device), split=view)
        first = torch.tensor([pos[q.targets[0]] if q.targets else -1 for q in split.queries], dtype=torch.long)
        exclude = (torch.tensor([pos.get(q.reference, -1) for q in split.queries], dtype=torch.long)
                   if split.remove_reference else None)
        members = None
        if split.scope == "subset" or any(q.subset for q in split.queries):
            members = [[pos[m] for m in (q.subset or ()) if not (split.remove_reference and m == q.reference)]
                       for q in split.queries]
        subset_only = split.scope == "subset"
        depth = max(M.needed_depth(split.metrics), results.OUTCOMES_TOP,
                    split.submission_k if split.write_submission else 0)
        depth = 0 if subset_only else depth
        task = self.progress.task(f"rank {method.method_name} on {split.name}", total=n_q) if self.progress else None
        top_s, top_i, first_rank, sub_order = [], [], [], []
        with torch.no_grad():
            if method.scoring == "vectors":
                rep = method.encode_gallery(gallery)
                _check_output(method, rep, "the gallery representation", "gallery items", len(split.gallery))
                rep = normalize(rep.to(device))
                queries = []
                for i, batch in self._batches(split, view, refs, pos, members, method.whole_split):
                    vectors = method.encode_queries(batch)
                    _check_output(method, vectors, "query vectors", "queries", len(batch))
                    queries.append(normalize(vectors.to(device)))
                    if task:
                        task.advance(len(batch))
                q = torch.cat(queries) if queries else torch.empty(0, rep.shape[1], device=device)
                if not subset_only:
                    s, ix, fr = rank_vectors(q, rep, depth, first.to(device),
                                             exclude.to(device) if exclude is not None else None,
                                             chunk_size=self.options.chunk_size)
                    top_s, top_i, first_rank = [s.cpu()], [ix.cpu()], [fr.cpu()]
                if members is not None:
                    sub_order = [rank_subsets(q, rep, _pad(members, device)).cpu()]
            else:
                for i, batch in self._batches(split, view, refs, pos, members, method.whole_split):
                    scores = method.score(batch, gallery)
                    _check_output(method, scores, "scores", "queries", len(batch), (len(batch), len(split.gallery)))
                    scores = scores.float().to(device)
                    sl = slice(i, i + len(batch))
                    if not subset_only:
                        s, ix, fr = rank_scores(scores, depth, first[sl], exclude[sl] if exclude is not None else None)
                        top_s.append(s.cpu()), top_i.append(ix.cpu()), first_rank.append(fr.cpu())
                    if members is not None:
                        mem = _pad(members[sl], device)
                        sub_order.append(order_by_scores(scores.gather(1, mem.clamp(min=0)), mem).cpu())
                    if task:
                        task.advance(len(batch))
        if task:
            task.done()
        views: dict[str, tuple] = {}
        if not subset_only:
            top = torch.cat(top_i).numpy() if top_i else np.zeros((0, 0), dtype=np.int64)
            fr = torch.cat(first_rank).numpy() if first_rank else np.zeros(0, dtype=np.int64)
            scores_top = torch.cat(top_s).numpy() if top_s else np.zeros((0, 0), dtype=np.float32)
            if method.rerank_depth:
                top, fr = self._rerank(method, split, view, refs, pos, members, top, scores_top, fr, first.numpy())
            views["gallery"] = (top, _target_ranks(top, split, pos), fr)
        if members is not None:
            order = _cat_padded(sub_order)
            if "gallery" in views:
                order = _follow_final_order(order, views["gallery"][0])
            views["subset"] = _subset_view(order, split, pos)
        listed = np.array([len(q.targets) for q in split.queries], dtype=np.int64)
        rank_views = {name: M.RankView(*v, n_listed=listed) for name, v in views.items()}
        values = M.compute(rank_views, split.metrics, split.scope) if split.has_ground_truth else {}
        return views, values

    def _rerank(self, method, split, view, refs, pos, members, top, scores_top, fr, first):
        """Let the method re-score each query's top ``rerank_depth``; the first target's rank follows."""
        import torch

        depth = min(method.rerank_depth, top.shape[1])
        top = top.copy()
        fr = fr.copy()
        for i, batch in self._batches(split, view, refs, pos, members):
            rows = slice(i, i + len(batch))
            cand = torch.from_numpy(top[rows, :depth].copy())
            new = method.rerank(batch, cand, torch.from_numpy(scores_top[rows, :depth].copy()))
            new = torch.as_tensor(new, dtype=torch.float32).cpu()  # a list or an array is accepted too
            _check_output(method, new, "re-ranking scores", "queries", len(batch), tuple(cand.shape))
            order = torch.sort(new, dim=1, descending=True, stable=True).indices.numpy()
            top[rows, :depth] = np.take_along_axis(top[rows, :depth], order, axis=1)
        for q in range(len(fr)):
            where = np.nonzero(top[q, :depth] == first[q])[0]
            if first[q] >= 0 and where.size:
                fr[q] = where[0] + 1
        return top, fr

    def _submission(self, split: Split, views: dict, folder: Path | None):
        """Test-server files from the one ranking (and subset ranking), written by the dataset."""
        if split.write_submission is None or folder is None or not distributed.is_main():
            return []
        top = views["gallery"][0]
        ranked_ids = [[split.gallery[i] for i in row[:split.submission_k] if i >= 0] for row in top.tolist()]
        subset_ids = None
        if "subset" in views:
            subset_ids = [[split.gallery[i] for i in row if i >= 0] for row in views["subset"][0].tolist()]
        folder.mkdir(parents=True, exist_ok=True)
        return split.write_submission(ranked_ids, subset_ids, folder)

    def _record(self, split: Split, view: SplitView, m: BuiltMethod, key: str, values: dict, cache: dict,
                skipped: dict, result_name: str, wall: float) -> results.Result:
        enc = self.encoder_for(m.transform, m.view.weights)
        method = m.instance
        return results.Result(
            cell_key=key,
            encoder=results.EncoderRecord(label=enc.label, spec=enc.identity.get("spec", enc.label),
                                          model_key=enc.model_key, key=enc.key, slug=self.encoder.slug,
                                          transform=enc.transform, identity=dict(enc.identity)),
            method=results.MethodRecord(name=m.name, supervised=bool(m.cls.supervised),
                                        description=m.cls.description, config=method.config(),
                                        options=dict(method.ctx.options), transform=m.transform,
                                        reference_transform=m.view.references, weights=m.view.weights),
            dataset=results.DatasetRecord(
                name=split.dataset, split=split.split, root=str(Path(split.root).resolve()), result_name=result_name,
                n_queries=len(split.queries), n_gallery=len(split.gallery), remove_reference=split.remove_reference,
                prompts=view.prompts, has_ground_truth=split.has_ground_truth, scope=split.scope,
                content_key=split_content_key(split),
                info={**split.info, **({"caption_order": split.caption_order} if split.caption_order else {}),
                      **({"queries_without_targets": split.queries_without_targets}
                         if split.queries_without_targets else {})}),
            metrics={k: v.value() for k, v in values.items()},
            main_metrics=[m_ for m_ in split.main_metrics if m_ in values],
            run=results.RunRecord(
                date=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), wall_time_s=round(wall, 3),
                device=str(self.encoder.device), batch_size=self.options.batch_size, workers=self.options.workers,
                feature_cache=cache, feature_dtype=self.options.feature_dtype, skipped=skipped,
                command=list(self.options.command), versions=results.versions()))


def _image_table(split: Split, views: dict, top: int = 10) -> dict:
    """{id: [path, ops]} for the references, first targets and each query's top results."""
    from .images import ImageRef

    ids = {q.reference for q in split.queries} | {q.targets[0] for q in split.queries if q.targets}
    for top_ids, _ranks, _first in views.values():
        ids |= {split.gallery[i] for i in np.unique(top_ids[:, :top]) if i >= 0}
    table = {}
    for image_id in ids:
        image = split.images[image_id]
        if isinstance(image, ImageRef):
            table[image_id] = [os.path.abspath(image.path), [list(op) for op in image.ops]]
        else:
            table[image_id] = [os.path.abspath(image), []]
    return table


def _method_bug(m: BuiltMethod, exc: Exception) -> RunError:
    where = ""
    tb = exc.__traceback__
    while tb is not None:  # the innermost frame: where the method's code went wrong
        where = f" ({tb.tb_frame.f_code.co_filename}:{tb.tb_lineno})"
        tb = tb.tb_next
    return RunError(f"method {m.name!r} raised {type(exc).__name__}: {exc}{where}")


def _check_json(value, what: str) -> None:
    """A method's config is recorded in results and keys its cells: it must be plain JSON (an object
    whose text form holds a memory address would change the key on every run)."""
    import json

    try:
        json.dumps(value, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise RunError(f"{what} must return plain JSON values (strings, numbers, booleans, lists, dicts with "
                       f"string keys): {exc}") from None


def _check_output(method: Method, out, what: str, unit: str, n: int, shape: tuple | None = None) -> None:
    """A hook's output is a tensor of the promised shape whose rows are finite (and, for vectors, not
    zero unless the method says a zero vector means something): else the cell fails with one line
    saying how many rows are affected, instead of a ranking in gallery order recorded as real metrics."""
    import torch

    if not isinstance(out, torch.Tensor):
        raise RunError(f"{what} must be a torch tensor, got {type(out).__name__}")
    if out.ndim != 2 or out.shape[0] != n or (shape is not None and tuple(out.shape) != tuple(shape)):
        expected = f"({', '.join(map(str, shape))})" if shape is not None else f"({n}, D)"
        raise RunError(f"{what} have shape {tuple(out.shape)}, expected {expected}")
    bad_rows = ~torch.isfinite(out.float()).all(dim=1)
    if bool(bad_rows.any()):
        raise RunError(f"{what} of {int(bad_rows.sum())} of {n} {unit} are not finite (NaN or inf)")
    if shape is None and not method.zero_vectors_meaningful:
        zero = out.float().norm(dim=1) == 0
        if bool(zero.any()):
            raise RunError(f"{what} of {int(zero.sum())} of {n} {unit} are zero vectors, which rank nothing "
                           "(a method whose zero vector means something sets zero_vectors_meaningful = True)")


def _pad(rows: list[list[int]], device):
    import torch

    width = max([1, *(len(r) for r in rows)])
    return torch.tensor([r + [-1] * (width - len(r)) for r in rows], dtype=torch.long, device=device)


def _cat_padded(parts) -> np.ndarray:
    if not parts:
        return np.zeros((0, 0), dtype=np.int64)
    width = max(p.shape[1] for p in parts)
    return np.concatenate([np.pad(p.numpy(), ((0, 0), (0, width - p.shape[1])), constant_values=-1) for p in parts])


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
