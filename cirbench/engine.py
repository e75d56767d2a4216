"""The scoring engine: encode each gallery once, compose every method's queries, rank, score, record.

The engine knows no method or dataset by name: it asks the dataset for a Split and the registry for
method classes, and it writes one result file per (encoder, method, dataset, split).
"""

from __future__ import annotations

import datetime as dt
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from . import distributed
from . import metrics as M
from . import results
from .cache import FeatureCache, item_key, text_key
from .data import Split
from .encoder import stable_hash
from .errors import CirbenchError, DataError, MissingCheckpointError
from .images import image_batches, unreadable
from .method import MethodContext
from .registry import methods as method_registry
from .scoring import normalize, rank_subsets, target_ranks, topk


@dataclass
class RunOptions:
    results_dir: Path
    cache_dir: Path
    batch_size: int = 64
    workers: int = 2
    chunk_size: int = 16384  # gallery rows scored at a time: memory ~ queries x chunk
    overwrite: bool = False
    seed: int = 0
    skip_bad_images: bool = False
    feature_dtype: str = "float16"  # how image features are stored (and rounded): float16 or float32
    all_methods: bool = False  # the user asked for `--method all`
    checkpoints: dict[str, Path] = field(default_factory=dict)  # method -> path
    prompts: dict[str, str] = field(default_factory=dict)  # user overrides of the split's prompt templates
    command: list[str] = field(default_factory=lambda: list(sys.argv))


class FeatureStore:
    """Image features of one encoder, through the on-disk cache: every image is encoded at most once."""

    def __init__(self, encoder, cache_dir: Path, batch_size: int, workers: int, progress=None,
                 flush_every: int = 4096, dtype: str = "float16"):
        self.encoder = encoder
        # features are rounded to the storage precision whether they come from the cache or not, so a
        # cold run and a warm run give the same numbers
        self.dtype = dtype
        self.cache = FeatureCache(cache_dir, encoder.key, dtype=dtype)
        self.batch_size, self.workers, self.progress = batch_size, workers, progress
        self.flush_every = flush_every
        self.hits = self.misses = 0

    def features(self, paths: list[Path], label: str = "images"):
        """(N x D float tensor, [(position, error)]) for the files; rows of unreadable files are NaN.
        A file listed several times (an image in many training triplets) is encoded once.

        Under torchrun each process encodes its share of the missing images; the features are gathered
        in the original order, and the main process writes them to the cache."""
        unique = list(dict.fromkeys(paths))
        if len(unique) == len(paths):
            return self._features(paths, label)
        feats, bad = self._features(unique, label)
        where = {p: i for i, p in enumerate(unique)}
        rows = [where[p] for p in paths]
        bad_at = dict(bad)
        return feats[rows], [(i, bad_at[r]) for i, r in enumerate(rows) if r in bad_at]

    def _features(self, paths: list[Path], label: str):
        import torch

        keys = [item_key(p) for p in paths]
        found = self.cache.get(keys)
        self.hits += len(found)
        out = np.full((len(paths), self.encoder.embed_dim), np.nan, dtype=np.float32)
        if found:
            hit = np.fromiter(found, dtype=np.int64, count=len(found))
            out[hit] = np.stack([found[i] for i in hit.tolist()])
        todo = np.asarray([i for i in range(len(paths)) if i not in found], dtype=np.int64)
        self.misses += len(todo)
        bad: list[tuple[int, str]] = []
        if len(todo):
            rank, world = distributed.world()
            mine = todo[self._share(len(todo), rank, world)]  # all of it without torchrun
            task = self.progress.task(f"encode {label}", total=len(mine)) if self.progress else None
            pending: list[tuple[np.ndarray, np.ndarray]] = []
            pin = str(self.encoder.device).startswith("cuda")
            with torch.no_grad():
                for idx, pixels, errors in image_batches([paths[i] for i in mine], self.encoder.preprocess,
                                                         self.batch_size, self.workers, pin_memory=pin):
                    bad.extend((int(mine[i]), err) for i, err in errors)
                    if pixels is not None:
                        rows = mine[idx.numpy()]
                        feats = self.encoder.encode_images(pixels).cpu().numpy().astype(self.dtype)
                        out[rows] = feats
                        pending.append((rows, feats))
                    if world == 1 and sum(len(r) for r, _ in pending) >= self.flush_every:
                        self._flush(keys, pending)  # an interrupted run keeps what it encoded
                        pending = []
                    if task:
                        task.advance(len(idx) + len(errors))
            if world > 1:
                pending, bad = self._gather(out, todo, bad, world)
            if distributed.is_main():
                self._flush(keys, pending)
            if task:
                task.done()
        return torch.from_numpy(out), bad

    def _share(self, n: int, rank: int, world: int) -> slice:
        """A contiguous block per process, cut at batch boundaries: every batch holds the same images as
        in a single-process run, so the features are bit for bit the same."""
        per = -(-n // world)
        per = -(-per // self.batch_size) * self.batch_size
        return slice(min(n, rank * per), min(n, (rank + 1) * per))

    def _flush(self, keys: list[str], pending) -> None:
        if pending:
            rows = np.concatenate([r for r, _ in pending])
            self.cache.put([keys[i] for i in rows.tolist()], np.concatenate([f for _, f in pending]))

    def _gather(self, out: np.ndarray, todo: np.ndarray, bad, world: int):
        """Share every process's rows with all: out is complete everywhere afterwards."""
        import torch
        import torch.distributed as dist

        width = self._share(len(todo), 0, world).stop  # the largest share: pad the others to it
        rank = dist.get_rank()
        mine = torch.full((width, out.shape[1]), float("nan"))
        share = todo[self._share(len(todo), rank, world)]
        mine[: len(share)] = torch.from_numpy(out[share])
        parts = [torch.empty_like(mine) for _ in range(world)]
        dist.all_gather(parts, mine)
        pending = []
        for r, part in enumerate(parts):
            rows = todo[self._share(len(todo), r, world)]
            values = part[: len(rows)].numpy()
            out[rows] = values
            ok = ~np.isnan(values).any(axis=1)
            pending.append((rows[ok], values[ok].astype(self.dtype)))
        every_bad: list = [None] * world
        dist.all_gather_object(every_bad, bad)
        return pending, sorted({b for part in every_bad for b in part})


class TextFeatures:
    """Deduplicated text encoding shared by all methods of a run, memoised in memory and, with a cache
    folder, on disk (keyed by the encoder and the exact text)."""

    def __init__(self, encoder, cache_dir: Path | None = None, batch_size: int = 256):
        self.encoder, self.batch_size = encoder, batch_size
        self.memo: dict[str, object] = {}
        self.cache = FeatureCache(cache_dir, encoder.key, kind="text") if cache_dir else None

    def __call__(self, texts: list[str]):
        import torch

        missing = list(dict.fromkeys(t for t in texts if t not in self.memo))
        if missing and self.cache is not None:
            found = self.cache.get([text_key(t) for t in missing])
            for pos, row in found.items():
                self.memo[missing[pos]] = torch.from_numpy(np.array(row)).to(self.encoder.device)
            missing = [t for t in missing if t not in self.memo]
        with torch.no_grad():
            for i in range(0, len(missing), self.batch_size):
                chunk = missing[i:i + self.batch_size]
                feats = self.encoder.encode_texts(chunk)
                for text, feat in zip(chunk, feats):
                    self.memo[text] = feat
                if self.cache is not None and distributed.is_main():
                    self.cache.put([text_key(t) for t in chunk], feats.float().cpu().numpy())
        return torch.stack([self.memo[t] for t in texts])


@dataclass
class CellOutcome:
    method: str
    dataset: str
    split: str
    status: str  # "computed", "reused", "skipped" (no released weights under --method all), "failed"
    record: dict | None = None
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


class Engine:
    def __init__(self, encoder, options: RunOptions, progress=None):
        self.encoder = encoder
        self.options = options
        self.progress = progress
        self.store = FeatureStore(encoder, options.cache_dir, options.batch_size, options.workers, progress,
                                  dtype=options.feature_dtype)
        self.texts = TextFeatures(encoder, options.cache_dir)

    # -- one split, many methods --------------------------------------------------------------
    def evaluate(self, split: Split, method_names: list[str], checkpoints: dict | None = None) -> list[CellOutcome]:
        """Every named method on one split. ``checkpoints`` adds method -> weights found by the dataset."""
        checkpoints = {**(checkpoints or {}), **self.options.checkpoints}
        outcomes, todo = [], []
        for name in method_names:
            cls = method_registry.get(name)
            ctx = MethodContext(encoder=self.encoder, prompts={**split.prompts, **self.options.prompts},
                                dataset=split.dataset, text_features=self.texts,
                                checkpoint=checkpoints.get(cls.registry_name),
                                checkpoint_store=Path(self.options.cache_dir) / "checkpoints")
            try:
                method = cls(ctx)
            except MissingCheckpointError as exc:
                # `--method all` includes methods that only run on released weights when those are there
                status = "skipped" if self.options.all_methods and getattr(cls, "external_weights", False) else "failed"
                outcomes.append(CellOutcome(cls.registry_name, split.dataset, split.split, status, error=exc))
                continue
            except CirbenchError as exc:
                outcomes.append(CellOutcome(cls.registry_name, split.dataset, split.split, "failed", error=exc))
                continue
            path = results.result_path(self.options.results_dir, self.encoder.slug, split.dataset, split.split,
                                       cls.registry_name)
            key = self._cell_key(split, cls, method)
            if path.is_file() and not self.options.overwrite:
                try:
                    old = results.read(path)
                except DataError:
                    old = None
                if old is not None and old.get("cell_key") == key:
                    outcomes.append(CellOutcome(cls.registry_name, split.dataset, split.split, "reused", old, path=path))
                    continue
            todo.append((cls, method, key, path))
        if not todo:
            return outcomes

        start = time.perf_counter()
        hits0, misses0 = self.store.hits, self.store.misses
        ids = list(dict.fromkeys([*split.gallery, *(q.reference for q in split.queries)]))
        feats, bad = self.store.features([split.images[i] for i in ids], label=split.name)
        skipped: dict = {}
        if bad:
            if not self.options.skip_bad_images:
                pos, err = bad[0]
                more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
                raise DataError(str(unreadable(split.images[ids[pos]], err)) + more)
            split, skipped = _drop_unreadable(split, {ids[p] for p, _ in bad})
        row = {image_id: i for i, image_id in enumerate(ids)}
        gallery = normalize(feats[[row[g] for g in split.gallery]]).to(self.encoder.device)
        refs = feats[[row[q.reference] for q in split.queries]]
        shared = time.perf_counter() - start
        cache = {"hits": self.store.hits - hits0, "misses": self.store.misses - misses0}

        for cls, method, key, path in todo:
            t0 = time.perf_counter()
            try:
                query = self._compose(method, refs, [q.text for q in split.queries])
                scores = self._score(split, query, gallery)
                submission = self._submission(split, query, gallery, path.parent / "submissions" / path.stem)
            except CirbenchError as exc:
                outcomes.append(CellOutcome(cls.registry_name, split.dataset, split.split, "failed", error=exc))
                continue
            record = self._record(split, cls, method, key, scores, cache, skipped,
                                  wall=time.perf_counter() - t0 + shared)
            if submission:
                record["submission"] = [str(p) for p in submission]
            if distributed.is_main():  # under torchrun every process scores; one writes
                results.write(path, record)
            outcomes.append(CellOutcome(cls.registry_name, split.dataset, split.split, "computed", record, path=path))
        return outcomes

    def _cell_key(self, split: Split, cls, method) -> str:
        return stable_hash({"encoder": self.encoder.key, "method": cls.registry_name, "config": method.config(),
                            "dataset": split.dataset, "split": split.split, "root": str(Path(split.root).resolve()),
                            "queries": len(split.queries), "gallery": len(split.gallery),
                            "prompts": split.prompts, "metrics": split.metrics,
                            "remove_reference": split.remove_reference,
                            "skip_bad_images": self.options.skip_bad_images,
                            "feature_dtype": self.options.feature_dtype})[:20]

    def _compose(self, method, refs, texts):
        import torch

        out = []
        bs = self.options.batch_size
        task = self.progress.task(f"compose {method.registry_name}", total=len(texts)) if self.progress else None
        with torch.no_grad():
            for i in range(0, len(texts), bs):
                out.append(normalize(method.compose(refs[i:i + bs].to(self.encoder.device), texts[i:i + bs])))
                if task:
                    task.advance(len(texts[i:i + bs]))
        if task:
            task.done()
        return torch.cat(out)

    @staticmethod
    def _exclusions(split: Split, pos: dict, device):
        import torch

        if not split.remove_reference:
            return None
        return torch.tensor([pos.get(q.reference, -1) for q in split.queries], device=device)

    @staticmethod
    def _subset_ranking(split: Split, pos: dict, query, gallery):
        import torch

        members = [[pos[m] for m in (q.subset or ()) if m != q.reference] for q in split.queries]
        width = max(1, max(len(m) for m in members))
        padded = torch.tensor([m + [-1] * (width - len(m)) for m in members], device=query.device)
        return rank_subsets(query, gallery, padded).cpu()

    def _submission(self, split: Split, query, gallery, folder: Path):
        """Test-server files from the top-k rankings (and subset rankings), written by the dataset."""
        if split.write_submission is None or not distributed.is_main():
            return []
        pos = {g: i for i, g in enumerate(split.gallery)}
        _s, ranked = topk(query, gallery, split.submission_k, exclude=self._exclusions(split, pos, query.device),
                          chunk_size=self.options.chunk_size)
        ranked_ids = [[split.gallery[i] for i in row] for row in ranked.tolist()]
        subset_ids = None
        if any(q.subset for q in split.queries):
            subset_ids = [[split.gallery[i] for i in row if i >= 0]
                          for row in self._subset_ranking(split, pos, query, gallery).tolist()]
        folder.mkdir(parents=True, exist_ok=True)
        return split.write_submission(ranked_ids, subset_ids, folder)

    def _score(self, split: Split, query, gallery) -> dict:
        import torch

        pos = {g: i for i, g in enumerate(split.gallery)}
        exclude = self._exclusions(split, pos, query.device)
        out: dict = {}
        if not split.has_ground_truth:
            return out
        targets = [[pos[t] for t in q.targets] for q in split.queries]
        ranked_families = [f for f, fn in M.FAMILIES.items() if fn is not None and f in split.metrics]
        ks = [k for fam in ranked_families for k in split.metrics[fam]]
        if ks:
            _s, ranked = topk(query, gallery, max(ks), exclude=exclude, chunk_size=self.options.chunk_size)
            ranked = ranked.cpu()
            for family in ranked_families:
                out.update(M.FAMILIES[family](ranked, targets, split.metrics[family]))
        if "recall_subset" in split.metrics:
            ranked_subset = self._subset_ranking(split, pos, query, gallery)
            out.update(M.recall_at_k(ranked_subset, targets, split.metrics["recall_subset"], prefix="Rs"))
        if "rank" in split.metrics:
            first = torch.tensor([t[0] if t else -1 for t in targets], device=query.device)
            ranks = target_ranks(query, gallery, first, exclude=exclude, chunk_size=self.options.chunk_size)
            out.update(M.rank_summary([r for r in ranks.tolist() if r > 0]))
        return out

    def _record(self, split: Split, cls, method, key, scores, cache, skipped, wall) -> dict:
        return {
            "schema_version": results.SCHEMA_VERSION,
            "cell_key": key,
            "encoder": {"label": self.encoder.label, "slug": self.encoder.slug, "key": self.encoder.key,
                        **self.encoder.identity},
            "method": {"name": cls.registry_name, "supervised": bool(cls.supervised),
                       "description": cls.description, "config": method.config()},
            "dataset": {"name": split.dataset, "split": split.split, "root": str(Path(split.root).resolve()),
                        "n_queries": len(split.queries), "n_gallery": len(split.gallery),
                        "remove_reference": split.remove_reference, "prompts": split.prompts,
                        "has_ground_truth": split.has_ground_truth, **split.info},
            "metrics": scores,
            "main_metrics": [m for m in split.main_metrics if m in scores],
            "run": {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                    "wall_time_s": round(wall, 3), "device": str(self.encoder.device),
                    "batch_size": self.options.batch_size, "workers": self.options.workers,
                    "seed": self.options.seed, "feature_cache": cache, "feature_dtype": self.options.feature_dtype,
                    "skipped": skipped,
                    "command": self.options.command, "versions": results.versions()},
        }
