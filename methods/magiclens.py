"""MagicLens (Zhang et al., ICML 2024; google-deepmind/magiclens): a CLIP whose image and text
embeddings are fused by a small transformer and an attention pooler, trained on 36.7M web image pairs.
It brings its own model, a released checkpoint file: ``--checkpoint magiclens=magic_lens_clip_base.pkl``
(or ``magic_lens_clip_large.pkl``), read by the ``magiclens`` encoder kind (no JAX needed).

As the official inference.py and data_utils.py compute it:

- query = fuse(CLIP image embedding of the reference, CLIP text embedding of the instruction), the
  normalised multimodal embedding (see cirbench.encoders.magiclens for the model and its habits);
- gallery = fuse(image embedding, embedding of the EMPTY instruction) for every gallery image: the
  official code embeds index images through the text tower and the fusion with ``tokenizer("")``;
- scores = inner products over the whole gallery, the reference kept where the split keeps it (CIRCO
  and FashionIQ, as the official code; CIRR's protocol removes it, as for every method);
- instructions: CIRCO "find {shared_concept} but {relative_caption}"; FashionIQ the two captions joined
  by " and " as they are (``--set caption_order=official``: the second first, as for every method);
  domain conversion "find this object in {domain}".

The official code evaluates no CIRR or GeneCIS split: there, and on every other dataset, the relative
caption is the instruction as the split's CLIP fusion methods encode it (recorded in the results);
``--option magiclens.template=...`` sets any template. The official code scores domain conversion as a
hit rate (a query counts when any image of the target class and domain is in its top K), where
cirbench's imagenet-r splits keep Pic2Word's positive recall for every method: run those splits with
``--set metric=hit`` for the number MagicLens's code prints.
"""

from __future__ import annotations

from cirbench.contracts.method import Method, Option, register_method
from cirbench.errors import MissingResourceError

from ._shared import choose_template

OFFICIAL_TEMPLATES = {
    "circo": "find {shared_concept} but {text}",
    "fashioniq": "{c1} and {c2}",
    "imagenet-r": "find this object in {text}",
}
GALLERY_CHUNK = 1024  # gallery embeddings fused this many at a time


@register_method("magiclens", aliases=("magic-lens",))
class MagicLens(Method):
    description = "MagicLens: its CLIP embeddings fused by its own transformer (gallery: the empty instruction)"
    takes_checkpoint = True
    external_weights = True
    display_order = 62
    options = {"template": Option(str, None, "the instruction template (default: the official code's, per dataset)")}

    @classmethod
    def own_encoder(cls, options, checkpoint):
        if checkpoint is None:
            raise MissingResourceError("magiclens runs on a released checkpoint: --checkpoint magiclens=FILE "
                                       "(magic_lens_clip_base.pkl or magic_lens_clip_large.pkl; see docs/methods.md)")
        return f"magiclens:{checkpoint}"

    def prepare(self, split):
        self.template, self.source = choose_template(self, split, OFFICIAL_TEMPLATES, "official code")

    def encode_queries(self, batch):
        from cirbench.protocol.prompts import fill

        texts = [fill(self.template, t, f) for t, f in zip(batch.texts, batch.fields)]
        text = self.ctx.text_features(texts).to(batch.reference_features.device)
        return self.ctx.encoder.fuse(batch.reference_features, text)

    def encode_gallery(self, gallery):
        import torch

        empty = self.ctx.text_features([""]).to(gallery.features.device)
        parts = [self.ctx.encoder.fuse(chunk, empty.expand(len(chunk), -1))
                 for chunk in gallery.features.split(GALLERY_CHUNK)]
        return torch.cat(parts) if parts else gallery.features

    def config(self):
        identity = self.ctx.encoder.identity
        return {"prompt": self.template, "prompt_source": self.source, "gallery_instruction": "",
                "model": identity.get("model_name"), "weights_sha256": identity.get("weights_sha256")}

    def protocol(self, config):
        return {"text": config["prompt"],
                "notes": [f"template: {config['prompt_source']}",
                          "gallery: each image fused with the empty instruction", f"model {config['model']}"]}
