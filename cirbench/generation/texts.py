"""Where the LLM-based methods get their texts: the annotation fields the authors released, or local
generation (cirbench.generation), stored in the method's artefact store.

``texts``: "auto" (released fields when every query of the split has them, else generate), "released"
(the fields, or a clear error), "generate" (always generate locally).
"""

from __future__ import annotations

from pathlib import Path

from cirbench.errors import MissingResourceError, UsageError
from cirbench.contracts.method import Method, Option
from cirbench.contracts.split import CAPTION_STRIP, relative_captions

TEXT_SOURCES = ("auto", "released", "generate")
# the local instruction model used when no --option METHOD.llm is given (the papers used OpenAI's API)
DEFAULT_LLM = "Qwen/Qwen2.5-1.5B-Instruct"


def text_options(captioner: str, llm: str, prompts_help: str) -> dict[str, Option]:
    """The options every LLM-based method shares."""
    return {
        "texts": Option(str, "auto", "where the texts come from: auto, released (annotation fields) or generate",
                        TEXT_SOURCES),
        "captioner": Option(str, captioner, "image-to-text model (Hugging Face id or folder) for local captions"),
        "captioner_revision": Option(str, None, "captioner revision (commit, tag)"),
        "llm": Option(str, llm, "instruction language model (Hugging Face id or folder) for local rewrites"),
        "llm_revision": Option(str, None, "language model revision (commit, tag)"),
        "prompts_file": Option(str, None, prompts_help, in_setting=False),  # the official prompts, recorded
        "max_new_tokens": Option(int, None, "the language model's generation budget (default: the method's)"),
        "seed": Option(int, 0, "seed of sampled decoding"),
        "batch_size": Option(int, 8, "generation batch size", in_setting=False),
    }


def has_fields(split, names: list[str]) -> bool:
    return all(n in split.query_fields for n in names)


def choose_source(method, split, fields: list[str]) -> str:
    """'released' or 'generate' for this split, per the ``texts`` option; a MissingResourceError when the
    released texts are asked for and absent."""
    mode = method.option("texts")
    present = has_fields(split, fields)
    partial = [f for f in fields if f in split.partial_fields]
    if partial and mode != "generate":
        raise MissingResourceError(
            f"{method.method_name} reads the released texts {', '.join(fields)}, and {split.dataset}:{split.split}'s "
            f"annotations carry {partial[0]!r} for some queries only (query {split.partial_fields[partial[0]]!r} "
            f"is the first without it): complete the file, or use --option {method.method_name}.texts=generate")
    if mode == "released" and not present:
        raise MissingResourceError(
            f"{method.method_name} needs the released texts {', '.join(fields)} in {split.dataset}:{split.split}'s "
            "annotation file, and it does not hold them (see docs/methods.md for the released files, or use "
            f"--option {method.method_name}.texts=generate)")
    if mode == "released" or (mode == "auto" and present):
        return "released"
    return "generate"


def require_prompts_file(method, what: str) -> Path:
    path = method.option("prompts_file")
    if not path:
        raise MissingResourceError(
            f"{method.method_name} generates texts locally with its paper's prompts, read from the official code: "
            f"pass --option {method.method_name}.prompts_file=PATH ({what}); or give the released texts")
    return Path(path)


def field_list(fields, name: str, n: int, where: str) -> list[str]:
    values = fields.get(name)
    if not isinstance(values, list) or len(values) < n or not all(isinstance(v, str) for v in values[:n]):
        raise UsageError(f"{where}: field {name!r} must hold a list of at least {n} strings")
    return values[:n]


def field_text(fields, name: str, where: str) -> str:
    value = fields.get(name)
    if not isinstance(value, str):
        raise UsageError(f"{where}: field {name!r} must hold a string")
    return value


def relative_text(batch, i: int) -> str:
    """The relative caption as CIReVL's code joins FashionIQ's two: "{c1} and {c2}", each stripped of '.?, '."""
    captions = relative_captions(batch.fields[i], CAPTION_STRIP)
    if captions:
        return f"{captions[0]} and {captions[1]}"
    return batch.texts[i]


def concatenated_text(batch, i: int) -> str:
    """The relative caption as SEIZE's FashionIQ reasoner joins the two: ``rel_caps[0] + rel_caps[1]``, no
    separator and no stripping (src/LLM-based_editing_reasoner_fashioniq.py)."""
    captions = relative_captions(batch.fields[i])
    return captions[0] + captions[1] if captions else batch.texts[i]


class LocalTexts:
    """Captions and rewrites generated locally and kept in a method's artefact store."""

    def __init__(self, method):
        self.method = method
        self._captioner = None
        self._llm = None

    @property
    def device(self):
        return self.method.ctx.encoder.device

    def captioner(self):
        from cirbench.generation.models import Captioner

        if self._captioner is None:
            o = self.method.option
            self._captioner = Captioner(o("captioner"), o("captioner_revision"), self.device, self.method.ctx.progress)
        return self._captioner

    def llm(self):
        from cirbench.generation.models import Rewriter

        if self._llm is None:
            o = self.method.option
            self._llm = Rewriter(o("llm"), o("llm_revision"), self.device, self.method.ctx.progress)
        return self._llm

    def check(self) -> None:
        """Load both models now, so a missing one fails the split before any work (one line)."""
        self.captioner()
        self.llm()

    def image_keys(self, images) -> list[str]:
        from cirbench.storage.content_keys import ContentKeys

        keys = ContentKeys(self.method.ctx.cache_dir).keys(images)
        missing = [str(im) for im, k in zip(images, keys) if k is None]
        if missing:
            raise UsageError(f"cannot caption {missing[0]}: the file is missing")
        return keys

    def captions(self, images, prompt: str | None, decoding) -> list[list[str]]:
        from cirbench.protocol.images import load_rgb

        captioner = self.captioner()
        keys = self.image_keys(images)
        producer = captioner.producer(prompt, decoding)
        by_key = dict(zip(keys, images))

        def make(todo):
            return captioner.caption([load_rgb(by_key[k]) for k in todo], todo, prompt, decoding,
                                     self.method.option("batch_size"))

        return self.method.ctx.artefacts.get_or_make(producer, keys, make)

    def complete(self, conversations: list[list[dict]], prompt_id: dict, decoding) -> list[str]:
        """Completions of chat conversations, stored by the conversation's content."""
        llm = self.llm()
        producer = llm.producer(prompt_id, decoding)
        keys = [repr(c) for c in conversations]
        by_key = dict(zip(keys, conversations))

        def make(todo):
            return llm.complete([by_key[k] for k in todo], todo, decoding, self.method.option("batch_size"))

        return self.method.ctx.artefacts.get_or_make(producer, keys, make)


def prompt_digest(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


# LAVIS 1.0.2 (the version LDRE's and SEIZE's requirements pin), blip2_opt caption_coco_opt6.7b: the model
# config's prompt "a photo of", and generate(use_nucleus_sampling=True, num_captions=15) samples with
# num_beams 1, top_p 0.9, temperature 1, max_new_tokens 30, the prompt cut from the output
OPT_CAPTION_PROMPT = "a photo of"
REWRITE_DECODINGS = ("sample", "greedy")


class CaptionRewriteMethod(Method):
    """What LDRE and SEIZE share: n captions and n rewrites per query, released in the annotation files
    or generated locally as their official scripts do, scored against the gallery.

    Local generation: n captions of the reference sampled from a BLIP-2 OPT captioner prompted with
    "a photo of" (LAVIS 1.0.2), each rewritten once by the LLM with the official script's sys_prompt and
    usr_prompt. The scripts call OpenAI's chat API with its default temperature 1 (sampling), so the
    rewrites are sampled too by default, seeded per conversation (``seed``); ``rewrite_decoding=greedy``
    is the deterministic variant."""

    external_weights = True  # needs released texts or local models: `--method all` skips it otherwise
    scoring = "scores"
    default_transform = "targetpad"  # targetpad_transform(1.25, 224) in both official codebases
    options = {
        **text_options("Salesforce/blip2-opt-6.7b-coco", DEFAULT_LLM,
                       "the official reasoning script (LDRE src/reasoning_and_editing.py, SEIZE "
                       "src/LLM-based_editing_reasoner_*.py): its sys_prompt and usr_prompt (for local generation)"),
        "captions_field": Option(str, "multi_caption_opt", "the annotation field with each query's released captions"),
        "rewrites_field": Option(str, "multi_gpt-3.5_opt", "the annotation field with each query's released rewrites"),
        "n": Option(int, 15, "captions (and rewrites) per query"),
        "caption_prompt": Option(str, OPT_CAPTION_PROMPT, "the captioner's text prompt (LAVIS's BLIP-2 OPT "
                                                          "caption config: 'a photo of')"),
        "rewrite_decoding": Option(str, "sample", "the LLM's decoding: 'sample' (temperature 1, as the chat API's "
                                                  "default the official scripts used; seeded) or 'greedy'",
                                   REWRITE_DECODINGS),
    }

    def __init__(self, ctx):
        super().__init__(ctx)
        self.local = LocalTexts(self)
        self.reasoning_prompts = None

    def relative_text(self, batch, i: int) -> str:
        """The instruction the reasoner sees (FashionIQ: the two captions joined as the official script)."""
        return concatenated_text(batch, i)

    def rewrites_field(self, split) -> str:
        """The annotation field read for the released rewrites on this split."""
        return self.option("rewrites_field")

    def prepare(self, split):
        """The text source of this split; for local generation the prompts file and both models are
        checked now, before any work."""
        from cirbench.generation.models import official_prompt

        self.rewrites_from = self.rewrites_field(split)
        self.source = choose_source(self, split, [self.option("captions_field"), self.rewrites_from])
        self.reasoning_prompts = None
        if self.source == "generate":
            path = require_prompts_file(self, "the official reasoning script, whose sys_prompt and usr_prompt "
                                              "are used")
            self.reasoning_prompts = (path, official_prompt(path, "sys_prompt"), official_prompt(path, "usr_prompt"))
            self.local.check()

    def caption_decoding(self):
        from cirbench.generation.models import Decoding

        return Decoding(max_new_tokens=30, sample=True, top_p=0.9, n=self.option("n"), seed=self.option("seed"))

    def rewrite_decoding(self):
        from cirbench.generation.models import Decoding

        budget = self.option("max_new_tokens") or 64
        if self.option("rewrite_decoding") == "greedy":
            return Decoding(max_new_tokens=budget)
        return Decoding(max_new_tokens=budget, sample=True, top_p=1.0, temperature=1.0, seed=self.option("seed"))

    def texts(self, batch) -> tuple[list[list[str]], list[list[str]]]:
        """n captions and n rewrites per query: the released fields, or generated locally."""
        n = self.option("n")
        if self.source == "released":
            cap_f, rew_f = self.option("captions_field"), self.rewrites_from
            where = f"{batch.split.dataset}:{batch.split.split}"
            captions = [field_list(f, cap_f, n, f"{where} query {q}") for q, f in zip(batch.ids, batch.fields)]
            rewrites = [field_list(f, rew_f, n, f"{where} query {q}") for q, f in zip(batch.ids, batch.fields)]
            return captions, rewrites
        path, system, user = self.reasoning_prompts
        captions = self.local.captions(batch.reference_images, self.option("caption_prompt"), self.caption_decoding())
        conversations, owners = [], []
        for i, caps in enumerate(captions):
            rel = self.relative_text(batch, i)
            for cap in caps:
                conversations.append([{"role": "system", "content": system},
                                      {"role": "user", "content": user.format(cap, rel)}])
                owners.append(i)
        prompt_id = {"file": path.name, "system": system, "user": user}
        answers = [a.strip("\n") for a in self.local.complete(conversations, prompt_id, self.rewrite_decoding())]
        rewrites: list[list[str]] = [[] for _ in captions]
        for i, text in zip(owners, answers):
            rewrites[i].append(text)
        return captions, rewrites

    def features(self, batch, gallery):
        """(rewrites, captions, x): n x Q x D raw text features of the queries' rewrites and captions, and
        the normalised G x D gallery, on the batch's device."""
        from cirbench.protocol.scoring import normalize

        n = self.option("n")
        device = batch.reference_features.device
        captions, rewrites = self.texts(batch)
        return (self._text_features(rewrites, n, device), self._text_features(captions, n, device),
                normalize(gallery.features.to(device)))

    def _text_features(self, texts: list[list[str]], n: int, device):
        """n x Q x D raw CLIP text features of the i-th text of each query."""
        flat = [t[i] for i in range(n) for t in texts]
        return self.ctx.text_features(flat).to(device).float().view(n, len(texts), -1)

    def config(self) -> dict:
        """Where the texts came from, for the result record."""
        out = {"n": self.option("n")}
        if self.source == "released":
            return {**out, "texts": "released", "captions_field": self.option("captions_field"),
                    "rewrites_field": self.rewrites_from}
        path, system, user = self.reasoning_prompts
        return {**out, "texts": "generate", "captioner": self.option("captioner"),
                "captioner_revision": self.local.captioner().revision, "caption_prompt": self.option("caption_prompt"),
                "caption_decoding": self.caption_decoding().key(), "llm": self.option("llm"),
                "llm_revision": self.local.llm().revision, "rewrite_decoding": self.rewrite_decoding().key(),
                "prompts_file": path.name, "prompts_sha256": prompt_digest(system + "\n" + user)}
