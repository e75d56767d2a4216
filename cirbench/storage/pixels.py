"""Images decoded for an encoder in DataLoader worker processes: each item through the transform of
the encoder's view, in the image's decoded mode when that transform converts to RGB itself (as the
official transforms do). A file that cannot be read yields its error, not a crash."""

from __future__ import annotations

from cirbench.protocol.images import Image_, ImageRef, load_image
from cirbench.protocol.transforms import converts_to_rgb


class ImageFiles:
    """A map-style dataset over images; a file that cannot be read yields its error, not a crash. A
    transform that converts to RGB itself gets each image in its decoded mode (see cirbench.transforms)."""

    def __init__(self, images: list[Image_], transform, squash_transform=None):
        self.images = list(images)
        self.transform = transform
        self.squash_transform = squash_transform or transform
        self.keep_mode = converts_to_rgb(transform) and converts_to_rgb(self.squash_transform)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        image = self.images[index]
        try:
            decoded = load_image(image, keep_mode=self.keep_mode)
            squash = isinstance(image, ImageRef) and image.squash
            pixels = (self.squash_transform if squash else self.transform)(decoded)
            return index, pixels, None
        except Exception as exc:  # reported by the caller with the file's name
            return index, None, f"{type(exc).__name__}: {exc}"


def stacked(items: list):
    """Tensors of one shape as one batch tensor; anything else (an encoder whose transform keeps each
    image's own size, as an any-resolution multimodal LLM's does) as the list the encoder receives."""
    import torch

    if items and all(isinstance(p, torch.Tensor) for p in items) and len({tuple(p.shape) for p in items}) == 1:
        return torch.stack(items)
    return list(items)


def _collate(items):
    import torch

    good = [(i, p) for i, p, err in items if err is None]
    bad = [(i, err) for i, _p, err in items if err is not None]
    indices = torch.tensor([i for i, _ in good], dtype=torch.long)
    pixels = stacked([p for _, p in good]) if good else None
    return indices, pixels, bad


def image_batches(images: list[Image_], transform, batch_size: int, workers: int, pin_memory: bool = False,
                  squash_transform=None):
    """Yield (indices, pixel batch, [(index, error)]) in order; decoding happens in worker processes."""
    from torch.utils.data import DataLoader

    loader = DataLoader(
        ImageFiles(images, transform, squash_transform),
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        collate_fn=_collate,
        pin_memory=pin_memory,
        persistent_workers=False,
        prefetch_factor=4 if workers > 0 else None,
    )
    yield from loader


def load_pixels(images: list[Image_], transform, squash_transform=None, device="cpu"):
    """The pixel tensor (N, C, H, W) of a few images, decoded here (the references of one query batch) --
    or the list of what the transform gives where it keeps each image's own size; an image that cannot be
    read is a DataError naming it."""
    import torch

    from cirbench.errors import DataError

    files = ImageFiles(images, transform, squash_transform)
    pixels = []
    for i in range(len(files)):
        _, tensor, error = files[i]
        if error is not None:
            raise DataError(f"image {images[i]}: cannot be read: {error}")
        pixels.append(tensor)
    if not pixels:
        return torch.empty(0)
    batch = stacked(pixels)
    return batch.to(device) if isinstance(batch, torch.Tensor) else batch
