"""The shared encoder contract and how an ``--encoder SPEC`` becomes an encoder.

An encoder gives batched image features, text features, and text features with pseudo-word
embeddings injected at a placeholder token (the mechanism Pic2Word, SEARLE and LinCIR share).
Features are returned projected and NOT normalised; the engine normalises before scoring.

An encoder is a model plus an image transform. ``identity`` describes both; ``model_key`` covers the
model alone (weights, precision, activation, library version) and names the encoder in result paths
and tables, while ``key`` adds the transform and keys the image-feature cache. ``with_transform``
gives the same model with another transform, sharing its weights.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Callable

from cirbench.errors import UsageError
from cirbench.util.fsutil import slug, stable_hash
from cirbench.contracts.registry import encoders

register_encoder = encoders.register

TRANSFORMS = ("clip", "targetpad", "hf-clip")  # see cirbench.transforms (and its +fp16 modifier)
WEIGHTS = ("loaded", "fp16")  # as loaded, or rounded through float16 and used in float32
PRECISIONS = ("fp32", "fp16", "bf16")
# entries of identity that describe the image transform rather than the model
TRANSFORM_FIELDS = ("transform", "preprocess", "decode")
# the encoder the real benchmarks are evaluated with unless --encoder says otherwise: the seed
# paper's backbone (OpenAI CLIP ViT-L/14, built with its QuickGELU activation)
DEFAULT_REAL_ENCODER = "ViT-L-14:openai"


class Encoder:
    """Base class. Subclasses set identity, preprocess, embed_dim, token_width and implement the encoders."""

    identity: dict
    preprocess: Callable
    embed_dim: int
    token_width: int
    device: str = "cpu"
    precision: str = "fp32"  # subclasses running fp16/bf16 set it and ``dtype``

    def _autocast(self):
        """The autocast context the encode methods run in: mixed precision on CUDA only."""
        import contextlib

        import torch

        if self.precision == "fp32" or not str(self.device).startswith("cuda"):
            return contextlib.nullcontext()
        return torch.autocast("cuda", dtype=self.dtype)

    @property
    def squash_preprocess(self) -> Callable:
        """The transform for an image that is resized to the input square without a centre crop."""
        return self.preprocess

    @property
    def transform(self) -> str:
        return self.identity.get("transform", "clip")

    def with_transform(self, transform: str) -> "Encoder":
        """The same model with another image transform (weights shared)."""
        if transform == self.transform:
            return self
        raise UsageError(f"encoder {self.label!r} cannot change its image transform to {transform!r}")

    def with_text_length(self, length: int | None) -> "Encoder":
        """The same model with texts truncated at ``length`` tokens (None: its own length)."""
        if length is None or length == self.identity.get("text_length", length):
            return self
        raise UsageError(f"encoder {self.label!r} cannot truncate texts at {length} tokens")

    def with_weights(self, weights: str) -> "Encoder":
        """The same model with its weights as loaded ("loaded") or rounded through float16 ("fp16")."""
        if weights == self.identity.get("weights_rounding", "loaded"):
            return self
        raise UsageError(f"encoder {self.label!r} cannot round its weights to {weights!r}")

    @property
    def key(self) -> str:
        """Content key of everything that changes image features (used by the feature cache)."""
        return stable_hash(self.identity)[:16]

    @property
    def model_key(self) -> str:
        """Content key of the model alone (text features, result paths, report rows)."""
        return stable_hash({k: v for k, v in self.identity.items() if k not in TRANSFORM_FIELDS})[:16]

    @property
    def label(self) -> str:
        label = self.identity.get("spec", "encoder")
        if self.identity.get("random_weights"):
            label += " (random weights)"
        return label

    @property
    def slug(self) -> str:
        base = re.sub(r"[^A-Za-z0-9._-]+", "_", self.identity.get("spec", "encoder")).strip("_")[-48:]
        return f"{base}-{self.model_key[:8]}"

    def encode_images(self, pixels):
        raise NotImplementedError

    def encode_texts(self, texts: list[str]):
        raise NotImplementedError

    def encode_texts_with_pseudo(self, prompts: list[str], embeddings, token: str = "*",
                                 prefixes: list[str] | None = None, every_occurrence: bool = False):
        """Encode prompts whose pseudo-word ``token`` is replaced by the given input embeddings (one row
        per prompt). ``prefixes`` (the filled text before the template's own pseudo-word) pin the slot, so
        a ``*`` inside a caption stays text; without them the first standalone occurrence is the slot.
        ``every_occurrence`` replaces every occurrence instead (LinCIR's code does)."""
        raise NotImplementedError

    def word_embedding(self, word: str):
        """The input token embedding of a word that is one token (used by tests and analysis)."""
        raise NotImplementedError

    @property
    def logit_scale(self) -> float:
        return 100.0


def copy_with(encoder: Encoder, **changes) -> Encoder:
    """A shallow copy of an encoder with some attributes replaced (weights stay shared)."""
    clone = copy.copy(encoder)
    clone.identity = dict(encoder.identity)
    for name, value in changes.items():
        setattr(clone, name, value)
    return clone


def with_weights_rounded(encoder: Encoder, weights: str) -> Encoder:
    """``Encoder.with_weights`` for an encoder whose torch module is ``encoder.model``: "fp16" gives a copy
    whose floating weights and buffers are rounded through float16 and used in float32 (what loading a
    checkpoint with torch_dtype=float16 and calling .float() does); "loaded" is the encoder as loaded."""
    import torch

    current = encoder.identity.get("weights_rounding", "loaded")
    if weights == current:
        return encoder
    if weights != "fp16" or current != "loaded":
        raise UsageError(f"encoder {encoder.label!r} cannot take weights {weights!r} (from {current!r})")
    model = copy.deepcopy(encoder.model)
    with torch.no_grad():
        for tensor in [*model.parameters(), *model.buffers()]:
            if tensor.is_floating_point():
                tensor.copy_(tensor.half().float())
    clone = copy_with(encoder, model=model)
    clone.identity["weights_rounding"] = "fp16"
    return clone


def parse_spec(spec: str) -> tuple[str, str]:
    """Split SPEC into (encoder kind, rest). ``random:ARCH`` -> random; ``hf-hub:``/``local-dir:``/
    ``ARCH:TAG``/``ARCH:FILE``/``ARCH`` -> openclip; any other registered kind ``KIND:REST`` -> KIND."""
    head, sep, rest = spec.partition(":")
    if head in ("hf-hub", "local-dir"):
        return "openclip", spec
    if head in encoders and head != "openclip":
        return head, rest
    if head == "openclip":
        return "openclip", rest
    return "openclip", spec


def load_encoder(spec: str, *, device: str = "cpu", precision: str = "fp32", transform: str = "clip",
                 cache_dir: Path | None = None, progress=None):
    """An encoder from its SPEC. ``cache_dir`` is cirbench's cache (downloaded or trained models live below it).
    ``precision="auto"``: fp32, or on a GPU the precision the kind's factory names as ``gpu_precision``
    (the multimodal-LLM kinds: bf16, as their official codes run)."""
    if precision not in PRECISIONS + ("auto",):
        raise UsageError(f"unknown precision {precision!r}; choose one of auto, {', '.join(PRECISIONS)}")
    from cirbench.protocol.transforms import check

    check(transform)
    kind, rest = parse_spec(spec)
    factory = encoders.get(kind)
    precision = resolve_precision(factory, device, precision)
    return factory(rest, spec=spec, device=device, precision=precision, transform=transform, cache_dir=cache_dir,
                   progress=progress)


def resolve_precision(factory, device: str, precision: str) -> str:
    """``auto``: the precision a kind's factory names as ``gpu_precision`` on a GPU (its official code's), else fp32."""
    if precision != "auto":
        return precision
    return getattr(factory, "gpu_precision", "fp32") if str(device).startswith("cuda") else "fp32"


def resolve_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


__all__ = ["Encoder", "register_encoder", "load_encoder", "parse_spec", "resolve_device", "copy_with", "slug",
           "DEFAULT_REAL_ENCODER", "TRANSFORMS", "WEIGHTS", "PRECISIONS"]


def _check_encoder_factory(obj) -> str | None:
    return None if callable(obj) else f"it loads to {obj!r}, not a callable encoder factory"


encoders.validator = _check_encoder_factory
