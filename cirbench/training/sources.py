"""Training data for `cirbench train` and for the embedded benchmark's automatic training.

A method declares the *kind* of data it trains on (``Method.training``); each kind is registered here
with how to collect it from the command line or from a dataset. Built-in kinds: ``images``
(unlabeled images: Pic2Word), ``triplets`` (a dataset's supervised triplets: the Combiner) and
``texts`` (captions without images: LinCIR). A plugin may add a kind with :func:`register_kind`.

A dataset that trains its own methods (the embedded world) declares :class:`TrainingSource` budgets in
``Dataset.training_sources()``; the orchestration trains what is missing with the method's defaults.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from cirbench.storage import checkpoints
from cirbench.errors import DataError, UsageError
from cirbench.protocol.images import IMAGE_SUFFIXES, list_images
from cirbench.contracts.method import TrainRequest, method_name


@dataclass
class TrainingSource:
    """What a dataset lets the orchestration train automatically for one kind of data."""

    label: str  # names the checkpoint (it changes whenever the data or the budget changes)
    epochs: int
    batch_size: int
    seed: int = 0
    options: dict = field(default_factory=dict)


@dataclass
class Kind:
    name: str
    description: str
    # fill(request, dataset or None, args dict) puts the data into the request and names it
    fill: Callable[[TrainRequest, object, dict], str | None]


KINDS: dict[str, Kind] = {}


def register_kind(name: str, description: str, fill) -> None:
    KINDS[name] = Kind(name, description, fill)


def unlabeled_images(source: Path) -> list[Path]:
    """Images from a folder (recursively) or a CC3M-style tab-separated manifest (filepath, title)."""
    source = Path(source)
    if source.is_dir():
        paths = list_images(source)
        if not paths:
            raise DataError(f"{source}: no images found (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
        return paths
    if not source.is_file():
        raise DataError(f"{source}: no such folder or manifest file")
    paths = []
    with open(source, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            cols = line.rstrip("\n").split("\t")
            if lineno == 1 and cols[0] == "filepath":
                continue
            path = Path(cols[0])
            paths.append(path if path.is_absolute() else source.parent / path)
    if not paths:
        raise DataError(f"{source}: the manifest lists no images (expected tab-separated filepath, title)")
    return paths


def caption_lines(source: Path) -> list[str]:
    """Captions from a text file (one per line) or a tab-separated manifest (its last column)."""
    source = Path(source)
    if not source.is_file():
        raise DataError(f"{source}: no such caption file")
    out = []
    with open(source, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            text = line.rstrip("\n").split("\t")[-1].strip()
            if text and not (lineno == 1 and text == "title"):
                out.append(text)
    if not out:
        raise DataError(f"{source}: holds no captions")
    return out


def _fill_images(request: TrainRequest, dataset, args: dict) -> str | None:
    if args.get("images") is not None:
        request.images = unlabeled_images(args["images"])
        return None
    if dataset is None:
        raise UsageError("this method trains on unlabeled images: pass --images FOLDER_OR_MANIFEST")
    request.images = dataset.unlabeled_images()
    return None


def _fill_triplets(request: TrainRequest, dataset, args: dict) -> str | None:
    if dataset is None:
        raise UsageError("this method trains on a dataset's train triplets: pass --dataset NAME")
    paths = dataset.train_images()
    triplets = dataset.train_triplets()
    request.triplets = [(paths[t.reference], t.text, paths[t.target]) for t in triplets]
    if any(t.captions for t in triplets):
        request.triplet_captions = [t.captions for t in triplets]
    if not request.triplets:
        raise DataError(f"dataset {dataset.label}: no training triplets")
    request.train_dataset = dataset.label
    return dataset.label  # the checkpoint is specific to the dataset it was trained on


def _fill_texts(request: TrainRequest, dataset, args: dict) -> str | None:
    if args.get("texts") is not None:
        request.texts = caption_lines(args["texts"])
    elif dataset is not None:
        request.texts = dataset.captions()
    else:
        raise UsageError("this method trains on captions: pass --texts FILE (one caption per line)")
    return None


register_kind("images", "unlabeled images (--images FOLDER_OR_MANIFEST, or a dataset's unlabeled images)",
              _fill_images)
register_kind("triplets", "a dataset's supervised (reference, text, target) triplets (--dataset NAME)",
              _fill_triplets)
register_kind("texts", "captions without images (--texts FILE, or a dataset's captions)", _fill_texts)


def train_request(cls, encoder, dataset, out, cache_dir: Path, *, images=None, texts=None, epochs=None,
                  batch_size=None, lr=None, seed=0, options=None, progress=None, workers: int = 0,
                  resume: bool = False, label: str | None = None) -> TrainRequest:
    """A TrainRequest with the data the method's kind asks for and cached image features."""
    from cirbench.storage.features import FeatureStore

    name = method_name(cls)
    if not cls.training:
        raise UsageError(f"method {name!r} has nothing to train")
    if cls.training not in KINDS:
        raise UsageError(f"method {name!r} trains on {cls.training!r} data, which no registered kind provides "
                         f"(kinds: {', '.join(KINDS)})")
    store = FeatureStore(encoder, cache_dir, batch_size=64, workers=workers, progress=progress)

    def image_features(paths):
        from cirbench.util import distributed

        if not distributed.is_main():  # the main process fills the cache, the others then read it
            distributed.barrier()
        feats, bad = store.features(list(paths), label="training images")
        if distributed.is_main():
            distributed.barrier()
        if bad:
            pos, err = bad[0]
            raise DataError(f"{paths[pos]}: cannot read training image ({err}); {len(bad)} unreadable in all")
        return feats

    request = TrainRequest(encoder=encoder, out=Path(out) if out else Path(), image_features=image_features,
                           epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, options=dict(options or {}),
                           progress=progress, device=encoder.device, resume=resume)
    train_set = KINDS[cls.training].fill(request, dataset, {"images": images, "texts": texts})
    if not out:
        request.out = checkpoints.default_path(Path(cache_dir) / "checkpoints", name, encoder.slug,
                                               label or train_set)
    return request


def auto_train(cls, encoder, dataset, source: TrainingSource, cache_dir: Path, progress, workers: int) -> Path:
    """The checkpoint a dataset's TrainingSource gives a method, trained now if it is not there yet."""
    name = method_name(cls)
    path = checkpoints.default_path(Path(cache_dir) / "checkpoints", name, encoder.slug, source.label)
    if not path.is_file():
        options = {**cls.training_defaults(encoder), **source.options}
        request = train_request(cls, encoder, dataset, path, cache_dir, epochs=source.epochs,
                                batch_size=source.batch_size, seed=source.seed,
                                options={k: str(v) for k, v in options.items()}, progress=progress, workers=workers)
        cls.train(request)
    return path
