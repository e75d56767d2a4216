"""Content-addressed on-disk feature cache.

Entries live under ``<cache dir>/<kind>/<encoder key>/`` as shards: ``<id>.npy`` (the features) and
``<id>.json`` (the item keys, shape, storage dtype and a checksum of the .npy). The index and the rows
are bound together: the index holds the rows' checksum and shape (one row per key), and the shard's id
is a hash of its keys in order, so an index whose keys were reordered or edited does not match its id.
The .json is written last, through a temporary file and a rename, so an interrupted run never leaves an
entry that looks valid; a shard whose index or checksum does not hold up is deleted and its items
encoded again.

Image items are keyed by the content of their file (:mod:`cirbench.content_keys`), texts by their exact
string. The encoder key covers everything that changes features (weights, precision, transform,
open_clip version). Rows are stored in the dtype a run asked for (fp16 or fp32) and a run only reads
rows of its own dtype, so an fp32 run after an fp16 run never gets rounded values.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import numpy as np

from cirbench.util import fsutil


def shard_name(keys: list[str], dtype: str) -> str:
    """A shard is named by its keys, in order, and its dtype: an index whose keys were reordered, added
    or removed no longer matches its name, so the rows it lists are never served under the wrong keys."""
    return hashlib.sha1(("\n".join(keys) + dtype).encode()).hexdigest()[:20]


def _valid_meta(meta, name: str | None = None) -> bool:
    if not (isinstance(meta, dict) and isinstance(meta.get("keys"), list)
            and all(isinstance(k, str) for k in meta["keys"])
            and isinstance(meta.get("shape"), list) and len(meta["shape"]) == 2
            and all(isinstance(n, int) for n in meta["shape"])
            and isinstance(meta.get("sha256"), str)):
        return False
    if meta["shape"][0] != len(meta["keys"]):  # one row per key, no more, no fewer
        return False
    return name is None or name == shard_name(meta["keys"], meta.get("dtype", "float32"))


def read_meta(path: Path) -> dict | None:
    """A shard's index, or None when it is unreadable, of the wrong shape, or does not match its rows'
    count or its own name (see shard_name)."""
    try:
        meta = json.loads(Path(path).read_text())
    except (OSError, ValueError, RecursionError):
        return None
    return meta if _valid_meta(meta, Path(path).stem) else None


class FeatureCache:
    def __init__(self, root: Path, encoder_key: str, dtype: str = "float32", kind: str = "features"):
        self.dir = Path(root) / kind / encoder_key
        self.dtype = dtype
        self._index: dict[str, tuple[str, int]] | None = None
        self._arrays: dict[str, np.ndarray] = {}
        self._cleaned = False

    def _load_index(self) -> dict[str, tuple[str, int]]:
        if self._index is not None:
            return self._index
        index: dict[str, tuple[str, int]] = {}
        if self.dir.is_dir():
            for meta_path in sorted(self.dir.glob("*.json")):
                shard = meta_path.stem
                meta = read_meta(meta_path)
                if meta is None:
                    self._drop(shard, "unreadable or malformed index")
                    continue
                if meta.get("dtype", "float32") != self.dtype:
                    continue  # rows of another storage precision
                for row, key in enumerate(meta["keys"]):
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
        meta = read_meta(meta_path)
        try:
            if meta is None:
                raise ValueError("unreadable or malformed index")
            if fsutil.sha256_file(npy) != meta["sha256"]:
                raise ValueError("checksum mismatch")
            array = np.load(npy, mmap_mode="r")
            if list(array.shape) != meta["shape"]:
                raise ValueError(f"shape {array.shape} != {meta['shape']}")
        except (OSError, ValueError) as exc:
            self._drop(shard, str(exc))
            return None
        self._arrays[shard] = array
        return array

    def get(self, keys: list[str | None]) -> dict[int, np.ndarray]:
        """Rows found in the cache, by position in ``keys`` (None keys are never found)."""
        index = self._load_index()
        found: dict[int, np.ndarray] = {}
        by_shard: dict[str, list[tuple[int, int]]] = {}
        for pos, key in enumerate(keys):
            if key is not None and key in index:
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
        mark(self.dir)
        if not self._cleaned:  # what a killed run left behind
            fsutil.clean_stale_temporaries(self.dir)
            self._cleaned = True
        features = np.ascontiguousarray(features, dtype=self.dtype)
        shard = shard_name(list(keys), self.dtype)
        npy = self.dir / f"{shard}.npy"
        fsutil.atomic_write(npy, lambda fh: np.save(fh, features), size=features.nbytes)
        meta = {"keys": list(keys), "shape": list(features.shape), "dtype": self.dtype, "sha256": fsutil.sha256_file(npy)}
        fsutil.atomic_write(self.dir / f"{shard}.json", lambda fh: fh.write(json.dumps(meta).encode()))
        index = self._load_index()
        for row, key in enumerate(keys):
            index[key] = (shard, row)
        self._arrays.pop(shard, None)


def count_entries(folder: Path) -> int:
    """Entries in one encoder's folder (for `cirbench cache info`); malformed indexes count 0."""
    total = 0
    for meta_path in Path(folder).glob("*.json"):
        meta = read_meta(meta_path)
        total += len(meta["keys"]) if meta else 0
    return total


# A folder of cached features carries this file: `cirbench cache clear` deletes only in folders that
# carry it (or, written before it existed, hold shards), and there only the shards cirbench wrote.
MARKER = ".cirbench-feature-cache"
KINDS = ("features", "text")


def mark(folder: Path) -> None:
    marker = Path(folder) / MARKER
    if not marker.is_file():
        marker.write_text("features cached by cirbench; `cirbench cache clear` deletes the shards beside this file\n")


def _shards(folder: Path) -> list[Path]:
    """The shard files cirbench wrote in ``folder``: each index that reads as one (its name is the hash
    of its keys) and its rows."""
    out = []
    for meta_path in sorted(Path(folder).glob("*.json")):
        if read_meta(meta_path) is not None:
            out.append(meta_path)
            if meta_path.with_suffix(".npy").is_file():
                out.append(meta_path.with_suffix(".npy"))
    return out


def feature_folders(root: Path) -> list[tuple[str, Path]]:
    """(kind, folder) of each encoder key's cached features under a cache root: the folders cirbench
    marked, or that hold shards it wrote (caches written before the marker)."""
    parts = []
    for kind in KINDS:
        folder = Path(root) / kind
        if folder.is_dir():
            parts += [(kind, d) for d in sorted(folder.iterdir())
                      if d.is_dir() and not d.is_symlink() and ((d / MARKER).is_file() or _shards(d))]
    return parts


def clear(folder: Path) -> tuple[int, list[Path]]:
    """Delete the shards cirbench wrote in one encoder key's folder, the temporaries its writes left and
    its marker, then the folder if nothing else is in it. Returns (bytes removed, files left: not
    cirbench's)."""
    folder = Path(folder)
    removed = 0
    for path in _shards(folder):
        removed += path.stat().st_size
        path.unlink()
    fsutil.clean_stale_temporaries(folder, max_age_s=0)
    left = sorted(p for p in folder.iterdir() if p.name != MARKER)
    if not left:
        (folder / MARKER).unlink(missing_ok=True)
        folder.rmdir()
        if not any(folder.parent.iterdir()):
            folder.parent.rmdir()
    return removed, left
