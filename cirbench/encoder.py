"""The shared encoder contract and how an ``--encoder SPEC`` becomes an encoder.

An encoder gives batched image features, text features, and text features with pseudo-word
embeddings injected at a placeholder token (the mechanism Pic2Word, SEARLE and LinCIR share).
Features are returned projected and NOT normalised; the engine normalises before scoring.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Callable

from .errors import UsageError
from .registry import encoders

register_encoder = encoders.register

TRANSFORMS = ("clip", "targetpad")
PRECISIONS = ("fp32", "fp16", "bf16")


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def stable_hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


class Encoder:
    """Base class. Subclasses set identity, preprocess, embed_dim, token_width and implement the encoders."""

    identity: dict
    preprocess: Callable
    embed_dim: int
    token_width: int
    device: str = "cpu"

    @property
    def key(self) -> str:
        """Content key of everything that changes features (used by the feature cache)."""
        return stable_hash(self.identity)[:16]

    @property
    def label(self) -> str:
        label = self.identity.get("spec", "encoder")
        if self.identity.get("random_weights"):
            label += " (random weights)"
        return label

    @property
    def slug(self) -> str:
        base = re.sub(r"[^A-Za-z0-9._-]+", "_", self.identity.get("spec", "encoder")).strip("_")[-48:]
        return f"{base}-{self.key[:8]}"

    def encode_images(self, pixels):
        raise NotImplementedError

    def encode_texts(self, texts: list[str]):
        raise NotImplementedError

    def pseudo_positions(self, prompts: list[str], token: str = "*"):
        """(tokens, mask of the pseudo-word); a UsageError unless each prompt holds it once as its own word."""
        raise NotImplementedError

    def encode_texts_with_pseudo(self, prompts: list[str], embeddings, token: str = "*"):
        raise NotImplementedError

    def word_embedding(self, word: str):
        """The input token embedding of a word that is one token (used by tests and analysis)."""
        raise NotImplementedError

    @property
    def logit_scale(self) -> float:
        return 100.0


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
    """An encoder from its SPEC. ``cache_dir`` is cirbench's cache (downloaded or trained models live below it)."""
    if precision not in PRECISIONS:
        raise UsageError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if transform not in TRANSFORMS:
        raise UsageError(f"unknown image transform {transform!r}; choose one of {', '.join(TRANSFORMS)}")
    kind, rest = parse_spec(spec)
    factory = encoders.get(kind)
    return factory(rest, spec=spec, device=device, precision=precision, transform=transform, cache_dir=cache_dir,
                   progress=progress)


def resolve_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
