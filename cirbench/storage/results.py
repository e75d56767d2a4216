"""Result records: one JSON file per (encoder, method, dataset, split) with how it was made, and a
compact per-query outcomes file beside it (ranks of the targets, the top of each ranking, every
metric's per-query values) from which any metric, interval or comparison can be recomputed.

:class:`Result` is the typed record the engine builds and the report reads by attribute. Files of
schema version 1 (before per-query outcomes) are migrated on reading; unknown versions are refused.
"""

from __future__ import annotations

import functools
import json
import platform
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from cirbench.util import fsutil
from cirbench.errors import DataError

SCHEMA_VERSION = 2
OUTCOMES_TOP = 50  # gallery ids kept per query in the outcomes file


@dataclass
class EncoderRecord:
    label: str
    spec: str
    model_key: str  # the model (weights, precision, activation): names rows in reports
    key: str  # model + image transform: keys the feature cache
    slug: str
    transform: str = "clip"
    identity: dict = field(default_factory=dict)

    @property
    def quick_gelu(self):
        return self.identity.get("quick_gelu")

    @property
    def precision(self):
        return self.identity.get("precision")


@dataclass
class MethodRecord:
    name: str
    supervised: bool = False
    description: str = ""
    config: dict = field(default_factory=dict)
    options: dict = field(default_factory=dict)
    transform: str = "clip"
    reference_transform: str | None = None  # the transform of the query's reference images (None: as transform)
    weights: str = "loaded"  # the encoder's weights as loaded, or rounded through float16 ("fp16")
    protocol: dict = field(default_factory=dict)  # {"text", "notes"}: what the report shows about it
    display_order: float = 100.0  # where the method sits in tables (the method declares it)
    text_length: int | None = None  # texts truncated at this many tokens (None: the encoder's own length)
    own_model: bool = False  # the method brought its own model (the record's encoder)
    # the setting this result was made with ("" the default; else --label or the options that differ
    # from their defaults): part of its identity, file name and row
    setting: str = ""

    @property
    def train_dataset(self) -> str:
        return self.config.get("train_dataset", "?")


@dataclass
class DatasetRecord:
    name: str
    split: str
    root: str = ""
    result_name: str = ""
    n_queries: int = 0
    n_gallery: int = 0
    remove_reference: bool = False
    prompts: dict = field(default_factory=dict)
    has_ground_truth: bool = True
    scope: str = "gallery"
    content_key: str = ""
    info: dict = field(default_factory=dict)

    @property
    def split_order(self) -> list[str]:
        return self.info.get("split_order") or []


@dataclass
class RunRecord:
    date: str = ""
    wall_time_s: float = 0.0
    device: str = ""
    batch_size: int = 0
    workers: int = 0
    feature_cache: dict = field(default_factory=dict)
    feature_dtype: str = ""
    skipped: dict = field(default_factory=dict)
    command: list = field(default_factory=list)
    versions: dict = field(default_factory=dict)


@dataclass
class Result:
    cell_key: str
    encoder: EncoderRecord
    method: MethodRecord
    dataset: DatasetRecord
    metrics: dict[str, float]
    main_metrics: list[str]
    run: RunRecord
    submission: list[str] = field(default_factory=list)
    outcomes: dict | None = None  # {"file": name beside the JSON, "sha256": ...}
    schema_version: int = SCHEMA_VERSION
    path: Path | None = field(default=None, compare=False)  # where it was read from or written to

    def to_dict(self) -> dict:
        out = asdict(self)
        out.pop("path")
        return {"schema_version": out.pop("schema_version"), **out}

    @classmethod
    def from_dict(cls, raw: Any, path: Path | None = None) -> "Result":
        where = path or "result record"
        if not isinstance(raw, dict):
            raise DataError(f"{where}: a result file must hold a JSON object")
        version = raw.get("schema_version")
        if version == 1:
            raw = _migrate_v1(raw)
        elif version != SCHEMA_VERSION:
            raise DataError(f"{where}: result schema version {version!r} is not supported "
                            f"(this cirbench reads versions 1 and {SCHEMA_VERSION})")
        missing = [f for f in ("cell_key", "encoder", "method", "dataset", "metrics") if f not in raw]
        if missing:
            raise DataError(f"{where}: not a complete result record (missing {', '.join(missing)})")
        if not isinstance(raw["metrics"], dict) or not all(isinstance(v, (int, float)) or v is None
                                                           for v in raw["metrics"].values()):
            raise DataError(f"{where}: 'metrics' must map metric names to numbers")
        try:
            return cls(cell_key=str(raw["cell_key"]), encoder=_build(EncoderRecord, raw["encoder"]),
                       method=_build(MethodRecord, raw["method"]), dataset=_build(DatasetRecord, raw["dataset"]),
                       metrics={k: (float("nan") if v is None else float(v)) for k, v in raw["metrics"].items()},
                       main_metrics=list(raw.get("main_metrics", [])), run=_build(RunRecord, raw.get("run", {})),
                       submission=list(raw.get("submission", [])), outcomes=raw.get("outcomes"),
                       schema_version=SCHEMA_VERSION, path=Path(path) if path else None)
        except (TypeError, ValueError) as exc:
            raise DataError(f"{where}: malformed result record ({exc})") from None

    @property
    def outcomes_path(self) -> Path | None:
        if not self.outcomes or self.path is None:
            return None
        return self.path.parent / self.outcomes["file"]


def _build(cls, raw):
    if not isinstance(raw, dict):
        raise TypeError(f"{cls.__name__} must be an object")
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in raw.items() if k in names})  # a missing required field: TypeError


def _migrate_v1(raw: dict) -> dict:
    """Schema 1 -> 2: identity fields were inlined, there was no model key, transform or outcomes."""
    raw = dict(raw)
    enc = dict(raw.get("encoder", {}))
    identity = {k: v for k, v in enc.items() if k not in ("label", "slug", "key")}
    raw["encoder"] = {"label": enc.get("label", "?"), "spec": enc.get("spec", enc.get("label", "?")),
                      "model_key": enc.get("key", ""), "key": enc.get("key", ""), "slug": enc.get("slug", ""),
                      "transform": enc.get("transform", "clip"), "identity": identity}
    method = dict(raw.get("method", {}))
    method.setdefault("transform", enc.get("transform", "clip"))
    raw["method"] = method
    ds = dict(raw.get("dataset", {}))
    core = {f.name for f in fields(DatasetRecord)}
    raw["dataset"] = {**{k: v for k, v in ds.items() if k in core},
                      "result_name": ds.get("name", ""), "info": {k: v for k, v in ds.items() if k not in core}}
    run = dict(raw.get("run", {}))
    run.pop("seed", None)
    raw["run"] = run
    return raw


def result_path(results_dir: Path, encoder_slug: str, dataset: str, split: str, method: str,
                setting: str = "") -> Path:
    """<encoder>/<dataset>/<split>/<method>.json, or <method>~<setting>.json for another setting of it."""
    s = fsutil.slug
    name = s(method) + (f"~{s(setting)}" if setting else "")
    return Path(results_dir) / s(encoder_slug) / s(dataset) / s(split) / f"{name}.json"


def setting_label(name: str, setting: str) -> str:
    """A method with its setting, as every table and message names it: ``slerp`` or ``slerp [t=0.5]``."""
    return f"{name} [{setting}]" if setting else name


def method_id(record: "Result") -> str:
    """What a result's method is, setting included (see :func:`setting_label`)."""
    return setting_label(record.method.name, record.method.setting)


def write(path: Path, result: Result, outcomes: "Outcomes | None" = None) -> Result:
    """The outcomes file first, then the JSON that names it (each atomically)."""
    path = Path(path)
    if outcomes is not None:
        npz = path.with_name(path.stem + ".outcomes.npz")
        fsutil.atomic_write(npz, outcomes.save)
        result.outcomes = {"file": npz.name, "sha256": fsutil.sha256_file(npz)}
    fsutil.write_json(path, result.to_dict())
    result.path = path
    return result


def read(path: Path) -> Result:
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: unreadable result file ({exc})") from None
    return Result.from_dict(raw, Path(path))


def find(results_dir: Path) -> list[Path]:
    """Result files: <encoder>/<dataset>/<split>/<method>.json (submission files live deeper)."""
    return sorted(p for p in Path(results_dir).glob("*/*/*/*.json") if not p.name.startswith("."))


def remove(result: "Result") -> list[Path]:
    """Delete a result file and what it wrote beside it (its outcomes and submission files); returns
    what was deleted."""
    import shutil

    gone = []
    path = Path(result.path)
    beside = [result.outcomes_path] if result.outcomes_path is not None else []
    for p in [*beside, path]:
        if p.is_file():
            p.unlink()
            gone.append(p)
    submissions = path.parent / "submissions" / path.stem
    if submissions.is_dir():
        shutil.rmtree(submissions)
        gone.append(submissions)
    return gone


# -- per-query outcomes --------------------------------------------------------------------------

@dataclass
class Outcomes:
    """Per-query outcomes of one cell. ``views`` maps "gallery"/"subset" to (top Q x K gallery indices,
    target ranks per query, first-target rank per query); ``values`` maps metric -> (per-query values,
    aggregate)."""

    qids: list[str]
    gallery: list[str]
    views: dict[str, tuple[np.ndarray, list[np.ndarray], np.ndarray]]
    values: dict[str, tuple[np.ndarray, str]]
    # for looking at what was retrieved: each query's text, reference id and first target id, and
    # where the images behind the references, first targets and top results are ({id: [path, ops]})
    texts: list[str] = field(default_factory=list)
    references: list[str] = field(default_factory=list)
    first_targets: list[str] = field(default_factory=list)
    images: dict = field(default_factory=dict)

    def save(self, fh) -> None:
        arrays: dict[str, np.ndarray] = {"qids": np.asarray(self.qids, dtype=str),
                                         "gallery": np.asarray(self.gallery, dtype=str),
                                         "texts": np.asarray(self.texts, dtype=str),
                                         "references": np.asarray(self.references, dtype=str),
                                         "first_targets": np.asarray(self.first_targets, dtype=str),
                                         "images_json": np.asarray(json.dumps(self.images))}
        for name, (top, ranks, first) in self.views.items():
            arrays[f"{name}.top"] = top[:, :OUTCOMES_TOP].astype(np.int32)
            arrays[f"{name}.first_rank"] = first.astype(np.int64)
            arrays[f"{name}.offsets"] = np.cumsum([0] + [len(r) for r in ranks]).astype(np.int64)
            arrays[f"{name}.target_ranks"] = (np.concatenate(ranks) if ranks else np.zeros(0)).astype(np.int32)
        names = list(self.values)
        arrays["metric_names"] = np.asarray(names, dtype=str)
        arrays["metric_aggs"] = np.asarray([self.values[n][1] for n in names], dtype=str)
        arrays["metric_values"] = (np.stack([self.values[n][0] for n in names], axis=1) if names
                                   else np.zeros((len(self.qids), 0)))
        np.savez_compressed(fh, **arrays)

    @classmethod
    def load(cls, path: Path) -> "Outcomes":
        try:
            with np.load(path, allow_pickle=False) as z:
                data = {k: z[k] for k in z.files}
            return cls._from_arrays(data)
        except (OSError, ValueError, KeyError, IndexError, TypeError, RecursionError) as exc:
            raise DataError(f"{path}: unreadable outcomes file ({type(exc).__name__}: {exc})") from None

    @classmethod
    def _from_arrays(cls, data: dict) -> "Outcomes":
        views = {}
        for name in ("gallery", "subset"):
            if f"{name}.top" in data:
                offsets = data[f"{name}.offsets"]
                flat = data[f"{name}.target_ranks"]
                if offsets.ndim != 1 or not len(offsets) or offsets[0] != 0 or offsets[-1] != len(flat) \
                        or (np.diff(offsets) < 0).any():
                    raise ValueError(f"the {name} rank offsets do not index the {len(flat)} target ranks")
                ranks = [flat[offsets[i]:offsets[i + 1]] for i in range(len(offsets) - 1)]
                views[name] = (data[f"{name}.top"], ranks, data[f"{name}.first_rank"])
        names = [str(n) for n in data["metric_names"]]
        aggs = [str(a) for a in data["metric_aggs"]]
        matrix = data["metric_values"]
        values = {n: (matrix[:, i], a) for i, (n, a) in enumerate(zip(names, aggs))}
        strings = {k: [str(x) for x in data[k]] if k in data else [] for k in ("texts", "references", "first_targets")}
        images = json.loads(str(data["images_json"])) if "images_json" in data else {}
        return cls([str(q) for q in data["qids"]], [str(g) for g in data["gallery"]], views, values,
                    strings["texts"], strings["references"], strings["first_targets"], images)

    def image(self, image_id: str):
        """A Path or ImageRef for an image id recorded in the file (None when not recorded)."""
        from cirbench.protocol.images import ImageRef

        entry = self.images.get(image_id)
        if entry is None:
            return None
        path, ops = entry
        return ImageRef(Path(path), tuple(tuple(op) for op in ops)) if ops else Path(path)


def check_outcomes(out: Outcomes, result: Result, path) -> None:
    """A DataError naming ``path`` unless the outcomes fit their result: one row per query of the result
    in every array, unique query ids, well-formed rank offsets, and per-query metric values whose
    aggregates are the result's metrics (so a table, an interval and a paired test read one truth)."""
    from cirbench.protocol.metrics import aggregate

    n = result.dataset.n_queries
    problems = []
    if len(out.qids) != n:
        problems.append(f"{len(out.qids)} query ids for {n} queries")
    elif len(set(out.qids)) != n:
        problems.append("duplicate query ids")
    for name in ("texts", "references", "first_targets"):
        if getattr(out, name) and len(getattr(out, name)) != len(out.qids):
            problems.append(f"{len(getattr(out, name))} {name} for {len(out.qids)} queries")
    for view, (top, ranks, first) in out.views.items():
        if top.ndim != 2 or len(top) != len(out.qids) or len(first) != len(out.qids) or len(ranks) != len(out.qids):
            problems.append(f"the {view} ranking has {len(top)} rows, {len(first)} first ranks and {len(ranks)} "
                            f"rank lists for {len(out.qids)} queries")
        elif top.size and (top.max() >= len(out.gallery) or top.min() < -1):
            problems.append(f"the {view} ranking names gallery positions outside the {len(out.gallery)} items")
    for metric, (values, agg) in out.values.items():
        if len(values) != len(out.qids):
            problems.append(f"{len(values)} values of {metric} for {len(out.qids)} queries")
            continue
        recorded = result.metrics.get(metric)
        if recorded is not None and recorded == recorded:
            try:
                again = aggregate(values, agg)
            except ValueError as exc:
                problems.append(str(exc))
                continue
            if not abs(again - recorded) <= 1e-6 * max(1.0, abs(recorded)):
                problems.append(f"its {metric} values give {again:.4f}, the result file says {recorded:.4f}")
    if problems:
        raise DataError(f"{path}: per-query outcomes do not fit their result ({'; '.join(problems[:3])})")


def load_outcomes(result: Result) -> Outcomes | None:
    """The result's per-query outcomes, or None for a result file written before outcomes existed; a
    DataError naming the file for outcomes that are missing, changed since the result was written, or do
    not fit it (see check_outcomes)."""
    path = result.outcomes_path
    if path is None:
        return None
    if not path.is_file():
        raise DataError(f"{path}: the per-query outcomes its result {result.path} names are missing")
    recorded = result.outcomes.get("sha256")
    if recorded:
        found = fsutil.sha256_file(path)
        if found != recorded:
            raise DataError(f"{path}: changed after its result was written (sha256 {found[:12]}..., the result "
                            f"{result.path} records {recorded[:12]}...)")
    out = Outcomes.load(path)
    check_outcomes(out, result, path)
    return out


@functools.lru_cache(maxsize=1)
def _versions() -> tuple:
    import importlib.metadata as md

    out = {"python": platform.python_version(), "platform": platform.platform()}
    for pkg in ("cirbench", "torch", "torchvision", "open_clip_torch", "numpy", "pillow", "transformers"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = None
    return tuple(out.items())


def versions() -> dict:
    """Python, platform and package versions (read once per process)."""
    return dict(_versions())
