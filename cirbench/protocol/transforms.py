"""Image transforms by name, derived from an encoder's own preprocessing (its resize, crop and
normalisation), so that one model can be evaluated as each method's official code feeds it.

Colour conversion happens where the official transforms do it: OpenAI's and open_clip's CLIP transform
resize and crop the decoded image in its own mode (CMYK, palette, RGBA, ...) and convert it to RGB
afterwards, and TargetPad pads it in its own mode before that; Hugging Face's CLIPImageProcessor
converts first. Images whose samples exceed 8 bits are scaled to 8-bit RGB before any transform
(cirbench.images.to_rgb): the official loaders would clip them.

Names: ``clip`` (the encoder's own transform: for open_clip, resize + centre crop), ``targetpad``
(CLIP4Cir/SEARLE: pad an elongated image towards a square, ratio 1.25, then ``clip``), ``hf-clip``
(``clip`` with the centre crop's offsets rounded down, as Hugging Face's CLIPImageProcessor computes
them; torchvision rounds them to nearest, a one-pixel shift on some sizes). A name may end in
``+fp16``: the normalised pixels are rounded to float16 (LinCIR's code casts the reference image to
half before its phi network).
"""

from __future__ import annotations

from cirbench.errors import UsageError

BASES = ("clip", "targetpad", "hf-clip")
MODIFIERS = ("fp16",)


def parse(name: str) -> tuple[str, tuple[str, ...]]:
    """(base, modifiers) of a transform name; a UsageError naming the valid ones otherwise."""
    base, *mods = str(name).split("+")
    bad = [m for m in mods if m not in MODIFIERS]
    if base not in BASES or bad:
        raise UsageError(f"unknown image transform {name!r}; choose one of {', '.join(BASES)} "
                         f"(optionally with +{'/+'.join(MODIFIERS)})")
    return base, tuple(mods)


def check(name: str) -> str:
    parse(name)
    return name


class TargetPad:
    """CLIP4Cir/SEARLE preprocessing: pad an elongated image towards a square before CLIP's resize/crop
    (fill 0, in the image's own mode, as the official ``FT.pad(image, padding, 0, 'constant')``)."""

    def __init__(self, target_ratio: float = 1.25):  # CLIP4Cir's and SEARLE's ratio
        self.target_ratio = target_ratio

    def __call__(self, image):
        from torchvision.transforms import functional as F

        w, h = image.size
        if max(w, h) / min(w, h) < self.target_ratio:
            return image
        scaled = max(w, h) / self.target_ratio
        hp, vp = max(int((scaled - w) / 2), 0), max(int((scaled - h) / 2), 0)
        return F.pad(image, [hp, vp, hp, vp], 0, "constant")

    def __repr__(self):
        return f"TargetPad({self.target_ratio})"


class FloorCenterCrop:
    """A centre crop whose offsets are rounded down, as transformers' image_transforms.center_crop:
    top = (height - crop) // 2, left = (width - crop) // 2. A side shorter than the crop is padded with
    zeros as transformers pads it, the larger half before it (PIL's crop beyond the edges does exactly
    that; torchvision's centre crop puts the larger half after it)."""

    def __init__(self, size: int):
        self.size = int(size)

    def __call__(self, image):
        w, h = image.size
        n = self.size
        top, left = (h - n) // 2, (w - n) // 2
        return image.crop((left, top, left + n, top + n))

    def __repr__(self):
        return f"FloorCenterCrop({self.size})"


class ToRGB:
    """Convert a decoded image to 8-bit RGB (cirbench.images.to_rgb)."""

    def __call__(self, image):
        from cirbench.protocol.images import to_rgb

        return to_rgb(image)

    def __repr__(self):
        return "ToRGB()"


def is_rgb_conversion(step) -> bool:
    """A step that converts a PIL image to RGB: open_clip's MaybeConvertMode, OpenAI CLIP's
    _convert_image_to_rgb, open_clip 2.x's _convert_to_rgb, or ToRGB."""
    name = getattr(step, "__name__", type(step).__name__).lower()
    return isinstance(step, ToRGB) or name == "maybeconvertmode" or ("convert" in name and "rgb" in name)


def converts_to_rgb(preprocess) -> bool:
    """Whether a transform converts the decoded image to RGB itself (then it is given the image in its
    decoded mode, as the official code gives it)."""
    return any(is_rgb_conversion(step) for step in getattr(preprocess, "transforms", []))


class Rescale:
    """PIL image -> float32 tensor (C, H, W) of its 8-bit samples times ``scale`` (1/255: ToTensor's
    range), multiplied in float64 and then cast, as transformers' ``rescale`` does (a float32 product
    differs by one ulp on 126 of the 256 byte values)."""

    def __init__(self, scale: float = 1 / 255):
        self.scale = float(scale)

    def __call__(self, image):
        from torchvision.transforms import functional as F

        return (F.pil_to_tensor(image).double() * self.scale).float()

    def __repr__(self):
        return f"Rescale({self.scale:.10g}, in float64)"  # in the feature-cache key: older rows were float32 products


class HalfPixels:
    """Round the normalised pixel tensor to float16 (and back to float32)."""

    def __call__(self, pixels):
        return pixels.half().float()

    def __repr__(self):
        return "HalfPixels()"


def build(preprocess, name: str):
    """The transform ``name`` derived from an encoder's own ``preprocess`` (a torchvision Compose)."""
    from torchvision import transforms as T

    base, mods = parse(name)
    steps = list(getattr(preprocess, "transforms", [preprocess]))
    if base == "targetpad":
        steps = [TargetPad(), *steps]
    elif base == "hf-clip":
        crops = [i for i, t in enumerate(steps) if isinstance(t, T.CenterCrop)]
        if not crops:
            raise UsageError("the hf-clip transform needs an encoder whose transform centre-crops")
        size = steps[crops[0]].size
        steps[crops[0]] = FloorCenterCrop(size[0] if isinstance(size, (tuple, list)) else size)
        # CLIPImageProcessor converts to RGB (do_convert_rgb) before it resizes
        steps = [ToRGB(), *[t for t in steps if not is_rgb_conversion(t)]]
    if "fp16" in mods:
        steps.append(HalfPixels())
    if base == "clip" and not mods:
        return preprocess
    return T.Compose(steps)


def squash_variant(preprocess):
    """CLIP's transform with its resize + centre crop replaced by a resize to the input square (the
    official Pic2Word COCO query: ``Resize((n, n))`` followed by the rest of the transform)."""
    from torchvision import transforms as T

    steps = list(getattr(preprocess, "transforms", []))
    crops = [i for i, t in enumerate(steps) if isinstance(t, (T.CenterCrop, FloorCenterCrop))]
    resizes = [i for i, t in enumerate(steps) if isinstance(t, T.Resize)]
    if not crops or not resizes:
        return preprocess
    size = steps[crops[0]].size
    n = size[0] if isinstance(size, (tuple, list)) else int(size)
    square = T.Resize((n, n), interpolation=steps[resizes[0]].interpolation)
    # every other step stays where it was (an RGB conversion before the resize, as Hugging Face's has)
    return T.Compose([square if i == resizes[0] else t for i, t in enumerate(steps) if i != crops[0]])
