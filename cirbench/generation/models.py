"""Local text generation for the training-free LLM methods (CIReVL, LDRE, SEIZE): captions of the
reference images from an image-to-text model and rewrites from an instruction LLM, through Hugging
Face transformers (``pip install -e ".[llm]"``).

Every generated text goes to the method's artefact store keyed by the model id and revision, the
prompt, the decoding settings and the input (an image's content key, or a caption and an instruction),
so generation runs once and a rerun reads the same texts back. Decoding is deterministic by default
(greedy, or sampling seeded per input, so a text does not depend on what else was in its batch).

The papers' prompts are used verbatim, read from the official code the user has (``prompts_file``):
cirbench does not ship third-party prompt texts. :func:`official_prompt` reads a string assigned in
such a file without running it.
"""

from __future__ import annotations

import ast
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from cirbench.errors import MissingResourceError, UsageError
from cirbench.util.hub import load_pretrained, revision_of  # noqa: F401  (re-exported)

EXTRA_HINT = 'pip install -e ".[llm]"'


def require_transformers():
    try:
        import transformers
    except ImportError:
        raise MissingResourceError("generating captions and rewrites needs Hugging Face transformers: "
                                   f"{EXTRA_HINT} (or give the released texts; see docs/methods.md)") from None
    transformers.utils.logging.disable_progress_bar()  # cirbench shows its own progress
    transformers.utils.logging.set_verbosity_error()
    return transformers


def official_prompt(path, name: str) -> str:
    """The string assigned to ``name`` in an official Python file (the first assignment), read with ast:
    a string literal, or the template of ``"...".format(...)`` (its {} are filled later)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise MissingResourceError(f"the official prompt file {path} does not exist")
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (SyntaxError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: not a readable Python file ({exc})") from None
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Assign):
            continue
        names = [t.id for t in node.targets if isinstance(t, ast.Name)]
        found += names
        if name not in names:
            continue
        value = node.value
        if isinstance(value, ast.Constant) and isinstance(value.value, str):
            return value.value
        if (isinstance(value, ast.Call) and isinstance(value.func, ast.Attribute) and value.func.attr == "format"
                and isinstance(value.func.value, ast.Constant) and isinstance(value.func.value.value, str)):
            return value.func.value.value
    raise UsageError(f"{path} assigns no string to {name!r} (strings assigned there: "
                     f"{', '.join(sorted(set(found))[:20]) or 'none'})")


def _seed_for(seed: int, key: str) -> int:
    return int(hashlib.sha1(f"{seed}|{key}".encode()).hexdigest()[:8], 16)


@dataclass
class Decoding:
    """Generation settings (recorded in every artefact key)."""

    max_new_tokens: int = 30
    num_beams: int = 1
    sample: bool = False
    top_p: float = 1.0
    temperature: float = 1.0
    n: int = 1
    seed: int = 0
    stop: tuple[str, ...] = field(default_factory=tuple)

    def key(self) -> dict:
        return {"max_new_tokens": self.max_new_tokens, "num_beams": self.num_beams, "sample": self.sample,
                "top_p": self.top_p, "temperature": self.temperature, "n": self.n,
                "seed": self.seed if self.sample else None, "stop": list(self.stop)}

    def kwargs(self) -> dict:
        out = {"max_new_tokens": self.max_new_tokens, "num_beams": self.num_beams, "do_sample": self.sample,
               "num_return_sequences": self.n}
        if self.sample:
            out.update(top_p=self.top_p, temperature=self.temperature)
        return out


class Captioner:
    """Any image-to-text model transformers loads (BLIP-2 by default, as the papers)."""

    def __init__(self, model_id: str, revision: str | None = None, device: str = "cpu", progress=None):
        transformers = require_transformers()
        self.model_id, self.device, self.progress = model_id, device, progress
        loaders = [getattr(transformers, n) for n in ("AutoModelForVision2Seq", "AutoModelForImageTextToText")
                   if hasattr(transformers, n)]
        self.processor = load_pretrained([transformers.AutoProcessor], model_id, revision, "captioner's processor")
        self.model = load_pretrained(loaders, model_id, revision, "captioner").to(device).eval()
        self.revision = revision_of(self.model, model_id)

    def producer(self, prompt: str | None, decoding: Decoding) -> dict:
        return {"task": "caption", "model": self.model_id, "revision": self.revision, "prompt": prompt,
                "decoding": decoding.key()}

    def _decode(self, ids) -> list[str]:
        return [t.strip() for t in self.processor.batch_decode(ids, skip_special_tokens=True)]

    def caption(self, images: list, keys: list[str], prompt: str | None, decoding: Decoding,
                batch_size: int = 8) -> list[list[str]]:
        """n captions per image (PIL images; keys identify them for the seeds)."""
        import torch

        out: list[list[str]] = []
        step = 1 if decoding.sample else batch_size  # sampled: one image at a time, seeded by its key
        task = self.progress.task(f"caption with {self.model_id}", total=len(images)) if self.progress else None
        for i in range(0, len(images), step):
            chunk = images[i:i + step]
            if decoding.sample:
                torch.manual_seed(_seed_for(decoding.seed, keys[i]))
            # an empty prompt rather than none: processors then still insert the image tokens (transformers 4.4x)
            # n captions: each image n times in the batch rather than num_return_sequences, which some
            # versions' BLIP-2 generate mishandles
            rows = [image for image in chunk for _ in range(decoding.n)]
            args = {"images": rows, "text": [prompt or ""] * len(rows), "return_tensors": "pt"}
            inputs = self.processor(**args).to(self.device)
            with torch.no_grad():
                ids = self.model.generate(**inputs, **{**decoding.kwargs(), "num_return_sequences": 1})
            if not getattr(self.model.config, "is_encoder_decoder", False) and "input_ids" in inputs \
                    and ids.shape[1] > inputs["input_ids"].shape[1] \
                    and torch.equal(ids[:, :inputs["input_ids"].shape[1]], inputs["input_ids"]):
                ids = ids[:, inputs["input_ids"].shape[1]:]  # decoder-only models echo their prompt
            texts = self._decode(ids)
            for j in range(len(chunk)):
                out.append(texts[j * decoding.n:(j + 1) * decoding.n])
            if task:
                task.advance(len(chunk))
        if task:
            task.done()
        return out


class Rewriter:
    """An instruction LLM (AutoModelForCausalLM); chat messages go through its chat template when it has one."""

    def __init__(self, model_id: str, revision: str | None = None, device: str = "cpu", progress=None):
        transformers = require_transformers()
        self.model_id, self.device, self.progress = model_id, device, progress
        self.tokenizer = load_pretrained([transformers.AutoTokenizer], model_id, revision, "language model's tokenizer")
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = load_pretrained([transformers.AutoModelForCausalLM], model_id, revision, "language model")
        self.model = self.model.to(device).eval()
        self.revision = revision_of(self.model, model_id)

    def producer(self, prompt: dict, decoding: Decoding) -> dict:
        return {"task": "rewrite", "model": self.model_id, "revision": self.revision, "prompt": prompt,
                "decoding": decoding.key()}

    def _text(self, messages: list[dict]) -> str:
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return "\n".join(m["content"] for m in messages) + "\n"

    def complete(self, conversations: list[list[dict]], keys: list[str], decoding: Decoding,
                 batch_size: int = 8) -> list[str]:
        """One completion per conversation (a list of {"role", "content"} messages)."""
        import torch

        out: list[str] = []
        step = 1 if decoding.sample else batch_size
        task = self.progress.task(f"rewrite with {self.model_id}", total=len(conversations)) if self.progress else None
        for i in range(0, len(conversations), step):
            chunk = [self._text(c) for c in conversations[i:i + step]]
            if decoding.sample:
                torch.manual_seed(_seed_for(decoding.seed, keys[i]))
            inputs = self.tokenizer(chunk, return_tensors="pt", padding=True).to(self.device)
            inputs.pop("token_type_ids", None)  # some tokenizers emit them; causal LMs' generate rejects them
            with torch.no_grad():
                ids = self.model.generate(**inputs, **decoding.kwargs(), pad_token_id=self.tokenizer.pad_token_id)
            ids = ids[:, inputs["input_ids"].shape[1]:]
            for text in self.tokenizer.batch_decode(ids, skip_special_tokens=True):
                for stop in decoding.stop:  # the API's stop sequences
                    text = text.split(stop)[0]
                out.append(text)
            if task:
                task.advance(len(chunk))
        if task:
            task.done()
        return out
