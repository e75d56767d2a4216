"""BGE-VL (MMRet; Zhou et al., "MegaPairs", ACL 2025; VectorSpaceLab/MegaPairs): a CLIP fine-tuned on
26M synthetic triplets that composes a query by summing its text and image features. It brings its own
model: ``BAAI/BGE-VL-base`` (CLIP ViT-B/16) by default, ``--option bge-vl.model=BAAI/BGE-VL-large`` (or
the method ``bge-vl-large``), or a local folder of a transformers CLIP model.

As the official evaluation (eval/eval_Circo.py, eval/eval_fashioniq.py, eval/flag_mmret.py,
eval/flag_dataset.py) computes it:

- the model is a plain transformers ``CLIPModel`` (float32), texts tokenized by ``AutoTokenizer`` and
  images prepared by ``CLIPImageProcessor`` (RGB; the PIL processor of transformers 4.x, whose centre
  crop rounds its offsets down) -- the ``hf-clip`` encoder kind;
- query = normalise(get_text_features(text) + get_image_features(reference)): the raw, projected
  features summed, then normalised; the query text truncated at 75 tokens, start and end included
  (MMIT_Collator's ``caption_max_len=75``; the scripts' ``max_query_length`` is not used);
- gallery = normalise(get_image_features(image)); inner-product search over the whole gallery, the
  reference kept where the split keeps it (CIRCO and FashionIQ, as the official evaluation; CIRR's
  protocol removes it, as for every method);
- query texts: CIRCO "Find a picture that also {shared_concept}, but {relative_caption}." (its query
  file's, final period included); FashionIQ "{c1}, and {c2}" (the two captions as they are; ``--set
  caption_order=official`` puts the second first, as for every method).

The authors published no CIRR or GeneCIS query file (MegaPairs issue #34 asks for the CIRR one):
there, and on every other dataset, cirbench encodes the relative caption as the split's CLIP fusion
methods do (the split's "caption" prompt: the caption itself on CIRR, the condition on GeneCIS) and says
so in the results. ``--option bge-vl.template=...`` sets any template (``{text}`` and the query's
fields).
"""

from __future__ import annotations

from cirbench.contracts.method import EncoderView, Method, Option, register_method
from cirbench.protocol.scoring import normalize

from ._shared import choose_template, model_options, model_spec

# the official query files' texts (eval/data/*_query*.jsonl), by dataset
OFFICIAL_TEMPLATES = {
    "circo": "Find a picture that also {shared_concept}, but {text}.",
    "fashioniq": "{c1}, and {c2}",
}
QUERY_TOKENS = 75  # MMIT_Collator(caption_max_len=75): start and end tokens included
# The released models at pinned commits (those embeddings-benchmark/mteb pins for them, in
# mteb/models/model_implementations/bge_vl_models.py); another model id runs at what it resolves to,
# recorded in its results (encoder identity "revision"), or at --option bge-vl.revision.
PINNED_REVISIONS = {
    "BAAI/BGE-VL-base": "cc4c733ed997dbee4ac70ccffb911e70c9c24b93",
    "BAAI/BGE-VL-large": "40fb48217f521df22a2a5bf15edd52ed1146ef05",
}


@register_method("bge-vl", aliases=("mmret", "bge-vl-base"))
class BGEVL(Method):
    description = "normalise(text + image features) of BGE-VL's own CLIP (MegaPairs)"
    external_weights = True
    display_order = 60
    default_model = "BAAI/BGE-VL-base"
    options = {
        **model_options("transformers CLIP", "BAAI/BGE-VL-base; BAAI/BGE-VL-large",
                        "the pinned commit of BAAI/BGE-VL-base and -large"),
        "template": Option(str, None, "the query text template (default: the official query file's, per dataset)"),
    }

    @classmethod
    def own_encoder(cls, options, checkpoint):
        return model_spec(cls, "hf-clip", options, pinned=PINNED_REVISIONS)

    @classmethod
    def encoder_view(cls, options):
        return EncoderView("clip", text_length=QUERY_TOKENS)

    def prepare(self, split):
        self.template, self.source = choose_template(self, split, OFFICIAL_TEMPLATES, "official query file")

    def encode_queries(self, batch):
        from cirbench.protocol.prompts import fill

        texts = [fill(self.template, t, f) for t, f in zip(batch.texts, batch.fields)]
        text = self.ctx.text_features(texts).to(batch.reference_features.device).float()
        return normalize(text + batch.reference_features.float())

    def config(self):
        return {"prompt": self.template, "prompt_source": self.source, "query_tokens": QUERY_TOKENS,
                "model": self.ctx.encoder.identity.get("model"), "revision": self.ctx.encoder.identity.get("revision")}

    def protocol(self, config):
        return {"text": config["prompt"],
                "notes": [f"template: {config['prompt_source']}",
                          f"query = normalise(text + image), text cut at {QUERY_TOKENS} tokens",
                          f"model {config['model']} at {config['revision']}"]}


@register_method("bge-vl-large")
class BGEVLLarge(BGEVL):
    description = "BGE-VL with BAAI/BGE-VL-large (CLIP ViT-L/14)"
    display_order = 61
    default_model = "BAAI/BGE-VL-large"
