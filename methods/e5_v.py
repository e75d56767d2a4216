"""E5-V (Jiang et al., 2024, "E5-V: Universal Embeddings with Multimodal Large Language Models";
kongds/E5-V, royokong/e5-v on llama3-llava-next-8b): the composed query and each gallery image are one
forward pass of the model over a prompt asking for a one-word summary; the embedding is the final hidden
state of the prompt's last token. It brings its own model (the ``llava-next`` encoder kind).

As the official retrieval.py (``cir()``, run with ``--use_e5v``) builds them, each prompt in the llama3
chat template ``<|start_header_id|>user<|end_header_id|>\\n\\n{}<|eot_id|><|start_header_id|>assistant
<|end_header_id|>\\n\\n \\n`` (its [INST] markers removed), word for word, misspellings included:

- FashionIQ (category c; toptee is asked as "shirt"): gallery ``<image>\\n Describe this {c} in one word
  based on its style:``; query ``<image> change the style of this {c} to <sent>\\n Desribe this modified
  {c} in one word based on its style:``, ``<sent>`` the two captions each stripped of ``.?, `` and joined
  with ", " -- once in the annotation's order and once reversed, the two last-token states summed before
  normalising;
- CIRR: gallery ``<image>\\n Describe this image in one word:``; query ``<image>Modify this image with
  "<sent>", desribe modified image in one word:`` with the raw caption; the reference scored -1 (here:
  removed, as CIRR's protocol removes it: the same ranking);
- every other dataset (CIRCO, GeneCIS, ...): the official code has no path for them; the CIRR prompts
  (its generic composed path) with the split's caption, under that dataset's own protocol (CIRCO keeps
  the reference) -- recorded in each result.

The official code ran transformers 4.41.2 in float16 (``--option e5-v.tiles=fixed`` for today's tile
layout; see cirbench.encoders.llava_next), batch size 1.
"""

from __future__ import annotations

from cirbench.contracts.method import EncoderView, Method, Option, register_method
from cirbench.contracts.split import CAPTION_STRIP, relative_captions
from cirbench.protocol.scoring import normalize

from ._shared import caption_prompts, model_options, model_spec

LLAMA3 = "<|start_header_id|>user<|end_header_id|>\n\n{}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n \n"
FASHION_GALLERY = "<image>\n Describe this {c} in one word based on its style:"
FASHION_QUERY = "<image> change the style of this {c} to <sent>\n Desribe this modified {c} in one word based on its style:"
GENERIC_GALLERY = "<image>\n Describe this image in one word:"
GENERIC_QUERY = '<image>Modify this image with "<sent>", desribe modified image in one word:'
FASHION_NAMES = {"toptee": "shirt"}  # retrieval.py: fiq_data_name


def chat(prompt: str) -> str:
    return LLAMA3.format(prompt)


@register_method("e5-v", aliases=("e5v",))
class E5V(Method):
    description = "E5-V: a multimodal LLM's last-token embedding of the image under a one-word prompt"
    external_weights = True
    display_order = 64
    default_model = "royokong/e5-v"
    options = {
        **model_options("LLaVA-NeXT", "royokong/e5-v"),
        "tiles": Option(str, "pinned", "the any-resolution tile layout: 'pinned' (transformers 4.41.2's, which made "
                                       "the published numbers) or 'fixed' (today's)", ("pinned", "fixed")),
    }

    @classmethod
    def own_encoder(cls, options, checkpoint):
        return model_spec(cls, "llava-next", options, f"tiles={options.get('tiles', 'pinned')}")

    def prepare(self, split):
        if split.dataset == "fashioniq":
            name = FASHION_NAMES.get(split.split, split.split)
            self.gallery_prompt = chat(FASHION_GALLERY.format(c=name))
            self.query_prompt = chat(FASHION_QUERY.format(c=name))
            self.path = f"FashionIQ ({name}): both caption orders summed"
        else:
            self.gallery_prompt, self.query_prompt = chat(GENERIC_GALLERY), chat(GENERIC_QUERY)
            self.path = "CIRR's prompts" + ("" if split.dataset == "cirr" else
                                            f" (the official code has no path for {split.dataset})")

    def encoder_view_for(self, split):
        return EncoderView("prompt:" + self.gallery_prompt)

    def _texts(self, batch) -> tuple[list[str], bool]:
        """The <sent> of each query, and whether they come in pairs (FashionIQ's two orders)."""
        pairs = [relative_captions(f) for f in batch.fields]
        if self.split.dataset == "fashioniq" and all(pairs):
            forward = [", ".join(c.strip(CAPTION_STRIP) for c in p) for p in pairs]
            backward = [", ".join(c.strip(CAPTION_STRIP) for c in reversed(p)) for p in pairs]
            return forward + backward, True
        return caption_prompts(batch), False

    def encode_queries(self, batch):
        texts, paired = self._texts(batch)
        images = list(batch.reference_pixels())
        prompts = [self.query_prompt.replace("<sent>", t) for t in texts]
        states = self.ctx.encoder.embed(prompts, images * 2 if paired else images)
        if paired:
            states = states[:len(batch)] + states[len(batch):]
        return normalize(states).to(batch.reference_features.device)

    def config(self):
        identity = self.ctx.encoder.identity
        return {"gallery_prompt": self.gallery_prompt, "query_prompt": self.query_prompt, "path": self.path,
                "tiles": identity.get("tiles"), "model": identity.get("model"), "revision": identity.get("revision")}

    def protocol(self, config):
        return {"text": config["query_prompt"],
                "notes": [config["path"], f"gallery: {config['gallery_prompt']!r}", f"tiles: {config['tiles']}",
                          f"model {config['model']} at {config['revision']}"]}
