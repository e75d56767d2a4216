"""LinCIR (Gu et al., CVPR 2024): a phi network trained on text only, run on its released weights.

The released checkpoint (``lincir_large.pt`` for ViT-L/14) is a dict with key 'Phi' holding SEARLE's
phi shape (keys layers.0/3/6); the sizes are read from the file. Protocol of LinCIR's validate.py:
CLIP's own transform (not TargetPad), raw image features into phi, "a photo of $ that {caption}",
and on FashionIQ both caption orders (stripped of '.?, ') averaged, as SEARLE.

One number-changing habit of the official code is reproduced by default: its text encoder replaces
*every* ``$`` token of a prompt with the pseudo-word, so a caption containing "$" (e.g. "costs $5")
also gets the image there. ``--option lincir.inject=slot`` replaces only the template's own ``$``.
"""

from __future__ import annotations

from cirbench.method import Option, register_method

from .searle import PhiMethod


@register_method("lincir")
class LinCIR(PhiMethod):
    description = "LinCIR phi network (text-only training); pseudo-word $ (released weights)"
    default_transform = "clip"  # LinCIR's validate.py default
    how_to_get = "download the released LinCIR weights for this backbone (lincir_large.pt for ViT-L-14)"
    options = {"inject": Option(str, "every", "where the image's pseudo-word goes: 'every' $ of the prompt (the "
                                              "official code) or the template's 'slot' only", ("every", "slot"))}

    @property
    def inject_everywhere(self) -> bool:
        return self.option("inject") == "every"
