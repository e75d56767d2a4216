"""Multimodal-LLM embedders on transformers' own LlavaNextForConditionalGeneration:
``llava-next:REPO_OR_FOLDER[@REVISION]`` (E5-V's royokong/e5-v; the kind BGE-VL-MLLM's LLaVA-NeXT shares).

An embedding is one forward pass of the language model over a chat prompt that holds one image: the
prompt is tokenized as its processor's tokenizer does (its BOS included), the single ``<image>`` token is
replaced by the image's features, and the embedding is the final hidden state (after the last norm) of
the prompt's last token. The sequence is assembled here rather than by transformers' forward, so the
image's tile layout can be the one the published numbers were made with:

- the image is cut into tiles by the model's processor (its any-resolution grid pinpoints), the tiles go
  through the vision tower (the configured layer, the CLS token dropped under the "default" strategy)
  and the projector; the base tile's features come first, then the grid of tiles laid out row by row,
  unpadded to the image's aspect ratio, each row closed by the model's image_newline;
- ``tiles="pinned"`` (the default for E5-V): transformers 4.41.2's layout, which assigned the grid's
  (rows, columns) to (columns, rows) before laying the tiles out (fixed in 4.44, huggingface/transformers
  PR 32314) and truncated the unpadded size with int(); the same as ``tiles="fixed"`` (today's layout,
  rounded as today's transformers does) on square grids, different on non-square ones;
- ``tiles="4.45"``: transformers 4.45.2 (BGE-VL-MLLM's pin): the layout fixed, but 4.41's int() unpadding
  and image processor;
- sequences of a batch are padded on the left and numbered from their first real token (the positions
  4.41's merge computed), so a batch gives what one image at a time gives.

The pinned layout comes with 4.41.2's image processor (numpy and PIL: the best pinpoint's resize with
the scaled side rounded up, zero padding of (target - size) // 2 on both sides -- one pixel short on an odd
difference, so the last tiles are smaller and stretched by the per-tile resize --, the base image squashed
to the square, bicubic PIL resizes, rescaling in float64); ``fixed`` uses the installed transformers'
processor. No hub code is ever run (``trust_remote_code`` is never set).
"""

from __future__ import annotations

from cirbench.contracts.encoder import register_encoder
from cirbench.errors import DataError
from cirbench.protocol.transforms import ToRGB
from cirbench.util.hub import dtype_argument, import_transformers, load_pretrained, require_cached, revision_of

from .prompt_llm import PromptEmbedder, pil_resize, positive_int, rescale_and_normalise, split_settings, torch_dtype

# pinned: transformers 4.41.2 (E5-V's pin): its processor, rows and columns swapped, int() unpadding;
# 4.45: transformers 4.45.2 (BGE-VL-MLLM's pin): 4.41's processor and unpadding, the layout fixed;
# fixed: the installed transformers' processor and layout
TILES = ("pinned", "4.45", "fixed")


def _rgb(image):
    return image.convert("RGB")


class SquareResize:
    """PIL's resize of the decoded image to n x n with its default filter (BGE-VL-MLLM's
    ``Image.open(p).resize((512, 512))``, before the conversion to RGB)."""

    def __init__(self, n: int):
        self.n = int(n)

    def __call__(self, image):
        return image.resize((self.n, self.n))

    def __repr__(self):
        return f"SquareResize({self.n}, PIL default filter, decoded mode)"


class Steps:
    """Steps applied in order; a step converting to RGB makes the engine hand over the decoded image."""

    def __init__(self, steps):
        self.transforms = list(steps)

    def __call__(self, image):
        for step in self.transforms:
            image = step(image)
        return image

    def __repr__(self):
        return "Steps(" + ", ".join(map(repr, self.transforms)) + ")"


def grid_shape(image_size: tuple[int, int], pinpoints, tile: int) -> tuple[int, int]:
    """(rows, columns) of tiles the processor cut an image of (height, width) into."""
    from transformers.image_processing_utils import select_best_resolution

    height, width = select_best_resolution(tuple(int(v) for v in image_size), [list(p) for p in pinpoints])
    return height // tile, width // tile


def unpad(features, image_size: tuple[int, int], pinned: bool):
    """The (C, H, W) feature map without the rows or columns that are the processor's padding."""
    original_height, original_width = (int(v) for v in image_size)
    height, width = features.shape[1:]
    if original_width / original_height > width / height:
        scaled = original_height * (width / original_width)
        new = int(scaled) if pinned else int(round(scaled, 7))
        padding = (height - new) // 2
        return features[:, padding:height - padding, :]
    scaled = original_width * (height / original_height)
    new = int(scaled) if pinned else int(round(scaled, 7))
    padding = (width - new) // 2
    return features[:, :, padding:width - padding]


def pack(features, image_size, pinpoints, tile: int, newline, tiles: str):
    """The image's feature sequence from its tiles' features (tiles x patches x hidden), the base tile first."""
    import torch

    base = features[0]
    if features.shape[0] == 1:
        return torch.cat([base, newline[None].to(base)], dim=0)
    side = int(round(base.shape[0] ** 0.5))
    rows, columns = grid_shape(image_size, pinpoints, tile)
    if tiles == "pinned":  # 4.41.2: num_patch_width, num_patch_height = (rows, columns); view(height, width)
        rows, columns = columns, rows
    grid = features[1:].view(rows, columns, side, side, -1).permute(4, 0, 2, 1, 3).contiguous()
    grid = unpad(grid.flatten(1, 2).flatten(2, 3), image_size, pinned=tiles != "fixed")
    grid = torch.cat([grid, newline[:, None, None].expand(*grid.shape[:-1], 1).to(grid.dtype)], dim=-1)
    return torch.cat([base, grid.flatten(1, 2).transpose(0, 1)], dim=0)


def _edge(value, key: str, default: int) -> int:
    if isinstance(value, dict):
        return int(value.get(key) or value.get("height") or default)
    return int(value) if value else default


def tiles_441(image, config: dict):
    """(the uint8 HWC images -- base, then the grid's tiles row by row -- before the per-tile steps, the
    image's (height, width)), as transformers 4.41.2's LlavaNextImageProcessor.get_image_patches cuts
    them: the image resized to fit the best pinpoint (ceil of the scaled side), padded with zeros by
    (target - size) // 2 on both sides -- so an odd difference leaves the grid one pixel short and its
    last tiles smaller --, divided into crop-sized tiles; the base image squashed to the square."""
    import math

    import numpy as np

    array = np.array(image.convert("RGB"))
    height, width = array.shape[:2]
    resample = int(config.get("resample", 3))
    tile = _edge(config.get("crop_size"), "height", 336)
    target_height, target_width = grid_shape((height, width), config["image_grid_pinpoints"], 1)
    scale_w, scale_h = target_width / width, target_height / height
    if scale_w < scale_h:
        new_width, new_height = target_width, min(math.ceil(height * scale_w), target_height)
    else:
        new_height, new_width = target_height, min(math.ceil(width * scale_h), target_width)
    resized = pil_resize(array, new_height, new_width, resample)
    paste_x, paste_y = (target_width - new_width) // 2, (target_height - new_height) // 2
    padded = np.pad(resized, ((paste_y, paste_y), (paste_x, paste_x), (0, 0)))
    grid = [padded[i:i + tile, j:j + tile] for i in range(0, padded.shape[0], tile)
            for j in range(0, padded.shape[1], tile)]
    short = _edge(config.get("size"), "shortest_edge", 336)
    return [pil_resize(array, short, short, resample)] + grid, (height, width)


def pixels_441(image, config: dict):
    """(pixel_values tiles x 3 x crop x crop, (height, width)) as transformers 4.41.2's processor gives
    them: each tile's shortest edge resized to ``size`` (the long side int()-truncated), centre-cropped,
    rescaled in float64 then cast to float32, normalised in float32."""
    import numpy as np
    import torch

    tiles, size = tiles_441(image, config)
    short = _edge(config.get("size"), "shortest_edge", 336)
    crop = _edge(config.get("crop_size"), "height", 336)
    resample = int(config.get("resample", 3))
    out = []
    for tile in tiles:
        h, w = tile.shape[:2]
        if config.get("do_resize", True):
            if w <= h:
                tile = pil_resize(tile, int(short * h / w), short, resample)
            else:
                tile = pil_resize(tile, short, int(short * w / h), resample)
        if config.get("do_center_crop", True):
            h, w = tile.shape[:2]
            top, left = (h - crop) // 2, (w - crop) // 2
            if top < 0 or left < 0:
                raise DataError(f"an image tile of {h} x {w} is smaller than the {crop}-pixel crop")
            tile = tile[top:top + crop, left:left + crop]
        normalise = config.get("do_normalize", True)
        values = rescale_and_normalise(tile, config.get("rescale_factor", 1 / 255) if config.get("do_rescale", True)
                                       else None, config["image_mean"] if normalise else None, config["image_std"])
        out.append(torch.from_numpy(np.ascontiguousarray(values.transpose(2, 0, 1))))
    return torch.stack(out), size


class LlavaNextEmbedder(PromptEmbedder):
    def __init__(self, model, processor, identity: dict, device: str, precision: str, tiles: str,
                 resize: int | None = None):
        self.model = model.eval().requires_grad_(False)
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.identity = identity
        self.device, self.precision, self.tiles = device, precision, tiles
        self.config = model.config
        core = getattr(model, "model", model)  # transformers 5 wraps the parts in LlavaNextModel
        self.vision_tower, self.projector = core.vision_tower, core.multi_modal_projector
        self.newline, self.language_model = core.image_newline, core.language_model
        self.embed_dim = self.token_width = int(self.config.text_config.hidden_size)
        self.image_token = int(self.config.image_token_index)
        self.preprocess = Steps([SquareResize(resize), ToRGB()]) if resize else _rgb
        self.identity["preprocess"] = (f"{self.preprocess!r}; " if resize else "RGB; ") + "tiles by the model's processor"
        self.identity["decode"] = "RGB before the transform"

    def pixels(self, image):
        """(tiles x 3 x H x W pixel values, the image's (height, width)): transformers 4.41.2's processor
        for ``tiles="pinned"``, the installed transformers' for ``"fixed"``."""
        if self.tiles != "fixed":  # 4.41.2's processor, unchanged in 4.45.2
            return pixels_441(image, self.processor.image_processor.to_dict())
        inputs = self.processor.image_processor([image], return_tensors="pt")
        size = [int(v) for v in inputs["image_sizes"][0]]
        rows, columns = grid_shape(size, self.config.image_grid_pinpoints, int(self.config.vision_config.image_size))
        return inputs["pixel_values"][0][:rows * columns + 1], tuple(size)

    def image_features(self, image):
        """The image's feature sequence (tokens x hidden) in the language model's input space."""
        import torch

        pixels, size = self.pixels(image)
        pinpoints = self.config.image_grid_pinpoints
        tile = int(self.config.vision_config.image_size)
        pixels = pixels.to(self.device, self.dtype)
        layer = self.config.vision_feature_layer
        hidden = self.vision_tower(pixels, output_hidden_states=True).hidden_states
        selected = torch.cat([hidden[i] for i in layer], dim=-1) if isinstance(layer, (list, tuple)) else hidden[layer]
        if self.config.vision_feature_select_strategy == "default":
            selected = selected[:, 1:]
        return pack(self.projector(selected), size, pinpoints, tile, self.newline, self.tiles)

    def sequence(self, prompt: str, image):
        """The input embeddings of one prompt, its ``<image>`` token replaced by the image's features."""
        import torch

        ids = torch.tensor(self.tokenizer(prompt)["input_ids"], device=self.device)
        return self.splice(ids, image, self.image_token, "<image>")


@register_encoder("llava-next")
def build_llava_next(rest: str, *, spec: str, device: str, precision: str, transform: str, cache_dir=None,
                     progress=None):
    """A transformers LlavaNextForConditionalGeneration (repository id or folder, optional @revision, and
    ``?tiles=pinned|4.45|fixed&resize=N``)."""
    model_id, revision, settings = split_settings(spec, rest, {
        "tiles": (lambda v: v if v in TILES else None, "|".join(TILES)),
        "resize": (positive_int, "N (pixels)")})
    tiles, resize = settings.get("tiles", "pinned"), settings.get("resize")
    require_cached(model_id, revision, "LLaVA-NeXT model")
    transformers = import_transformers("the llava-next encoder")
    model = load_pretrained([transformers.LlavaNextForConditionalGeneration], model_id, revision, "LLaVA-NeXT model",
                            **{dtype_argument(transformers): torch_dtype(precision)})
    processor = load_pretrained([transformers.LlavaNextProcessor], model_id, revision, "LLaVA-NeXT processor")
    if getattr(model.config, "image_grid_pinpoints", None) is None:
        raise DataError(f"{model_id}: its config has no image_grid_pinpoints (not a LLaVA-NeXT model)")
    identity = {"kind": "llava-next", "spec": spec, "model": model_id, "revision": revision_of(model, model_id),
                "requested_revision": revision, "precision": precision, "transform": transform, "tiles": tiles,
                "image_processor": ("transformers 4.41.2's LlavaNextImageProcessor (reproduced)" if tiles != "fixed" else
                                    f"transformers {transformers.__version__}'s LlavaNextImageProcessor"),
                "resize": resize,
                "model_name": model_id.rstrip("/").split("/")[-1],
                "transformers_version": transformers.__version__, "random_weights": False}
    return LlavaNextEmbedder(model.to(device), processor, identity, device, precision, tiles, resize)


build_llava_next.gpu_precision = "bf16"  # --precision auto on a GPU: the official codes' half precision
