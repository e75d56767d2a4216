"""LinCIR (Gu et al., CVPR 2024): a phi network trained on text only, run on its released weights.

The released checkpoint (``lincir_large.pt`` for ViT-L/14) is a dict with key 'Phi' holding SEARLE's
phi shape (keys layers.0/3/6); the sizes are read from the file. Protocol of LinCIR's validate.py
(``--eval-type phi``): raw image features into phi, "a photo of $ that {caption}", and on FashionIQ
both caption orders (stripped of '.?, ') averaged, as SEARLE.

Number-changing habits of the official code, reproduced by default and recorded:

- the text encoder replaces *every* ``$`` token of a prompt with the pseudo-word, so a caption
  containing "$" (e.g. "costs $5") also gets the image there (``--option lincir.inject=slot``: only the
  template's own ``$``);
- the "clip" preprocessing is Hugging Face's CLIPImageProcessor (models.build_text_encoder): resize the
  short side to 224, then a centre crop whose offsets are rounded *down* (torchvision rounds them to
  nearest: a one-pixel shift on some sizes) -- the ``hf-clip`` transform;
- the CLIP towers are loaded with torch_dtype=float16 (``args.mixed_precision = 'fp16'``) and cast to
  float32, so every weight is rounded through float16;
- the reference image is cast to half before the vision tower that feeds phi
  (utils.extract_pseudo_tokens_with_phi: ``pixel_values=images.half()``), while the gallery is encoded
  from float32 pixels -- the references are encoded with ``hf-clip+fp16``.

``--option lincir.official_preprocessing=false`` is the clean variant: CLIP's torchvision transform for
every image and the weights as loaded.
"""

from __future__ import annotations

from cirbench.contracts.method import EncoderView, Option, register_method

from ._shared import PhiMethod


@register_method("lincir")
class LinCIR(PhiMethod):
    description = "LinCIR phi network (text-only training); pseudo-word $ (released weights)"
    display_order = 5
    default_transform = "hf-clip"  # LinCIR's validate.py default ("clip": a Hugging Face CLIPImageProcessor)
    how_to_get = "download the released LinCIR weights for this backbone (lincir_large.pt for ViT-L-14)"
    options = {"inject": Option(str, "every", "where the image's pseudo-word goes: 'every' $ of the prompt (the "
                                              "official code) or the template's 'slot' only", ("every", "slot")),
               "official_preprocessing": Option(bool, True, "Hugging Face's crop, CLIP weights rounded through "
                                                            "float16 and the reference's pixels cast to half, as "
                                                            "the official code (false: torchvision's CLIP "
                                                            "transform, fp32)")}

    @classmethod
    def encoder_view(cls, options):
        if options.get("official_preprocessing", True):
            return EncoderView("hf-clip", reference_transform="hf-clip+fp16", weights="fp16")
        return EncoderView("clip")

    @property
    def inject_everywhere(self) -> bool:
        return self.option("inject") == "every"
