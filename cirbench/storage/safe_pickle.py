"""Released statistics that ship as pickles, read without running code.

A pickle can call any importable function while it loads; the files methods ship (BASIC's LAION mean,
a ``pickle.dump`` of ``{"laion_1m_mean": tensor}``; its synthetic features, an ``np.save`` of a dict) need
only a handful of constructors. Each reader allows exactly those and refuses everything else, naming the
file and what it tried to load; ``allow_pickle=True`` and ``pickle.load`` are never used on such a file.
"""

from __future__ import annotations

import collections
import io
import pickle
from pathlib import Path
from typing import Any, Callable

from cirbench.errors import DataError


class _Allowed(pickle.Unpickler):
    def __init__(self, fh, allowed: dict[tuple[str, str], Callable], path: Path, holds: str):
        super().__init__(fh)
        self.allowed, self.path, self.holds = allowed, path, holds

    def find_class(self, module, name):
        if (module, name) in self.allowed:
            return self.allowed[(module, name)]
        raise DataError(f"{self.path}: refuses to load {module}.{name} (the file should hold {self.holds}; "
                        "loading anything else could run code)")

    def persistent_load(self, pid):
        raise DataError(f"{self.path}: holds an external reference ({str(pid)[:40]}), not {self.holds}")


def _unpickle(fh, allowed, path: Path, holds: str):
    try:
        return _Allowed(fh, allowed, path, holds).load()
    except DataError:
        raise
    except Exception as exc:  # truncated or malformed: pickle raises many kinds
        raise DataError(f"{path}: not a readable pickle of {holds} ({type(exc).__name__}: {exc})") from None


def _storage_from_bytes(data: bytes):
    """torch.storage._load_from_bytes, with torch's own weights-only loader (storages pickle themselves
    as a legacy torch.save of the storage)."""
    import torch

    if not isinstance(data, bytes):
        raise pickle.UnpicklingError("a storage is written as bytes")
    return torch.load(io.BytesIO(data), weights_only=True)


def _tensor_rules() -> dict[tuple[str, str], Callable]:
    import torch

    return {("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
            ("torch.storage", "_load_from_bytes"): _storage_from_bytes,
            ("collections", "OrderedDict"): collections.OrderedDict}


def _numpy_rules() -> dict[tuple[str, str], Callable]:
    import numpy as np

    try:
        from numpy._core.multiarray import _reconstruct, scalar
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct, scalar
    rules = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        rules[(module, "_reconstruct")] = _reconstruct
        rules[(module, "scalar")] = scalar
    return rules


def read_file_bytes(path: Path, what: str) -> bytes:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{what} {path} is missing")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read {what} ({exc.strerror or exc})") from None


def load_tensor_dict(path: Path, what: str) -> dict[str, Any]:
    """A ``pickle.dump`` of a dict of torch tensors (or plain values), e.g. BASIC's LAION mean."""
    data = read_file_bytes(path, what)
    rules = {**_tensor_rules(), **_numpy_rules()}
    out = _unpickle(io.BytesIO(data), rules, Path(path), "a dict of tensors")
    if not isinstance(out, dict):
        raise DataError(f"{path}: holds a {type(out).__name__}, expected a dict of tensors ({what})")
    return out


def load_npy_dict(path: Path, what: str) -> dict[str, Any]:
    """An ``np.save`` of a dict (a 0-d object array) -- the official code reads it with
    ``np.load(allow_pickle=True).item()`` -- read with numpy's constructors only."""
    import numpy as np
    from numpy.lib import format as npy

    data = read_file_bytes(path, what)
    fh = io.BytesIO(data)
    try:
        version = npy.read_magic(fh)
        read_header = {(1, 0): npy.read_array_header_1_0, (2, 0): npy.read_array_header_2_0}.get(version)
        if read_header is None:
            raise ValueError(f"format version {version} is not read here")
        shape, _fortran, dtype = read_header(fh)
    except ValueError as exc:
        raise DataError(f"{path}: not a .npy file ({exc})") from None
    if dtype != np.dtype(object) or shape != ():
        raise DataError(f"{path}: holds an array of {dtype} and shape {shape}, expected a saved dict ({what})")
    out = _unpickle(fh, _numpy_rules(), Path(path), "a saved dict of arrays")
    if isinstance(out, np.ndarray) and out.shape == () and out.dtype == object:
        out = out.item()
    if not isinstance(out, dict):
        raise DataError(f"{path}: holds a {type(out).__name__}, expected a saved dict ({what})")
    return out
