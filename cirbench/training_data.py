"""Turn `cirbench train` arguments into a TrainRequest: the data a method asked for, with cached features."""

from __future__ import annotations

from pathlib import Path

from . import checkpoints
from .errors import DataError, UsageError
from .images import IMAGE_SUFFIXES, list_images
from .method import TrainRequest



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


def train_request(cls, encoder, dataset, images, out, cache_dir: Path, epochs, batch_size, lr, seed, options,
                  progress, workers: int, resume: bool = False) -> TrainRequest:
    from .engine import FeatureStore

    store = FeatureStore(encoder, cache_dir, batch_size=64, workers=workers, progress=progress)

    def image_features(paths):
        from . import distributed

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
                           epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, options=options,
                           progress=progress, device=encoder.device, resume=resume)
    store_dir = Path(cache_dir) / "checkpoints"
    if cls.train_data == "images":
        if images is None:
            if dataset is None or not hasattr(dataset, "unlabeled_images"):
                raise UsageError(f"{cls.registry_name} trains on unlabeled images: pass --images FOLDER_OR_MANIFEST")
            request.images = dataset.unlabeled_images()
        else:
            request.images = unlabeled_images(images)
        request.out = Path(out) if out else checkpoints.default_path(store_dir, cls.registry_name, encoder.slug)
    elif cls.train_data == "triplets":
        if dataset is None:
            raise UsageError(f"{cls.registry_name} trains on a dataset's train triplets: pass --dataset NAME")
        paths = dataset.train_images()
        request.triplets = [(paths[t.reference], t.text, paths[t.target]) for t in dataset.train_triplets()]
        if not request.triplets:
            raise DataError(f"dataset {dataset.label}: no training triplets")
        request.train_dataset = dataset.label
        request.out = Path(out) if out else checkpoints.default_path(store_dir, cls.registry_name, encoder.slug,
                                                                     dataset.label)
    else:
        raise UsageError(f"method {cls.registry_name!r} has nothing to train")
    return request
