"""The `cirbench` command line. Heavy imports happen inside the commands, so --help is instant."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import List, Optional

import typer

from .errors import CirbenchError, UsageError

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Benchmark composed image retrieval methods on every dataset split.")
list_app = typer.Typer(no_args_is_help=True, help="List registered methods, datasets or encoders.")
data_app = typer.Typer(no_args_is_help=True, help="Check dataset layouts on disk.")
app.add_typer(data_app, name="data")

DEFAULT_DATASETS = ["world-edit", "world-domain"]  # the embedded benchmark: no download, no GPU
STATE = {"debug": False}


def cache_dir(value: Optional[Path]) -> Path:
    return Path(value or os.environ.get("CIRBENCH_CACHE") or Path.home() / ".cache" / "cirbench").expanduser()


def pairs(values: List[str], what: str) -> dict[str, str]:
    out = {}
    for value in values or []:
        key, sep, rest = value.partition("=")
        if not sep or not key or not rest:
            raise UsageError(f"{what} must look like NAME=VALUE, got {value!r}")
        out[key] = rest
    return out


def split_list(values: List[str]) -> list[str]:
    return [v.strip() for value in values or [] for v in value.split(",") if v.strip()]


def resolve_methods(values: List[str]) -> list[str]:
    from .registry import methods

    names = split_list(values) or ["all"]
    if "all" in names:
        return methods.names()
    return list(dict.fromkeys(methods.canonical(n) for n in names))


def open_dataset(spec: str, data_root, overrides: dict, options: dict | None = None, cache: Path | None = None,
                 check_splits: bool = True):
    """NAME, NAME:SPLIT, or a folder path (a dataset of the user's own) -> (Dataset, [splits])."""
    from .dataset import resolve_root
    from .registry import datasets

    base, sep, split = spec.rpartition(":") if ":" in spec else (spec, "", "")
    if not sep:
        base, split = spec, ""
    if ("/" in base or base.startswith(".")) or (Path(base).is_dir() and base not in datasets):
        cls, root = datasets.get("folder"), Path(base).expanduser()
    else:
        cls = datasets.get(base)
        if getattr(cls, "generated", False):  # rendered into the cache, nothing to point at
            root = cache_dir(cache)
        else:
            root = resolve_root(cls.registry_name, data_root, overrides)
    dataset = cls(root, options or {})
    dataset.require_root()
    if not check_splits:
        return dataset, []
    if split:
        dataset.require_split(split)
        return dataset, [split]
    return dataset, list(dataset.default_splits or dataset.available_splits())


def resolve_datasets(values: List[str], data_root, overrides, options: dict, cache: Path) -> list:
    from .registry import datasets

    specs = split_list(values) or list(DEFAULT_DATASETS)
    if "all" in specs:
        specs = [n for n in datasets.names() if n != "folder"]
    return [open_dataset(s, data_root, overrides, options, cache) for s in specs]


def checkpoint_map(values: List[str], methods: list[str]) -> dict[str, Path]:
    from .registry import methods as registry

    out = {}
    for value in values or []:
        name, sep, path = value.partition("=")
        if sep and name in registry:
            out[registry.canonical(name)] = Path(path)
            continue
        trainable = [m for m in methods if registry.get(m).train_data]
        if len(trainable) != 1:
            raise UsageError(f"--checkpoint {value!r}: say which method it is for, as METHOD=PATH "
                             f"(trained methods in this run: {', '.join(trainable) or 'none'})")
        out[trainable[0]] = Path(value)
    return out


def fail(exc: CirbenchError) -> None:
    if STATE["debug"]:
        raise exc
    typer.echo(f"error: {exc}", err=True)
    raise typer.Exit(exc.exit_code)


@app.callback()
def main_options(debug: bool = typer.Option(False, "--debug", help="Show tracebacks.")):
    STATE["debug"] = debug


def _encoder(spec, dataset, device, precision, transform, cache, progress=None):
    from .encoder import load_encoder, resolve_device

    spec = spec or getattr(dataset, "default_encoder", None)
    if not spec:
        raise UsageError(f"dataset {dataset.registry_name!r} has no default encoder: pass --encoder SPEC "
                         "(e.g. ViT-L-14:openai, local-dir:PATH)")
    return load_encoder(spec, device=resolve_device(device), precision=precision, transform=transform,
                        cache_dir=cache, progress=progress)


@app.command()
def run(
    method: List[str] = typer.Option([], "--method", "-m", help="Method name(s), comma-separated or repeated; 'all'."),
    dataset: List[str] = typer.Option([], "--dataset", "-d", help="NAME, NAME:SPLIT, a folder of your own, or 'all'."),
    encoder: Optional[str] = typer.Option(None, help="ARCH:TAG, hf-hub:ORG/REPO, local-dir:PATH, ARCH:FILE, random:ARCH."),
    checkpoint: List[str] = typer.Option([], help="A method's weights: PATH (one trained method) or METHOD=PATH."),
    data_root: Optional[Path] = typer.Option(None, help="Folder holding one subfolder per dataset [CIRBENCH_DATA_ROOT]."),
    data: List[str] = typer.Option([], help="NAME=PATH: where one dataset lives."),
    setting: List[str] = typer.Option([], "--set", help="KEY=VALUE dataset settings (e.g. world=tiny)."),
    prompt: List[str] = typer.Option([], help="KIND=TEMPLATE overrides a prompt (kinds: pseudo, text)."),
    results_dir: Path = typer.Option(Path("results"), help="Where result files go."),
    cache: Optional[Path] = typer.Option(None, "--cache-dir", help="Feature cache and checkpoints [CIRBENCH_CACHE]."),
    batch_size: int = typer.Option(64, min=1),
    workers: int = typer.Option(min(4, os.cpu_count() or 1), min=0, help="Image decoding processes."),
    device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:N."),
    precision: str = typer.Option("fp32", help="fp32, fp16 or bf16 (autocast on GPU)."),
    transform: str = typer.Option("clip", help="Image transform: clip (centre crop) or targetpad (1.25)."),
    overwrite: bool = typer.Option(False, help="Recompute cells that already have a result file."),
    feature_dtype: str = typer.Option("fp16", help="Image features stored and scored as fp16 (half the memory) "
                                                   "or fp32."),
    skip_bad_images: bool = typer.Option(False, help="Skip unreadable images (recorded) instead of stopping."),
    as_json: bool = typer.Option(False, "--json", help="Print results as JSON on stdout."),
    quiet: bool = typer.Option(False, help="No progress bars."),
):
    """Run methods on dataset splits; print a table of the main metrics."""
    try:
        from . import distributed
        from .encoder import resolve_device
        from .engine import Engine, RunOptions
        from .progress import Progress

        device = distributed.init_from_env(resolve_device(device))  # under torchrun: encode in shards
        quiet = quiet or not distributed.is_main()
        names = resolve_methods(method)
        overrides = pairs(data, "--data")
        cache_path = cache_dir(cache)
        opened = resolve_datasets(dataset, data_root, overrides, pairs(setting, "--set"), cache_path)
        prompts = pairs(prompt, "--prompt")
        options = RunOptions(results_dir=results_dir, cache_dir=cache_path, batch_size=batch_size, workers=workers,
                             overwrite=overwrite, skip_bad_images=skip_bad_images,
                             feature_dtype=_feature_dtype(feature_dtype),
                             all_methods=not split_list(method) or "all" in split_list(method),
                             checkpoints=checkpoint_map(checkpoint, names), prompts=prompts)
        outcomes = []
        engines: dict[str, Engine] = {}
        with Progress(enabled=not quiet) as progress:
            for ds, splits in opened:
                enc_spec = encoder or ds.default_encoder or ""
                if enc_spec not in engines:
                    enc = _encoder(encoder, ds, device, precision, transform, cache_path, progress)
                    engines[enc_spec] = Engine(enc, options, progress)
                engine = engines[enc_spec]
                prepare = getattr(ds, "prepare", None)
                found = prepare(engine, names, progress) if prepare else {}
                for split in splits:
                    loaded = ds.load(split)
                    loaded.info.setdefault("split_order", list(ds.available_splits()))
                    outcomes += engine.evaluate(loaded, names, found)
    except CirbenchError as exc:
        fail(exc)
    if not distributed.is_main():
        return
    _print_outcomes(outcomes, as_json)
    skipped = {}
    for o in outcomes:
        if o.status == "skipped":
            skipped.setdefault(o.method, str(o.error))
    for name, why in skipped.items():
        typer.echo(f"note: {name} not run (it needs released weights): {why}", err=True)
    failures = [o for o in outcomes if o.status == "failed"]
    for o in failures:
        typer.echo(f"error: {o.method} on {o.dataset}:{o.split}: {o.error}", err=True)
    if failures:
        raise typer.Exit(max(o.error.exit_code for o in failures))


def _feature_dtype(name: str) -> str:
    dtypes = {"fp16": "float16", "fp32": "float32"}
    if name not in dtypes:
        raise UsageError(f"--feature-dtype must be fp16 or fp32, not {name!r}")
    return dtypes[name]


def _print_outcomes(outcomes, as_json: bool) -> None:
    records = [o.record for o in outcomes if o.record is not None]
    if as_json:
        typer.echo(json.dumps({"results": records,
                               "cells": [{"method": o.method, "dataset": o.dataset, "split": o.split,
                                          "status": o.status, "path": str(o.path) if o.path else None,
                                          "error": str(o.error) if o.error else None} for o in outcomes]},
                              indent=2, default=str))
        return
    if not records:
        return
    from rich.console import Console
    from rich.table import Table

    from .report import dataset_tables, long_frame

    console = Console(width=200)
    for name, table in dataset_tables(long_frame(records)).items():
        t = Table(title=name)
        t.add_column("method")
        for s, m in table.columns:
            t.add_column(f"{s}\n{m}", justify="right")
        for (enc, meth), row in table.iterrows():
            t.add_row(meth, *["-" if v != v else f"{v:.2f}" for v in row.tolist()])
        console.print(t)
    for record in records:
        for path in record.get("submission", []):
            console.print(f"{record['method']['name']} on {record['dataset']['name']}:{record['dataset']['split']}: "
                          f"submission file {path}", highlight=False)
    reused = sum(o.status == "reused" for o in outcomes)
    if reused:
        console.print(f"({reused} cell(s) reused from earlier result files; --overwrite recomputes them)")


@app.command()
def report(
    results_dir: Path = typer.Option(Path("results"), help="Where the result files are."),
    out: Path = typer.Option(Path("reports"), help="Where tables and plots go."),
):
    """Render markdown and CSV tables and PNG plots from result files."""
    try:
        from .report import render

        written = render(results_dir, out)
    except CirbenchError as exc:
        fail(exc)
    for path in written:
        typer.echo(str(path))


@app.command()
def train(
    method: str = typer.Argument(..., help="The method to train (pic2word, combiner, ...)."),
    encoder: Optional[str] = typer.Option(None, help="The frozen encoder (as for run)."),
    images: Optional[Path] = typer.Option(None, help="Unlabeled images: a folder, or a tab-separated manifest (filepath, title)."),
    dataset: Optional[str] = typer.Option(None, "--dataset", "-d", help="Dataset whose train triplets to use."),
    data_root: Optional[Path] = typer.Option(None),
    data: List[str] = typer.Option([]),
    setting: List[str] = typer.Option([], "--set", help="KEY=VALUE dataset settings (e.g. world=tiny)."),
    out: Optional[Path] = typer.Option(None, help="Checkpoint path [the default place `run` looks in]."),
    epochs: Optional[int] = typer.Option(None, min=1),
    batch_size: Optional[int] = typer.Option(None, min=2),
    lr: Optional[float] = typer.Option(None),
    seed: int = typer.Option(0),
    option: List[str] = typer.Option([], "--option", "-o", help="KEY=VALUE method options (e.g. middle_dim=512)."),
    cache: Optional[Path] = typer.Option(None, "--cache-dir"),
    workers: int = typer.Option(min(4, os.cpu_count() or 1), min=0),
    device: str = typer.Option("auto"),
    precision: str = typer.Option("fp32"),
    transform: str = typer.Option("clip"),
    resume: bool = typer.Option(False, help="Continue from the checkpoint at --out (after an interruption)."),
    quiet: bool = typer.Option(False),
):
    """Train a method's weights with the encoder frozen; saves the official checkpoint layout.
    Under torchrun (several processes or GPUs) the batch is split across processes."""
    try:
        from . import distributed
        from .encoder import resolve_device
        from .progress import Progress
        from .registry import methods
        from .training_data import train_request

        cls = methods.get(method)
        cache_path = cache_dir(cache)
        device = distributed.init_from_env(resolve_device(device))
        with Progress(enabled=not quiet and distributed.is_main()) as progress:
            ds = open_dataset(dataset, data_root, pairs(data, "--data"), pairs(setting, "--set"),
                              cache_path)[0] if dataset else None
            enc = _encoder(encoder, ds, device, precision, transform, cache_path, progress) if (encoder or ds) else None
            if enc is None:
                raise UsageError("pass --encoder SPEC (the frozen encoder the method is trained for)")
            request = train_request(cls, enc, ds, images, out, cache_path, epochs, batch_size, lr, seed,
                                    pairs(option, "--option"), progress, workers, resume)
            path = cls.train(request)
    except CirbenchError as exc:
        fail(exc)
    typer.echo(str(path))


@list_app.command("methods")
def list_methods():
    """Registered methods."""
    from .registry import methods

    for name in methods.names():
        cls = methods.get(name)
        tag = " [supervised]" if cls.supervised else ""
        typer.echo(f"{name:12s} {cls.description}{tag}  ({methods.origin(name)})")


@list_app.command("datasets")
def list_datasets():
    """Registered datasets and their splits."""
    from .registry import datasets

    for name in datasets.names():
        cls = datasets.get(name)
        splits = ", ".join(cls.splits) if cls.splits else "(from the files)"
        typer.echo(f"{name:12s} {cls.description}  splits: {splits}")


@list_app.command("encoders")
def list_encoders():
    """Registered encoder kinds."""
    from .registry import encoders

    for name in encoders.names():
        doc = (encoders.get(name).__doc__ or "").strip().splitlines()[0]
        typer.echo(f"{name:12s} {doc}")


app.add_typer(list_app, name="list")


@data_app.command("check")
def data_check(
    dataset: str = typer.Argument(..., help="NAME, NAME:SPLIT or a folder."),
    data_root: Optional[Path] = typer.Option(None),
    data: List[str] = typer.Option([]),
    setting: List[str] = typer.Option([], "--set"),
    cache: Optional[Path] = typer.Option(None, "--cache-dir"),
    quiet: bool = typer.Option(False),
):
    """Validate a dataset layout without running a model: counts, missing and unreadable images,
    annotations pointing outside their split, paths escaping the dataset folder."""
    try:
        from .progress import Progress

        ds, splits = open_dataset(dataset, data_root, pairs(data, "--data"), pairs(setting, "--set"), cache)
        with Progress(enabled=not quiet) as progress:
            problems, summary = ds.check(progress)
    except CirbenchError as exc:
        fail(exc)
    for line in summary:
        typer.echo(line)
    for p in problems:
        typer.echo(f"problem: {p}")
    if problems:
        typer.echo(f"{len(problems)} problem(s) in {ds.root}", err=True)
        raise typer.Exit(1)
    typer.echo(f"{ds.root}: OK")


@data_app.command("prepare")
def data_prepare(
    dataset: str = typer.Argument(..., help="A dataset whose queries are built from raw data (coco)."),
    data_root: Optional[Path] = typer.Option(None),
    data: List[str] = typer.Option([]),
    setting: List[str] = typer.Option([], "--set", help="KEY=VALUE settings (e.g. seed=0)."),
    cache: Optional[Path] = typer.Option(None, "--cache-dir"),
    quiet: bool = typer.Option(False),
):
    """Build a dataset's queries from its raw files (recorded and seeded)."""
    try:
        from .progress import Progress

        ds, _splits = open_dataset(dataset, data_root, pairs(data, "--data"), pairs(setting, "--set"), cache,
                                   check_splits=False)
        if not hasattr(ds, "prepare_data"):
            raise UsageError(f"dataset {ds.label!r} needs no preparation")
        with Progress(enabled=not quiet) as progress:
            lines = ds.prepare_data(progress)
    except CirbenchError as exc:
        fail(exc)
    for line in lines:
        typer.echo(line)


cache_app = typer.Typer(no_args_is_help=True, help="Inspect or clear the feature cache.")
app.add_typer(cache_app, name="cache")


def _cache_parts(root: Path) -> list[tuple[str, Path]]:
    parts = []
    for kind in ("features", "text"):
        folder = root / kind
        if folder.is_dir():
            parts += [(kind, d) for d in sorted(folder.iterdir()) if d.is_dir()]
    return parts


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


@cache_app.command("info")
def cache_info(cache: Optional[Path] = typer.Option(None, "--cache-dir")):
    """Entries and size per encoder key (image and text features), plus trained checkpoints and worlds."""
    root = cache_dir(cache)
    typer.echo(f"cache: {root}")
    for kind, folder in _cache_parts(root):
        entries = 0
        for meta in folder.glob("*.json"):
            try:
                entries += len(json.loads(meta.read_text())["keys"])
            except (ValueError, KeyError, OSError):
                pass
        typer.echo(f"{kind:9s} {folder.name}  {entries} entries  {_size(folder) / 2**20:.1f} MiB")
    for name in ("checkpoints", "world", "models"):
        if (root / name).is_dir():
            typer.echo(f"{name:9s} {_size(root / name) / 2**20:.1f} MiB")


@cache_app.command("clear")
def cache_clear(
    cache: Optional[Path] = typer.Option(None, "--cache-dir"),
    encoder_key: Optional[str] = typer.Option(None, help="Only this encoder key's features (see `cache info`)."),
):
    """Delete cached image and text features (never checkpoints, worlds or downloaded models)."""
    import shutil

    root = cache_dir(cache)
    removed = 0
    for _kind, folder in _cache_parts(root):
        if encoder_key is None or folder.name == encoder_key:
            removed += _size(folder)
            shutil.rmtree(folder)
    typer.echo(f"removed {removed / 2**20:.1f} MiB of cached features from {root}")


def main() -> None:
    try:
        app()
    except CirbenchError as exc:  # commands catch their own; this is a safety net
        typer.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except Exception as exc:
        if "--debug" in sys.argv:
            raise
        typer.echo(f"error: internal error ({type(exc).__name__}: {exc}); run with --debug for the traceback "
                   "and please report it", err=True)
        sys.exit(1)
