"""Hugging Face transformers CLIP models as cirbench encoders: ``hf-clip:REPO_OR_FOLDER[@REVISION]``.

The model is a transformers ``CLIPModel`` (``get_image_features`` / ``get_text_features``, the
projected, unnormalised features), its tokenizer ``AutoTokenizer`` and its images prepared as its
``CLIPImageProcessor`` config says (``preprocessor_config.json``): converted to RGB, the short side
resized with the processor's resampling, a centre crop with its offsets rounded down, rescaled and
normalised -- the PIL-based processor of transformers 4.x, which the official evaluation codes ran
(transformers 5's default processor resizes tensors with torchvision, a slightly different result).
Texts are tokenized with padding and truncation at the view's text length (77 by default).

A repository id is read from the hub (or only from the local cache when HF_HUB_OFFLINE is set or the
hub cannot be reached: a missing model is one line naming it and the cache); the exact commit it
resolved to (or a hash of a local folder's files) is in the encoder's identity. Pseudo-word injection
(Pic2Word, SEARLE, LinCIR) is not offered by this kind.
"""

from __future__ import annotations

from cirbench.contracts.encoder import Encoder, copy_with, register_encoder, with_weights_rounded
from cirbench.errors import UsageError
from cirbench.protocol.transforms import FloorCenterCrop, Rescale, ToRGB, squash_variant
from cirbench.protocol.transforms import build as build_transform
from cirbench.util.hub import dtype_argument, import_transformers, load_pretrained, require_cached, revision_of

PIL_RESAMPLE = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}
# what of the processor's config changes the pixels (recorded in the encoder's identity)
PROCESSOR_KEYS = ("do_convert_rgb", "do_resize", "size", "resample", "do_center_crop", "crop_size", "do_rescale",
                  "rescale_factor", "do_normalize", "image_mean", "image_std")


def processor_transform(config: dict):
    """The PIL pipeline of a CLIPImageProcessor config (transformers 4.x's slow processor)."""
    from torchvision import transforms as T

    def edge(value, key, default):
        if isinstance(value, dict):
            return int(value.get(key) or value.get("height") or default)
        return int(value) if value else default

    steps = []
    if config.get("do_convert_rgb", True):
        steps.append(ToRGB())
    if config.get("do_resize", True):
        mode = PIL_RESAMPLE.get(int(config.get("resample", 3)), "bicubic")
        steps.append(T.Resize(edge(config.get("size"), "shortest_edge", 224),
                              interpolation=T.InterpolationMode(mode), antialias=True))
    if config.get("do_center_crop", True):
        steps.append(FloorCenterCrop(edge(config.get("crop_size"), "height", 224)))
    steps.append(Rescale(float(config.get("rescale_factor", 1 / 255)) if config.get("do_rescale", True) else 1.0))
    if config.get("do_normalize", True):
        steps.append(T.Normalize(config.get("image_mean", [0.48145466, 0.4578275, 0.40821073]),
                                 config.get("image_std", [0.26862954, 0.26130258, 0.27577711])))
    return T.Compose(steps)


def _features(out):
    """transformers 4.x returns the projected features; 5.x a model output holding them."""
    import torch

    return out if isinstance(out, torch.Tensor) else out.pooler_output


class HFClipEncoder(Encoder):
    def __init__(self, model, tokenizer, preprocess, identity: dict, device: str, precision: str):
        import torch

        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.base_preprocess = preprocess
        self.identity = identity
        self.preprocess = build_transform(preprocess, identity.get("transform", "clip"))
        self.identity["preprocess"] = repr(self.preprocess).replace("\n", " ")
        # squashed images (COCO's query crops) go through this one: in the feature-cache key too
        self.identity["squash_preprocess"] = repr(squash_variant(preprocess)).replace("\n", " ")
        self.identity["decode"] = "RGB before the transform"
        self.device, self.precision = device, precision
        self.dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]
        self.embed_dim = int(model.config.projection_dim)
        self.token_width = int(model.config.text_config.hidden_size)
        self.text_length = int(identity.get("text_length", 77))

    def with_transform(self, transform: str) -> "HFClipEncoder":
        if transform == self.transform:
            return self
        clone = copy_with(self, preprocess=build_transform(self.base_preprocess, transform))
        clone.identity["transform"] = transform
        clone.identity["preprocess"] = repr(clone.preprocess).replace("\n", " ")
        return clone

    def with_text_length(self, length: int) -> "HFClipEncoder":
        """The same model with texts truncated at ``length`` tokens (start and end included)."""
        if length == self.text_length:
            return self
        clone = copy_with(self, text_length=int(length))
        clone.identity["text_length"] = int(length)
        return clone

    def with_weights(self, weights: str) -> "HFClipEncoder":
        return with_weights_rounded(self, weights)

    @property
    def squash_preprocess(self):
        """The processor's steps with its resize and crop replaced by a resize to the input square (COCO's
        query crops, as open_clip encoders squash them)."""
        return squash_variant(self.base_preprocess)

    def encode_images(self, pixels):
        with self._autocast():
            out = self.model.get_image_features(pixel_values=pixels.to(self.device, non_blocking=True))
        return _features(out).float()

    def encode_texts(self, texts: list[str]):
        inputs = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.text_length,
                                return_tensors="pt").to(self.device)
        inputs.pop("token_type_ids", None)
        with self._autocast():
            out = self.model.get_text_features(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
        return _features(out).float()

    def encode_texts_with_pseudo(self, prompts, embeddings, token="*", prefixes=None, every_occurrence=False):
        raise UsageError(f"encoder {self.label!r} (a transformers CLIP) does not inject pseudo-words: run "
                         "Pic2Word, SEARLE and LinCIR on an open_clip encoder")

    def word_embedding(self, word: str):
        ids = self.tokenizer(word, add_special_tokens=False)["input_ids"]
        if len(ids) != 1:
            raise UsageError(f"{word!r} is not a single token of this encoder's tokenizer")
        return self.model.text_model.embeddings.token_embedding.weight[ids[0]].detach().float().clone()

    @property
    def logit_scale(self) -> float:
        return float(self.model.logit_scale.exp().item())


@register_encoder("hf-clip")
def build_hf_clip(rest: str, *, spec: str, device: str, precision: str, transform: str, cache_dir=None,
                  progress=None):
    """A Hugging Face transformers CLIPModel (repository id or folder, optional @revision)."""
    model_id, _, revision = rest.partition("@")
    if not model_id:
        raise UsageError(f"encoder {spec!r} names no model: hf-clip:REPO_OR_FOLDER[@REVISION]")
    revision = revision or None
    require_cached(model_id, revision, "CLIP model")  # seconds sooner than importing transformers' CLIP
    transformers = import_transformers("the hf-clip encoder")
    import torch

    # float32, as transformers 4.x loads by default and the official evaluations ran (5.x's default,
    # "auto", would keep a checkpoint's float16)
    model = load_pretrained([transformers.CLIPModel], model_id, revision, "CLIP model",
                            **{dtype_argument(transformers): torch.float32})
    tokenizer = load_pretrained([transformers.AutoTokenizer], model_id, revision, "CLIP tokenizer")
    processor = load_pretrained([transformers.CLIPImageProcessor], model_id, revision, "CLIP image processor")
    config = processor.to_dict()
    identity = {"kind": "hf-clip", "spec": spec, "model": model_id, "revision": revision_of(model, model_id),
                "requested_revision": revision, "precision": precision, "transform": transform,
                "text_length": 77, "image_processor": {k: config.get(k) for k in PROCESSOR_KEYS},
                "model_name": model_id.rstrip("/").split("/")[-1],
                "transformers_version": transformers.__version__, "random_weights": False}
    return HFClipEncoder(model.to(device), tokenizer, processor_transform(config), identity, device, precision)
