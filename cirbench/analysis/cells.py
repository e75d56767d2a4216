"""Result files as the analysis reads them: each result with its per-query outcomes (a cell), the labels
of encoders, datasets and methods, and the long data frame every table is made from.

Rows are keyed by the encoder's identity (its model key), not its label: the same ``local-dir:`` path
before and after its weights changed gives two rows, labelled apart. Datasets are keyed by where their
results live (two folder datasets of one name stay apart). Methods are ordered as they declare
(``display_order``); the analysis knows none by name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from cirbench.analysis import stats
from cirbench.storage import results
from cirbench.storage.results import method_id

FRAME_COLUMNS = ["encoder", "encoder_key", "encoder_spec", "method_name", "method_base", "setting", "method",
                 "supervised", "transform", "dataset", "dataset_key", "split", "metric", "value", "low", "high",
                 "main", "n_queries", "n_gallery", "split_order", "display_order", "model_name", "own_model"]


def method_label(record) -> str:
    """The method's row label: its name, its setting where it is not the default (``slerp [t=0.5]``),
    and for a supervised method what it was trained on."""
    if record.method.supervised:
        return f"{method_id(record)} (supervised, trained on {record.method.train_dataset})"
    return method_id(record)


def _labels(pairs) -> dict:
    """key -> display label; keys that share a label get a short form of the key appended."""
    by_label: dict[str, set] = {}
    for key, label in pairs:
        by_label.setdefault(label, set()).add(key)
    return {key: label if len(by_label[label]) == 1 else f"{label} [{str(key)[:8]}]" for key, label in pairs}


def encoder_labels(records) -> dict:
    return _labels([(r.encoder.model_key, r.encoder.label) for r in records])


def dataset_key(record) -> str:
    return record.dataset.result_name or record.dataset.name


def dataset_labels(records) -> dict:
    return _labels([(dataset_key(r), r.dataset.name) for r in records])


def split_key(record) -> str:
    """What the bootstrap resampling of a split is seeded with (the same for every method on it)."""
    return f"{dataset_key(record)}:{record.dataset.split}"


def method_order(labels, orders: dict | None = None) -> list[str]:
    """Method labels in the order the methods declare (``display_order``, lower first), then by name."""
    orders = orders or {}
    return sorted(labels, key=lambda label: (orders.get(label, 100.0), label))


def display_orders(records) -> dict:
    """method label -> the display order its method declared."""
    return {method_label(r): r.method.display_order for r in records}


@dataclass
class Cell:
    """One result file and its per-query outcomes (None for files written before outcomes existed)."""

    record: results.Result
    outcomes: results.Outcomes | None = None

    def values(self, metric: str):
        if self.outcomes is None or metric not in self.outcomes.values:
            return None
        return self.outcomes.values[metric]


@dataclass
class Report:
    cells: list[Cell]
    resamples: int = stats.DEFAULT_RESAMPLES
    seed: int = 0
    warnings: list[str] = field(default_factory=list)

    @property
    def records(self):
        return [c.record for c in self.cells]

    def frame(self):
        """One row per (encoder, method, dataset, split, metric), with the interval where outcomes exist."""
        import pandas as pd

        enc_labels, ds_labels = encoder_labels(self.records), dataset_labels(self.records)
        rows = []
        for cell in self.cells:
            r = cell.record
            for metric, value in r.metrics.items():
                low = high = float("nan")
                found = cell.values(metric)
                if found is not None and self.resamples:
                    low, high = stats.interval(found[0], found[1], self.resamples, self.seed, split_key(r))
                rows.append({"encoder": enc_labels[r.encoder.model_key], "encoder_key": r.encoder.model_key,
                             "encoder_spec": r.encoder.spec, "method_name": method_id(r), "method_base": r.method.name,
                             "setting": r.method.setting, "method": method_label(r),
                             "supervised": r.method.supervised, "transform": r.method.transform,
                             "dataset": ds_labels[dataset_key(r)], "dataset_key": dataset_key(r),
                             "split": r.dataset.split, "metric": metric, "value": value, "low": low, "high": high,
                             "main": metric in r.main_metrics, "n_queries": r.dataset.n_queries,
                             "n_gallery": r.dataset.n_gallery, "split_order": _split_position(r),
                             "display_order": r.method.display_order,
                             "model_name": r.encoder.identity.get("model_name") or r.encoder.spec,
                             "own_model": bool(getattr(r.method, "own_model", False))})
        return pd.DataFrame(rows, columns=FRAME_COLUMNS)

    def find(self, encoder_key: str, method: str, ds_key: str, split: str) -> Cell | None:
        for c in self.cells:
            r = c.record
            if (r.encoder.model_key, method_id(r), dataset_key(r), r.dataset.split) == (encoder_key, method, ds_key, split):
                return c
        return None

    def average_interval(self, encoder_key, method, ds_key, splits, metric) -> tuple[float, float]:
        parts = []
        for split in splits:
            cell = self.find(encoder_key, method, ds_key, split)
            found = cell.values(metric) if cell else None
            if found is None:
                return float("nan"), float("nan")
            parts.append((found[0], found[1], split_key(cell.record)))
        return stats.average_interval(parts, self.resamples, self.seed) if self.resamples else (float("nan"),) * 2

    def paired(self, encoder_key, method_a, method_b, ds_key, splits, metric, encoder_b: str | None = None,
               resamples: int | None = None) -> stats.Paired | None:
        """Paired bootstrap of a - b on one split, or on the mean over several; ``encoder_b`` (default: the
        same encoder) compares method_a on ``encoder_key`` with method_b on another model; ``resamples``
        (at least the report's) where a family of tests needs a finer p."""
        parts = []
        for split in splits:
            a = self.find(encoder_key, method_a, ds_key, split)
            b = self.find(encoder_b or encoder_key, method_b, ds_key, split)
            va = a.values(metric) if a else None
            vb = b.values(metric) if b else None
            if va is None or vb is None:
                return None
            x, y = stats.align(a.outcomes.qids, va[0], b.outcomes.qids, vb[0])
            parts.append((x, y, va[1], split_key(a.record)))
        n = max(self.resamples, resamples or 0)
        return stats.paired_parts(parts, n, self.seed) if self.resamples and parts else None


def _split_position(record) -> int:
    order = record.dataset.split_order
    split = record.dataset.split
    return order.index(split) if split in order else len(order)


def load(results_dir: Path, resamples: int = stats.DEFAULT_RESAMPLES, seed: int = 0) -> Report:
    """Every readable result file with its outcomes; a warning for each file that is not one, or whose
    outcomes are missing, changed or do not fit it (such a result is in no table)."""
    from cirbench.errors import DataError

    cells, warnings = [], []
    for path in results.find(results_dir):
        try:
            record = results.read(path)
        except DataError as exc:
            warnings.append(f"skipped {exc}")
            continue
        try:
            outcomes = results.load_outcomes(record)
        except DataError as exc:  # its numbers cannot be trusted: left out of every table and test
            warnings.append(f"skipped {path}, left out of every table: {exc}")
            continue
        cells.append(Cell(record, outcomes))
    return Report(cells, resamples, seed, warnings)


def long_frame(records: list):
    """One row per (encoder, method, dataset, split, metric) (without intervals)."""
    return Report([Cell(r) for r in records], resamples=0).frame()
