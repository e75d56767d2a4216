"""Where the LLM-based methods get their texts: the annotation fields the authors released, or local
generation (cirbench.generation), stored in the method's artefact store.

``texts``: "auto" (released fields when every query of the split has them, else generate), "released"
(the fields, or a clear error), "generate" (always generate locally).
"""

from __future__ import annotations

from pathlib import Path

from .errors import MissingResourceError, UsageError
from .method import Option

TEXT_SOURCES = ("auto", "released", "generate")


def text_options(captioner: str, llm: str, prompts_help: str) -> dict[str, Option]:
    """The options every LLM-based method shares."""
    return {
        "texts": Option(str, "auto", "where the texts come from: auto, released (annotation fields) or generate",
                        TEXT_SOURCES),
        "captioner": Option(str, captioner, "image-to-text model (Hugging Face id or folder) for local captions"),
        "captioner_revision": Option(str, None, "captioner revision (commit, tag)"),
        "llm": Option(str, llm, "instruction language model (Hugging Face id or folder) for local rewrites"),
        "llm_revision": Option(str, None, "language model revision (commit, tag)"),
        "prompts_file": Option(str, None, prompts_help),
        "max_new_tokens": Option(int, None, "the language model's generation budget (default: the method's)"),
        "seed": Option(int, 0, "seed of sampled decoding"),
        "batch_size": Option(int, 8, "generation batch size"),
    }


def has_fields(split, names: list[str]) -> bool:
    return all(n in split.query_fields for n in names)


def choose_source(method, split, fields: list[str]) -> str:
    """'released' or 'generate' for this split, per the ``texts`` option; a MissingResourceError when the
    released texts are asked for and absent."""
    mode = method.option("texts")
    present = has_fields(split, fields)
    if mode == "released" and not present:
        raise MissingResourceError(
            f"{method.method_name} needs the released texts {', '.join(fields)} in {split.dataset}:{split.split}'s "
            "annotation file, and it does not hold them (see the README for the released files, or use "
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
    """The relative caption as these methods' code joins FashionIQ's two: "{c1} and {c2}", each stripped."""
    captions = batch.fields[i].get("captions") if hasattr(batch.fields[i], "get") else None
    if isinstance(captions, (list, tuple)) and len(captions) >= 2 and all(isinstance(c, str) for c in captions):
        return f"{captions[0].strip('.?, ')} and {captions[1].strip('.?, ')}"
    return batch.texts[i]


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
        from .generation import Captioner

        if self._captioner is None:
            o = self.method.option
            self._captioner = Captioner(o("captioner"), o("captioner_revision"), self.device, self.method.ctx.progress)
        return self._captioner

    def llm(self):
        from .generation import Rewriter

        if self._llm is None:
            o = self.method.option
            self._llm = Rewriter(o("llm"), o("llm_revision"), self.device, self.method.ctx.progress)
        return self._llm

    def check(self) -> None:
        """Load both models now, so a missing one fails the split before any work (one line)."""
        self.captioner()
        self.llm()

    def image_keys(self, images) -> list[str]:
        from .content_keys import ContentKeys

        keys = ContentKeys(self.method.ctx.cache_dir).keys(images)
        missing = [str(im) for im, k in zip(images, keys) if k is None]
        if missing:
            raise UsageError(f"cannot caption {missing[0]}: the file is missing")
        return keys

    def captions(self, images, prompt: str | None, decoding) -> list[list[str]]:
        from .images import load_rgb

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


def prepare_caption_rewrites(method, split) -> str:
    """The text source of a method with n captions and n rewrites per query (LDRE, SEIZE); for local
    generation the prompts file and both models are checked now, before any work."""
    from .generation import official_prompt

    source = choose_source(method, split, [method.option("captions_field"), method.option("rewrites_field")])
    method.reasoning_prompts = None
    if source == "generate":
        path = require_prompts_file(method, "the official src/reasoning_and_editing.py, whose sys_prompt and "
                                            "usr_prompt are used")
        method.reasoning_prompts = (path, official_prompt(path, "sys_prompt"), official_prompt(path, "usr_prompt"))
        method.local.check()
    return source


def caption_rewrite_config(method) -> dict:
    """Where an LDRE-style method's texts came from, for its result record."""
    if method.source == "released":
        return {"texts": "released", "captions_field": method.option("captions_field"),
                "rewrites_field": method.option("rewrites_field")}
    path, system, user = method.reasoning_prompts
    return {"texts": "generate", "captioner": method.option("captioner"),
            "captioner_revision": method.local.captioner().revision, "llm": method.option("llm"),
            "llm_revision": method.local.llm().revision, "seed": method.option("seed"), "prompts_file": path.name,
            "prompts_sha256": prompt_digest(system + "\n" + user)}


def prompt_digest(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def caption_rewrite_sets(method, batch, n: int) -> tuple[list[list[str]], list[list[str]]]:
    """n captions and n rewrites per query (LDRE and SEIZE): the released fields, or generated locally --
    n sampled captions of the reference, each rewritten by the LLM with the official script's prompt."""
    from .generation import Decoding

    if method.source == "released":
        cap_f, rew_f = method.option("captions_field"), method.option("rewrites_field")
        where = f"{batch.split.dataset}:{batch.split.split}"
        captions = [field_list(f, cap_f, n, f"{where} query {q}") for q, f in zip(batch.ids, batch.fields)]
        rewrites = [field_list(f, rew_f, n, f"{where} query {q}") for q, f in zip(batch.ids, batch.fields)]
        return captions, rewrites
    path, system, user = method.reasoning_prompts
    # sampled captions as the official dense caption generator (nucleus sampling, top_p 0.9, 15 of them)
    captions = method.local.captions(batch.reference_images, None, Decoding(
        max_new_tokens=30, sample=True, top_p=0.9, n=n, seed=method.option("seed")))
    conversations, owners = [], []
    for i, caps in enumerate(captions):
        rel = relative_text(batch, i)
        for cap in caps:
            conversations.append([{"role": "system", "content": system},
                                  {"role": "user", "content": user.format(cap, rel)}])
            owners.append(i)
    decoding = Decoding(max_new_tokens=method.option("max_new_tokens") or 64)
    prompt_id = {"file": path.name, "system": system, "user": user}
    answers = [a.strip("\n") for a in method.local.complete(conversations, prompt_id, decoding)]
    rewrites: list[list[str]] = [[] for _ in captions]
    for i, text in zip(owners, answers):
        rewrites[i].append(text)
    return captions, rewrites
