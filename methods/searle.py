"""SEARLE (Baldrati et al., ICCV 2023), and LinCIR, which shares its phi network.

phi maps the raw CLIP image feature to the input embedding of the pseudo-word ``$`` (token 259):
Linear(d, 4d) -> GELU -> Dropout -> Linear(4d, 4d) -> GELU -> Dropout -> Linear(4d, token width).
The released weights are a dict with key 'Phi' (keys layers.0.*, layers.3.*, layers.6.*); the sizes
are read from the file. The prompt is SEARLE's "a photo of $ that {text}" where the split uses the
generic prompt, and the split's own prompt with ``$`` for ``*`` elsewhere (e.g. "a cartoon of $").
cirbench does not train phi: pass the released weights with ``--checkpoint searle=PATH``.
"""

from __future__ import annotations

import re

from cirbench import checkpoints
from cirbench.data import DEFAULT_PROMPTS
from cirbench.method import Method, register_method

SEARLE_PROMPT = "a photo of $ that {text}"
PSEUDO = "$"


def build_phi(sizes: list[tuple[int, int]]):
    """phi with the layer sizes [(in, out)] * 3 read from the weights; parameter names as released."""
    import torch.nn as nn

    (d_in, hidden), (_h1, hidden2), (_h2, out) = sizes
    return _phi(nn, d_in, hidden, hidden2, out)


def _phi(nn, d_in, hidden, hidden2, out):
    class Phi(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = nn.Sequential(nn.Linear(d_in, hidden), nn.GELU(), nn.Dropout(0.5),
                                        nn.Linear(hidden, hidden2), nn.GELU(), nn.Dropout(0.5),
                                        nn.Linear(hidden2, out))

        def forward(self, x):
            return self.layers(x)

    return Phi()


def load_phi(path, encoder):
    from cirbench.errors import DataError

    ckpt = checkpoints.load(path)
    state = checkpoints.section(ckpt, "Phi", path)
    checkpoints.check_keys(state, {f"layers.{i}.{p}" for i in (0, 3, 6) for p in ("weight", "bias")}, path,
                           "SEARLE/LinCIR phi")
    sizes = [tuple(reversed(state[f"layers.{i}.weight"].shape)) for i in (0, 3, 6)]
    if sizes[0][0] != encoder.embed_dim or sizes[2][1] != encoder.token_width:
        raise DataError(f"{path}: this phi takes {sizes[0][0]}-d image features to {sizes[2][1]}-d token embeddings, "
                        f"but encoder {encoder.label!r} has {encoder.embed_dim}-d features and {encoder.token_width}-d "
                        "token embeddings (weights for another backbone?)")
    net = checkpoints.instantiate(lambda: build_phi(sizes), state, path)
    return net, ckpt


def searle_prompt(split_prompt: str) -> str:
    if split_prompt == DEFAULT_PROMPTS["pseudo"]:
        return SEARLE_PROMPT
    return re.sub(r"(?<!\S)\*(?!\S)", PSEUDO, split_prompt)


@register_method("searle")
class Searle(Method):
    description = "SEARLE / LinCIR phi network; pseudo-word $ in 'a photo of $ that {text}'"
    external_weights = True  # released weights only: `--method all` runs it only when they are given

    def __init__(self, ctx):
        super().__init__(ctx)
        self.path = checkpoints.locate(ctx, "searle", None,
                                       "download the released SEARLE (or LinCIR) phi weights for this backbone")
        self.net, ckpt = load_phi(self.path, ctx.encoder)
        self.net.to(ctx.encoder.device)
        self.checkpoint_info = checkpoints.describe(self.path, ckpt)
        self.template = searle_prompt(ctx.prompts["pseudo"])
        ctx.encoder.pseudo_positions([self.template.replace("{text}", "x")], PSEUDO)

    def compose(self, reference_features, texts):
        import torch

        with torch.no_grad():
            tokens = self.net(reference_features.float())
            prompts = [self.template.replace("{text}", t) for t in texts]
            return self.ctx.encoder.encode_texts_with_pseudo(prompts, tokens, token=PSEUDO)

    def config(self):
        return {"prompt": self.template, "checkpoint": self.checkpoint_info}
