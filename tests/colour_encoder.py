"""A tiny deterministic encoder for checking dataset protocols by hand.

An image's feature is its mean colour (R, G, B in 0..1) ; a text's feature is the RGB of the first
colour word in it. Image-only then ranks the gallery by colour, so expected metrics can be worked out
on paper for a fixture whose images are flat colours.
"""

from __future__ import annotations

import torch

from cirbench.contracts.encoder import Encoder

RGB = {"red": (1.0, 0.05, 0.05), "green": (0.05, 1.0, 0.05), "blue": (0.05, 0.05, 1.0),
       "yellow": (1.0, 1.0, 0.05), "white": (1.0, 1.0, 1.0), "gray": (0.5, 0.5, 0.5)}


class ColourEncoder(Encoder):
    embed_dim = 3
    token_width = 3

    def __init__(self):
        self.identity = {"kind": "colour-test", "spec": "colour-test"}
        self.device = "cpu"

    @staticmethod
    def preprocess(image):
        import numpy as np

        return torch.from_numpy(np.asarray(image.convert("RGB").resize((4, 4)), dtype="float32") / 255).permute(2, 0, 1)

    def encode_images(self, pixels):
        return pixels.mean(dim=(2, 3))

    def encode_texts(self, texts):
        out = []
        for text in texts:
            rgb = next((RGB[w] for w in text.replace(",", " ").split() if w in RGB), (0.3, 0.3, 0.3))
            out.append(torch.tensor(rgb))
        return torch.stack(out)


def build(rest, **_kwargs):
    """Deterministic colour features (tests only)."""
    return ColourEncoder()


def register():
    from cirbench.contracts.registry import encoders

    if "colour-test" not in encoders:
        encoders.add("colour-test", build, origin="tests")
