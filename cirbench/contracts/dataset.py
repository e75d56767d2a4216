"""The contract of a dataset plugin.

A dataset is one file under datasets/ that subclasses :class:`Dataset` and registers itself with
``@register_dataset("name")``. It turns the files a user has on disk into :class:`~cirbench.data.Split`
objects; it never encodes, scores or knows about methods. Optional hooks, declared here with their
defaults: ``train_triplets``/``train_images`` (supervised training data), ``unlabeled_images`` and
``captions`` (unsupervised training data), ``training_sources`` (what the orchestration may train
automatically, with its budget), ``prepare_data`` (``cirbench data prepare``) and ``check``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar

from cirbench.contracts.split import Split, Triplet
from cirbench.contracts.encoder import DEFAULT_REAL_ENCODER
from cirbench.errors import DataError, UsageError, short
from cirbench.contracts.registry import datasets

register_dataset = datasets.register


class Dataset:
    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    splits: ClassVar[tuple[str, ...]] = ()
    default_splits: ClassVar[tuple[str, ...]] = ()
    # what the user should have under the data root, for the missing-data message
    expected_layout: ClassVar[str] = ""
    # the encoder this dataset is evaluated with when --encoder is not given (None: the user must say)
    default_encoder: ClassVar[str | None] = DEFAULT_REAL_ENCODER
    # True: the data is generated into the cache (nothing to point at with --data-root)
    generated: ClassVar[bool] = False
    # the --set KEY=VALUE settings this dataset takes (None: it validates them itself)
    settings: ClassVar[tuple[str, ...] | None] = ()

    def __init__(self, root: Path, options: dict | None = None, cache_dir: Path | None = None):
        self.root = Path(root)
        self.options = dict(options or {})
        self.cache_dir = Path(cache_dir) if cache_dir else None
        if self.settings is not None:
            unknown = sorted(set(self.options) - set(self.settings))
            if unknown:
                takes = ", ".join(self.settings) or "none"
                raise UsageError(f"dataset {self.label!r} has no setting {unknown[0]!r} (its settings: {takes})")

    @property
    def label(self) -> str:
        """The dataset's name in results and tables."""
        return self.name or getattr(self, "registry_name", "dataset")

    @property
    def result_name(self) -> str:
        """The folder name of the dataset's results (a folder dataset adds where it lives)."""
        return self.label

    # -- to override ----------------------------------------------------------------------------
    def available_splits(self) -> tuple[str, ...]:
        return self.splits

    def load(self, split: str) -> Split:
        raise NotImplementedError

    def ready(self, progress=None) -> None:
        """Called once per run before any split is loaded, with the run's progress: a dataset that builds
        its own files (the embedded world renders its images) does that here, so the user sees it.
        Default: nothing."""

    def train_triplets(self) -> list[Triplet]:
        """Supervised training triplets (for the Combiner); image ids resolve through train_images()."""
        raise UsageError(f"dataset {self.label!r} has no training triplets")

    def train_images(self) -> dict[str, Path]:
        raise UsageError(f"dataset {self.label!r} has no training images")

    def unlabeled_images(self) -> list[Path]:
        """Images without annotations (for Pic2Word-style training)."""
        raise UsageError(f"dataset {self.label!r} has no unlabeled training images: pass --images")

    def captions(self) -> list[str]:
        """Captions without images (for text-only training such as LinCIR's)."""
        raise UsageError(f"dataset {self.label!r} has no training captions: pass --texts")

    def training_sources(self) -> dict:
        """kind -> cirbench.training_data.TrainingSource: what `cirbench run` may train automatically
        when a method has no weights (the embedded benchmark trains its own). Default: nothing."""
        return {}

    def prepare_data(self, progress=None, out: Path | None = None) -> list[str]:
        """Build derived files (`cirbench data prepare NAME`); returns lines to print."""
        raise UsageError(f"dataset {self.label!r} needs no preparation")

    def check(self, progress=None) -> tuple[list[str], list[str]]:
        """(problems, summary lines) for the layout, without running a model: every split is loaded and
        every image it names is opened and decoded, as the engine will."""
        from cirbench.acquire import record
        from cirbench.protocol.images import load_rgb, path_of

        problems, summary = [], []
        try:  # files `cirbench data get` fetched: missing or changed since
            problems += record.problems(self.root)
        except DataError as exc:
            problems.append(str(exc))
        for split in self.available_splits():
            where = f"{self.label}:{split}"
            try:
                loaded = self.load(split)
                loaded.validate()
            except DataError as exc:
                problems.append(f"{where}: {exc}")
                continue
            task = progress.task(f"check {where}", total=len(loaded.images)) if progress else None
            bad = 0
            for image_id, image in loaded.images.items():
                path = path_of(image)
                if not path.is_file():
                    problems.append(f"{where}: image {image_id!r} is missing ({path})")
                    bad += 1
                else:
                    try:
                        load_rgb(image).load()
                    except Exception as exc:
                        problems.append(f"{where}: image {image_id!r} is unreadable ({path}: {type(exc).__name__})")
                        bad += 1
                if task:
                    task.advance(1)
            if task:
                task.done()
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
        from cirbench.acquire.manifests import shipped_names

        if not self.root.is_dir():
            raise DataError(
                f"dataset {self.label!r}: folder {self.root} does not exist. Expected: {self.expected_layout}. "
                f"Point at it with --data-root PATH (holding {self.label}/) or --data {self.label}=PATH"
                + (f"; `cirbench data get {self.label} --data-root PATH` fetches what can be fetched"
                   if self.label in shipped_names() else "") + "."
            )

    def inside(self, relative: str, what: str) -> Path:
        """Resolve a path read from a dataset file against the dataset folder.

        The path as written must stay inside the folder (no absolute paths, no ``..`` climbing out):
        annotations cannot point elsewhere. Links inside the folder are followed wherever they lead
        (a symlinked ``gallery/`` on a big disk is a common layout) -- the user put them there."""
        rel = str(relative).replace("\\", "/")
        normal = os.path.normpath(rel) if rel else rel
        if not rel or os.path.isabs(rel) or normal == ".." or normal.startswith("../"):
            real = os.path.realpath(self.root / rel) if rel else self.root
            raise DataError(f"{what}: path {relative!r} escapes the dataset folder {self.root} (it would be {real})")
        return self.root / normal

    def listed_image(self, images: dict, relative: str, where: str) -> str:
        """An image a released list names by a path relative to the folder holding the dataset's folder
        (so it starts with the dataset's name, dropped here) or to the dataset folder itself: added to
        ``images`` (id -> file) once, its id (the path as listed) returned."""
        if relative not in images:
            images[relative] = self.inside(relative.removeprefix(f"{self.name}/"), where)
        return relative


def read_text(path: Path, what: str = "annotation file") -> str:
    """A dataset text file; a missing, unreadable or non-UTF-8 file is a DataError naming it."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{what} {path} is missing")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read the {what} ({exc.strerror or exc})") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise DataError(f"{path}:{line}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
                        "save the file as UTF-8") from None


def parse_json(text: str, where) -> object:
    """JSON from text; malformed or absurdly nested JSON is a DataError naming where and the position."""
    import json

    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        at = f"column {exc.colno}" if "\n" not in text.strip() else f"line {exc.lineno} column {exc.colno}"
        raise DataError(f"{where}: invalid JSON at {at}: {exc.msg}") from None
    except RecursionError:
        raise DataError(f"{where}: JSON nested too deeply to read") from None


def read_json(path: Path, what: str = "annotation file"):
    """Parse a dataset JSON file; a missing or malformed file is a DataError naming it and the position."""
    return parse_json(read_text(path, what), Path(path))


def expect(condition: bool, where, message: str) -> None:
    if not condition:
        raise DataError(f"{where}: {message}")


def string_list(value, where, what: str) -> list[str]:
    """A list of strings from an annotation, or a DataError naming where and what it holds instead."""
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise DataError(f"{where}: {what} must be a list of image paths (strings), found {short(value)}")
    return value


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


def _check_dataset(obj) -> str | None:
    if not isinstance(obj, type) or not issubclass(obj, Dataset):
        return f"it loads to {obj!r}, not a subclass of cirbench.dataset.Dataset"
    return None


datasets.validator = _check_dataset
