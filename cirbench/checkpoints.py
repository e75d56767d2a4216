"""Reading and writing method checkpoints in the official key layouts."""

from __future__ import annotations

import re
from pathlib import Path

from .encoder import sha256_file
from .errors import DataError, MissingCheckpointError


def default_path(store: Path, method: str, encoder_slug: str, train_set: str | None = None) -> Path:
    """Where `cirbench train` saves a checkpoint by default and `cirbench run` looks for it."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", train_set) if train_set else "default"
    return Path(store) / method / encoder_slug / f"{name}.pt"


def locate(ctx, method: str, train_set: str | None, how_to_train: str) -> Path:
    """The checkpoint a method should use: --checkpoint, else the default store path; else a clear error."""
    if ctx.checkpoint is not None:
        if not Path(ctx.checkpoint).is_file():
            raise MissingCheckpointError(f"{method}: checkpoint file {ctx.checkpoint} does not exist")
        return Path(ctx.checkpoint)
    path = default_path(ctx.checkpoint_store, method, ctx.encoder.slug, train_set)
    if not path.is_file():
        raise MissingCheckpointError(
            f"{method} needs trained weights for encoder {ctx.encoder.label!r} and none were found at {path}: "
            f"{how_to_train}, or pass --checkpoint {method}=PATH"
        )
    return path


def _stat_key(path: Path) -> tuple:
    st = Path(path).stat()
    return (str(Path(path).resolve()), st.st_size, st.st_mtime_ns)


_LOADED: dict[tuple, dict] = {}
_HASHES: dict[tuple, str] = {}


def load(path: Path) -> dict:
    """The checkpoint's dict, read once per file version (a sweep builds a method per split)."""
    key = _stat_key(path)
    if key not in _LOADED:
        if len(_LOADED) > 8:
            _LOADED.clear()
        _LOADED[key] = _read(path)
    return _LOADED[key]


def _read(path: Path) -> dict:
    import torch

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise DataError(f"{path}: not a readable checkpoint ({type(exc).__name__}: {str(exc)[:200]})") from exc
    if not isinstance(obj, dict):
        raise DataError(f"{path}: a checkpoint must hold a dict, found {type(obj).__name__}")
    return obj


def section(ckpt: dict, key: str, path: Path) -> dict:
    if key not in ckpt or not isinstance(ckpt[key], dict):
        raise DataError(f"{path}: expected a {key!r} state dict; found keys {sorted(ckpt)[:10]}")
    return {k.removeprefix("module."): v for k, v in ckpt[key].items()}


def check_keys(state: dict, expected: set[str], path: Path, what: str) -> None:
    missing, extra = expected - set(state), set(state) - expected
    if missing or extra:
        raise DataError(f"{path}: not a {what} checkpoint: missing keys {sorted(missing)}, "
                        f"unexpected keys {sorted(extra)[:8]}")


def instantiate(build, state: dict, path: Path):
    """A module built without initialising its weights (they are the checkpoint's), then loaded strictly."""
    import torch

    with torch.device("meta"):
        net = build()
    try:
        net.load_state_dict(state, assign=True)
    except RuntimeError as exc:
        raise DataError(f"{path}: weights do not fit the network: {str(exc).splitlines()[0]}") from None
    return net.eval()


def describe(path: Path, ckpt: dict) -> dict:
    key = _stat_key(path)
    if key not in _HASHES:
        _HASHES[key] = sha256_file(Path(path))
    info = {"path": str(Path(path).resolve()), "sha256": _HASHES[key]}
    info.update({k: v for k, v in ckpt.get("cirbench", {}).items() if k in ("train_dataset", "trained_on", "epochs")})
    return info


def save(path: Path, obj: dict) -> Path:
    """Atomic save: a crash never leaves a half-written checkpoint under the final name."""
    import os
    import tempfile

    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
