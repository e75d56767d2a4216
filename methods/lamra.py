"""LamRA-Ret (Liu et al., CVPR 2025, "LamRA: Large Multimodal Model as Your Advanced Retrieval Assistant";
Code-kunkun/LamRA, code-kunkun/LamRA-Ret on Qwen2-VL-7B): the composed query and each gallery image are
one forward pass of the model over a chat turn that ends in a one-word summary request, read at the
token before the assistant's ``<emb>``. It brings its own model (the ``qwen2-vl`` encoder kind; the
repository's Qwen2VLRetForConditionalGeneration is not run: what it computes is computed there).

As eval/eval_zeroshot/eval_circo.py and eval_genecis.py build them (dataset/datasets_circo.py,
datasets_genecis.py: construct_messages, get_instance; collators/eval_collator.py), each message through
Qwen2-VL-Instruct's chat template with ``add_generation_prompt=True``:

- query: the user turn [the reference image, ``{instruction} {text}``, ``\\nSummarize above image and
  sentence in one word: ``], the assistant turn ``<emb>.``; the instruction "I'm looking for a similar
  everyday image with the described changes." -- for GeneCIS focus_attribute "I'm looking for an image
  with the same attributes as described." (the other three GeneCIS tasks, focus_object included, use the
  first, as the official code does);
- candidate: [the image, ``\\nSummarize above image in one word: ``], ``<emb>.``;
- the text: CIRCO's relative caption, GeneCIS's condition; CIRCO keeps the reference in the gallery and
  GeneCIS ranks each query's own gallery, as their protocols do.

LamRA-Ret was trained on M-BEIR, which holds CIRR and FashionIQ: the official code has no zero-shot path
for them (nor for any other dataset). Elsewhere the CIRCO path is used with the split's caption prompt
under that dataset's own protocol (CIRR removes the reference) -- recorded in each result. The official
GeneCIS attribute tasks read crops LamRA saved as JPEG files (their making is not in the repository);
here they are the crops the official GeneCIS code makes, in memory.
"""

from __future__ import annotations

from cirbench.contracts.method import EncoderView, Method, Option, register_method
from cirbench.protocol.scoring import normalize

from ._shared import caption_prompts, model_options, model_spec

CHANGES = "I'm looking for a similar everyday image with the described changes."
ATTRIBUTES = "I'm looking for an image with the same attributes as described."
QUERY_ASK = "\nSummarize above image and sentence in one word: "
CANDIDATE_ASK = "\nSummarize above image in one word: "
OFFICIAL_DATASETS = ("circo", "genecis")


def chat(*user_texts: str) -> str:
    """Qwen2-VL-Instruct's chat template over LamRA's messages: the default system turn, the user turn
    (the image, then the texts), the assistant's ``<emb>.``, and the generation prompt."""
    return ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
            "<|vision_start|><|image_pad|><|vision_end|>" + "".join(user_texts) + "<|im_end|>\n"
            "<|im_start|>assistant\n<emb>.<|im_end|>\n<|im_start|>assistant\n")


def query_prompt(text: str, instruction: str = CHANGES) -> str:
    return chat(f"{instruction} {text}", QUERY_ASK)


def candidate_prompt() -> str:
    return chat(CANDIDATE_ASK)


def instruction_for(split) -> str:
    """datasets_genecis.py: the attribute instruction only where the images' folder says focus_attribute."""
    return ATTRIBUTES if (split.dataset, split.split) == ("genecis", "focus_attribute") else CHANGES


@register_method("lamra", aliases=("lamra-ret",))
class LamRA(Method):
    description = "LamRA-Ret: a Qwen2-VL's embedding at the token before <emb> of image and instruction (CVPR 2025)"
    external_weights = True
    display_order = 65
    default_model = "code-kunkun/LamRA-Ret"
    default_processor = "Qwen/Qwen2-VL-7B-Instruct"
    options = {
        **model_options("Qwen2-VL", "code-kunkun/LamRA-Ret"),
        "processor": Option(str, None, "the repository or folder of the processor (tokenizer and image processor), "
                                       "with an optional @REVISION (default: Qwen/Qwen2-VL-7B-Instruct, as the "
                                       "official evaluation loads it)", in_setting=False),
    }

    @classmethod
    def own_encoder(cls, options, checkpoint):
        return model_spec(cls, "qwen2-vl", options, f"processor={options.get('processor') or cls.default_processor}")

    def prepare(self, split):
        self.instruction = instruction_for(split)
        self.path = ("official" if split.dataset in OFFICIAL_DATASETS else
                     f"CIRCO's path with the split's caption prompt (the official code has no zero-shot path for "
                     f"{split.dataset})")

    def encoder_view_for(self, split):
        return EncoderView("prompt:" + candidate_prompt())

    def _texts(self, batch) -> list[str]:
        if self.split.dataset in OFFICIAL_DATASETS:
            return list(batch.texts)  # the relative caption / the condition, as the annotation has it
        return caption_prompts(batch)

    def encode_queries(self, batch):
        prompts = [query_prompt(t, self.instruction) for t in self._texts(batch)]
        states = self.ctx.encoder.embed(prompts, list(batch.reference_pixels()))
        return normalize(states).to(batch.reference_features.device)

    def config(self):
        identity = self.ctx.encoder.identity
        return {"instruction": self.instruction, "query_prompt": query_prompt("{text}", self.instruction),
                "candidate_prompt": candidate_prompt(), "path": self.path, "model": identity.get("model"),
                "revision": identity.get("revision"), "processor": identity.get("processor"),
                "processor_revision": identity.get("processor_revision"),
                "pixels": [identity.get("min_pixels"), identity.get("max_pixels")]}

    def protocol(self, config):
        return {"text": config["query_prompt"],
                "notes": [config["path"], f"instruction: {config['instruction']!r}",
                          f"candidate: {config['candidate_prompt']!r}",
                          f"images resized to multiples of 28 within {config['pixels'][0]}..{config['pixels'][1]} pixels",
                          f"model {config['model']} at {config['revision']}; processor {config['processor']} at "
                          f"{config['processor_revision']}"]}
