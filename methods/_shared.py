"""Helpers that several built-in methods share (not a method: the registry skips modules starting with
an underscore).

- The phi networks of SEARLE and LinCIR (the same shape and protocol): building and loading the
  released weights, the ``$`` pseudo-word prompt, the FashionIQ rule of both caption orders averaged.
- The relative caption as CLIP-only fusion methods (slerp, WeiCom) encode it.
"""

from __future__ import annotations

from cirbench.contracts.method import Method, Option
from cirbench.contracts.split import CAPTION_STRIP, DEFAULT_PROMPTS, relative_captions
from cirbench.protocol.prompts import fill_pseudo, split_pseudo, with_token
from cirbench.protocol.scoring import normalize
from cirbench.storage import checkpoints

SEARLE_PROMPT = "a photo of $ that {text}"
PSEUDO = "$"


def build_phi(sizes: list[tuple[int, int]]):
    """phi with the layer sizes [(in, out)] * 3 read from the weights; parameter names as released."""
    import torch.nn as nn

    (d_in, hidden), (_h1, hidden2), (_h2, out) = sizes

    class Phi(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = nn.Sequential(nn.Linear(d_in, hidden), nn.GELU(), nn.Dropout(0.5),
                                        nn.Linear(hidden, hidden2), nn.GELU(), nn.Dropout(0.5),
                                        nn.Linear(hidden2, out))

        def forward(self, x):
            return self.layers(x)

    return Phi()


def load_phi(path, encoder, what: str = "SEARLE/LinCIR phi"):
    from cirbench.errors import DataError

    ckpt = checkpoints.load(path)
    state = checkpoints.section(ckpt, "Phi", path)
    checkpoints.check_keys(state, {f"layers.{i}.{p}" for i in (0, 3, 6) for p in ("weight", "bias")}, path, what)
    sizes = [tuple(reversed(state[f"layers.{i}.weight"].shape)) for i in (0, 3, 6)]
    if sizes[0][0] != encoder.embed_dim or sizes[2][1] != encoder.token_width:
        raise DataError(f"{path}: this phi takes {sizes[0][0]}-d image features to {sizes[2][1]}-d token embeddings, "
                        f"but encoder {encoder.label!r} has {encoder.embed_dim}-d features and {encoder.token_width}-d "
                        "token embeddings (weights for another backbone?)")
    net = checkpoints.instantiate(lambda: build_phi(sizes), state, path)
    return net, ckpt


def searle_prompt(split_prompt: str, own: str = SEARLE_PROMPT) -> str:
    if split_prompt == DEFAULT_PROMPTS["pseudo"]:
        return own
    return with_token(split_prompt, "*", PSEUDO)


class PhiMethod(Method):
    """A released phi network on the pseudo-word ``$`` (SEARLE and LinCIR share the shape and protocol)."""

    external_weights = True
    takes_checkpoint = True
    every_occurrence = False  # inject at every "$" of the prompt (LinCIR's code) instead of the template's slot
    how_to_get = "download the released phi weights for this backbone"

    def __init__(self, ctx):
        super().__init__(ctx)
        self.path = None

    def prepare(self, split):
        path = checkpoints.locate(self.ctx, self.method_name, split, None, self.how_to_get)
        if path != self.path:
            self.net, ckpt = load_phi(path, self.ctx.encoder)
            self.net.to(self.ctx.encoder.device)
            self.path, self.checkpoint_info = path, checkpoints.describe(path, ckpt)
        self.template = searle_prompt(split.prompts["pseudo"])
        split_pseudo(self.template, PSEUDO)

    def _encode(self, prompts, prefixes, tokens):
        return self.ctx.encoder.encode_texts_with_pseudo(prompts, tokens, PSEUDO, prefixes,
                                                         every_occurrence=self.inject_everywhere)

    @property
    def inject_everywhere(self) -> bool:
        return self.every_occurrence

    def orders(self) -> list[str]:
        order = self.split.caption_order
        return ["natural", "official"] if order is None else [order]

    def encode_queries(self, batch):
        import torch

        with torch.no_grad():
            tokens = self.net(batch.reference_features.float())
            prompts, prefixes = batch.pseudo_prompts(self.template, PSEUDO)
            out = normalize(self._encode(prompts, prefixes, tokens))
            pairs = [(i, relative_captions(f, CAPTION_STRIP)) for i, f in enumerate(batch.fields)]
            pairs = [(i, c) for i, c in pairs if c is not None]
            if not pairs:
                return out
            # several relative captions: one prompt per order, features normalised and averaged
            rows = [i for i, _ in pairs]
            feats = []
            for order in self.orders():
                texts = [f"{a} and {b}" if order == "natural" else f"{b} and {a}" for _, (a, b) in pairs]
                filled = [fill_pseudo(self.template, PSEUDO, t, batch.fields[i]) for (i, _), t in zip(pairs, texts)]
                feats.append(normalize(self._encode([p for p, _ in filled], [x for _, x in filled], tokens[rows])))
            out[rows] = torch.stack(feats).mean(0)
            return out

    def config(self):
        rule = ("two relative captions: each stripped of '.?, ', "
                + ("both orders ('c1 and c2', 'c2 and c1') encoded, normalised and averaged"
                   if self.split.caption_order is None else f"order forced: {self.split.caption_order}")
                if "captions" in self.split.query_fields else "one text per query, in the template")
        return {"prompt": self.template, "caption_rule": rule, "checkpoint": self.checkpoint_info,
                "injection": "every $ of the prompt" if self.inject_everywhere else "the template's $"}

    def protocol(self, config):
        return {"text": config["prompt"], "notes": [config["caption_rule"], f"injection: {config['injection']}"]}


def caption_prompts(batch) -> list[str]:
    """The relative caption as a CLIP-only fusion method encodes it."""
    return batch.prompts("caption" if "caption" in batch.split.prompts else "text")


def caption_template(split) -> str:
    return split.prompts["caption" if "caption" in split.prompts else "text"]


def in_caption_order(template: str, split) -> str:
    """An official template that names FashionIQ's captions ``{c1}`` ... ``{c2}``, in the order
    ``--set caption_order`` forces (``official``: the second caption first, as Pic2Word's code), or as
    written when no order is forced."""
    import re

    if getattr(split, "caption_order", None) != "official":
        return template
    return re.sub(r"\{c([12])\}", lambda m: "{c2}" if m.group(1) == "1" else "{c1}", template)


def fetch_hint(dataset: str, file_name: str) -> str:
    """"`cirbench data get DATASET` fetches it, or " where the dataset's shipped manifest lists the file
    (a released file a method reads from the dataset folder), else ""."""
    from cirbench.acquire import manifests

    if dataset in manifests.shipped_names() and any(p.file_name == file_name
                                                    for p in manifests.shipped(dataset).parts):
        return f"`cirbench data get {dataset}` fetches it, or "
    return ""


def choose_template(method, split, official: dict, official_source: str) -> tuple[str, str]:
    """(query text template, where it comes from) for a method with an ``--option NAME.template``: the
    option, else the official template of the split's dataset (in the forced caption order), else the
    split's caption prompt."""
    chosen = method.option("template")
    if chosen:
        return chosen, "--option template"
    if split.dataset in official:
        forced = f"; caption order forced: {split.caption_order}" if getattr(split, "caption_order", None) else ""
        return in_caption_order(official[split.dataset], split), official_source + forced
    return caption_template(split), "no official template: the split's caption prompt"


def subset_groups(subsets) -> dict[tuple, list[int]]:
    """The rows of a batch grouped by their candidate subset (queries of one i-CIR instance share its
    database), so each subset's features are gathered and scored once."""
    groups: dict[tuple, list[int]] = {}
    for i, members in enumerate(subsets):
        groups.setdefault(tuple(members), []).append(i)
    return groups


def model_options(family: str, default: str, revision_default: str = "") -> dict:
    """The options of a method that brings its own model: the model (a hub repository or a local folder) and
    its hub revision. Neither is part of the method's setting: they name the encoder, so two models never
    share a row or a cache entry."""
    return {
        "model": Option(str, None, f"a Hugging Face repository id or a local folder of a {family} model "
                                   f"(default: {default})", in_setting=False),
        "revision": Option(str, None, "the hub revision (commit, tag or branch) of the model"
                                      + (f" (default: {revision_default})" if revision_default else ""),
                           in_setting=False),
    }


def model_spec(cls, kind: str, options, settings: str = "", pinned: dict | None = None) -> str:
    """The encoder spec ``KIND:MODEL[@REVISION][?SETTINGS]`` of the model a method brings: ``--option``'s
    model or the method's default, the revision asked or the one ``pinned`` for that model."""
    model = options.get("model") or cls.default_model
    revision = options.get("revision") or (pinned or {}).get(model)
    return f"{kind}:{model}" + (f"@{revision}" if revision else "") + (f"?{settings}" if settings else "")
