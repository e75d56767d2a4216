"""CIReVL (Karthik et al., ICLR 2024, "Vision-by-Language for Training-Free Compositional Image
Retrieval"): caption the reference image, let a language model rewrite the caption as the instruction
says, retrieve with the CLIP text feature of the rewrite (ExplainableML/Vision_by_Language).

Protocol of src/main.py and src/utils.generate_predictions: one BLIP-2 caption (blip2_t5,
pretrain_flant5xxl, with the prompt ``blip_prompt`` of src/prompts.py, beam search); the LLM gets
``prompt + "\\nImage Content: " + caption + "\\nInstruction: " + relative caption`` (temperature 0, stop
at a blank line) and the rewrite is the text after "Edited Description:" on its line -- up to the next
colon, as the code's ``line.split(':')[1]`` -- falling back to the relative caption when empty or
absent; FashionIQ's relative caption is "{c1} and {c2}", each stripped of '.?, '. The query is the
normalised CLIP text feature of the rewrite -- on GeneCIS focus_attribute averaged with the normalised
reference image feature, as main.py does for that task only; images use TargetPad (the code's default
preprocessing).
The code's prompt per dataset: CIRR contextual_modifier_prompt, CIRCO structural_modifier_prompt,
FashionIQ structural_modifier_prompt_fashion, GeneCIS short_modifier_prompt (focus_object:
short_focus_object_modifier_prompt), otherwise simple_modifier_prompt.

Texts: the released annotation fields when every query has them (LDRE's and SEIZE's released CIRCO
and CIRR files carry the single BLIP-2 caption ``blip2_caption`` and its GPT-3.5 rewrite
``gpt-3.5-turbo``: ``--option cirevl.rewrite_field=...`` names another), else local generation with
transformers: ``--option cirevl.prompts_file=Vision_by_Language/src/prompts.py`` (the prompts are read
from the official file, never shipped), ``captioner``/``llm`` name the models (any image-to-text model,
BLIP-2 by default; any instruction LLM).

Backbone: the paper's ViT-L/14 rows come from the official example_benchmark_runs.sh's ``--clip
ViT-L-14``, which main.py loads from open_clip with LAION-2B weights: ``--encoder
ViT-L-14:laion2b_s32b_b82k`` (``ViT-L/14`` with a slash would be OpenAI's).
"""

from __future__ import annotations

from cirbench.generation.texts import (DEFAULT_LLM, LocalTexts, choose_source, field_text, prompt_digest, relative_text,
                                require_prompts_file, text_options)
from cirbench.contracts.method import Method, Option, register_method
from cirbench.protocol.scoring import normalize
PROMPT_BY_DATASET = {"cirr": "contextual_modifier_prompt", "circo": "structural_modifier_prompt",
                     "fashioniq": "structural_modifier_prompt_fashion", "genecis": "short_modifier_prompt"}
DEFAULT_PROMPT = "simple_modifier_prompt"  # main.py's --llm_prompt default


def edited_description(response: str, fallback: str) -> str:
    """The official parse: the first line starting with "Edited Description:", its text up to the next
    colon, stripped; the relative caption when that is empty or no such line exists."""
    for line in response.split("\n"):
        if line.strip().startswith("Edited Description:"):
            description = line.split(":")[1].strip()
            return description if description else fallback
    return fallback


@register_method("cirevl")
class CIReVL(Method):
    description = "CIReVL: CLIP text feature of an LLM rewrite of the reference's BLIP-2 caption (training-free)"
    external_weights = True  # needs released texts or local models: `--method all` skips it otherwise
    default_transform = "targetpad"
    options = {
        **text_options("Salesforce/blip2-flan-t5-xxl", DEFAULT_LLM,
                       "the official src/prompts.py of ExplainableML/Vision_by_Language (for local generation)"),
        "rewrite_field": Option(str, "gpt-3.5-turbo", "the annotation field holding each query's released rewrite"),
        "llm_prompt": Option(str, None, "name of the LLM prompt in prompts_file (default: the code's per dataset)"),
        "blip_prompt": Option(str, "blip_prompt", "name of the captioning prompt in prompts_file"),
    }

    def __init__(self, ctx):
        super().__init__(ctx)
        self.local = LocalTexts(self)

    def prompt_name(self, split) -> str:
        if self.option("llm_prompt"):
            return self.option("llm_prompt")
        if split.dataset == "genecis" and split.split == "focus_object":
            return "short_focus_object_modifier_prompt"
        return PROMPT_BY_DATASET.get(split.dataset, DEFAULT_PROMPT)

    def prepare(self, split):
        from cirbench.generation.models import official_prompt

        self.source = choose_source(self, split, [self.option("rewrite_field")])
        self.prompts = None
        if self.source == "generate":
            path = require_prompts_file(self, "the official src/prompts.py")
            self.prompts = {"llm": (self.prompt_name(split), official_prompt(path, self.prompt_name(split))),
                            "blip": (self.option("blip_prompt"), official_prompt(path, self.option("blip_prompt")))}
            self.local.check()

    def rewrites(self, batch) -> list[str]:
        from cirbench.generation.models import Decoding

        if self.source == "released":
            name = self.option("rewrite_field")
            return [field_text(f, name, f"{batch.split.dataset}:{batch.split.split} query {q}")
                    for q, f in zip(batch.ids, batch.fields)]
        (llm_name, base), (_, blip) = self.prompts["llm"], self.prompts["blip"]
        captions = self.local.captions(batch.reference_images, blip, Decoding(max_new_tokens=30, num_beams=5))
        relative = [relative_text(batch, i) for i in range(len(batch))]
        conversations = [[{"role": "user", "content": base + "\n" + "Image Content: " + caps[0] + "\n"
                           + "Instruction: " + rel}] for caps, rel in zip(captions, relative)]
        decoding = Decoding(max_new_tokens=self.option("max_new_tokens") or 700, stop=("\n\n",))
        answers = self.local.complete(conversations, {"name": llm_name, "sha256": prompt_digest(base)}, decoding)
        return [edited_description(a, rel) for a, rel in zip(answers, relative)]

    def with_reference(self, split) -> bool:
        """GeneCIS focus_attribute: main.py averages the normalised text query with the normalised
        reference image feature (and normalises the average)."""
        return split.dataset == "genecis" and split.split == "focus_attribute"

    def encode_queries(self, batch):
        text = normalize(self.ctx.text_features(self.rewrites(batch)))
        if self.with_reference(batch.split):
            return (text + normalize(batch.reference_features.to(text.device))) / 2
        return text

    def config(self):
        out = {"texts": self.source}
        if self.with_reference(self.split):
            out["query"] = "normalise((normalise(text) + normalise(reference image)) / 2) (main.py, focus_attribute)"
        if self.source == "released":
            out["rewrite_field"] = self.option("rewrite_field")
        else:
            out.update(captioner=self.option("captioner"), captioner_revision=self.local.captioner().revision,
                       llm=self.option("llm"), llm_revision=self.local.llm().revision,
                       llm_prompt=self.prompts["llm"][0], llm_prompt_sha256=prompt_digest(self.prompts["llm"][1]),
                       blip_prompt=self.prompts["blip"][1])
        return out
