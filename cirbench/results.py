"""Result files: one JSON per (encoder, method, dataset, split), with how it was made."""

from __future__ import annotations

import functools
import json
import os
import platform
import re
import tempfile
from pathlib import Path

from .errors import DataError

SCHEMA_VERSION = 1


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", text).strip("_") or "_"


def result_path(results_dir: Path, encoder_slug: str, dataset: str, split: str, method: str) -> Path:
    return Path(results_dir) / _slug(encoder_slug) / _slug(dataset) / _slug(split) / f"{_slug(method)}.json"


def write(path: Path, record: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(record, fh, indent=2, sort_keys=False, default=str)
            fh.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read(path: Path) -> dict:
    try:
        record = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: unreadable result file ({exc})") from None
    version = record.get("schema_version") if isinstance(record, dict) else None
    if version != SCHEMA_VERSION:
        raise DataError(f"{path}: result schema version {version!r} is not supported "
                        f"(this cirbench reads version {SCHEMA_VERSION})")
    return record


def find(results_dir: Path) -> list[Path]:
    """Result files: <encoder>/<dataset>/<split>/<method>.json (submission files live deeper)."""
    return sorted(p for p in Path(results_dir).glob("*/*/*/*.json") if not p.name.startswith("."))


@functools.lru_cache(maxsize=1)
def _versions() -> tuple:
    import importlib.metadata as md

    out = {"python": platform.python_version(), "platform": platform.platform()}
    for pkg in ("cirbench", "torch", "torchvision", "open_clip_torch", "numpy", "pillow"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = None
    return tuple(out.items())


def versions() -> dict:
    """Python, platform and package versions (read once per process)."""
    return dict(_versions())
