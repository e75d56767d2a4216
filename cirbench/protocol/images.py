"""Reading images: high-bit-depth conversion, per-image operations (crops), and DataLoader batches.

Every image the engine, ``data check`` or a report opens goes through :func:`load_image` /
:func:`load_rgb`, so what is checked is what is encoded. An image in a split is a path, or an :class:`ImageRef` -- a path plus
operations applied before the encoder's transform (the COCO query is a box cut from a masked image
and squashed to the encoder's square, GeneCIS crops a dilated box and pads it square).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Union

from cirbench.errors import DataError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})


def list_images(folder: Path) -> list[Path]:
    """Every image file below a folder (by extension), sorted. Linked folders are followed (a gallery
    spread over disks by symlinks), each real folder once."""
    import os

    out, seen = [], set()
    for here, dirs, files in os.walk(folder, followlinks=True):
        real = os.path.realpath(here)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        out += [Path(here) / f for f in files if Path(f).suffix.lower() in IMAGE_SUFFIXES]
    return sorted(p for p in out if p.is_file())


def float_scale(peak: float) -> float:
    """The factor that brings a float image to 0..255, by the range its brightest sample implies:
    0..1 (x255), 0..255 (as is), 0..65535 (/257, as 16-bit), else its own maximum."""
    if peak <= 1.0:
        return 255.0
    if peak <= 255.0:
        return 1.0
    if peak <= 65535.0:
        return 1.0 / 257.0
    return 255.0 / peak


def to_rgb(image):
    """An 8-bit RGB copy of a PIL image. Pillow's ``convert("RGB")`` clips 16- and 32-bit samples to
    255 (a 16-bit PNG or a float TIFF becomes almost all white); here they are scaled to 8 bits instead
    (float images by the range their maximum implies, NaN as 0)."""
    import numpy as np
    from PIL import Image

    mode = image.mode
    if mode.startswith("I;16") or mode in ("I", "F"):
        array = np.asarray(image)
        if mode == "F":
            array = np.nan_to_num(array.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
            peak = float(array.max()) if array.size else 0.0
            array = np.clip(array * float_scale(peak), 0, 255)
        elif mode.startswith("I;16") or (array.size and int(array.max()) > 255):
            array = np.clip(array.astype(np.float64) / 257.0, 0, 255)  # 65535 -> 255
        else:
            array = np.clip(array, 0, 255)
        return Image.fromarray(np.rint(array).astype(np.uint8), "L").convert("RGB")
    return image.convert("RGB")


@dataclass(frozen=True)
class ImageRef:
    """An image file plus operations applied before the encoder's own transform.

    ops: ("crop", x1, y1, x2, y2) cuts a box; ("dilated_crop", x, y, w, h, d) cuts a box dilated as
    GeneCIS's code does it; ("pad_square", r, g, b) pads to a centred square; ("squash",) makes the
    encoder resize to its square without a centre crop.
    """

    path: Path
    ops: tuple[tuple, ...] = ()

    @property
    def squash(self) -> bool:
        return ("squash",) in self.ops

    def key(self) -> str:
        """What the operations add to the file's content key in the feature cache."""
        return ";".join(",".join(str(v) for v in op) for op in self.ops)

    def apply(self, image):
        width, height = image.size
        for op in self.ops:
            match op:
                case ("crop", x1, y1, x2, y2):
                    if min(x2, width) - max(x1, 0) < 1 or min(y2, height) - max(y1, 0) < 1:
                        raise ValueError(f"the box {[x1, y1, x2, y2]} lies outside the {width} x {height} image")
                    image = image.crop((x1, y1, x2, y2))
                case ("dilated_crop", x, y, w, h, d):
                    box = dilated_box((width, height), x, y, w, h, d)
                    if box[2] - box[0] < 1 or box[3] - box[1] < 1:  # the annotated box lies outside the image
                        raise ValueError(f"the box {[x, y, w, h]} lies outside the {width} x {height} image")
                    image = image.crop(box)
                case ("pad_square", r, g, b):
                    image = pad_square(image, (r, g, b))
                case ("squash",):
                    pass  # read by the encoder's transform (see ``squash``)
                case _:
                    raise ValueError(f"unknown image operation {op!r} for {self.path}")
            width, height = image.size
        return image


Image_ = Union[Path, ImageRef]


def path_of(image: Image_) -> Path:
    return image.path if isinstance(image, ImageRef) else Path(image)


def dilated_box(size, x, y, w, h, d):
    """GeneCIS's vaw_dataset.load_cropped_image: left/top move out by d times the box size, and the
    right/bottom edges are the moved left/top plus (1 + d) times the size -- so the box grows to the
    left and top only (unless clipped at 0) -- all clipped to the image."""
    width, height = size
    left, top = max(0, x - d * w), max(0, y - d * h)
    return left, top, min(width, left + (1 + d) * w), min(height, top + (1 + d) * h)


def pad_square(image, fill):
    """A centred square canvas of the image's own mode, as GeneCIS's expand2square: the fill is (0,) for
    an 'L' image and the given triple otherwise (in CMYK (0, 0, 0) is black: K defaults to 255)."""
    from PIL import Image

    w, h = image.size
    side = max(w, h)
    out = Image.new(image.mode, (side, side), (0,) if image.mode == "L" else fill)
    out.paste(image, ((side - w) // 2, (side - h) // 2))
    return out


# modes whose operations (crops, pads) run before the RGB conversion, as the official loaders do them in
# the decoded image's own mode. Palette images are converted first (pasting one onto a new canvas would
# drop its palette), as are the high bit depths (to_rgb scales them by the whole image's range).
OWN_MODE_OPS = frozenset({"RGB", "RGBA", "L", "CMYK", "YCbCr"})


def high_bit_depth(mode: str) -> bool:
    return mode.startswith("I;16") or mode in ("I", "F")


def load_image(image: Image_, keep_mode: bool):
    """Open and decode an image (path or ImageRef) with its operations applied. ``keep_mode``: leave it in
    its decoded mode (for a transform that converts to RGB itself, as the official ones do); images of
    more than 8 bits per sample are scaled to 8-bit RGB in any case."""
    from PIL import Image

    with Image.open(path_of(image)) as opened:
        opened.load()
        decoded = opened if keep_mode and not high_bit_depth(opened.mode) else to_rgb(opened)
        if decoded is opened:
            decoded = opened.copy()
    if isinstance(image, ImageRef) and image.ops:
        if decoded.mode not in OWN_MODE_OPS:
            decoded = to_rgb(decoded)
        decoded = image.apply(decoded)
    return decoded


def load_rgb(image: Image_):
    """Open, decode and convert an image (path or ImageRef) to 8-bit RGB, with its operations applied
    (in the image's own mode where that is plain; see OWN_MODE_OPS)."""
    return to_rgb(load_image(image, keep_mode=True))


def unreadable(image: Image_, error: str) -> DataError:
    return DataError(f"{path_of(image)}: cannot read image ({error}); fix or remove the file, "
                     "or pass --skip-bad-images to skip it and record it in the results")
