"""The Python API: evaluate methods on dataset splits with one call, from a notebook, a training loop,
the benchmark script or the CLI (which is a thin layer over :func:`evaluate`).

    import cirbench
    ev = cirbench.evaluate(methods=["pic2word", "image+text"], datasets=["fashioniq"],
                           encoder="ViT-L-14:openai", data_root="data",
                           checkpoints={"pic2word": "pic2word_model.pt"})
    ev.frame()          # pandas DataFrame: one row per (encoder, method, dataset, split, metric)
    ev.results          # typed cirbench.results.Result records (also written to results_dir)

Methods are given by registered name or as Method subclasses (an unregistered class from a notebook
works too); datasets by NAME, NAME:SPLIT, a folder of one's own, or "all".
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from cirbench.util import fsutil
from cirbench.errors import UsageError

DEFAULT_DATASETS = ["world-edit", "world-domain"]  # the embedded benchmark: no download, no GPU


def default_cache_dir(value=None) -> Path:
    return Path(value or os.environ.get("CIRBENCH_CACHE") or Path.home() / ".cache" / "cirbench").expanduser()


def _as_list(value) -> list:
    if value is None:
        return []
    if isinstance(value, (str, Path, type)):
        value = [value]
    out = []
    for v in value:
        if isinstance(v, str):
            out += [p.strip() for p in v.split(",") if p.strip()]
        else:
            out.append(v)
    return out


def resolve_methods(values) -> tuple[list[tuple[str, type]], bool]:
    """[(name, class)] for names, aliases, "all" or Method subclasses; and whether "all" was asked."""
    from cirbench.contracts.method import Method, _check_method, method_name
    from cirbench.contracts.registry import methods

    if values is not None and not isinstance(values, (str, Path, type)) and not _as_list(values):
        raise UsageError("methods=[] names no method: give names, Method classes, or 'all' (None runs all)")
    items = _as_list(values) or ["all"]
    everything = "all" in items
    out: dict[str, type] = {}
    if everything:
        out.update({n: methods.get(n) for n in methods.names()})
    for item in items:
        if item == "all":
            continue
        if isinstance(item, type):
            problem = _check_method(item)
            if problem:
                raise UsageError(f"{item!r} is not a method: {problem}")
            name = methods.name_of(item) or method_name(item)  # a registered plugin: its registered name
            out[name] = item
        else:
            name = methods.canonical(str(item))
            out[name] = methods.get(name)
    for name, cls in out.items():
        if not issubclass(cls, Method):
            raise UsageError(f"method {name!r} is not a Method subclass")
    return list(out.items()), everything


def open_dataset(spec, data_root=None, overrides: Mapping | None = None, settings: Mapping | None = None,
                 cache_dir: Path | None = None, check_splits: bool = True):
    """NAME, NAME:SPLIT, or a folder path (a dataset of the user's own) -> (Dataset, [splits])."""
    from cirbench.contracts.dataset import resolve_root
    from cirbench.contracts.registry import datasets

    spec = str(spec)
    overrides = dict(overrides or {})
    base, sep, split = spec.rpartition(":") if ":" in spec else (spec, "", "")
    if not sep:
        base, split = spec, ""
    cache_dir = default_cache_dir(cache_dir)
    if ("/" in base or base.startswith(".")) or (Path(base).is_dir() and base not in datasets):
        cls, root = datasets.get("folder"), Path(base).expanduser()
    else:
        cls = datasets.get(base)
        root = cache_dir if cls.generated else resolve_root(cls.registry_name, data_root, overrides)
    dataset = cls(root, dict(settings or {}), cache_dir=cache_dir)
    dataset.require_root()
    if not check_splits:
        return dataset, []
    if split:
        dataset.require_split(split)
        return dataset, [split]
    return dataset, list(dataset.default_splits or dataset.available_splits())


def resolve_datasets(values, data_root=None, overrides=None, settings=None, cache_dir=None) -> list:
    from cirbench.contracts.registry import datasets

    specs = [str(v) for v in _as_list(values)] or list(DEFAULT_DATASETS)
    if "all" in specs:
        specs = [n for n in datasets.names() if n != "folder"]
    return [open_dataset(s, data_root, overrides, settings, cache_dir) for s in specs]


def checkpoint_map(value, methods: list[tuple[str, type]]) -> dict[str, Path]:
    """{method: path} from a mapping, "METHOD=PATH" strings, or one bare path: a bare path belongs to
    the one method of the run that takes weights."""
    from cirbench.contracts.registry import methods as registry

    if value is None:
        return {}
    items = list(value.items()) if isinstance(value, Mapping) else [(None, v) for v in _as_list(value)]
    out: dict[str, Path] = {}
    for name, path in items:
        if name is None:
            text = str(path)
            head, sep, rest = text.partition("=")
            if sep and head in registry:
                name, path = head, rest
        if name is not None:
            out[registry.canonical(name) if name in registry else name] = Path(path)
            continue
        takers = [n for n, cls in methods if cls.takes_checkpoint]
        if len(takers) != 1:
            raise UsageError(f"--checkpoint {path}: say which method it is for, as METHOD=PATH "
                             f"(methods in this run that take weights: {', '.join(takers) or 'none'})")
        out[takers[0]] = Path(path)
    return out


def method_options(value, methods: list[tuple[str, type]]) -> dict[str, dict[str, Any]]:
    """Validated option values per method from {method: {key: value}} or "METHOD.KEY=VALUE" strings."""
    from cirbench.contracts.method import resolve_options
    from cirbench.contracts.registry import methods as registry

    given: dict[str, dict[str, Any]] = {}
    if isinstance(value, Mapping):
        for name, opts in value.items():
            if not isinstance(opts, Mapping):
                raise UsageError(f"options[{name!r}] must map option names to values, e.g. "
                                 f"{{{name!r}: {{'key': value}}}}, not {type(opts).__name__}")
            given.setdefault(str(name), {}).update(opts)
    else:
        for item in _as_list(value):
            lhs, sep, rhs = str(item).partition("=")
            name, dot, key = lhs.partition(".")
            if not sep or not dot or not name or not key:
                raise UsageError(f"--option must look like METHOD.KEY=VALUE, got {item!r}")
            if key in given.get(name, {}):
                raise UsageError(f"--option {name}.{key} is given twice ({given[name][key]!r} and {rhs!r}); "
                                 "give it once")
            given.setdefault(name, {})[key] = rhs
    names = dict(methods)
    out = {}
    for name, opts in given.items():
        canonical = registry.canonical(name) if name in registry else name
        if canonical not in names:
            raise UsageError(f"--option for method {name!r}, which is not in this run (methods: {', '.join(names)})")
        out[canonical] = opts
    return {name: resolve_options(name, cls.options, out.get(name, {})) for name, cls in methods}


@dataclass
class Evaluation:
    """What :func:`evaluate` returns: every cell's outcome, the result records, a DataFrame."""

    cells: list = field(default_factory=list)  # cirbench.engine.CellOutcome

    @property
    def results(self) -> list:
        return [c.record for c in self.cells if c.record is not None]

    @property
    def failures(self) -> list:
        return [c for c in self.cells if c.status == "failed"]

    @property
    def skipped(self) -> list:
        return [c for c in self.cells if c.status == "skipped"]

    def frame(self):
        """One row per (encoder, method, dataset, split, metric)."""
        from cirbench.analysis.cells import long_frame

        return long_frame(self.results)


def build_methods(engine, methods: list[tuple[str, type]], checkpoints: dict, options: dict, transform, progress,
                  own_model: set[str] = frozenset()):
    from cirbench.storage.artefacts import ArtefactStore
    from cirbench.engine import BuiltMethod
    from cirbench.errors import CirbenchError
    from cirbench.contracts.method import EncoderView, MethodContext

    built = []
    for name, cls in methods:
        view = EncoderView(transform or cls.default_transform)
        try:
            view = cls.encoder_view(options.get(name, {})).forced(transform)
            ctx = MethodContext(encoder=engine.encoder_for(view.transform, view.weights, view.text_length),
                                text_features=engine.texts_for(view.weights, view.text_length),
                                checkpoint=checkpoints.get(name),
                                checkpoint_store=Path(engine.options.cache_dir) / "checkpoints",
                                options=options.get(name, {}),
                                artefacts=ArtefactStore(engine.options.cache_dir, name), progress=progress,
                                cache_dir=Path(engine.options.cache_dir))
            built.append(BuiltMethod(name, cls, view, instance=cls(ctx), own_model=name in own_model))
        except CirbenchError as exc:
            built.append(BuiltMethod(name, cls, view, error=exc))
        except Exception as exc:  # a bug in a (plugin) method's constructor fails its cells, not the run
            from cirbench.errors import RunError

            built.append(BuiltMethod(name, cls, view, error=RunError(
                f"method {name!r} could not be built: {type(exc).__name__}: {exc}")))
    return built


def auto_trained(dataset, engine, methods: list[tuple[str, type]], checkpoints: dict, transform,
                 progress) -> dict[str, Path]:
    """Checkpoints the dataset lets the orchestration train (the embedded benchmark trains its own
    Pic2Word and Combiner on first use), for methods the user gave no weights."""
    from cirbench.training.sources import auto_train

    sources = dataset.training_sources()
    found = {}
    for name, cls in methods:
        if cls.training and cls.training in sources and name not in checkpoints:
            encoder = engine.encoder_for(transform or cls.default_transform)
            found[name] = auto_train(cls, encoder, dataset, sources[cls.training], engine.options.cache_dir,
                                     progress, engine.options.workers)
    return found


FEATURE_DTYPES = {"fp16": "float16", "fp32": "float32", "float16": "float16", "float32": "float32"}


@dataclass
class Settings:
    """Everything a run is asked to do: the one options object of the CLI (``cirbench run``) and the
    Python API (``evaluate(**settings)``). The engine reads what it needs through :meth:`engine_options`.

    methods: names, aliases, "all" (default) or Method subclasses. datasets: NAME, NAME:SPLIT, a folder,
    or "all" (default: the embedded benchmark). encoder: an encoder SPEC (default: each dataset's own).
    checkpoints: {method: path}, or one path for the one method that takes weights. options:
    {method: {key: value}} or ["METHOD.KEY=VALUE"]. results_dir=None writes and reuses nothing.
    transform: force one image transform for every method (default: each method's own code's).
    plugins: files or modules to import first (their registrations add methods, datasets, encoders).
    """

    methods: Any = None
    datasets: Any = None
    encoder: str | None = None
    data_root: Any = None
    data: Mapping | None = None  # {dataset: folder}
    settings: Mapping | None = None  # dataset settings ({"world": "tiny"})
    checkpoints: Any = None
    options: Any = None
    prompts: Mapping | None = None  # {kind: template}
    results_dir: Any = "results"
    cache_dir: Any = None
    batch_size: int = 64
    workers: int | None = None
    device: str = "auto"
    precision: str = "auto"  # fp32, except the multimodal-LLM kinds on a GPU (bf16); see load_encoder
    transform: str | None = None
    feature_dtype: str = "fp32"  # as every official code scores; fp16 halves a huge gallery's memory
    label: str | None = None  # names the setting of every method of the run (results kept side by side)
    overwrite: bool = False
    skip_bad_images: bool = False
    progress: Any = False  # bool, or a cirbench.util.progress.Progress
    command: Iterable[str] | None = None
    plugins: Iterable[str] = ()

    def check(self) -> None:
        """One UsageError line for a malformed setting, before any work."""
        from cirbench.contracts.split import DEFAULT_PROMPTS
        from cirbench.protocol.transforms import check

        if self.feature_dtype not in FEATURE_DTYPES:
            raise UsageError(f"feature dtype must be fp16 or fp32, not {self.feature_dtype!r}")
        bs = self.batch_size
        if not isinstance(bs, int) or isinstance(bs, bool) or bs < 1:
            raise UsageError(f"batch_size must be a positive integer, not {bs!r}")
        w = self.workers
        if w is not None and (not isinstance(w, int) or isinstance(w, bool) or w < 0):
            raise UsageError(f"workers must be an integer >= 0, not {w!r}")
        if self.label is not None and (not isinstance(self.label, str) or not self.label.strip()
                                       or any(c in self.label for c in "[]\n")):
            raise UsageError(f"label must be a non-empty text without brackets or line breaks, not {self.label!r}")
        if self.prompts is not None:
            if not isinstance(self.prompts, Mapping):
                raise UsageError(f"prompts must map a prompt kind to a template, not {type(self.prompts).__name__}")
            for kind, template in self.prompts.items():
                if kind not in DEFAULT_PROMPTS:
                    raise UsageError(f"--prompt {kind}=...: unknown prompt kind {kind!r} (kinds: "
                                     f"{', '.join(DEFAULT_PROMPTS)})")
                if not isinstance(template, str):
                    raise UsageError(f"--prompt {kind}: the template must be a string, not {type(template).__name__}")
        if self.transform is not None:
            check(self.transform)

    def engine_options(self, cache: Path, results_dir: Path | None, all_methods: bool):
        from cirbench.engine import RunOptions

        return RunOptions(results_dir=results_dir, cache_dir=cache, batch_size=self.batch_size,
                          workers=min(4, os.cpu_count() or 1) if self.workers is None else self.workers,
                          overwrite=self.overwrite, skip_bad_images=self.skip_bad_images,
                          feature_dtype=FEATURE_DTYPES[self.feature_dtype], all_methods=all_methods,
                          prompts=dict(self.prompts or {}), transform=self.transform, label=self.label,
                          command=list(self.command) if self.command is not None else list(sys.argv))


def evaluate(methods=None, datasets=None, encoder: str | None = None, **settings) -> Evaluation:
    """Run ``methods`` on ``datasets`` and return every cell's outcome and result; every other keyword is
    a field of :class:`Settings` (data_root, data, checkpoints, options, prompts, results_dir, ...)."""
    from dataclasses import fields

    known = {f.name for f in fields(Settings)}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise UsageError(f"evaluate() has no setting {unknown[0]!r}; settings: {', '.join(sorted(known))}")
    return run(Settings(methods=methods, datasets=datasets, encoder=encoder, **settings))


def run(settings: Settings) -> Evaluation:
    """A run as :class:`Settings` describe it (what ``cirbench run`` and :func:`evaluate` call)."""
    from cirbench.contracts import plugins
    from cirbench.contracts.encoder import resolve_device
    from cirbench.engine import Engine
    from cirbench.util import distributed
    from cirbench.util.progress import Progress

    s = settings
    s.check()
    plugins.load(s.plugins)
    cache = fsutil.tag_cache(fsutil.ensure_writable(default_cache_dir(s.cache_dir), "cache folder",
                                                    "pass --cache-dir PATH (or set CIRBENCH_CACHE) to a folder you can "
                                                    "write"))
    results_dir = None
    if s.results_dir is not None:
        results_dir = fsutil.ensure_writable(Path(s.results_dir), "results folder", "pass --results-dir PATH")
    chosen, everything = resolve_methods(s.methods)
    opened = resolve_datasets(s.datasets, s.data_root, s.data, s.settings, cache)
    opts = method_options(s.options, chosen)
    ckpts = checkpoint_map(s.checkpoints, chosen)
    device = distributed.init_from_env(resolve_device(s.device))
    options = s.engine_options(cache, results_dir, everything)
    progress = Progress(enabled=s.progress and distributed.is_main()) if isinstance(s.progress, bool) else s.progress
    evaluation = Evaluation()
    engines: dict[str, object] = {}  # spec -> Engine, or the error loading it raised
    built: dict[tuple[str, str], object] = {}
    with progress:
        for ds, splits in opened:
            ds.ready(progress)
            groups, refusals = encoder_groups(chosen, opts, ckpts, s.encoder or ds.default_encoder, ds)
            loaded = {}

            def split_of(name):
                if name not in loaded:
                    loaded[name] = ds.load(name)
                    loaded[name].info.setdefault("split_order", list(ds.available_splits()))
                return loaded[name]

            for (name, cls), exc in refusals:
                evaluation.cells += [refused(name, cls, split_of(sp), exc, everything) for sp in splits]
            for spec, group in groups.items():
                members = [(name, cls) for name, cls, _ in group]
                if spec not in engines:
                    engines[spec] = open_engine(spec, own=any(own for *_, own in group), all_methods=everything,
                                                device=device, settings=s, cache=cache, options=options,
                                                progress=progress)
                engine = engines[spec]
                if not isinstance(engine, Engine):  # the model the methods bring could not be loaded
                    evaluation.cells += [refused(name, cls, split_of(sp), engine, everything)
                                         for name, cls in members for sp in splits]
                    continue
                todo = [(n, c) for n, c in members if (spec, n) not in built]
                for b in build_methods(engine, todo, ckpts, opts, s.transform, progress,
                                       own_model={n for n, _, own in group if own}):
                    built[(spec, b.name)] = b
                trained = auto_trained(ds, engine, members, ckpts, s.transform, progress)
                for sp in splits:
                    split = split_of(sp)
                    split.checkpoints.update(trained)
                    evaluation.cells += engine.evaluate(split, [built[(spec, n)] for n, _ in members], ds.result_name)
    return evaluation


def encoder_groups(chosen: list[tuple[str, type]], opts: dict, ckpts: dict, default_spec: str | None, ds):
    """{encoder spec: [(name, class, brings its own model)]} of a dataset's methods, in run order, and
    [((name, class), error)] for methods whose own model is not given."""
    from cirbench.errors import CirbenchError

    groups: dict[str, list] = {}
    refusals = []
    for name, cls in chosen:
        try:
            own = cls.own_encoder(opts.get(name, {}), ckpts.get(name))
        except CirbenchError as exc:
            refusals.append(((name, cls), exc))
            continue
        spec = own or default_spec
        if not spec:
            raise UsageError(f"dataset {ds.label!r} has no default encoder: pass --encoder SPEC "
                             "(e.g. ViT-L-14:openai, local-dir:PATH)")
        groups.setdefault(spec, []).append((name, cls, bool(own)))
    return groups, refusals


def open_engine(spec: str, *, own: bool, all_methods: bool, device, settings: Settings, cache: Path, options,
                progress):
    """The engine of one encoder, or -- for a model a method brings -- the error loading it raised (its
    cells fail, or are skipped under ``--method all``, which reads such models from local files only:
    nothing is downloaded unless the method is named)."""
    import contextlib

    from cirbench.contracts.encoder import load_encoder
    from cirbench.engine import Engine
    from cirbench.errors import CirbenchError, MissingResourceError
    from cirbench.util.hub import local_only

    try:
        with local_only() if own and all_methods else contextlib.nullcontext():
            enc = load_encoder(spec, device=device, precision=settings.precision,
                               transform=settings.transform or "clip", cache_dir=cache, progress=progress)
    except CirbenchError as exc:
        if not own:
            raise
        if all_methods and isinstance(exc, MissingResourceError):
            return MissingResourceError(f"{exc} -- `--method all` reads a method's own model from local files "
                                        "only; name the method to download it")
        return exc
    return Engine(enc, options, progress)


def refused(name: str, cls: type, split, exc, all_methods: bool):
    """The outcome of a method that cannot run on a split (its model or weights are not there)."""
    from cirbench.contracts.method import EncoderView
    from cirbench.engine.plan import BuiltMethod, refusal

    return refusal(BuiltMethod(name, cls, EncoderView(cls.default_transform), error=exc), split, all_methods)
