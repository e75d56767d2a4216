"""Image decoding for the engine: files are opened, decoded and transformed in DataLoader workers."""

from __future__ import annotations

from pathlib import Path

from .errors import DataError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})


def list_images(folder: Path) -> list[Path]:
    """Every image file below a folder (by extension), sorted."""
    return sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


class ImageFiles:
    """A map-style dataset over image files; a file that cannot be read yields its error, not a crash."""

    def __init__(self, paths: list[Path], transform):
        self.paths = list(paths)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        from PIL import Image

        path = self.paths[index]
        try:
            with Image.open(path) as image:
                pixels = self.transform(image.convert("RGB"))
            return index, pixels, None
        except Exception as exc:  # reported by the caller with the file's name
            return index, None, f"{type(exc).__name__}: {exc}"


def _collate(items):
    import torch

    good = [(i, p) for i, p, err in items if err is None]
    bad = [(i, err) for i, _p, err in items if err is not None]
    indices = torch.tensor([i for i, _ in good], dtype=torch.long)
    pixels = torch.stack([p for _, p in good]) if good else None
    return indices, pixels, bad


def image_batches(paths: list[Path], transform, batch_size: int, workers: int, pin_memory: bool = False):
    """Yield (indices, pixel batch, [(index, error)]) in file order; decoding happens in worker processes."""
    from torch.utils.data import DataLoader

    loader = DataLoader(
        ImageFiles(paths, transform),
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        collate_fn=_collate,
        pin_memory=pin_memory,
        persistent_workers=False,
        prefetch_factor=4 if workers > 0 else None,
    )
    yield from loader


def unreadable(path: Path, error: str) -> DataError:
    return DataError(f"{path}: cannot read image ({error}); fix or remove the file, "
                     "or pass --skip-bad-images to skip it and record it in the results")
