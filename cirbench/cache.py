"""Content-addressed on-disk feature cache.

Entries live under ``<cache dir>/features/<encoder key>/`` as shards: ``<id>.npy`` (the features) and
``<id>.json`` (the item keys, shape and a checksum of the .npy). The .json is written last, through a
temporary file and a rename, so an interrupted run never leaves an entry that looks valid; a shard
whose checksum does not match is deleted and its items are encoded again.

An item key is a hash of the image's absolute path, size and modification time: editing an image
invalidates its entry, and a different encoder (weights, precision, transform, version) has a
different folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np

from .errors import DataError


def item_key(path: Path) -> str:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise DataError(f"image file is missing: {path}") from None
    ident = f"{os.path.abspath(path)}|{st.st_size}|{st.st_mtime_ns}"
    return hashlib.sha1(ident.encode()).hexdigest()


def text_key(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def _atomic_write(path: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 22):
            h.update(block)
    return h.hexdigest()


class FeatureCache:
    def __init__(self, root: Path, encoder_key: str, dtype: str = "float32", kind: str = "features"):
        self.dir = Path(root) / kind / encoder_key
        self.dtype = dtype
        self._index: dict[str, tuple[str, int]] | None = None
        self._arrays: dict[str, np.ndarray] = {}

    def _load_index(self) -> dict[str, tuple[str, int]]:
        if self._index is not None:
            return self._index
        index: dict[str, tuple[str, int]] = {}
        if self.dir.is_dir():
            for meta_path in sorted(self.dir.glob("*.json")):
                shard = meta_path.stem
                try:
                    meta = json.loads(meta_path.read_text())
                    keys = meta["keys"]
                except (ValueError, KeyError) as exc:
                    self._drop(shard, f"unreadable index ({exc})")
                    continue
                for row, key in enumerate(keys):
                    index[key] = (shard, row)
        self._index = index
        return index

    def _drop(self, shard: str, why: str) -> None:
        warnings.warn(f"feature cache shard {self.dir / shard} is corrupt ({why}); it will be rebuilt", stacklevel=3)
        for suffix in (".json", ".npy"):
            (self.dir / f"{shard}{suffix}").unlink(missing_ok=True)
        if self._index is not None:
            self._index = {k: v for k, v in self._index.items() if v[0] != shard}

    def _array(self, shard: str) -> np.ndarray | None:
        if shard in self._arrays:
            return self._arrays[shard]
        meta_path, npy = self.dir / f"{shard}.json", self.dir / f"{shard}.npy"
        try:
            meta = json.loads(meta_path.read_text())
            if _sha256(npy) != meta["sha256"]:
                raise ValueError("checksum mismatch")
            array = np.load(npy, mmap_mode="r")
            if list(array.shape) != meta["shape"]:
                raise ValueError(f"shape {array.shape} != {meta['shape']}")
        except (OSError, ValueError, KeyError) as exc:
            self._drop(shard, str(exc))
            return None
        self._arrays[shard] = array
        return array

    def get(self, keys: list[str]) -> dict[int, np.ndarray]:
        """Rows found in the cache, by position in ``keys``."""
        index = self._load_index()
        found: dict[int, np.ndarray] = {}
        by_shard: dict[str, list[tuple[int, int]]] = {}
        for pos, key in enumerate(keys):
            if key in index:
                shard, row = index[key]
                by_shard.setdefault(shard, []).append((pos, row))
        for shard, pairs in by_shard.items():
            array = self._array(shard)
            if array is None:
                continue
            rows = np.asarray([r for _, r in pairs])
            values = np.asarray(array[rows], dtype=np.float32)
            for (pos, _), value in zip(pairs, values):
                found[pos] = value
        return found

    def put(self, keys: list[str], features: np.ndarray) -> None:
        if not keys:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        features = np.ascontiguousarray(features, dtype=self.dtype)
        shard = hashlib.sha1("\n".join(keys).encode()).hexdigest()[:20]
        npy = self.dir / f"{shard}.npy"
        _atomic_write(npy, lambda fh: np.save(fh, features))
        meta = {"keys": list(keys), "shape": list(features.shape), "dtype": self.dtype, "sha256": _sha256(npy)}
        _atomic_write(self.dir / f"{shard}.json", lambda fh: fh.write(json.dumps(meta).encode()))
        index = self._load_index()
        for row, key in enumerate(keys):
            index[key] = (shard, row)
        self._arrays.pop(shard, None)
