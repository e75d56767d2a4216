"""Multimodal-LLM embedders on transformers' own Qwen2VLForConditionalGeneration:
``qwen2-vl:REPO_OR_FOLDER[@REVISION][?processor=REPO_OR_FOLDER[@REVISION]&min_pixels=N&max_pixels=N]``
(LamRA-Ret, code-kunkun/LamRA-Ret, whose evaluation loads the processor of Qwen/Qwen2-VL-7B-Instruct).

What LamRA's Qwen2VLRetForConditionalGeneration computes with ``inference=True``, on transformers'
classes (its modelling file is never run):

- the prompt (the chat template's text, which the method writes) is tokenized as its processor's
  tokenizer does, with ``<emb>`` added to the tokenizer as LamRA's ``add_embed_token`` adds it; the one
  ``<|image_pad|>`` becomes the image's merged vision features;
- the language model runs with plain sequential positions -- LamRA calls the text model with
  ``position_ids=None``, so every token, image tokens included, is numbered 0, 1, 2, ... on all three
  M-RoPE axes (not Qwen2-VL's 3-D image positions), as it was trained;
- the embedding is the final hidden state (after the last norm) of the token before the first ``<emb>``
  (``argmax(labels == emb) - 1``); a prompt without ``<emb>`` is read at its last token;
- images: LamRA's fetch_image -- RGB, resized with PIL's default filter to (height, width) multiples of
  28 holding between ``min_pixels`` (4 x 28^2) and ``max_pixels`` (300 x 28^2) pixels by its own
  smart_resize --, then transformers 4.45's Qwen2VLImageProcessor (reproduced: its own smart_resize with
  the processor's bounds, a no-op on such sizes; rescaling in float64 cast to float32, normalising, the
  frame repeated over the temporal patch, patches in merge order).

LamRA pinned transformers at a 4.45.0 development commit, whose Qwen2-VL code is 4.45.2's.
"""

from __future__ import annotations

import math

from cirbench.contracts.encoder import register_encoder
from cirbench.errors import DataError, UsageError
from cirbench.util.hub import (dtype_argument, files_revision, import_transformers, load_pretrained,
                               require_cached, revision_of)

from .prompt_llm import PromptEmbedder, pil_resize, positive_int, rescale_and_normalise, split_settings, torch_dtype

EMB_TOKEN = "<emb>"
IMAGE_FACTOR = 28
MIN_PIXELS = 4 * 28 * 28  # LamRA collators/qwen2_vision_process.py
MAX_PIXELS = 300 * 28 * 28
MAX_RATIO = 200
DEFAULT_PROCESSOR = "Qwen/Qwen2-VL-7B-Instruct"  # eval_*.py: "processor is not changed so we still load from the original model repo"


def _check_ratio(height: int, width: int) -> None:
    if max(height, width) / min(height, width) > MAX_RATIO:
        raise DataError(f"an image of {width} x {height} pixels: its aspect ratio exceeds {MAX_RATIO} (Qwen2-VL's limit)")


def _within(height: int, width: int, h_bar: int, w_bar: int, factor: int, min_pixels: int, max_pixels: int):
    """Both smart_resizes' bounds: over ``max_pixels`` scaled down and floored, under ``min_pixels``
    scaled up and ceiled, to multiples of ``factor``."""
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        return math.floor(height / beta / factor) * factor, math.floor(width / beta / factor) * factor
    if h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        return math.ceil(height * beta / factor) * factor, math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def lamra_size(height: int, width: int, factor: int = IMAGE_FACTOR, min_pixels: int = MIN_PIXELS,
               max_pixels: int = MAX_PIXELS) -> tuple[int, int]:
    """LamRA's smart_resize: (height, width) multiples of ``factor`` near the image's, its pixels within the
    bounds (Python's round, which rounds halves to even, as the official code), at least ``factor`` before
    the bounds, the ratio clamped to MAX_RATIO after them."""
    _check_ratio(height, width)
    h_bar, w_bar = _within(height, width, max(factor, round(height / factor) * factor),
                           max(factor, round(width / factor) * factor), factor, min_pixels, max_pixels)
    if h_bar / w_bar > MAX_RATIO:
        h_bar = w_bar * MAX_RATIO
    elif w_bar / h_bar > MAX_RATIO:
        w_bar = h_bar * MAX_RATIO
    return h_bar, w_bar


def processor_size(height: int, width: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """transformers 4.45.2's Qwen2-VL smart_resize (an error under ``factor``, no floor at it, no clamp)."""
    if height < factor or width < factor:
        raise DataError(f"an image of {width} x {height} pixels is smaller than Qwen2-VL's {factor}-pixel factor")
    _check_ratio(height, width)
    return _within(height, width, round(height / factor) * factor, round(width / factor) * factor, factor,
                   min_pixels, max_pixels)


class LamraResize:
    """LamRA's fetch_image resize of an RGB image (PIL's default filter, bicubic for RGB)."""

    def __init__(self, min_pixels: int = MIN_PIXELS, max_pixels: int = MAX_PIXELS):
        self.min_pixels, self.max_pixels = int(min_pixels), int(max_pixels)

    def __call__(self, image):
        width, height = image.size
        h, w = lamra_size(height, width, IMAGE_FACTOR, self.min_pixels, self.max_pixels)
        return image.resize((w, h))

    def __repr__(self):
        return f"LamraResize({self.min_pixels}..{self.max_pixels} pixels, multiples of {IMAGE_FACTOR})"


IMAGE_SETTINGS = ("patch_size", "merge_size", "temporal_patch_size", "resample", "do_resize", "do_rescale",
                  "rescale_factor", "do_normalize", "image_mean", "image_std")


def image_settings(config: dict, where: str) -> dict:
    """What the pixel pipeline reads from a Qwen2-VL image processor's settings (``to_dict()``; its
    pixel bounds as 4.45 named them, ``min_pixels``/``max_pixels``, or as ``size``'s shortest and longest
    edge); a setting missing is one line naming the processor."""
    size = config.get("size") if isinstance(config.get("size"), dict) else {}
    bounds = {"min_pixels": config.get("min_pixels") or size.get("shortest_edge"),
              "max_pixels": config.get("max_pixels") or size.get("longest_edge")}
    missing = [k for k in IMAGE_SETTINGS if config.get(k) is None] + [k for k, v in bounds.items() if v is None]
    if missing:
        raise DataError(f"{where}: its image processor has no {', '.join(missing)} (not a Qwen2-VL image processor)")
    return {**{k: config[k] for k in IMAGE_SETTINGS}, **{k: int(v) for k, v in bounds.items()}}


def pixels_445(image, settings: dict):
    """(patches x (3 * temporal * patch^2) float32 pixel values, (t, h, w) grid) as transformers 4.45.2's
    Qwen2VLImageProcessor gives them for one RGB image (``settings``: :func:`image_settings`)."""
    import numpy as np
    import torch

    patch, merge, temporal = (int(settings[k]) for k in ("patch_size", "merge_size", "temporal_patch_size"))
    array = np.array(image.convert("RGB"))
    height, width = array.shape[:2]
    if settings["do_resize"]:
        h, w = processor_size(height, width, patch * merge, settings["min_pixels"], settings["max_pixels"])
        if (h, w) != (height, width):
            array = pil_resize(array, h, w, settings["resample"])
            height, width = h, w
    values = rescale_and_normalise(array, settings["rescale_factor"] if settings["do_rescale"] else None,
                                   settings["image_mean"] if settings["do_normalize"] else None, settings["image_std"])
    frames = np.tile(values.transpose(2, 0, 1)[None], (temporal, 1, 1, 1))
    grid_h, grid_w = height // patch, width // patch
    channels = frames.shape[1]
    patches = frames.reshape(1, temporal, channels, grid_h // merge, merge, patch, grid_w // merge, merge, patch)
    patches = patches.transpose(0, 3, 6, 4, 7, 2, 1, 5, 8).reshape(grid_h * grid_w, channels * temporal * patch * patch)
    return torch.from_numpy(np.ascontiguousarray(patches)), (1, grid_h, grid_w)


class Qwen2VLEmbedder(PromptEmbedder):
    def __init__(self, model, tokenizer, image_config: dict, identity: dict, device: str, precision: str,
                 min_pixels: int, max_pixels: int):
        self.model = model.eval().requires_grad_(False)
        self.tokenizer, self.image_config, self.identity = tokenizer, image_config, identity
        self.device, self.precision = device, precision
        self.config = model.config
        core = model.model
        if hasattr(core, "language_model"):  # transformers 5: Qwen2VLModel holds both parts
            self.visual, self.language_model = core.visual, core.language_model
        else:  # 4.x: the vision tower beside the text model
            self.visual, self.language_model = model.visual, core
        text = getattr(self.config, "text_config", self.config)
        self.embed_dim = self.token_width = int(text.hidden_size)
        self.image_token = int(self.config.image_token_id)
        self.emb_token = tokenizer.convert_tokens_to_ids(EMB_TOKEN)
        self.preprocess = LamraResize(min_pixels, max_pixels)
        self.identity["preprocess"] = f"{self.preprocess!r}; transformers 4.45.2's Qwen2VLImageProcessor (reproduced)"
        self.identity["decode"] = "RGB before the transform"

    def image_features(self, image):
        """The image's merged vision features (tokens x hidden) in the language model's input space."""
        import torch

        pixels, grid = pixels_445(image, self.image_config)
        out = self.visual(pixels.to(self.device, self.visual.get_dtype()),
                          grid_thw=torch.tensor([grid], device=self.device))
        return out if torch.is_tensor(out) else out.pooler_output

    def sequence(self, prompt: str, image):
        """The input embeddings of one prompt up to its reading token, ``<|image_pad|>`` replaced by the
        image's features."""
        import torch

        ids = torch.tensor(self.tokenizer(prompt)["input_ids"], device=self.device)
        emb = (ids == self.emb_token).nonzero().flatten().tolist()
        if emb:
            if emb[0] == 0:
                raise UsageError(f"a prompt of encoder {self.label!r} begins with {EMB_TOKEN}: no token precedes it")
            ids = ids[:emb[0]]
        return self.splice(ids, image, self.image_token, "<|image_pad|>")

    def position_ids(self, positions):
        """The same sequential positions on M-RoPE's three axes (LamRA's position_ids=None)."""
        return positions[None].expand(3, *positions.shape)


def _repository(value: str) -> str | None:
    return value if value and not value.startswith("@") else None


@register_encoder("qwen2-vl")
def build_qwen2_vl(rest: str, *, spec: str, device: str, precision: str, transform: str, cache_dir=None,
                   progress=None):
    """A transformers Qwen2VLForConditionalGeneration (repository id or folder, optional @revision) with the
    processor of ``processor=`` (default Qwen/Qwen2-VL-7B-Instruct) and LamRA's pixel bounds."""
    model_id, revision, settings = split_settings(spec, rest, {
        "processor": (_repository, "REPO_OR_FOLDER[@REVISION]"),
        "min_pixels": (positive_int, "N"), "max_pixels": (positive_int, "N")})
    processor_id, _, processor_revision = settings.get("processor", DEFAULT_PROCESSOR).partition("@")
    processor_revision = processor_revision or None
    min_pixels, max_pixels = settings.get("min_pixels", MIN_PIXELS), settings.get("max_pixels", MAX_PIXELS)
    if min_pixels > max_pixels:
        raise UsageError(f"encoder {spec!r}: min_pixels {min_pixels} exceeds max_pixels {max_pixels}")
    require_cached(model_id, revision, "Qwen2-VL model")
    require_cached(processor_id, processor_revision, "Qwen2-VL processor")
    transformers = import_transformers("the qwen2-vl encoder")
    model = load_pretrained([transformers.Qwen2VLForConditionalGeneration], model_id, revision, "Qwen2-VL model",
                            **{dtype_argument(transformers): torch_dtype(precision)})
    tokenizer = load_pretrained([transformers.AutoTokenizer], processor_id, processor_revision, "Qwen2-VL tokenizer")
    image_processor = load_pretrained([transformers.AutoImageProcessor], processor_id, processor_revision,
                                      "Qwen2-VL image processor")
    if getattr(model.config, "image_token_id", None) is None:
        raise DataError(f"{model_id}: its config has no image_token_id (not a Qwen2-VL model)")
    if EMB_TOKEN not in tokenizer.get_vocab():
        tokenizer.add_tokens([EMB_TOKEN])  # LamRA's add_embed_token (the embedding row is never read)
    identity = {"kind": "qwen2-vl", "spec": spec, "model": model_id, "revision": revision_of(model, model_id),
                "requested_revision": revision, "processor": processor_id,
                "requested_processor_revision": processor_revision,
                "processor_revision": files_revision(processor_id, processor_revision, "preprocessor_config.json"),
                "precision": precision, "transform": transform, "min_pixels": min_pixels, "max_pixels": max_pixels,
                "pooling": f"final hidden state of the token before the first {EMB_TOKEN} (else the last token)",
                "positions": "sequential on all three M-RoPE axes (LamRA: position_ids None)",
                "model_name": model_id.rstrip("/").split("/")[-1],
                "transformers_version": transformers.__version__, "random_weights": False}
    settings = image_settings(image_processor.to_dict(), processor_id)
    return Qwen2VLEmbedder(model.to(device), tokenizer, settings, identity, device, precision,
                           min_pixels, max_pixels)


build_qwen2_vl.gpu_precision = "bf16"  # --precision auto on a GPU: LamRA's evaluation runs in bf16
