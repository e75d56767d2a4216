"""Reading and writing method checkpoints in the official key layouts."""

from __future__ import annotations

import re
from pathlib import Path

from cirbench.util import fsutil
from cirbench.errors import DataError, MissingCheckpointError


def default_path(store: Path, method: str, encoder_slug: str, train_set: str | None = None) -> Path:
    """Where `cirbench train` saves a checkpoint by default and `cirbench run` looks for it."""
    name = fsutil.slug(train_set) if train_set else "default"
    return Path(store) / method / encoder_slug / f"{name}.pt"


def locate(ctx, method: str, split, train_set: str | None, how_to_train: str) -> Path:
    """The checkpoint a method should use: --checkpoint, else one the orchestration trained for this
    dataset, else the default store path; else a clear error."""
    if ctx.checkpoint is not None:
        path = Path(ctx.checkpoint)
        if path.is_dir():
            raise MissingCheckpointError(f"{method}: checkpoint {path} is a folder; pass the checkpoint file "
                                         f"itself (e.g. {path}/{'model' if method != 'combiner' else 'combiner'}.pt)")
        if not path.is_file():
            raise MissingCheckpointError(f"{method}: checkpoint file {path} does not exist")
        return path
    trained = getattr(split, "checkpoints", {}).get(method) if split is not None else None
    if trained is not None and Path(trained).is_file():
        return Path(trained)
    path = default_path(ctx.checkpoint_store, method, ctx.encoder.slug, train_set)
    if not path.is_file():
        raise MissingCheckpointError(
            f"{method} needs trained weights for encoder {ctx.encoder.label!r} and none were found at {path}: "
            f"{how_to_train}, or pass --checkpoint {method}=PATH"
        )
    return path


def _stat_key(path: Path) -> tuple:
    st = Path(path).stat()
    return (str(Path(path).resolve()), st.st_size, st.st_mtime_ns, st.st_ctime_ns)


_LOADED: dict[tuple, dict] = {}
_HASHES: dict[tuple, str] = {}


def load(path: Path) -> dict:
    """The checkpoint's dict, read once per file version."""
    key = _stat_key(path)
    if key not in _LOADED:
        if len(_LOADED) > 8:
            _LOADED.clear()
        _LOADED[key] = _read(path)
    return _LOADED[key]


def _read(path: Path) -> dict:
    import pickle

    import torch

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        if not found:
            raise DataError(f"{path}: not a readable checkpoint (corrupt, or not a PyTorch file)") from None
        raise DataError(f"{path}: the checkpoint holds a Python object ({found.group(1)}) besides tensors and plain "
                        "containers; "
                        "cirbench refuses to unpickle them (loading such a file can run arbitrary code). "
                        "Re-save it with torch.save(state_dict) from code you trust") from None
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise DataError(f"{path}: not a readable checkpoint ({type(exc).__name__}: {first[:160]})") from None
    if not isinstance(obj, dict):
        raise DataError(f"{path}: a checkpoint must hold a dict, found {type(obj).__name__}")
    return obj


def section(ckpt: dict, key: str, path: Path) -> dict:
    if key not in ckpt or not isinstance(ckpt[key], dict):
        raise DataError(f"{path}: expected a {key!r} state dict; found keys {sorted(map(str, ckpt))[:10]}")
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
        _HASHES[key] = fsutil.sha256_file(Path(path))
    info = {"path": str(Path(path).resolve()), "sha256": _HASHES[key]}
    info.update({k: v for k, v in ckpt.get("cirbench", {}).items() if k in ("train_dataset", "trained_on", "epochs")})
    return info


def save(path: Path, obj: dict) -> Path:
    """Atomic save: a crash never leaves a half-written checkpoint under the final name."""
    import torch

    return fsutil.atomic_write(Path(path), lambda fh: torch.save(obj, fh))
