"""The contract of a dataset plugin.

A dataset is one file under datasets/ that subclasses :class:`Dataset` and registers itself with
``@register_dataset("name")``. It turns the files a user has on disk into :class:`~cirbench.data.Split`
objects; it never encodes, scores or knows about methods.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar

from .data import Split, Triplet
from .errors import DataError, UsageError
from .registry import datasets

register_dataset = datasets.register


class Dataset:
    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    splits: ClassVar[tuple[str, ...]] = ()
    default_splits: ClassVar[tuple[str, ...]] = ()
    # what the user should have under the data root, for the missing-data message
    expected_layout: ClassVar[str] = ""
    # the encoder this dataset is meant for when --encoder is not given (None: the user must say)
    default_encoder: ClassVar[str | None] = None

    # the --set KEY=VALUE settings this dataset takes (None: it validates them itself)
    settings: ClassVar[tuple[str, ...] | None] = ()

    def __init__(self, root: Path, options: dict | None = None):
        self.root = Path(root)
        self.options = dict(options or {})
        if self.settings is not None:
            unknown = sorted(set(self.options) - set(self.settings))
            if unknown:
                takes = ", ".join(self.settings) or "none"
                raise UsageError(f"dataset {self.name or type(self).__name__!r} has no setting {unknown[0]!r} "
                                 f"(its settings: {takes})")

    @property
    def label(self) -> str:
        """The dataset's name in results and tables."""
        return self.name or getattr(self, "registry_name", "dataset")

    # -- to override ----------------------------------------------------------------------------
    def available_splits(self) -> tuple[str, ...]:
        return self.splits

    def load(self, split: str) -> Split:
        raise NotImplementedError

    def train_triplets(self) -> list[Triplet]:
        """Supervised training triplets (for the Combiner); image ids resolve through train_images()."""
        raise UsageError(f"dataset {self.name!r} has no training triplets")

    def train_images(self) -> dict[str, Path]:
        raise UsageError(f"dataset {self.name!r} has no training images")

    def check(self, progress=None) -> tuple[list[str], list[str]]:
        """(problems, summary lines) for the layout, without running a model: every split is loaded and
        every image it names is opened and decoded."""
        from PIL import Image

        problems, summary = [], []
        for split in self.available_splits():
            where = f"{self.label}:{split}"
            try:
                loaded = self.load(split)
            except DataError as exc:
                problems.append(f"{where}: {exc}")
                continue
            task = progress.task(f"check {where}", total=len(loaded.images)) if progress else None
            bad = 0
            for image_id, path in loaded.images.items():
                if not path.is_file():
                    problems.append(f"{where}: image {image_id!r} is missing ({path})")
                    bad += 1
                else:
                    try:
                        with Image.open(path) as image:
                            image.convert("RGB").load()
                    except Exception as exc:
                        problems.append(f"{where}: image {image_id!r} is unreadable ({path}: {type(exc).__name__})")
                        bad += 1
                if task:
                    task.advance(1)
            summary.append(f"{where}: {len(loaded.queries)} queries, {len(loaded.gallery)} gallery images, "
                           f"{len(loaded.images)} image files ({bad} with problems)")
        return problems, summary

    # -- helpers --------------------------------------------------------------------------------
    def require_split(self, split: str) -> None:
        """A UsageError naming the splits when ``split`` is not one of them."""
        available = self.available_splits()
        if split not in available:
            raise UsageError(f"{self.label} has no split {split!r}; splits: {', '.join(available)}")

    def require_root(self) -> None:
        if not self.root.is_dir():
            raise DataError(
                f"dataset {self.name!r}: folder {self.root} does not exist. Expected: {self.expected_layout}. "
                f"Point at it with --data-root PATH (holding {self.name}/) or --data {self.name}=PATH."
            )

    def inside(self, relative: str, what: str) -> Path:
        """Resolve a path read from a dataset file; refuse one that escapes the dataset folder."""
        path = (self.root / relative).resolve()
        root = self.root.resolve()
        if path != root and root not in path.parents:
            raise DataError(f"{what}: path {relative!r} escapes the dataset folder {self.root}")
        return path


def read_json(path: Path, what: str = "annotation file"):
    """Parse a dataset JSON file; a missing or malformed file is a DataError naming it and the position."""
    import json

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{what} {path} is missing")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: invalid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc})") from None


def expect(condition: bool, where, message: str) -> None:
    if not condition:
        raise DataError(f"{where}: {message}")


def resolve_root(name: str, data_root: str | os.PathLike | None, overrides: dict[str, str]) -> Path:
    """Where dataset ``name`` lives: --data NAME=PATH, else <data root>/<name>.

    The data root is --data-root or $CIRBENCH_DATA_ROOT.
    """
    if name in overrides:
        return Path(overrides[name]).expanduser()
    root = data_root or os.environ.get("CIRBENCH_DATA_ROOT")
    if not root:
        cls = datasets.get(name)
        raise UsageError(
            f"no data root for dataset {name!r}: pass --data-root PATH (a folder holding {name}/) or "
            f"--data {name}=PATH, or set CIRBENCH_DATA_ROOT. Expected layout: {cls.expected_layout}"
        )
    return Path(root).expanduser() / name
