"""open_clip models as cirbench encoders.

SPEC forms: ``ARCH:TAG`` (open_clip pretrained tag), ``ARCH:/path/weights.pt``, ``hf-hub:ORG/REPO``,
``local-dir:PATH`` (open_clip's folder format: open_clip_config.json + weights), and
``random:ARCH[@SEED]`` (random weights, marked in every table).

Activation: OpenAI's CLIP models use QuickGELU, and open_clip 3.x builds ``ViT-L-14`` with GELU even
for ``pretrained="openai"`` (it only warns). A tag whose open_clip pretrained config says
``quick_gelu`` is therefore built with QuickGELU, as is an ``ARCH:FILE`` holding OpenAI-format weights
(a state dict with OpenAI's ``input_resolution``/``context_length``/``vocab_size`` entries). The setting
and why it was chosen are recorded in the encoder identity.

A TorchScript archive (OpenAI's released ``.pt`` files) is refused, never loaded: ``torch.jit.load``
runs the archive's own code (a scripted module's ``__setstate__``) while reading it, so a weights file
could run anything. open_clip reads OpenAI's weights without it (``ARCH:openai``); a user's archive can
be turned into a state dict once, by code they trust.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

from cirbench.contracts.encoder import Encoder, copy_with, register_encoder, with_weights_rounded
from cirbench.errors import UsageError, short
from cirbench.util.fsutil import sha256_file
from cirbench.util.hub import hub_reachable, offline_set
from cirbench.protocol.transforms import squash_variant
from cirbench.protocol.transforms import build as build_transform

OPENAI_MARKERS = ("input_resolution", "context_length", "vocab_size")


def describe_preprocess(identity: dict, preprocess) -> None:
    """The transform and where images become RGB, in an encoder's identity (part of its feature-cache key)."""
    from cirbench.protocol.transforms import converts_to_rgb

    identity["preprocess"] = repr(preprocess).replace("\n", " ")
    identity["decode"] = ("decoded mode until the transform converts to RGB" if converts_to_rgb(preprocess)
                          else "RGB before the transform")


class OpenClipEncoder(Encoder):
    def __init__(self, model, preprocess, tokenizer, identity: dict, device: str, precision: str):
        import torch

        self.model = model.eval().requires_grad_(False)
        self.base_preprocess = preprocess  # CLIP's own transform; the "targetpad" one is derived from it
        self.preprocess = build_transform(preprocess, identity.get("transform", "clip"))
        self.tokenizer = tokenizer
        self.identity = identity
        describe_preprocess(self.identity, self.preprocess)
        self.device = device
        self.precision = precision
        self.dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]
        self.embed_dim = int(identity["embed_dim"])
        self.token_width = int(model.token_embedding.weight.shape[1]) if hasattr(model, "token_embedding") else 0

    def with_transform(self, transform: str) -> "OpenClipEncoder":
        if transform == self.transform:
            return self
        clone = copy_with(self, preprocess=build_transform(self.base_preprocess, transform))
        clone.identity["transform"] = transform
        describe_preprocess(clone.identity, clone.preprocess)
        return clone

    def with_weights(self, weights: str) -> "OpenClipEncoder":
        """The same model with its weights rounded through float16 and used in float32 (``"fp16"``: what
        loading a checkpoint with torch_dtype=float16 and calling .float() does), or as loaded."""
        return with_weights_rounded(self, weights)

    @property
    def squash_preprocess(self):
        return squash_variant(self.base_preprocess)

    # -- tokens ---------------------------------------------------------------------------------
    def token_ids(self, text: str) -> list[int]:
        if not hasattr(self.tokenizer, "encode"):
            raise UsageError("this encoder's tokenizer cannot locate pseudo-words (no BPE encode)")
        return list(self.tokenizer.encode(text))

    def token_id(self, word: str) -> int:
        ids = self.token_ids(word)
        if len(ids) != 1:
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
    def encode_images(self, pixels):
        with self._autocast():
            return self.model.encode_image(pixels.to(self.device, non_blocking=True)).float()

    def encode_texts(self, texts: list[str]):
        with self._autocast():
            return self._encode_tokens(self.tokenize(texts)).float()

    @property
    def _truncatable(self) -> bool:
        """A causal CLIP text tower pooled at the end token: positions after the batch's last end token
        cannot change the result, so they need not be computed (77 -> ~15 tokens for typical prompts)."""
        m = self.model
        return (getattr(m, "attn_mask", None) is not None and getattr(m, "text_pool_type", None) in ("argmax", "eos")
                and hasattr(m, "positional_embedding") and hasattr(m, "ln_final"))

    def _used_length(self, tokens) -> int:
        """Positions up to the last pooled (end) token of the batch. Not "non-zero tokens": BPE id 0 is a
        real token ("!" inside a word), and counting it as padding would cut a prompt's end token off."""
        m = self.model
        if m.text_pool_type == "argmax":  # OpenAI CLIP: the end token has the highest id
            ends = tokens.argmax(dim=-1)
        else:
            ends = (tokens == m.text_eos_id).int().argmax(dim=-1)
        return int(ends.max()) + 1

    def _encode_tokens(self, tokens, mask=None, embeddings=None):
        """open_clip's encode_text on the used positions only; optionally with the input embeddings at
        ``mask`` (B x L) replaced by ``embeddings`` (one row per prompt)."""
        import torch
        from open_clip.transformer import text_global_pool

        m = self.model
        if not self._truncatable:
            if mask is None:
                return m.encode_text(tokens)

            def inject(_module, _inputs, output):
                rows = embeddings.to(output.device, output.dtype)[:, None, :]
                return torch.where(mask[..., None].to(output.device), rows, output)

            handle = m.token_embedding.register_forward_hook(inject)
            try:
                return m.encode_text(tokens)
            finally:
                handle.remove()
        length = self._used_length(tokens)
        tokens = tokens[:, :length]
        cast = m.transformer.get_cast_dtype()
        x = m.token_embedding(tokens).to(cast)
        if mask is not None:
            rows = embeddings.to(x.device, x.dtype)[:, None, :]
            x = torch.where(mask[:, :length, None].to(x.device), rows, x)
        x = x + m.positional_embedding[:length].to(cast)
        x = m.transformer(x, attn_mask=m.attn_mask[:length, :length])
        x = m.ln_final(x)
        x = text_global_pool(x, tokens, m.text_pool_type, eos_token_id=getattr(m, "text_eos_id", None))
        if m.text_projection is not None:
            x = m.text_projection(x) if hasattr(m.text_projection, "weight") else x @ m.text_projection
        return x

    def pseudo_mask(self, prompts: list[str], token: str = "*", prefixes: list[str] | None = None,
                    every_occurrence: bool = False):
        """Tokens of the prompts and the B x L mask of the positions to inject; a clear error when a
        prompt's slot is not a standalone pseudo-word (or was truncated away)."""
        import torch

        tokens = self.tokenize(prompts)
        token_id = self.token_id(token)
        is_token = tokens == token_id
        if every_occurrence:
            mask = is_token
            bad = [p for p, c in zip(prompts, mask.sum(dim=1).tolist()) if c == 0]
        elif prefixes is not None:
            slots = torch.tensor([1 + len(self.token_ids(p)) for p in prefixes], device=tokens.device)
            ok = slots < tokens.shape[1]
            rows = torch.arange(len(prompts), device=tokens.device)
            ok &= is_token[rows, slots.clamp(max=tokens.shape[1] - 1)]
            mask = torch.zeros_like(is_token)
            mask[rows[ok], slots[ok]] = True
            bad = [p for p, good in zip(prompts, ok.tolist()) if not good]
        else:
            first = is_token.int().argmax(dim=1)
            mask = torch.zeros_like(is_token)
            rows = torch.arange(len(prompts), device=tokens.device)
            mask[rows, first] = is_token[rows, first]
            bad = [p for p, c in zip(prompts, mask.sum(dim=1).tolist()) if c == 0]
        if bad:
            raise UsageError(
                f"prompt {short(bad[0])} does not hold the pseudo-word {token!r} as its own word where its template "
                f"puts it (write 'a photo of {token} , text', not '{token},'; or the prompt is too long and was "
                f"truncated); {len(bad)} prompt(s) affected")
        return tokens, mask

    def encode_texts_with_pseudo(self, prompts: list[str], embeddings, token: str = "*",
                                 prefixes: list[str] | None = None, every_occurrence: bool = False):
        """See :meth:`Encoder.encode_texts_with_pseudo`. Differentiable in ``embeddings`` (used for
        training the mapping networks)."""
        if not hasattr(self.model, "token_embedding"):
            raise UsageError(f"encoder {self.identity['spec']!r} has no token-embedding text tower; "
                             "pseudo-word methods need a CLIP-style text transformer")
        tokens, mask = self.pseudo_mask(prompts, token, prefixes, every_occurrence)
        if embeddings.shape != (len(prompts), self.token_width):
            raise UsageError(f"pseudo-word embeddings have shape {tuple(embeddings.shape)}, "
                             f"expected ({len(prompts)}, {self.token_width})")
        with self._autocast():
            return self._encode_tokens(tokens, mask, embeddings).float()


def _identity(spec: str, model, precision: str, transform: str, **extra) -> dict:
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
        "image_size": list(image_size) if isinstance(image_size, tuple) else image_size,
        "quick_gelu": quick_gelu,
        "embed_dim": embed_dim,
        "open_clip_version": open_clip.__version__,
        **extra,
    }


def _weights_hash(spec: str, tag: str | None) -> dict:
    if spec.startswith("local-dir:"):
        folder = Path(spec[len("local-dir:"):])
        files = sorted(p for p in folder.iterdir() if p.is_file() and p.name.startswith("open_clip"))
        return {"weights_sha256": {p.name: sha256_file(p) for p in files}}
    if tag and os.path.isfile(tag):
        return {"weights_file": str(Path(tag).resolve()), "weights_sha256": sha256_file(Path(tag))}
    return {"pretrained": tag}


def is_torchscript(path: Path) -> bool:
    try:
        if not zipfile.is_zipfile(path):
            return False
        with zipfile.ZipFile(path) as archive:
            return any(name.endswith("/constants.pkl") or "/code/" in name for name in archive.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def refuse_torchscript(path: Path) -> None:
    """A weights file that is a TorchScript archive stops the run before anything reads it."""
    if is_torchscript(path):
        raise UsageError(f"{path}: a TorchScript archive, which cirbench never loads (loading one runs the code "
                         "inside it); use the tag instead (e.g. ViT-L-14:openai), or save its state dict once with "
                         "code you trust: torch.save(torch.jit.load(FILE).state_dict(), OUT)")


def openai_state_dict(path: Path) -> dict | None:
    """The state dict of an OpenAI-format weights file (a plain state dict), or None for any other file."""
    import torch

    refuse_torchscript(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:
        return None
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if isinstance(obj, dict) and any(k in obj for k in OPENAI_MARKERS):
        return obj
    return None


def _load_openai_file(arch: str, path: Path, device: str):
    """An ``ARCH:FILE`` model from OpenAI-format weights, with QuickGELU."""
    import open_clip

    from cirbench.errors import DataError

    state = openai_state_dict(path)
    if state is None:
        return None
    state = {k.removeprefix("module."): v for k, v in state.items() if k not in OPENAI_MARKERS}
    model, _, preprocess = open_clip.create_model_and_transforms(arch, pretrained=None, force_quick_gelu=True,
                                                                 device="cpu")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise DataError(f"{path}: these OpenAI-format weights do not fit {arch}: {str(exc).splitlines()[0]}") from None
    return model.to(device), preprocess


@register_encoder("openclip")
def build_openclip(rest: str, *, spec: str, device: str, precision: str, transform: str, cache_dir=None,
                   progress=None):
    """An open_clip model with pretrained weights (never a silent random-weights fallback)."""
    import open_clip

    hub_spec = rest.startswith("hf-hub:")
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
    is_file = tag is not None and os.path.isfile(tag)
    quick, why = False, None
    if tag and not is_file:
        if open_clip.get_pretrained_cfg(arch, tag).get("quick_gelu"):
            quick, why = True, f"open_clip's pretrained config of {arch}:{tag} says quick_gelu"
    needs_hub = (tag is not None and not is_file) or hub_spec
    offline = offline_set()
    no_network = needs_hub and not offline and not hub_reachable()
    local_only = needs_hub and (offline or no_network)
    if local_only:  # look in the local cache only, instead of retrying the network for a minute
        import huggingface_hub.constants as hub

        saved, hub.HF_HUB_OFFLINE = hub.HF_HUB_OFFLINE, True
    try:
        loaded = _load_openai_file(arch, Path(tag), device) if is_file else None
        if loaded is not None:
            model, preprocess = loaded
            why = "the weights file is in OpenAI's format"
        else:
            model, _, preprocess = open_clip.create_model_and_transforms(
                name, pretrained=tag, precision="fp32", device=device, force_quick_gelu=quick,
                cache_dir=str(Path(cache_dir) / "models") if cache_dir else None, require_pretrained=True)
        tokenizer = open_clip.get_tokenizer(name)
    except UsageError:
        raise
    except Exception as exc:
        why_not = " (HF_HUB_OFFLINE is set)" if offline else " (no network: the hub cannot be reached)" if no_network else ""
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if needs_hub and "local cache" in first:
            first = "its weights are not in the local cache"
        where = ""
        if needs_hub:
            place = Path(cache_dir) / "models" if cache_dir else (os.environ.get("HF_HOME") or "~/.cache/huggingface")
            where = f" [looked in the local cache {place}]"
        raise UsageError(f"cannot load encoder {spec!r}{why_not}: {first[:300]}{where}") from exc
    finally:
        if local_only:
            hub.HF_HUB_OFFLINE = saved
    extra = {"random_weights": False, **_weights_hash(rest, tag)}
    identity = _identity(spec, model, precision, transform, **extra)
    if identity["quick_gelu"]:
        identity["quick_gelu_reason"] = why or "the model configuration says quick_gelu"
    return OpenClipEncoder(model.to(device), preprocess, tokenizer, identity, device, precision)


@register_encoder("random")
def build_random(rest: str, *, spec: str, device: str, precision: str, transform: str, cache_dir=None,
                 progress=None):
    """An open_clip architecture with seeded random weights: for speed tests and plumbing, never results."""
    import logging

    import open_clip
    import torch

    arch, _, seed = rest.partition("@")
    if arch not in open_clip.list_models():
        raise UsageError(f"unknown open_clip architecture {arch!r} in encoder {spec!r}")
    torch.manual_seed(int(seed or 0))
    quiet = logging.getLogger().level
    logging.getLogger().setLevel(logging.ERROR)  # "initialized randomly" is what was asked for
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(arch, pretrained=None, device=device)
    finally:
        logging.getLogger().setLevel(quiet)
    identity = _identity(spec, model, precision, transform, random_weights=True, seed=int(seed or 0))
    return OpenClipEncoder(model, preprocess, open_clip.get_tokenizer(arch), identity, device, precision)
