"""Image and text features through the on-disk cache: every image and text is encoded at most once
per encoder, shared by every method, split and later run."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from cirbench.util import distributed
from cirbench.storage.cache import FeatureCache
from cirbench.storage.content_keys import ContentKeys, text_key
from cirbench.protocol.images import Image_
from cirbench.storage.pixels import image_batches


# encoded features are written to the cache at least this often, so a run killed without warning
# (SIGKILL, a power cut) loses at most about this much encoding work
FLUSH_SECONDS = 10.0


class FeatureStore:
    """Image features of one encoder (model + transform) in one storage dtype."""

    def __init__(self, encoder, cache_dir: Path, batch_size: int = 64, workers: int = 0, progress=None,
                 flush_every: int = 4096, flush_seconds: float = FLUSH_SECONDS, dtype: str = "float32",
                 content_keys: ContentKeys | None = None):
        self.encoder = encoder
        # features are rounded to the storage precision whether they come from the cache or not, so a
        # cold run and a warm run give the same numbers
        self.dtype = dtype
        self.cache = FeatureCache(cache_dir, encoder.key, dtype=dtype)
        self.content_keys = content_keys or ContentKeys(cache_dir)
        self.batch_size, self.workers, self.progress = batch_size, workers, progress
        self.flush_every, self.flush_seconds = flush_every, flush_seconds
        self.hits = self.misses = 0

    def keys(self, images: list[Image_]) -> list[str | None]:
        return self.content_keys.keys(images, self.progress)

    def features(self, images: list[Image_], label: str = "images", keys: list[str | None] | None = None):
        """(N x D float tensor, [(position, error)]) for the images; rows of unreadable or missing files
        are NaN. An image listed several times (one image in many training triplets) is encoded once.

        Under torchrun each process encodes its share of the missing images; the features are gathered
        in the original order, and the main process writes them to the cache."""
        unique = list(dict.fromkeys(images))
        if len(unique) == len(images):
            return self._features(images, label, keys)
        feats, bad = self._features(unique, label, None)
        where = {p: i for i, p in enumerate(unique)}
        rows = [where[p] for p in images]
        bad_at = dict(bad)
        return feats[rows], [(i, bad_at[r]) for i, r in enumerate(rows) if r in bad_at]

    def _features(self, images: list[Image_], label: str, keys):
        import torch

        keys = keys if keys is not None else self.keys(images)
        found = self.cache.get(keys)
        self.hits += len(found)
        out = np.full((len(images), self.encoder.embed_dim), np.nan, dtype=np.float32)
        if found:
            hit = np.fromiter(found, dtype=np.int64, count=len(found))
            out[hit] = np.stack([found[i] for i in hit.tolist()])
        bad: list[tuple[int, str]] = [(i, "FileNotFoundError: the file is missing")
                                      for i, k in enumerate(keys) if k is None]
        todo = np.asarray([i for i in range(len(images)) if i not in found and keys[i] is not None], dtype=np.int64)
        self.misses += len(todo)
        if len(todo):
            bad += self._encode(images, keys, todo, out, label)
        return torch.from_numpy(out), sorted(bad)

    def _encode(self, images, keys, todo: np.ndarray, out: np.ndarray, label: str):
        import torch

        rank, world = distributed.world()
        mine = todo[self._share(len(todo), rank, world)]  # all of it without torchrun
        task = self.progress.task(f"encode {label}", total=len(mine), unit="images") if self.progress else None
        pending: list[tuple[np.ndarray, np.ndarray]] = []
        bad: list[tuple[int, str]] = []
        pin = str(self.encoder.device).startswith("cuda")
        last_flush = time.monotonic()
        try:
            with torch.no_grad():
                for idx, pixels, errors in image_batches([images[i] for i in mine], self.encoder.preprocess,
                                                         self.batch_size, self.workers, pin_memory=pin,
                                                         squash_transform=self.encoder.squash_preprocess):
                    bad.extend((int(mine[i]), err) for i, err in errors)
                    if pixels is not None:
                        rows = mine[idx.numpy()]
                        feats = self.encoder.encode_images(pixels).cpu().numpy().astype(self.dtype)
                        out[rows] = feats
                        pending.append((rows, feats))
                    due = (sum(len(r) for r, _ in pending) >= self.flush_every
                           or time.monotonic() - last_flush >= self.flush_seconds)
                    if world == 1 and due:
                        self._flush(keys, pending)  # an interrupted run keeps what it encoded
                        pending, last_flush = [], time.monotonic()
                    if task:
                        task.advance(len(idx) + len(errors))
        except BaseException:
            if world == 1:  # Ctrl-C, SIGTERM, a crash: keep what was encoded
                self._flush(keys, pending)
            raise
        if world > 1:
            pending, bad = self._gather(out, todo, bad, world)
        if distributed.is_main():
            self._flush(keys, pending)
        if task:
            task.done()
        return bad

    def _share(self, n: int, rank: int, world: int) -> slice:
        """A contiguous block per process, cut at batch boundaries: every batch holds the same images as
        in a single-process run, so the features are bit for bit the same."""
        per = -(-n // world)
        per = -(-per // self.batch_size) * self.batch_size
        return slice(min(n, rank * per), min(n, (rank + 1) * per))

    def _flush(self, keys: list, pending) -> None:
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
    folder, on disk (keyed by the encoder's model and the exact text)."""

    def __init__(self, encoder, cache_dir: Path | None = None, batch_size: int = 256):
        self.encoder, self.batch_size = encoder, batch_size
        self.memo: dict[str, object] = {}
        self.cache = FeatureCache(cache_dir, encoder.model_key, kind="text") if cache_dir else None

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
        if not texts:
            return torch.empty(0, self.encoder.embed_dim, device=self.encoder.device)
        return torch.stack([self.memo[t] for t in texts])
