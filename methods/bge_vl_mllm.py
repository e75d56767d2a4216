"""BGE-VL-MLLM (MegaPairs, Zhou et al., ACL 2025; BAAI/BGE-VL-MLLM-S1 and -S2 on LLaVA-NeXT Mistral-7B):
the query is one forward pass over an instruction, the text and the reference image; each candidate image
one pass over a bare image prompt; the embedding is the final hidden state of the last token. It brings
its own model (the ``llava-next`` encoder kind; the hub's modeling_llavanext_for_embedding.py is not run:
what it computes -- LlavaNextForConditionalGeneration whose Mistral returns the final-norm hidden
states -- is computed here with transformers' own classes).

As the model's own ``prepare_text_input`` and ``data_process`` build them (the model card's usage):

- query: ``[INST] \\n <instruct> {instruction} <query>  {text} \\n <image> [/INST]`` with the model card's
  CIR instruction "Retrieve the target image that best meets the combined criteria by using both the
  provided image and the image retrieval instructions: ";
- candidate: ``[INST]  <image> [/INST]``;
- every image resized to 512 x 512 with PIL's default filter in its decoded mode, then converted to RGB,
  before the processor; transformers 4.45.2 (its pin) cut the tiles as 4.41 did but laid them out as today
  (the kind's ``tiles=4.45``);
- the embedding of the last token, normalised.

There is no official CIR evaluation code (MegaPairs issue #23): the texts are those BGE-VL's CLIP
evaluation uses (CIRCO's shared-concept template, FashionIQ ``{c1}, and {c2}``), the relative caption
elsewhere (CIRR has no official prompt: MegaPairs issue #34), the reference removed where the split's
protocol removes it -- all recorded in the results.
"""

from __future__ import annotations

from cirbench.contracts.method import EncoderView, Method, Option, register_method
from cirbench.protocol.prompts import fill
from cirbench.protocol.scoring import normalize

from ._shared import choose_template, model_options, model_spec
from .bge_vl import OFFICIAL_TEMPLATES

INSTRUCTION = ("Retrieve the target image that best meets the combined criteria by using both the provided image "
               "and the image retrieval instructions: ")
IMAGE_SIZE = 512  # data_process: Image.open(p).resize((512, 512)).convert("RGB")


def query_prompt(text: str, instruction: str = INSTRUCTION) -> str:
    """prepare_text_input(image, text, "query", instruction), step by step as written there."""
    prompt = f"[INST] \n <instruct> {instruction} <query> "
    prompt = f"{prompt} {text} \n"
    prompt = f"{prompt} <image>"
    return f"{prompt} [/INST]"


def candidate_prompt() -> str:
    """prepare_text_input(image, None, "candidate")."""
    return "[INST] " + " <image>" + " [/INST]"


@register_method("bge-vl-mllm", aliases=("mmret-mllm",))
class BGEVLMLLM(Method):
    description = "BGE-VL-MLLM: a LLaVA-NeXT's last-token embedding of instruction, text and image (MegaPairs)"
    external_weights = True
    display_order = 63
    default_model = "BAAI/BGE-VL-MLLM-S1"
    options = {
        **model_options("LLaVA-NeXT", "BAAI/BGE-VL-MLLM-S1; BAAI/BGE-VL-MLLM-S2"),
        "template": Option(str, None, "the query text template (default: BGE-VL's query files' per dataset)"),
    }

    @classmethod
    def own_encoder(cls, options, checkpoint):
        return model_spec(cls, "llava-next", options, f"tiles=4.45&resize={IMAGE_SIZE}")

    def prepare(self, split):
        self.template, self.source = choose_template(self, split, OFFICIAL_TEMPLATES, "BGE-VL's query file")

    def encoder_view_for(self, split):
        return EncoderView("prompt:" + candidate_prompt())

    def encode_queries(self, batch):
        texts = [fill(self.template, t, f) for t, f in zip(batch.texts, batch.fields)]
        states = self.ctx.encoder.embed([query_prompt(t) for t in texts], list(batch.reference_pixels()))
        return normalize(states).to(batch.reference_features.device)

    def config(self):
        identity = self.ctx.encoder.identity
        return {"prompt": self.template, "prompt_source": self.source, "instruction": INSTRUCTION,
                "query_prompt": query_prompt("{text}"), "candidate_prompt": candidate_prompt(),
                "image_size": IMAGE_SIZE, "tiles": identity.get("tiles"), "model": identity.get("model"),
                "revision": identity.get("revision")}

    def protocol(self, config):
        return {"text": config["prompt"],
                "notes": [f"text: {config['prompt_source']}", f"query: {config['query_prompt']!r}",
                          f"candidate: {config['candidate_prompt']!r}", f"images resized to {IMAGE_SIZE} x {IMAGE_SIZE}",
                          f"model {config['model']} at {config['revision']}"]}
