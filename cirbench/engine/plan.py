"""What a run will do on one split: the run's options, the methods built for its encoder, and for each
method the cell it will compute -- its key (everything that changes its numbers), where its result goes,
or why it is reused, skipped or failed before any work.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from cirbench import __version__
from cirbench.contracts.method import EncoderView, Method, SplitView, setting_of
from cirbench.contracts.split import Split
from cirbench.errors import CirbenchError, DataError, MissingResourceError, RunError
from cirbench.storage import results
from cirbench.util import fsutil


@dataclass
class RunOptions:
    """What the engine needs of a run's settings (cirbench.api.Settings makes it)."""

    results_dir: Path | None  # None: nothing is written and nothing reused (a notebook, a training loop)
    cache_dir: Path
    batch_size: int = 64
    workers: int = 2
    chunk_size: int = 16384  # gallery rows scored at a time: memory ~ queries x chunk
    overwrite: bool = False
    skip_bad_images: bool = False
    feature_dtype: str = "float32"  # how image features are stored (and rounded): float32 or float16
    all_methods: bool = False  # the user asked for `--method all`
    prompts: dict[str, str] = field(default_factory=dict)  # user overrides of the split's prompt templates
    transform: str | None = None  # forces one image transform for every method (else each method's own)
    label: str | None = None  # names the setting of every method of the run (else its non-default options)
    command: list[str] = field(default_factory=lambda: list(sys.argv))


@dataclass
class BuiltMethod:
    """A method built once for an engine's encoder (or the error its construction raised)."""

    name: str
    cls: type
    view: EncoderView
    instance: Method | None = None
    error: CirbenchError | None = None
    own_model: bool = False  # the method brings its own model (the engine's encoder is that model)

    @property
    def transform(self) -> str:
        return self.view.transform


@dataclass
class CellOutcome:
    method: str
    dataset: str
    split: str
    status: str  # "computed", "reused", "skipped" (no released weights under --method all), "failed"
    record: results.Result | None = None
    error: CirbenchError | None = None
    path: Path | None = None
    setting: str = ""  # the method's setting ("" the default)
    replaced: bool = False  # an earlier result of the same setting was there and was replaced


@dataclass
class Cell:
    """A (method, split) to compute: its key, where it is written, and the method's config and protocol
    as prepare() left them (read once)."""

    built: BuiltMethod
    key: str
    path: Path | None
    config: dict
    protocol: dict
    setting: str = ""
    view: EncoderView | None = None  # the view this split's images go through (the method's, or its split's)

    @property
    def encoder_view(self) -> EncoderView:
        return self.view or self.built.view


def split_content_key(split: Split) -> str:
    """What the split asks: its queries (ids, reference, text, targets, subsets, fields), gallery ids,
    prompts and protocol. Rotating captions or swapping a target changes it; the count alone does not."""
    return fsutil.stable_hash({
        "queries": [[q.qid, q.reference, q.text, list(q.targets), list(q.subset) if q.subset is not None else None,
                     dict(q.fields)] for q in split.queries],
        "gallery": split.gallery, "prompts": split.prompts, "metrics": split.metrics, "scope": split.scope,
        "remove_reference": split.remove_reference, "caption_order": split.caption_order,
        "has_ground_truth": split.has_ground_truth})[:24]


def split_view(split: Split, prompt_overrides: dict[str, str]) -> SplitView:
    """What a method sees of a split, with the fields every query carries and those only some do."""
    common = set.intersection(*(set(q.fields) for q in split.queries)) if split.queries else set()
    some = set().union(*(q.fields for q in split.queries)) - common  # fields only some queries carry
    partial: dict[str, str] = {}
    for q in split.queries if some else ():
        for name in some - set(q.fields) - set(partial):
            partial[name] = q.qid  # the first query without it
    return SplitView(dataset=split.dataset, split=split.split, prompts={**split.prompts, **prompt_overrides},
                     caption_order=split.caption_order, remove_reference=split.remove_reference, scope=split.scope,
                     n_queries=len(split.queries), n_gallery=len(split.gallery), info=dict(split.info),
                     checkpoints=dict(split.checkpoints), query_fields=frozenset(common), partial_fields=partial,
                     root=Path(split.root) if split.root is not None else None)


def refusal(m: BuiltMethod, split, all_methods: bool) -> CellOutcome:
    """The outcome of a method that cannot run on a split: failed, or skipped when ``--method all`` asked
    for it and what it lacks is outside weights or texts (it runs when they are there)."""
    exc = m.error
    skip = isinstance(exc, MissingResourceError) and all_methods and m.cls.external_weights
    return CellOutcome(m.name, split.dataset, split.split, "skipped" if skip else "failed", error=exc)


def plan_cell(engine, m: BuiltMethod, split: Split, view: SplitView, content: str, images_key: str,
              result_name: str) -> Cell | CellOutcome:
    """The cell of one method on a split, or its CellOutcome when it is skipped, failed before any work
    (prepare() or config() raised, a plugin bug included), or reused from its result file."""
    def outcome(status, **kw):
        return CellOutcome(m.name, split.dataset, split.split, status, setting=setting, **kw)

    def failed(exc: CirbenchError):
        return refusal(BuiltMethod(m.name, m.cls, m.view, error=exc), split, engine.options.all_methods)

    if m.error is not None:
        return failed(m.error)
    method = m.instance
    setting = setting_of(m.cls.options, method.ctx.options, engine.options.label)
    method.split = view
    method.ctx.split_prompts, method.ctx.dataset = view.prompts, view.dataset
    try:
        method.prepare(view)
        config = method.config()
        check_json(config, "config()")
        protocol = method.protocol(config)
        check_json(protocol, "protocol()")
        split_view_ = method.encoder_view_for(view)  # not forced by --transform: it names the split's own encoding
        ev = split_view_ or m.view
        encoder_key = engine.encoder_for(ev.transform, ev.weights, ev.text_length).key
        references_key = engine.encoder_for(ev.references, ev.weights).key
    except CirbenchError as exc:
        return failed(exc)
    except Exception as exc:
        return failed(method_bug(m.name, exc))
    key = fsutil.stable_hash({
        "cirbench": __version__, "encoder": encoder_key, "method": m.name, "references": references_key,
        "config": config, "options": method.ctx.options, "scoring": m.cls.scoring, "split": content,
        "images": images_key, "skip_bad_images": engine.options.skip_bad_images,
        "feature_dtype": engine.options.feature_dtype, "setting": setting})[:24]
    if engine.options.results_dir is None:
        return Cell(m, key, None, config, protocol, setting, split_view_)
    path = results.result_path(engine.options.results_dir, engine.encoder.slug, result_name, split.split, m.name,
                               setting)
    if path.is_file() and not engine.options.overwrite:
        try:
            old = results.read(path)
        except DataError:
            old = None
        if old is not None and old.cell_key == key:
            return outcome("reused", record=old, path=path)
    return Cell(m, key, path, config, protocol, setting, split_view_)


def check_json(value, what: str) -> None:
    """A method's config is recorded in results and keys its cells: it must be plain JSON (an object
    whose text form holds a memory address would change the key on every run)."""
    try:
        json.dumps(value, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise RunError(f"{what} must return plain JSON values (strings, numbers, booleans, lists, dicts with "
                       f"string keys): {exc}") from None


def method_bug(name: str, exc: Exception) -> RunError:
    """A method's exception as one line, with the file and line where its code went wrong."""
    where = ""
    tb = exc.__traceback__
    while tb is not None:  # the innermost frame
        where = f" ({tb.tb_frame.f_code.co_filename}:{tb.tb_lineno})"
        tb = tb.tb_next
    return RunError(f"method {name!r} raised {type(exc).__name__}: {exc}{where}")
