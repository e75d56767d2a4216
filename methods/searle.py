"""SEARLE (Baldrati et al., ICCV 2023): phi maps the image to the pseudo-word ``$``.

phi maps the raw CLIP image feature to the input embedding of ``$`` (token 259):
Linear(d, 4d) -> GELU -> Dropout -> Linear(4d, 4d) -> GELU -> Dropout -> Linear(4d, token width).
The released weights are a dict with key 'Phi' (keys layers.0.*, layers.3.*, layers.6.*); the sizes
are read from the file. cirbench does not train phi: pass the released weights with
``--checkpoint searle=PATH``.

Protocol of SEARLE's validate.py: TargetPad (1.25) images; the prompt "a photo of $ that {caption}";
on FashionIQ both caption orders, each caption stripped of '.?, ', "a photo of $ that {c1} and {c2}"
and "... {c2} and {c1}" encoded and their normalised features averaged. Where a split uses another
pseudo-word template (domain conversion's "a {domain} of *"), that template with ``$`` for ``*``.
The slot is the template's own ``$`` (the official code takes each prompt's first ``$``: the same
wherever the template puts it before the caption, as all official templates do).
"""

from __future__ import annotations

from cirbench.contracts.method import register_method

from ._shared import PhiMethod


@register_method("searle")
class Searle(PhiMethod):
    description = "SEARLE phi network; pseudo-word $ in 'a photo of $ that {text}' (released weights)"
    display_order = 4
    default_transform = "targetpad"  # SEARLE's validate.py default
    how_to_get = "download the released SEARLE phi weights for this backbone (SEARLE_ViT-L14.pt for ViT-L-14)"
    options = {}
