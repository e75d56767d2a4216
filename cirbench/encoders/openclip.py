"""open_clip models as cirbench encoders.

SPEC forms: ``ARCH:TAG`` (open_clip pretrained tag), ``ARCH:/path/weights.pt``, ``hf-hub:ORG/REPO``,
``local-dir:PATH`` (open_clip's folder format: open_clip_config.json + weights), and
``random:ARCH[@SEED]`` (random weights, marked in every table).
"""

from __future__ import annotations

import os
from pathlib import Path

from ..encoder import Encoder, register_encoder, sha256_file
from ..errors import UsageError


class TargetPad:
    """CLIP4Cir/SEARLE preprocessing: pad an elongated image towards a square before CLIP's resize/crop."""

    def __init__(self, target_ratio: float = 1.25):
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


class OpenClipEncoder(Encoder):
    def __init__(self, model, preprocess, tokenizer, identity: dict, device: str, precision: str):
        import torch

        self.model = model.eval().requires_grad_(False)
        self.preprocess = preprocess
        self.tokenizer = tokenizer
        self.identity = identity
        self.device = device
        self.precision = precision
        self.dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]
        self.embed_dim = int(identity["embed_dim"])
        self.token_width = int(model.token_embedding.weight.shape[1]) if hasattr(model, "token_embedding") else 0

    # -- tokens ---------------------------------------------------------------------------------
    def token_id(self, word: str) -> int:
        ids = self.tokenizer.encode(word) if hasattr(self.tokenizer, "encode") else None
        if not ids or len(ids) != 1:
            raise UsageError(f"{word!r} is not a single token of this encoder's tokenizer")
        return int(ids[0])

    def tokenize(self, texts: list[str]):
        return self.tokenizer(list(texts)).to(self.device)

    def word_embedding(self, word: str):
        return self.model.token_embedding.weight[self.token_id(word)].detach().float().clone()

    @property
    def logit_scale(self) -> float:
        return float(self.model.logit_scale.exp().item())

    # -- features -------------------------------------------------------------------------------
    def _autocast(self):
        import contextlib

        import torch

        if self.precision == "fp32" or not str(self.device).startswith("cuda"):
            return contextlib.nullcontext()
        return torch.autocast("cuda", dtype=self.dtype)

    def encode_images(self, pixels):
        with self._autocast():
            return self.model.encode_image(pixels.to(self.device, non_blocking=True)).float()

    def encode_texts(self, texts: list[str]):
        with self._autocast():
            return self._encode_tokens(self.tokenize(texts)).float()

    @property
    def _truncatable(self) -> bool:
        """A causal CLIP text tower pooled at the EOT token: positions after the batch's longest prompt
        cannot change the result, so they need not be computed (77 -> ~15 tokens for typical prompts)."""
        m = self.model
        return (getattr(m, "attn_mask", None) is not None and getattr(m, "text_pool_type", None) in ("argmax", "eos")
                and hasattr(m, "positional_embedding") and hasattr(m, "ln_final"))

    def _encode_tokens(self, tokens, mask=None, embeddings=None):
        """open_clip's encode_text on the used positions only; optionally with input embeddings replaced."""
        from open_clip.transformer import text_global_pool

        m = self.model
        if not self._truncatable:
            if mask is None:
                return m.encode_text(tokens)

            def inject(_module, _inputs, output):
                output = output.clone()
                output[mask] = embeddings.to(output.dtype).to(output.device)
                return output

            handle = m.token_embedding.register_forward_hook(inject)
            try:
                return m.encode_text(tokens)
            finally:
                handle.remove()
        length = int((tokens != 0).sum(dim=1).max())
        tokens = tokens[:, :length]
        cast = m.transformer.get_cast_dtype()
        x = m.token_embedding(tokens).to(cast)
        if mask is not None:
            x = x.clone()
            x[mask[:, :length]] = embeddings.to(x.device, x.dtype)
        x = x + m.positional_embedding[:length].to(cast)
        x = m.transformer(x, attn_mask=m.attn_mask[:length, :length])
        x = m.ln_final(x)
        x = text_global_pool(x, tokens, m.text_pool_type, eos_token_id=getattr(m, "text_eos_id", None))
        if m.text_projection is not None:
            x = m.text_projection(x) if hasattr(m.text_projection, "weight") else x @ m.text_projection
        return x

    def pseudo_positions(self, prompts: list[str], token: str = "*"):
        """Tokens of the prompts and the mask of the pseudo-word; a clear error unless each prompt holds it
        exactly once as its own word (not truncated away)."""
        tokens = self.tokenize(prompts)
        mask = tokens == self.token_id(token)
        counts = mask.sum(dim=1)
        bad = [p for p, c in zip(prompts, counts.tolist()) if c != 1]
        if bad:
            raise UsageError(
                f"prompt {bad[0]!r} must hold the pseudo-word {token!r} exactly once as its own word "
                f"(write 'a photo of {token} , text', not '{token},'); {len(bad)} prompt(s) affected"
            )
        return tokens, mask

    def encode_texts_with_pseudo(self, prompts: list[str], embeddings, token: str = "*"):
        """Encode prompts whose standalone ``token`` is replaced by the given input embeddings.

        ``embeddings`` has one row per prompt (width = token_width). Differentiable in
        ``embeddings`` (used for training the mapping networks)."""
        if not hasattr(self.model, "token_embedding"):
            raise UsageError(f"encoder {self.identity['spec']!r} has no token-embedding text tower; "
                             "pseudo-word methods need a CLIP-style text transformer")
        tokens, mask = self.pseudo_positions(prompts, token)
        if embeddings.shape != (len(prompts), self.token_width):
            raise UsageError(f"pseudo-word embeddings have shape {tuple(embeddings.shape)}, "
                             f"expected ({len(prompts)}, {self.token_width})")
        with self._autocast():
            return self._encode_tokens(tokens, mask, embeddings).float()


def _identity(spec: str, model, preprocess, precision: str, transform: str, **extra) -> dict:
    import open_clip

    vision = getattr(model, "visual", None)
    image_size = getattr(vision, "image_size", None)
    act = getattr(getattr(model, "transformer", None), "resblocks", [None])[0]
    quick_gelu = None
    if act is not None and hasattr(act, "mlp"):
        quick_gelu = type(act.mlp.gelu).__name__ == "QuickGELU"
    proj = getattr(model, "text_projection", None)
    if proj is None:
        embed_dim = int(model.visual.output_dim)
    elif hasattr(proj, "out_features"):
        embed_dim = int(proj.out_features)
    else:
        embed_dim = int(proj.shape[1])
    return {
        "kind": "openclip",
        "spec": spec,
        "precision": precision,
        "transform": transform,
        "preprocess": repr(preprocess).replace("\n", " "),
        "image_size": list(image_size) if isinstance(image_size, tuple) else image_size,
        "quick_gelu": quick_gelu,
        "embed_dim": embed_dim,
        "open_clip_version": open_clip.__version__,
        **extra,
    }


def _with_transform(preprocess, transform: str):
    if transform == "clip":
        return preprocess
    from torchvision import transforms as T

    return T.Compose([TargetPad(1.25), *preprocess.transforms])


def _weights_hash(spec: str, arch: str, tag: str | None) -> dict:
    if spec.startswith("local-dir:"):
        folder = Path(spec[len("local-dir:"):])
        files = sorted(p for p in folder.iterdir() if p.is_file() and p.name.startswith("open_clip"))
        return {"weights_sha256": {p.name: sha256_file(p) for p in files}}
    if tag and os.path.isfile(tag):
        return {"weights_file": str(Path(tag).resolve()), "weights_sha256": sha256_file(Path(tag))}
    return {"pretrained": tag}


def _hub_reachable(timeout: float = 3.0) -> bool:
    """Can the Hugging Face hub be reached? (A quick probe, so that no network fails fast, not after retries.)"""
    import socket

    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    host = endpoint.split("://", 1)[-1].split("/", 1)[0]
    try:
        with socket.create_connection((host.split(":")[0], 443), timeout=timeout):
            return True
    except OSError:
        return False


@register_encoder("openclip")
def build_openclip(rest: str, *, spec: str, device: str, precision: str, transform: str, cache_dir=None,
                   progress=None):
    """An open_clip model with pretrained weights (never a silent random-weights fallback)."""
    import open_clip

    if rest.startswith(("hf-hub:", "local-dir:")):
        arch, tag, name = rest, None, rest
    else:
        arch, _, tag = rest.partition(":")
        tag = tag or None
        name = arch
        if arch not in open_clip.list_models():
            raise UsageError(f"unknown open_clip architecture {arch!r} in encoder {spec!r} "
                             f"(see open_clip.list_models(); e.g. ViT-L-14:openai)")
        if not tag:
            raise UsageError(f"encoder {spec!r} names no weights: use ARCH:TAG (e.g. ViT-L-14:openai), "
                             f"ARCH:/path/to/weights.pt, or random:{arch} for random weights")
    needs_hub = tag is not None and not os.path.isfile(tag) or rest.startswith("hf-hub:")
    offline = os.environ.get("HF_HUB_OFFLINE") in ("1", "true", "True")
    no_network = needs_hub and not offline and not _hub_reachable()
    local_only = needs_hub and (offline or no_network)
    if local_only:  # look in the local cache only, instead of retrying the network for a minute
        import huggingface_hub.constants as hub

        saved, hub.HF_HUB_OFFLINE = hub.HF_HUB_OFFLINE, True
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(
            name, pretrained=tag, precision="fp32", device=device,
            cache_dir=str(Path(cache_dir) / "models") if cache_dir else None, require_pretrained=True)
        tokenizer = open_clip.get_tokenizer(name)
    except UsageError:
        raise
    except Exception as exc:
        where = Path(cache_dir) / "models" if cache_dir else (os.environ.get("HF_HOME") or "~/.cache/huggingface")
        why = " (HF_HUB_OFFLINE is set)" if offline else " (no network: the hub cannot be reached)" if no_network else ""
        first = str(exc).splitlines()[0]
        if needs_hub and "local cache" in first:
            first = "its weights are not in the local cache"
        raise UsageError(f"cannot load encoder {spec!r}{why}: {first[:300]} "
                         f"[looked in the local cache {where}]") from exc
    finally:
        if local_only:
            hub.HF_HUB_OFFLINE = saved
    preprocess = _with_transform(preprocess, transform)
    identity = _identity(spec, model, preprocess, precision, transform, random_weights=False,
                         **_weights_hash(rest, arch, tag))
    return OpenClipEncoder(model.to(device), preprocess, tokenizer, identity, device, precision)


@register_encoder("random")
def build_random(rest: str, *, spec: str, device: str, precision: str, transform: str, cache_dir=None,
                 progress=None):
    """An open_clip architecture with seeded random weights: for speed tests and plumbing, never results."""
    import open_clip
    import torch

    arch, _, seed = rest.partition("@")
    if arch not in open_clip.list_models():
        raise UsageError(f"unknown open_clip architecture {arch!r} in encoder {spec!r}")
    torch.manual_seed(int(seed or 0))
    import logging

    quiet = logging.getLogger().level
    logging.getLogger().setLevel(logging.ERROR)  # "initialized randomly" is what was asked for
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(arch, pretrained=None, device=device)
    finally:
        logging.getLogger().setLevel(quiet)
    preprocess = _with_transform(preprocess, transform)
    identity = _identity(spec, model, preprocess, precision, transform, random_weights=True, seed=int(seed or 0))
    return OpenClipEncoder(model, preprocess, open_clip.get_tokenizer(arch), identity, device, precision)
