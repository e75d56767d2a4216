"""The contract of a method plugin: what a method declares, and what each hook receives and returns.

A method is one class that subclasses :class:`Method` and registers itself (``@register_method(name)``
in a file under methods/, a ``--plugin`` file, or a distribution's ``cirbench.methods`` entry point).
The engine builds one instance per encoder per run (``__init__(ctx)``), calls :meth:`Method.prepare`
before each split, then asks for query vectors (or scores), optionally re-ranks, and records
:meth:`Method.config`. A method never reads dataset files; it sees a :class:`QueryBatch` and a
:class:`Gallery`. Shapes and devices (B queries in a batch, G gallery items, D feature width, R the
re-ranking depth; "device" is the run's device, ``self.ctx.encoder.device``):

- ``prepare(split: SplitView) -> None``: per-split set-up (weights, per-dataset defaults; raise
  MissingResourceError when something from outside is missing).
- ``encode_queries(batch: QueryBatch) -> Tensor (B, D)`` on any device, any norm (the engine
  normalises); default: ``compose(batch.reference_features, batch.texts)``.
- ``encode_gallery(gallery: Gallery) -> Tensor (G, D)``: the gallery's representation scored against
  the query vectors; default: ``gallery.features``. Called once per split, before the queries.
- ``score(batch: QueryBatch, gallery: Gallery) -> Tensor (B, G)``: scores instead of vectors, for
  ``scoring = "scores"`` (higher is better).
- ``rerank(batch: QueryBatch, candidates: LongTensor (B, R), scores: Tensor (B, R)) -> Tensor (B, R)``:
  new scores for each query's top R = ``rerank_depth`` candidates (gallery indices, best first, on the
  device; -1 marks padding where a query has fewer candidates, and its new score is ignored). The
  Gallery is ``batch.gallery``. Runs on every split: on a subset-scoped split (GeneCIS) the candidates
  are each query's own members. Ties keep the previous order.
- ``config() -> dict`` (plain JSON): everything about the method's setting that changes its numbers;
  recorded in every result and part of its cache key. ``protocol(config) -> {"text", "notes"}``: what
  the report shows about it.
- ``train(request: TrainRequest) -> Path`` (a class method) for ``cirbench train``; ``training`` names
  the kind of data it takes.
- ``encoder_view(options) -> EncoderView`` (a class method): the image transforms and the rounding of
  the weights the method's official code uses (default: ``default_transform`` for every image).

Every hook gets its tensors on the device; with ``whole_split = True`` every hook that takes a batch
gets all the split's queries in one batch. A hook's output is checked: a wrong shape, NaN or inf, or a
zero query vector (unless ``zero_vectors_meaningful``) fails the method's cell with one line.

Options are declared in ``options`` (``{"t": Option(float, 0.8, "interpolation weight")}``), given
as ``--option METHOD.KEY=VALUE``, validated before any work, recorded in every result and its key.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping

from cirbench.errors import UsageError, short
from cirbench.protocol.prompts import fill, fill_pseudo
from cirbench.contracts.registry import methods

register_method = methods.register


@dataclass(frozen=True)
class Option:
    """A declared method option: its type, default (None: chosen per dataset in ``prepare``) and help."""

    type: type
    default: Any = None
    help: str = ""
    choices: tuple | None = None
    bounds: tuple | None = None  # (lowest, highest), both allowed, for a number
    # part of a result's setting (its row and file): False for an option whose value the encoder identity
    # already names (an own-model method's model and revision: its rows are apart by model)
    in_setting: bool = True

    def parse(self, method: str, key: str, value: Any) -> Any:
        """The value as the declared type: text is parsed (``--option``), other values must already be of
        the type (an int for a float is fine, a bool is not a number); floats must be finite."""
        import math

        shown = f"option {method}.{key}={short(value)}"
        if value is None:
            return None
        if isinstance(value, str) and self.type is not str:
            text = value.strip()
            try:
                if self.type is bool:
                    if text.lower() not in ("1", "0", "true", "false", "yes", "no"):
                        raise ValueError
                    value = text.lower() in ("1", "true", "yes")
                else:
                    value = self.type(text)
            except ValueError:
                raise UsageError(f"{shown} is not a valid {self.type.__name__}") from None
        elif self.type is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            value = float(value)
        elif not isinstance(value, self.type) or (self.type in (int, float) and isinstance(value, bool)):
            raise UsageError(f"{shown} must be a {self.type.__name__}, not {type(value).__name__}")
        if isinstance(value, float) and not math.isfinite(value):
            raise UsageError(f"{shown} must be a finite number")
        if self.choices is not None and value not in self.choices:
            raise UsageError(f"{shown} must be one of {', '.join(map(str, self.choices))}")
        if self.bounds is not None and not self.bounds[0] <= value <= self.bounds[1]:
            raise UsageError(f"{shown} must lie between {self.bounds[0]} and {self.bounds[1]}")
        return value


def setting_of(declared: Mapping[str, Option], options: Mapping[str, Any], label: str | None = None) -> str:
    """A method's setting as a reader sees it: the user's ``label``, else its options that differ from
    their declared defaults (``"t=0.5"``, ``"fusion=max, lam=0.3"``), else "" (the default setting).
    Two settings of one method are two results, two rows and never one average or paired test."""
    if label:
        return label
    parts = []
    for key in sorted(declared):
        value, option = options.get(key), declared[key]
        if value is None or value == option.default or not option.in_setting:
            continue
        shown = ("true" if value else "false") if isinstance(value, bool) else repr(value) \
            if isinstance(value, float) else str(value)
        parts.append(f"{key}={shown}")
    return ", ".join(parts)


def resolve_options(method: str, declared: Mapping[str, Option], given: Mapping[str, Any]) -> dict[str, Any]:
    """Declared defaults overridden by the given values; an unknown key is a UsageError naming the valid ones."""
    unknown = sorted(set(given) - set(declared))
    if unknown:
        valid = ", ".join(f"{k} ({o.help})" if o.help else k for k, o in declared.items()) or "none"
        raise UsageError(f"method {method!r} has no option {unknown[0]!r}; its options: {valid}")
    return {key: (opt.parse(method, key, given[key]) if key in given else opt.default) for key, opt in declared.items()}


@dataclass(frozen=True)
class EncoderView:
    """How a method's own code runs the shared encoder: the image transform of the gallery (and, unless
    ``reference_transform`` says otherwise, of the query's reference images), the weights -- as
    loaded, or rounded through float16 (a checkpoint loaded with torch_dtype=float16, then .float()) --
    and where texts are truncated.
    Transforms are named in cirbench.transforms ("clip", "targetpad", "hf-clip", with "+fp16")."""

    transform: str = "clip"
    reference_transform: str | None = None
    weights: str = "loaded"
    text_length: int | None = None  # texts truncated at this many tokens (None: the encoder's own length)

    @property
    def references(self) -> str:
        """The transform the reference images are encoded with."""
        return self.reference_transform or self.transform

    def forced(self, transform: str | None) -> "EncoderView":
        """This view under ``--transform``: one transform for the gallery and the references."""
        return self if transform is None else EncoderView(transform, None, self.weights, self.text_length)


@dataclass
class SplitView:
    """What a method sees of the split being evaluated: its dataset and split names, the prompt templates
    (kind -> template, user overrides applied), the protocol (caption order, reference removal, scope
    "gallery" or "subset"), its sizes, info, checkpoints trained for it, and which annotation fields its
    queries carry."""

    dataset: str
    split: str
    prompts: dict[str, str]
    caption_order: str | None = None
    remove_reference: bool = False
    scope: str = "gallery"
    n_queries: int = 0
    n_gallery: int = 0
    info: dict = field(default_factory=dict)
    checkpoints: dict[str, Path] = field(default_factory=dict)  # trained for this dataset by the orchestration
    root: Path | None = None  # the dataset's folder (where `cirbench data get` puts files its methods read)
    # the annotation fields every query of the split carries (e.g. released captions)
    query_fields: frozenset = frozenset()
    # fields only some queries carry: field -> the id of the first query without it
    partial_fields: dict[str, str] = field(default_factory=dict)


@dataclass
class QueryBatch:
    """B queries of a split (all of them for a ``whole_split`` method)."""

    ids: list[str]
    reference_ids: list[str]
    reference_images: list  # Path or ImageRef per query
    reference_features: Any  # Tensor (B, D): raw (unnormalised) image features, on the device
    texts: list[str]
    fields: list[Mapping[str, Any]]  # every other field of each query's annotation
    split: SplitView
    # gallery indices of each query's candidate subset (scope "subset", or CIRR's img_set), else None
    subsets: list[list[int]] | None = None
    # gallery index of each query's reference (-1: not in the gallery)
    reference_positions: list[int] | None = None
    # the split's Gallery (the same object encode_gallery and score get)
    gallery: Any = None
    # the engine's image loader: images -> pixel tensor (N, C, H, W) through the method's encoder transform
    load_pixels: Callable[[list], Any] | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.ids)

    def prompts(self, kind: str) -> list[str]:
        """Each query's text put into the split's ``kind`` template (fields included)."""
        template = self.split.prompts[kind]
        return [fill(template, t, f) for t, f in zip(self.texts, self.fields)]

    def reference_pixels(self):
        """The reference images as the method's encoder sees them (N x C x H x W on the device, or a list
        where the encoder's transform keeps each image's own size, as a multimodal LLM's does), for a
        model that embeds an (image, text) pair in one forward pass rather than from cached features
        (multimodal LLM embedders). Decoded by the engine's loader; an unreadable image is a DataError
        naming its file."""
        if self.load_pixels is None:
            raise UsageError("this QueryBatch was not made by the engine: it has no image loader")
        return self.load_pixels(list(self.reference_images))

    def pseudo_prompts(self, template: str, token: str) -> tuple[list[str], list[str]]:
        """(prompts, prefixes) for a pseudo-word template: the prefixes pin each prompt's slot."""
        pairs = [fill_pseudo(template, token, t, f) for t, f in zip(self.texts, self.fields)]
        return [p for p, _ in pairs], [pre for _, pre in pairs]


@dataclass
class Gallery:
    """The split's gallery: G items in ranking order (the indices candidates and subsets refer to)."""

    ids: list[str]
    images: list  # Path or ImageRef per item
    features: Any  # Tensor (G, D): raw image features (the method's transform), on the device
    split: SplitView


@dataclass
class MethodContext:
    encoder: Any  # cirbench.encoder.Encoder, with this method's image transform
    text_features: Callable[[list[str]], Any]  # memoised, deduplicated text encoder (raw features)
    checkpoint: Path | None = None  # --checkpoint for this method, or None
    checkpoint_store: Path | None = None  # where `cirbench train` puts default checkpoints
    options: dict[str, Any] = field(default_factory=dict)  # validated values of the declared options
    artefacts: Any = None  # cirbench.artefacts.ArtefactStore of this method
    progress: Any = None  # cirbench.progress.Progress
    cache_dir: Path | None = None  # cirbench's cache folder (content keys, models)
    # the split being evaluated (set before prepare), for methods written against the first contract
    # (deprecated: read self.split.prompts and self.split.dataset)
    split_prompts: dict[str, str] = field(default_factory=dict)
    dataset: str = ""

    @property
    def prompts(self) -> dict[str, str]:
        warnings.warn("ctx.prompts is deprecated: use self.split.prompts (or batch.prompts(kind))",
                      FutureWarning, stacklevel=2)
        return self.split_prompts

    @prompts.setter
    def prompts(self, value: dict[str, str]) -> None:
        self.split_prompts = value


@dataclass
class TrainRequest:
    """What `cirbench train METHOD` (or the orchestration) hands a method's train()."""

    encoder: Any
    out: Path
    images: list[Path] | None = None  # unlabeled images (kind "images")
    triplets: list | None = None  # supervised (reference path, text, target path) triplets (kind "triplets")
    # each triplet's relative captions where the dataset has several (FashionIQ's two), else None
    triplet_captions: list[tuple[str, ...] | None] | None = None
    texts: list[str] | None = None  # captions (kind "texts")
    train_dataset: str | None = None  # the name of the dataset the data came from
    image_features: Callable[[list[Path]], Any] | None = None  # cached, frozen image encoder
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    seed: int = 0
    options: dict[str, str] = field(default_factory=dict)
    progress: Any = None  # cirbench.progress.Progress
    device: str = "cpu"
    resume: bool = False  # continue from the checkpoint at `out`


class Method:
    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    supervised: ClassVar[bool] = False
    # `--checkpoint PATH` (without METHOD=) belongs to the one method of a run that takes weights
    takes_checkpoint: ClassVar[bool] = False
    # runs only on released weights: `--method all` includes it only when its weights are given
    external_weights: ClassVar[bool] = False
    # the image transform of the method's own code ("clip" or "targetpad"); --transform overrides it
    default_transform: ClassVar[str] = "clip"
    # "vectors": one query vector per query (encode_queries); "scores": gallery scores (score)
    scoring: ClassVar[str] = "vectors"
    # re-rank each query's top N candidates with rerank() (0: no re-ranking)
    rerank_depth: ClassVar[int] = 0
    # True: the hooks get all the split's queries in one batch (a method whose queries depend on each
    # other, as LDRE's ensemble weights do)
    whole_split: ClassVar[bool] = False
    options: ClassVar[dict[str, Option]] = {}
    # the kind of training data train() takes ("images", "triplets", "texts", or a plugin kind); None: none
    training: ClassVar[str | None] = None
    # a query vector (or gallery representation) of zeros is refused as a broken output unless the method
    # says it means something (it then scores 0 against every item)
    zero_vectors_meaningful: ClassVar[bool] = False
    # where the method sits in tables (lower first; then by name)
    display_order: ClassVar[float] = 100.0

    def __init__(self, ctx: MethodContext):
        self.ctx = ctx
        self.split: SplitView | None = None
        self.batch: QueryBatch | None = None  # the batch being composed (for compose-style methods)

    # -- hooks ------------------------------------------------------------------------------------
    def prepare(self, split: SplitView) -> None:
        """Called before each split (after ``self.split`` is set). Default: nothing."""

    def encoder_view_for(self, split: SplitView) -> EncoderView | None:
        """The view this split's images go through when it is not the method's own (called after
        ``prepare``): an embedder whose gallery images are encoded under a prompt that depends on the split
        (E5-V's FashionIQ category) names it in the view's transform, so each split's gallery features are
        cached apart. None (the default): the view of ``encoder_view``."""
        return None

    def compose(self, reference_features, texts: list[str]):
        """Query features (B x D, any norm) for raw reference image features (B x D) and query texts."""
        raise NotImplementedError(f"method {self.method_name!r} implements neither compose nor encode_queries")

    def encode_queries(self, batch: QueryBatch):
        """Query features (B x D, any norm) for a batch. Default: ``compose`` on its features and texts."""
        self.batch = batch
        return self.compose(batch.reference_features, batch.texts)

    def encode_gallery(self, gallery: Gallery):
        """The gallery's representation (G x D, any norm) scored against the query vectors. Default: the
        shared image features."""
        return gallery.features

    def score(self, batch: QueryBatch, gallery: Gallery):
        """B x G scores (higher is better) over the whole gallery, for ``scoring = "scores"``."""
        raise NotImplementedError(f"method {self.method_name!r} declares scoring='scores' but has no score()")

    def score_subsets(self, batch: QueryBatch, gallery: Gallery):
        """B x W scores of each query over its own candidates, ``batch.subsets[i]`` (gallery indices), in
        that order and padded to the batch's longest subset (padding entries must be finite and are
        ignored), for ``scoring = "scores"`` on a split that ranks per-query subsets (GeneCIS, i-CIR).
        Default: ``score`` over the whole gallery, gathered; a method whose scores depend on the candidate
        set (e.g. BASIC's expansion within an instance's database) or that should not score the whole
        gallery for each query overrides it."""
        import torch

        scores = self.score(batch, gallery)
        width = max([1, *(len(s) for s in batch.subsets)])
        members = torch.tensor([list(s) + [0] * (width - len(s)) for s in batch.subsets], dtype=torch.long,
                               device=scores.device)
        return scores.gather(1, members)

    def rerank(self, batch: QueryBatch, candidates, scores):
        """New scores (B x R) for each query's top ``rerank_depth`` candidates (B x R gallery indices, best
        first, with their scores); ties keep the previous order."""
        return scores

    def config(self) -> dict:
        """Everything about this method's setting that changes its numbers (recorded in results)."""
        return {}

    def protocol(self, config: dict) -> dict:
        """What the report's protocol table shows about the method on this split, from its config:
        {"text": the text template it encodes, "notes": [one-line facts]}. Default: config's "prompt"
        (or the description) and nothing else."""
        return {"text": str(config.get("prompt", "")) or self.description, "notes": []}

    # -- helpers for subclasses -------------------------------------------------------------------
    @property
    def method_name(self) -> str:
        """The name the method runs under (its registered name, else its ``name``, else the class name)."""
        return method_name(type(self))

    def option(self, key: str):
        return self.ctx.options[key]

    def prompt(self, kind: str, text: str) -> str:
        """Deprecated: use ``batch.prompts(kind)``. A text put into the current split's template."""
        warnings.warn("Method.prompt is deprecated: use batch.prompts(kind)", FutureWarning, stacklevel=2)
        return fill(self.ctx.split_prompts[kind], text)

    def batch_prompts(self, kind: str, texts: list[str]) -> list[str]:
        """Deprecated: use ``batch.prompts(kind)``. The templates filled for the texts of the current batch."""
        warnings.warn("Method.batch_prompts is deprecated: use batch.prompts(kind)", FutureWarning,
                      stacklevel=2)
        batch = self.batch
        if batch is not None and list(batch.texts) == list(texts):
            return batch.prompts(kind)
        return [fill(self.ctx.split_prompts[kind], t) for t in texts]

    @classmethod
    def encoder_view(cls, options: Mapping[str, Any]) -> EncoderView:
        """How this method's official code runs the encoder, given its validated options (default: its
        ``default_transform`` for every image, the weights as loaded). ``--transform`` overrides the
        transforms."""
        return EncoderView(cls.default_transform)

    @classmethod
    def own_encoder(cls, options: Mapping[str, Any], checkpoint: Path | None) -> str | None:
        """The encoder SPEC of the model this method brings (e.g. "hf-clip:BAAI/BGE-VL-base@REV",
        "magiclens:FILE"), given its validated options and its ``--checkpoint``; None (the default): the
        method runs on the run's encoder. A method that brings its own model runs on it whatever
        ``--encoder`` says; its images go through the engine, the cache and the tables like any other
        method's (under that encoder's name). Raise MissingResourceError when the model is not given."""
        return None

    @classmethod
    def training_defaults(cls, encoder) -> dict:
        """Training options when the orchestration trains this method on a dataset's own budget (the
        embedded benchmark), e.g. sizes relative to the encoder's width. Default: none."""
        return {}

    @classmethod
    def train(cls, request: TrainRequest) -> Path:
        raise UsageError(f"method {method_name(cls)!r} has nothing to train")


def method_name(cls) -> str:
    return cls.__dict__.get("registry_name") or cls.__dict__.get("name") or cls.__name__


def _check_method(obj) -> str | None:
    if not isinstance(obj, type) or not issubclass(obj, Method):
        return f"it loads to {obj!r}, not a subclass of cirbench.method.Method"
    if obj.scoring not in ("vectors", "scores"):
        return f"its scoring is {obj.scoring!r} (expected 'vectors' or 'scores')"
    return None


methods.validator = _check_method
