"""The `cirbench` command line: a thin layer over the Python API (cirbench.api). Heavy imports happen
inside the commands, so --help is instant. Options shared by several commands are declared once."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Annotated, List, Optional

import typer


from cirbench.errors import CirbenchError, UsageError, short

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Benchmark composed image retrieval methods on every dataset split.")
list_app = typer.Typer(no_args_is_help=True, help="List registered methods, datasets or encoders.")
data_app = typer.Typer(no_args_is_help=True, help="Check or prepare dataset layouts on disk.")
cache_app = typer.Typer(no_args_is_help=True, help="Inspect or clear the feature cache.")
app.add_typer(data_app, name="data")
app.add_typer(list_app, name="list")
app.add_typer(cache_app, name="cache")
world_app = typer.Typer(no_args_is_help=True, help="The embedded benchmark's world and its small CLIP.")
app.add_typer(world_app, name="world")
results_app = typer.Typer(no_args_is_help=True, help="List result files by method and setting, or prune settings.")
app.add_typer(results_app, name="results")
STATE = {"debug": False}

# -- options shared by several commands (declared once) --------------------------------------------
DataRoot = Annotated[Optional[Path], typer.Option("--data-root", help="Folder holding one subfolder per dataset "
                                                                      "[CIRBENCH_DATA_ROOT].")]
DataPaths = Annotated[List[str], typer.Option("--data", help="NAME=PATH: where one dataset lives.")]
Settings = Annotated[List[str], typer.Option("--set", help="KEY=VALUE dataset settings (e.g. world=tiny).")]
CacheDir = Annotated[Optional[Path], typer.Option("--cache-dir", help="Feature cache, checkpoints, worlds "
                                                                      "[CIRBENCH_CACHE or ~/.cache/cirbench].")]
EncoderSpec = Annotated[Optional[str], typer.Option("--encoder", help="ARCH:TAG, hf-hub:ORG/REPO, local-dir:PATH, "
                                                                      "ARCH:FILE, random:ARCH (default: each "
                                                                      "dataset's: ViT-L-14:openai for real ones).")]
Device = Annotated[str, typer.Option("--device", help="auto, cpu, cuda, cuda:N.")]
Precision = Annotated[str, typer.Option("--precision", help="auto, fp32, fp16 or bf16 (autocast on GPU). auto: fp32, "
                                        "except the multimodal-LLM embedders on a GPU, which run in bf16 as their "
                                        "official code does.")]
Transform = Annotated[Optional[str], typer.Option("--transform", help="Force one image transform for every method: "
                                                                      "clip (resize, centre crop), targetpad (1.25) "
                                                                      "or hf-clip (crop offsets rounded down, as "
                                                                      "Hugging Face's CLIPImageProcessor) (default: "
                                                                      "each method's own code's).")]
Workers = Annotated[int, typer.Option("--workers", min=0, help="Image decoding processes.")]
Plugins = Annotated[List[str], typer.Option("--plugin", help="A plugin file (PATH.py) or module whose import "
                                                             "registers methods, datasets or encoders "
                                                             "(repeatable; also CIRBENCH_PLUGINS).")]
Quiet = Annotated[bool, typer.Option("--quiet", help="No progress output.")]
ResultsDir = Annotated[Path, typer.Option("--results-dir", help="Where result files are.")]
DEFAULT_WORKERS = min(4, os.cpu_count() or 1)


def cache_dir(value: Optional[Path]) -> Path:
    from cirbench.api import default_cache_dir

    return default_cache_dir(value)


def pairs(values: List[str], what: str) -> dict[str, str]:
    out = {}
    for value in values or []:
        key, sep, rest = value.partition("=")
        if not sep or not key or not rest:
            raise UsageError(f"{what} must look like NAME=VALUE, got {short(value)}")
        out[key] = rest
    return out


def fail(exc: CirbenchError) -> None:
    if STATE["debug"]:
        raise exc
    typer.echo(f"error: {exc}", err=True)
    raise typer.Exit(exc.exit_code)


@app.callback()
def main_options(debug: bool = typer.Option(False, "--debug", help="Show tracebacks.")):
    STATE["debug"] = debug
    import warnings

    def one_line(message, category, filename, lineno, file=None, line=None):
        where = f" ({filename}:{lineno})" if debug else ""
        typer.echo(f"warning: {str(message).splitlines()[0] if str(message) else category.__name__}{where}", err=True)

    warnings.showwarning = one_line  # library warnings as cirbench's own lines, not source excerpts


@app.command()
def run(
    method: Annotated[List[str], typer.Option("--method", "-m", help="Method name(s), comma-separated or repeated; "
                                                                     "'all'.")] = [],
    dataset: Annotated[List[str], typer.Option("--dataset", "-d", help="NAME, NAME:SPLIT, a folder of your own, or "
                                                                       "'all'.")] = [],
    encoder: EncoderSpec = None,
    checkpoint: Annotated[List[str], typer.Option("--checkpoint", help="A method's weights: PATH (the one method "
                                                                       "that takes weights) or METHOD=PATH.")] = [],
    option: Annotated[List[str], typer.Option("--option", "-o", help="METHOD.KEY=VALUE method options "
                                                                     "(e.g. slerp.t=0.8).")] = [],
    data_root: DataRoot = None,
    data: DataPaths = [],
    setting: Settings = [],
    prompt: Annotated[List[str], typer.Option("--prompt", help="KIND=TEMPLATE overrides a prompt (kinds: pseudo, "
                                                               "text, caption).")] = [],
    results_dir: ResultsDir = Path("results"),
    cache: CacheDir = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 64,
    workers: Workers = DEFAULT_WORKERS,
    device: Device = "auto",
    precision: Precision = "auto",
    transform: Transform = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Recompute cells that already have a result "
                                                                "file.")] = False,
    feature_dtype: Annotated[str, typer.Option("--feature-dtype", help="Image features stored and scored as fp32 "
                                                                       "(as the official codes score them) or fp16 (half "
                                                                       "the memory: million-image galleries).")] = "fp32",
    skip_bad_images: Annotated[bool, typer.Option("--skip-bad-images", help="Skip unreadable images (recorded) "
                                                                            "instead of stopping.")] = False,
    label: Annotated[Optional[str], typer.Option("--label", help="Name this run's setting of each method (its "
                                                                 "results are kept beside other settings'; default: "
                                                                 "the options that differ from their defaults).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print results as JSON on stdout.")] = False,
    quiet: Quiet = False,
    plugin: Plugins = [],
):
    """Run methods on dataset splits; print a table of the main metrics. Each setting of a method (its
    options that differ from their defaults, or --label) is kept in results of its own."""
    from cirbench.util import distributed

    try:
        from cirbench.api import Settings as RunSettings
        from cirbench.api import run as run_settings
        from cirbench.util.progress import Progress

        evaluation = run_settings(RunSettings(
            methods=method or None, datasets=dataset or None, encoder=encoder, data_root=data_root,
            data=pairs(data, "--data"), settings=pairs(setting, "--set"), checkpoints=checkpoint or None,
            options=option or None, prompts=pairs(prompt, "--prompt"), results_dir=results_dir, cache_dir=cache,
            batch_size=batch_size, workers=workers, device=device, precision=precision, transform=transform,
            feature_dtype=feature_dtype, overwrite=overwrite, skip_bad_images=skip_bad_images, plugins=plugin,
            label=label, progress=Progress(enabled=not quiet and distributed.is_main())))
    except CirbenchError as exc:
        fail(exc)
    if not distributed.is_main():
        return
    from cirbench.storage.results import setting_label

    for o in evaluation.cells:  # said first: the results (a table, or JSON) follow
        if o.replaced:
            typer.echo(f"note: replaced {o.path}: the earlier result of {setting_label(o.method, o.setting)} on "
                       f"{o.dataset}:{o.split} (the same setting)", err=True)
    _print_outcomes(evaluation.cells, as_json)
    skipped = {}
    for o in evaluation.skipped:
        skipped.setdefault(o.method, str(o.error))
    for name, why in skipped.items():
        typer.echo(f"note: {name} not run: {why}", err=True)
    for o in evaluation.failures:
        typer.echo(f"error: {setting_label(o.method, o.setting)} on {o.dataset}:{o.split}: {o.error}", err=True)
    if evaluation.failures:
        raise typer.Exit(max(o.error.exit_code for o in evaluation.failures))


def _print_outcomes(cells, as_json: bool) -> None:
    records = [o.record for o in cells if o.record is not None]
    if as_json:
        typer.echo(json.dumps({"results": [r.to_dict() for r in records],
                               "cells": [{"method": o.method, "setting": o.setting, "dataset": o.dataset,
                                          "split": o.split, "status": o.status,
                                          "replaced": o.replaced, "path": str(o.path) if o.path else None,
                                          "error": str(o.error) if o.error else None} for o in cells]},
                              indent=2, default=str))
        return
    if not records:
        return
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from cirbench.analysis.cells import long_frame
    from cirbench.analysis.tables import dataset_tables
    from cirbench.storage.results import method_id

    console = Console(width=200)
    for name, table in dataset_tables(long_frame(records)).items():
        t = Table(title=name)
        models = len(set(table.index.get_level_values(0))) > 1  # a method brought its own model: name it
        if models:
            t.add_column("model")
        t.add_column("method")
        for s, m in table.columns:
            t.add_column(f"{s}\n{m}", justify="right")
        for (enc, meth), row in table.iterrows():
            shown = ["-" if v != v else f"{v:.2f}" for v in row.tolist()]
            t.add_row(*([escape(enc)] if models else []), escape(meth), *shown)  # "[t=0.5]" is no markup
        console.print(t)
    for record in records:
        for path in record.submission:
            console.print(escape(f"{method_id(record)} on {record.dataset.name}:{record.dataset.split}: "
                                 f"submission file {path}"), highlight=False)
    reused = sum(o.status == "reused" for o in cells)
    if reused:
        console.print(f"({reused} cell(s) reused from earlier result files; --overwrite recomputes them)")


def _results_of(results_dir: Path, method: Optional[str], setting: Optional[str], dataset: Optional[str]):
    """(readable results that match, warnings); ``setting`` "default" is the default setting."""
    from cirbench.storage import results

    if not Path(results_dir).is_dir():
        raise UsageError(f"no results folder {results_dir} (pass --results-dir)")
    found, warnings = [], []
    for path in results.find(results_dir):
        try:
            record = results.read(path)
        except CirbenchError as exc:
            warnings.append(str(exc))
            continue
        if method is not None and record.method.name != method:
            continue
        if setting is not None and record.method.setting != ("" if setting == "default" else setting):
            continue
        if dataset is not None and dataset not in (record.dataset.name, f"{record.dataset.name}:{record.dataset.split}"):
            continue
        found.append(record)
    return found, warnings


MethodFilter = Annotated[Optional[str], typer.Option("--method", "-m", help="Only this method (its name).")]
SettingFilter = Annotated[Optional[str], typer.Option("--setting", help="Only this setting, as listed ('default' for "
                                                                        "the default one).")]
DatasetFilter = Annotated[Optional[str], typer.Option("--dataset", "-d", help="Only this dataset (NAME or NAME:SPLIT).")]


@results_app.command("list")
def results_list(results_dir: ResultsDir = Path("results"), method: MethodFilter = None, setting: SettingFilter = None,
                 dataset: DatasetFilter = None):
    """One line per result file: method and setting, dataset:split, model, date, file."""
    from cirbench.storage.results import method_id

    try:
        found, warnings = _results_of(results_dir, method, setting, dataset)
    except CirbenchError as exc:
        fail(exc)
    for r in sorted(found, key=lambda r: (r.method.name, r.method.setting, r.dataset.name, r.dataset.split)):
        typer.echo(f"{method_id(r)}\t{r.dataset.name}:{r.dataset.split}\t{r.encoder.label}\t{r.run.date}\t{r.path}")
    for w in warnings:
        typer.echo(f"warning: unreadable: {w}", err=True)
    settings = {(r.method.name, r.method.setting) for r in found}
    typer.echo(f"{len(found)} result file(s), {len(settings)} method setting(s)", err=True)


@results_app.command("prune")
def results_prune(method: Annotated[str, typer.Option("--method", "-m", help="The method whose results to delete.")],
                  setting: Annotated[str, typer.Option("--setting", help="The setting to delete, as `cirbench "
                                                                         "results list` shows it ('default': the "
                                                                         "default one).")],
                  results_dir: ResultsDir = Path("results"), dataset: DatasetFilter = None,
                  dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would be deleted.")] = False):
    """Delete one setting's result files (with their outcomes and submissions), e.g. an abandoned sweep."""
    from cirbench.storage import results

    try:
        found, _ = _results_of(results_dir, method, setting, dataset)
        if not found:
            known = sorted({r.method.setting or "default" for r in _results_of(results_dir, method, None, dataset)[0]})
            raise UsageError(f"no result of {method!r} with setting {setting!r} under {results_dir} (its settings "
                             f"there: {', '.join(known) or 'none'})")
    except CirbenchError as exc:
        fail(exc)
    for record in found:
        if dry_run:
            typer.echo(f"would delete {record.path}")
        else:
            for path in results.remove(record):
                typer.echo(f"deleted {path}")
    typer.echo(f"{'would delete' if dry_run else 'deleted'} {len(found)} result(s) of {method} [{setting}]", err=True)


Resamples = Annotated[int, typer.Option("--bootstrap", min=0, help="Bootstrap resamples over queries for the 95% "
                                                                    "intervals and paired tests (0: none).")]
Seed = Annotated[int, typer.Option("--seed", help="Seed of the bootstrap and of the query samples.")]


@app.command()
def report(
    results_dir: ResultsDir = Path("results"),
    out: Annotated[Path, typer.Option("--out", help="Where tables, plots, grids and index.html go.")] = Path("reports"),
    bootstrap: Resamples = 1000,
    seed: Seed = 0,
    latex: Annotated[bool, typer.Option("--latex/--no-latex", help="Also write tables.tex (booktabs).")] = True,
    grids: Annotated[bool, typer.Option("--grids/--no-grids", help="Retrieval grids (one PNG per split).")] = True,
    grid_queries: Annotated[int, typer.Option("--grid-queries", min=1, help="Queries per grid.")] = 4,
    grid_sample: Annotated[str, typer.Option("--grid-sample", help="random, or disagree: the queries on which the "
                                                                   "methods differ most.")] = "random",
    queries: Annotated[Optional[str], typer.Option("--queries", help="ID,ID,...: these queries in the grids.")] = None,
    html: Annotated[bool, typer.Option("--html/--no-html", help="Write index.html with a per-query browser.")] = True,
    browser_queries: Annotated[int, typer.Option("--browser-queries", min=1, help="Queries per split in the "
                                                                                 "browser.")] = 40,
):
    """Render tables with 95% intervals, paired comparisons, plots, retrieval grids, an HTML page (and
    LaTeX) from result files."""
    try:
        from cirbench.analysis.report import render

        written, warnings = render(results_dir, out, resamples=bootstrap, seed=seed, write_latex=latex, grids=grids,
                                   grid_queries=grid_queries, grid_sample=grid_sample,
                                   queries=[q.strip() for q in queries.split(",") if q.strip()] if queries else None,
                                   html=html, browser_queries=browser_queries)
    except CirbenchError as exc:
        fail(exc)
    for line in warnings:
        typer.echo(f"warning: {line}", err=True)
    for path in written:
        typer.echo(str(path))


@app.command()
def compare(
    method_a: Annotated[str, typer.Argument(help="A method name (as in the result files).")],
    method_b: Annotated[str, typer.Argument(help="Another method name.")],
    dataset: Annotated[List[str], typer.Option("--dataset", "-d", help="NAME or NAME:SPLIT (default: every dataset "
                                                                       "both have).")] = [],
    results_dir: ResultsDir = Path("results"),
    bootstrap: Resamples = 1000,
    seed: Seed = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the comparisons as JSON.")] = False,
):
    """Paired bootstrap test of A minus B on every split both were evaluated on (and the split average):
    the difference of each main metric, its 95% interval and a two-sided p-value."""
    try:
        from cirbench.analysis.compare import compare_methods

        rows, warnings = compare_methods(results_dir, method_a, method_b, dataset, bootstrap, seed)
    except CirbenchError as exc:
        fail(exc)
    for line in warnings:
        typer.echo(f"warning: {line}", err=True)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    from cirbench.analysis.stats import format_p

    typer.echo(f"{method_a} minus {method_b} (paired bootstrap over queries, {bootstrap} resamples, seed {seed}):")
    for r in rows:
        mark = "  *" if r["p"] < 0.05 else ""
        typer.echo(f"  {r['encoder']} | {r['dataset']}:{r['split']} {r['metric']}: {r['a']:.2f} vs {r['b']:.2f}  "
                   f"difference {r['difference']:+.2f} [{r['low']:+.2f}, {r['high']:+.2f}]  "
                   f"p {format_p(r['p'], bootstrap)}{mark}  ({r['queries']} queries)")
    typer.echo("* p < 0.05")


@app.command()
def train(
    method: Annotated[str, typer.Argument(help="The method to train (pic2word, combiner, ...).")],
    encoder: EncoderSpec = None,
    images: Annotated[Optional[Path], typer.Option("--images", help="Unlabeled images: a folder, or a "
                                                                    "tab-separated manifest (filepath, title).")] = None,
    texts: Annotated[Optional[Path], typer.Option("--texts", help="Captions, one per line (text-only "
                                                                  "training).")] = None,
    dataset: Annotated[Optional[str], typer.Option("--dataset", "-d", help="Dataset whose training data to "
                                                                           "use.")] = None,
    data_root: DataRoot = None,
    data: DataPaths = [],
    setting: Settings = [],
    out: Annotated[Optional[Path], typer.Option("--out", help="Checkpoint path [the default place `run` looks "
                                                              "in].")] = None,
    epochs: Annotated[Optional[int], typer.Option("--epochs", min=1)] = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", min=2)] = None,
    lr: Annotated[Optional[float], typer.Option("--lr")] = None,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    option: Annotated[List[str], typer.Option("--option", "-o", help="KEY=VALUE training options (e.g. "
                                                                     "middle_dim=512).")] = [],
    cache: CacheDir = None,
    workers: Workers = DEFAULT_WORKERS,
    device: Device = "auto",
    precision: Precision = "auto",
    transform: Transform = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the checkpoint at --out (after an "
                                                          "interruption).")] = False,
    quiet: Quiet = False,
    plugin: Plugins = [],
):
    """Train a method's weights with the encoder frozen; saves the official checkpoint layout.
    Under torchrun (several processes or GPUs) the batch is split across processes."""
    try:
        from cirbench.util import distributed
        from cirbench.util import fsutil
        from cirbench.api import open_dataset
        from cirbench.contracts.encoder import load_encoder, resolve_device
        from cirbench.util.progress import Progress
        from cirbench.contracts.registry import methods
        from cirbench.training.sources import train_request

        from cirbench.contracts import plugins

        plugins.load(plugin)
        cls = methods.get(method)
        cache_path = fsutil.tag_cache(fsutil.ensure_writable(cache_dir(cache), "cache folder", "pass --cache-dir PATH"))
        device = distributed.init_from_env(resolve_device(device))
        with Progress(enabled=not quiet and distributed.is_main()) as progress:
            ds = open_dataset(dataset, data_root, pairs(data, "--data"), pairs(setting, "--set"),
                              cache_path, check_splits=False)[0] if dataset else None
            spec = encoder or (ds.default_encoder if ds else None)
            if not spec:
                raise UsageError("pass --encoder SPEC (the frozen encoder the method is trained for)")
            enc = load_encoder(spec, device=device, precision=precision, transform=transform or cls.default_transform,
                               cache_dir=cache_path, progress=progress)
            request = train_request(cls, enc, ds, out, cache_path, images=images, texts=texts, epochs=epochs,
                                    batch_size=batch_size, lr=lr, seed=seed, options=pairs(option, "--option"),
                                    progress=progress, workers=workers, resume=resume)
            path = cls.train(request)
    except CirbenchError as exc:
        fail(exc)
    typer.echo(str(path))


@list_app.command("methods")
def list_methods(plugin: Plugins = []):
    """Registered methods (and plugins that are broken, with why)."""
    from cirbench.contracts.registry import methods

    _load_listed(plugin)
    for name in methods.names():
        cls = methods.get(name)
        tag = " [supervised]" if cls.supervised else ""
        typer.echo(f"{name:12s} {cls.description}{tag}  ({methods.origin(name)})")
        for key, opt in cls.options.items():  # each option as it is given, its default and what it does
            default = f" (default {opt.default})" if opt.default is not None else ""  # else the help says it
            typer.echo(f"{'':12s}   -o {name}.{key}={opt.type.__name__.upper()}{default}  {opt.help}")
    for name, why in sorted(methods.broken.items()):
        typer.echo(f"{name:12s} BROKEN: {why}")
    _broken_plugins()


@list_app.command("datasets")
def list_datasets(plugin: Plugins = [], data_root: DataRoot = None, data: DataPaths = []):
    """Registered datasets and their splits, and whether each has data under the data root."""
    from cirbench.acquire import manifests
    from cirbench.contracts.dataset import resolve_root
    from cirbench.contracts.registry import datasets
    from cirbench.errors import UsageError as NoRoot

    _load_listed(plugin)
    fetchable = set(manifests.shipped_names())
    for name in datasets.names():
        cls = datasets.get(name)
        splits = ", ".join(cls.splits) if cls.splits else "(from the files)"
        typer.echo(f"{name:12s} {cls.description}  splits: {splits}")
        if cls.generated:
            where = "data: built by cirbench itself (no download)"
        elif not cls.splits:
            where = "data: a folder you give (--dataset PATH)"
        else:
            try:
                folder = resolve_root(name, data_root, pairs(data, "--data"))
                where = (f"data: found at {folder}" if folder.is_dir() else f"data: none at {folder}"
                         + (f" (cirbench data get {name})" if name in fetchable else ""))
            except NoRoot:
                where = "data: no data root given (--data-root PATH or CIRBENCH_DATA_ROOT)" + (
                    f"; cirbench data get {name} --data-root PATH fetches it" if name in fetchable else "")
        typer.echo(f"{'':12s}   {where}")
    for name, why in sorted(datasets.broken.items()):
        typer.echo(f"{name:12s} BROKEN: {why}")
    _broken_plugins()


@list_app.command("encoders")
def list_encoders(plugin: Plugins = []):
    """Registered encoder kinds."""
    from cirbench.contracts.registry import encoders

    _load_listed(plugin)
    for name in encoders.names():
        doc = (encoders.get(name).__doc__ or "").strip().splitlines()[0]
        typer.echo(f"{name:12s} {doc}")
    for name, why in sorted(encoders.broken.items()):
        typer.echo(f"{name:12s} BROKEN: {why}")
    _broken_plugins()


def _load_listed(specs) -> None:
    """Plugins named for a listing: one that does not load is listed as broken, not an error."""
    from cirbench.contracts import plugins

    plugins.load(specs, strict=False)


def _broken_plugins() -> None:
    from cirbench.contracts import plugins

    for spec, why in sorted(plugins.broken.items()):
        typer.echo(f"plugin {spec}  BROKEN: {why}")


@data_app.command("check")
def data_check(
    dataset: Annotated[str, typer.Argument(help="NAME, NAME:SPLIT or a folder.")],
    data_root: DataRoot = None,
    data: DataPaths = [],
    setting: Settings = [],
    cache: CacheDir = None,
    quiet: Quiet = False,
    plugin: Plugins = [],
):
    """Validate a dataset layout without running a model: counts, missing and unreadable images,
    annotations pointing outside their split, paths escaping the dataset folder."""
    try:
        from cirbench.api import open_dataset
        from cirbench.contracts import plugins
        from cirbench.util.progress import Progress

        plugins.load(plugin)

        ds, _splits = open_dataset(dataset, data_root, pairs(data, "--data"), pairs(setting, "--set"), cache)
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


@data_app.command("get")
def data_get(
    dataset: Annotated[str, typer.Argument(help="fashioniq, cirr, circo, imagenet-r, coco or genecis.")],
    data_root: DataRoot = None,
    data: DataPaths = [],
    manifest: Annotated[Optional[Path], typer.Option("--manifest", help="Another manifest of the same format "
                                                                          "(default: the one cirbench ships).")] = None,
    mirror: Annotated[Optional[str], typer.Option("--mirror", help="Fetch https://HOST/PATH from URL/HOST/PATH "
                                                                     "(a lab mirror or an offline copy).")] = None,
    from_hub: Annotated[Optional[str], typer.Option("--from-hub", help="A Hugging Face dataset repository laid out "
                                                                         "as the official folders, for images a dead "
                                                                         "link no longer serves.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print what would be fetched and where; fetch "
                                                            "nothing.")] = False,
    quiet: Quiet = False,
    plugin: Plugins = [],
):
    """Download a benchmark from its official sources into the layout cirbench reads (resumable,
    verified), list the manual steps left, and check the result."""
    try:
        from cirbench.acquire import manifests
        from cirbench.acquire.get import from_hub as hub_copy
        from cirbench.acquire.get import get
        from cirbench.contracts import plugins
        from cirbench.contracts.dataset import resolve_root
        from cirbench.contracts.registry import datasets
        from cirbench.util.progress import Progress

        plugins.load(plugin)
        name = datasets.canonical(dataset) if dataset in datasets else dataset
        if name not in datasets and name not in pairs(data, "--data") and not manifests.plain_name(name):
            raise UsageError(f"dataset name {dataset!r} is not a folder name: it would be written outside the data "
                             "root (name a folder inside it, or pass --data NAME=PATH)")
        chosen = manifests.read(manifest) if manifest else manifests.shipped(name)
        try:
            folder = resolve_root(name, data_root, pairs(data, "--data"))
        except UsageError:
            if not dry_run:
                raise
            folder = Path("<data root>") / name  # a dry run only says where things would go
        with Progress(enabled=not quiet) as progress:
            outcome = get(chosen, folder, mirror=mirror, dry_run=dry_run, progress=progress)
            hub_lines = hub_copy(from_hub, folder, progress) if from_hub and not dry_run else []
    except CirbenchError as exc:
        fail(exc)
    for line in outcome.lines + hub_lines:
        typer.echo(line)
    if from_hub and dry_run:
        typer.echo(f"would copy the files of the Hugging Face dataset repository {from_hub} into {folder}")
    if dry_run:
        typer.echo(outcome.total_line)
    for step in outcome.manual:
        typer.echo(f"manual: {step}")
    if dry_run:
        return
    typer.echo(f"checking {folder} ...")
    data_check(name, data_root, data, [], None, quiet, plugin)


@data_app.command("prepare")
def data_prepare(
    dataset: Annotated[str, typer.Argument(help="A dataset whose queries are built from raw data (coco).")],
    data_root: DataRoot = None,
    data: DataPaths = [],
    setting: Settings = [],
    out: Annotated[Optional[Path], typer.Option("--out", help="Where to write \\[default: under the cache; the "
                                                              "dataset folder is never written].")] = None,
    cache: CacheDir = None,
    quiet: Quiet = False,
    plugin: Plugins = [],
):
    """Build a dataset's queries from its raw files (recorded and seeded)."""
    try:
        from cirbench.api import open_dataset
        from cirbench.contracts import plugins
        from cirbench.util.progress import Progress

        plugins.load(plugin)

        ds, _splits = open_dataset(dataset, data_root, pairs(data, "--data"), pairs(setting, "--set"), cache,
                                   check_splits=False)
        with Progress(enabled=not quiet) as progress:
            lines = ds.prepare_data(progress, out)
    except CirbenchError as exc:
        fail(exc)
    for line in lines:
        typer.echo(line)


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


@cache_app.command("info")
def cache_info(cache: CacheDir = None):
    """Entries and size per encoder key (image and text features), plus what else the cache holds."""
    from cirbench.storage.cache import count_entries, feature_folders

    root = cache_dir(cache)
    typer.echo(f"cache: {root}")
    for kind, folder in feature_folders(root):
        typer.echo(f"{kind:9s} {folder.name}  {count_entries(folder)} entries  {_size(folder) / 2**20:.1f} MiB")
    for name in ("checkpoints", "world", "models", "artefacts", "prepared"):
        if (root / name).is_dir():
            typer.echo(f"{name:9s} {_size(root / name) / 2**20:.1f} MiB")


@cache_app.command("clear")
def cache_clear(
    cache: CacheDir = None,
    encoder_key: Annotated[Optional[str], typer.Option("--encoder-key", help="Only this encoder key's features "
                                                                             "(see `cache info`).")] = None,
):
    """Delete cached image and text features (never checkpoints, worlds, models or generated texts, and
    never a file cirbench did not write)."""
    from cirbench.storage.cache import clear, feature_folders
    from cirbench.util import fsutil

    root = cache_dir(cache)
    try:
        parts = feature_folders(root)
        if not parts and not fsutil.is_tagged_cache(root):
            raise UsageError(f"{root} is not a cirbench cache (no {fsutil.CACHE_TAG} of cirbench's and no feature "
                             "folders it wrote); nothing was deleted")
        if encoder_key is not None:
            known = sorted({folder.name for _kind, folder in parts})
            parts = [(kind, folder) for kind, folder in parts if folder.name == encoder_key]
            if not parts:
                raise UsageError(f"no cached features under the encoder key {encoder_key!r} in {root} (keys there: "
                                 f"{', '.join(known) or 'none'}; see `cirbench cache info`)")
    except CirbenchError as exc:
        fail(exc)
    removed, left = 0, []
    for _kind, folder in parts:
        freed, kept = clear(folder)
        removed, left = removed + freed, left + kept
    typer.echo(f"removed {removed / 2**20:.1f} MiB of cached features from {root}")
    if left:
        typer.echo(f"kept {len(left)} file(s) cirbench did not write, e.g. {left[0]}")


@world_app.command("rebuild")
def world_rebuild(
    settings: Settings = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="Folder for the weights file [the package's "
                                                              "cirbench/resources/world].")] = None,
    cache: CacheDir = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bars.")] = False,
):
    """Retrain the small CLIP the package ships, from scratch: render the world, train, write its weights file.

    With the default settings this reproduces cirbench/resources/world/small-clip-<key>.pt (what `cirbench
    run` uses instead of training); --set KEY=VALUE trains for other world settings (see `cirbench list`)."""
    from cirbench.util.progress import Progress
    from cirbench.world import shipped
    from cirbench.world.build import WorldConfig

    try:
        config = WorldConfig.parse(pairs(settings or [], "--set"))
        with Progress(enabled=not quiet) as progress:
            path, trained = shipped.rebuild(config, cache_dir(cache), out, progress)
    except CirbenchError as exc:
        fail(exc)
    acc = trained["zero_shot_accuracy"]
    typer.echo(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB): {trained['steps']} steps, final loss "
               f"{trained['final_loss']:.3f}; zero-shot accuracy shape {acc['shape']:.1f}%, colour "
               f"{acc['color']:.1f}%, domain {acc['domain']:.1f}%")


INTERRUPTED = "interrupted: what was encoded so far is in the cache; run again to continue"


def _terminate(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main() -> None:
    # SIGTERM (a scheduler, `kill`) unwinds like Ctrl-C, so encoded features are flushed to the cache
    signal.signal(signal.SIGTERM, _terminate)
    try:
        app()
    except CirbenchError as exc:  # commands catch their own; this is a safety net
        typer.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        typer.echo(INTERRUPTED, err=True)
        sys.exit(130)
    except SystemExit as exc:  # typer turns Ctrl-C and SIGTERM into a bare exit 130
        if exc.code == 130:
            typer.echo(INTERRUPTED, err=True)
        raise
    except Exception as exc:
        if "--debug" in sys.argv:
            raise
        typer.echo(f"error: internal error ({type(exc).__name__}: {exc}); run with --debug for the traceback "
                   "and please report it", err=True)
        sys.exit(1)
