"""`cirbench compare A B`: paired tests between two methods from their result files."""

from __future__ import annotations

from pathlib import Path

from cirbench.errors import UsageError
from cirbench.storage.results import method_id


def compare_methods(results_dir: Path, method_a: str, method_b: str, datasets: list[str] | None = None,
                    resamples: int = 1000, seed: int = 0) -> tuple[list[dict], list[str]]:
    """One row per (encoder, dataset, split or "average", main metric) both methods have, and a warning for
    each result or outcomes file that could not be used."""
    from cirbench.analysis.cells import dataset_key, dataset_labels, encoder_labels, load
    from cirbench.analysis.stats import MIN_RESAMPLES

    if resamples < MIN_RESAMPLES:
        raise UsageError(f"--bootstrap {resamples}: a paired test needs at least {MIN_RESAMPLES} resamples")
    report = load(results_dir, resamples, seed)
    records = report.records
    names = {method_id(r) for r in records}  # a setting is a method of its own: "slerp [t=0.5]"
    for m in (method_a, method_b):
        if m not in names:
            skipped = f"; {len(report.warnings)} file(s) left out: {report.warnings[0]}" if report.warnings else ""
            raise UsageError(f"no result files of method {m!r} under {results_dir} (methods there: "
                             f"{', '.join(sorted(names)) or 'none'}{skipped})")
    enc_labels, ds_labels = encoder_labels(records), dataset_labels(records)
    wanted = [d.partition(":") for d in (datasets or [])]
    known = {ds_labels[dataset_key(r)] for r in records} | {r.dataset.name for r in records}
    for d, _, split in wanted:
        if d not in known:
            raise UsageError(f"--dataset {d!r}: no result files of that dataset under {results_dir} (datasets "
                             f"there: {', '.join(sorted(known)) or 'none'})")
        splits = {r.dataset.split for r in records if d in (ds_labels[dataset_key(r)], r.dataset.name)}
        if split and split not in splits:
            raise UsageError(f"--dataset {d}:{split}: {d} has no split {split!r} in the result files (splits: "
                             f"{', '.join(sorted(splits))})")
    rows, groups = [], {}
    for cell in report.cells:
        r = cell.record
        if method_id(r) != method_a or cell.outcomes is None:
            continue
        label = ds_labels[dataset_key(r)]
        if wanted and not any(d in (label, r.dataset.name) and (not s or s == r.dataset.split) for d, _, s in wanted):
            continue
        for other_key in partners(report, r, method_b):
            groups.setdefault((r.encoder.model_key, other_key, dataset_key(r)), []).append(r)
    if not groups:
        raise UsageError(f"{method_a} and {method_b} share no split with per-query outcomes under {results_dir}"
                         + (f" for {', '.join(datasets)}" if datasets else ""))
    for (enc, enc_b, ds), recs in sorted(groups.items()):
        order = recs[0].dataset.split_order
        recs.sort(key=lambda r: order.index(r.dataset.split) if r.dataset.split in order else len(order))
        splits = [r.dataset.split for r in recs]
        scopes = [([s], s) for s in splits] + ([(splits, "average")] if len(splits) > 1 else [])
        for metric in recs[0].main_metrics:
            for scope, label in scopes:
                result = report.paired(enc, method_a, method_b, ds, scope, metric, encoder_b=enc_b)
                if result is None:
                    continue
                a = sum(report.find(enc, method_a, ds, s).record.metrics[metric] for s in scope) / len(scope)
                b = sum(report.find(enc_b, method_b, ds, s).record.metrics[metric] for s in scope) / len(scope)
                encoder = enc_labels[enc] if enc == enc_b else f"{enc_labels[enc]} vs {enc_labels[enc_b]}"
                rows.append({"encoder": encoder, "dataset": ds_labels[ds], "split": label, "metric": metric,
                             "a": a, "b": b, "difference": result.difference, "low": result.low, "high": result.high,
                             "p": result.p, "queries": result.n_queries})
    return rows, report.warnings


def partners(report, record, method_b: str) -> list[str]:
    """The encoders whose ``method_b`` result to pair with ``record`` on its split: its own encoder's
    when there is one; else every other encoder's (a method that brings its own model is compared with
    the CLIP methods on the same queries, across encoders)."""
    from cirbench.analysis.cells import dataset_key

    ds, split = dataset_key(record), record.dataset.split
    found = [c for c in report.cells if method_id(c.record) == method_b and dataset_key(c.record) == ds
             and c.record.dataset.split == split and c.outcomes is not None]
    same = [c for c in found if c.record.encoder.model_key == record.encoder.model_key]
    chosen = same or found
    return list(dict.fromkeys(c.record.encoder.model_key for c in chosen))
