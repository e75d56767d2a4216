"""Tables and plots from result files only: `cirbench report` never runs a model.

Rows are keyed by the encoder's identity (its model key), not its label: the same ``local-dir:`` path
before and after its weights changed gives two rows, labelled apart. Datasets are keyed by where
their results live (two folder datasets of one name stay apart).
"""

from __future__ import annotations

from pathlib import Path

from . import fsutil, results

FRAME_COLUMNS = ["encoder", "encoder_key", "encoder_spec", "method_name", "method", "supervised", "transform",
                 "dataset", "dataset_key", "split", "metric", "value", "main", "n_queries", "n_gallery",
                 "split_order"]


def method_label(record) -> str:
    if record.method.supervised:
        return f"{record.method.name} (supervised, trained on {record.method.train_dataset})"
    return record.method.name


def _labels(pairs) -> dict:
    """key -> display label; keys that share a label get a short form of the key appended."""
    by_label: dict[str, set] = {}
    for key, label in pairs:
        by_label.setdefault(label, set()).add(key)
    out = {}
    for key, label in pairs:
        out[key] = label if len(by_label[label]) == 1 else f"{label} [{str(key)[:8]}]"
    return out


def encoder_labels(records) -> dict:
    return _labels([(r.encoder.model_key, r.encoder.label) for r in records])


def dataset_labels(records) -> dict:
    return _labels([(r.dataset.result_name or r.dataset.name, r.dataset.name) for r in records])


def long_frame(records: list):
    """One row per (encoder, method, dataset, split, metric)."""
    import pandas as pd

    enc_labels, ds_labels = encoder_labels(records), dataset_labels(records)
    rows = []
    for r in records:
        ds_key = r.dataset.result_name or r.dataset.name
        for metric, value in r.metrics.items():
            rows.append({"encoder": enc_labels[r.encoder.model_key], "encoder_key": r.encoder.model_key,
                         "encoder_spec": r.encoder.spec, "method_name": r.method.name, "method": method_label(r),
                         "supervised": r.method.supervised, "transform": r.method.transform,
                         "dataset": ds_labels[ds_key], "dataset_key": ds_key, "split": r.dataset.split,
                         "metric": metric, "value": value, "main": metric in r.main_metrics,
                         "n_queries": r.dataset.n_queries, "n_gallery": r.dataset.n_gallery,
                         "split_order": _split_position(r)})
    return pd.DataFrame(rows, columns=FRAME_COLUMNS)


def _split_position(record) -> int:
    order = record.dataset.split_order
    split = record.dataset.split
    return order.index(split) if split in order else len(order)


PREFERRED = ["image-only", "text-only", "image+text", "pic2word", "searle", "lincir", "slerp", "weicom"]


def method_order(names) -> list[str]:
    def key(n):
        base = n.split(" ")[0]
        return (base not in PREFERRED, PREFERRED.index(base) if base in PREFERRED else 0, n)

    return sorted(names, key=key)


def dataset_tables(frame) -> dict:
    """dataset -> wide table (rows: encoder, method; columns: split / metric), with the split average
    where a dataset has several splits."""
    import pandas as pd

    tables = {}
    main = frame.loc[frame["main"].astype(bool)]
    for dataset, part in main.groupby("dataset", sort=True):
        wide = part.pivot_table(index=["encoder", "method"], columns=["split", "metric"], values="value",
                                aggfunc="first")
        splits = list(dict.fromkeys(part.sort_values("split_order", kind="stable")["split"]))  # declared order
        metric_order = list(dict.fromkeys(part["metric"]))
        wide = wide[[(s, m) for s in splits for m in metric_order if (s, m) in wide.columns]]
        if len(splits) > 1:
            for metric in dict.fromkeys(part["metric"]):
                cols = [(s, metric) for s in splits if (s, metric) in wide.columns]
                if len(cols) == len(splits):
                    wide[("average", metric)] = wide[cols].mean(axis=1)
        order = method_order(wide.index.get_level_values("method").unique())
        wide = wide.reindex(sorted(wide.index, key=lambda ix: (ix[0], order.index(ix[1]))))
        wide.columns = pd.MultiIndex.from_tuples(wide.columns)
        tables[dataset] = wide
    return tables


def _markdown(table) -> str:
    head = ["encoder", "method"] + [f"{s} {m}" for s, m in table.columns]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (encoder, method), row in table.iterrows():
        cells = ["" if v != v else f"{v:.2f}" for v in row.tolist()]
        lines.append("| " + " | ".join([encoder, method, *cells]) + " |")
    return "\n".join(lines)


def _plot(dataset: str, table, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = [c for c in table.columns]
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(columns) + 2), 4))
    n = len(table.index)
    width = 0.8 / max(1, n)
    one_encoder = table.index.get_level_values(0).nunique() == 1
    for i, ((encoder, method), row) in enumerate(table.iterrows()):
        xs = [j + i * width for j in range(len(columns))]
        ax.bar(xs, row.fillna(0).tolist(), width=width, label=method if one_encoder else f"{method} [{encoder}]")
    ax.set_xticks([j + width * (n - 1) / 2 for j in range(len(columns))])
    ax.set_xticklabels([f"{s}\n{m}" for s, m in columns], fontsize=8)
    ax.set_ylabel("score (%)")
    ax.set_title(f"{dataset}")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    path = out / f"{fsutil.slug(dataset)}.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def paper_numbers():
    """The published reference numbers shipped with cirbench (cirbench/data/paper_numbers.csv)."""
    from importlib import resources

    import pandas as pd

    with resources.files("cirbench").joinpath("data/paper_numbers.csv").open(encoding="utf-8") as fh:
        return pd.read_csv(fh)


def paper_comparison(frame):
    """Measured values beside the paper's, where method, encoder (backbone and weights), dataset, split
    and metric all match; a split 'average' matches the mean over the dataset's measured splits."""
    import pandas as pd

    paper = paper_numbers()
    measured = frame[["encoder_spec", "method_name", "dataset", "split", "metric", "value"]]
    averages = (measured.groupby(["encoder_spec", "method_name", "dataset", "metric"], as_index=False)
                .agg(value=("value", "mean"), splits=("split", "nunique")))
    averages = averages[averages["splits"] > 1].assign(split="average").drop(columns="splits")
    both = pd.concat([measured, averages], ignore_index=True)
    joined = paper.merge(both, left_on=["backbone", "method", "dataset", "split", "metric"],
                         right_on=["encoder_spec", "method_name", "dataset", "split", "metric"],
                         suffixes=("_paper", "_measured"))
    joined["difference"] = joined["value_measured"] - joined["value_paper"]
    return joined[["method", "backbone", "dataset", "split", "metric", "value_measured", "value_paper",
                   "difference", "source", "verified"]]


def load_records(results_dir: Path) -> tuple[list, list[str]]:
    """Every readable result file, and a warning line for each file that is not one."""
    from .errors import DataError

    records, warnings = [], []
    for path in results.find(results_dir):
        try:
            records.append(results.read(path))
        except DataError as exc:
            warnings.append(f"skipped {exc}")
    return records, warnings


def protocol_lines(records) -> list[str]:
    """Per (encoder, dataset, method): the transform, prompt, caption rule and options it ran with."""
    enc_labels, ds_labels = encoder_labels(records), dataset_labels(records)
    seen, lines = set(), ["| encoder | dataset | method | transform | prompt | rule / options |", "|---|---|---|---|---|---|"]
    for r in sorted(records, key=lambda r: (r.encoder.label, r.dataset.name, r.method.name)):
        ds_key = r.dataset.result_name or r.dataset.name
        key = (r.encoder.model_key, ds_key, r.method.name)
        if key in seen:
            continue
        seen.add(key)
        cfg = r.method.config
        prompt = cfg.get("prompt", "(image only)" if r.method.name == "image-only" else "")
        notes = [cfg["caption_rule"]] if "caption_rule" in cfg else []
        notes += [f"{k}={v}" for k, v in r.method.options.items()]
        notes += [f"{k}: {cfg[k]}" for k in ("t_source", "injection") if k in cfg]
        text = "; ".join(notes).replace("|", "\\|")
        lines.append(f"| {enc_labels[r.encoder.model_key]} | {ds_labels[ds_key]} | {r.method.name} | "
                     f"{r.method.transform} | `{str(prompt).replace('|', '/')}` | {text} |")
    return lines


def render(results_dir: Path, out: Path) -> tuple[list[Path], list[str]]:
    """Write results.md, results.csv (every metric, long form), summary.csv and one PNG per dataset.
    Returns (written files, warnings about result files that could not be read)."""
    from .errors import DataError

    records, warnings = load_records(results_dir)
    if not records:
        raise DataError(f"no result files under {results_dir}: run `cirbench run` first (or pass --results-dir)"
                        + (f" ({len(warnings)} unreadable)" if warnings else ""))
    out = fsutil.ensure_writable(Path(out), "report folder", "pass --out PATH")
    frame = long_frame(records)
    tables = dataset_tables(frame)
    written = []
    lines = ["# cirbench results", "",
             f"{len(records)} result files from `{results_dir}`. Scores are percentages. Methods marked "
             "supervised were trained on the dataset's own training triplets and are not zero-shot.", ""]
    for dataset, table in tables.items():
        lines += [f"## {dataset}", "", _markdown(table), ""]
        plot = _plot(dataset, table, out)
        written.append(plot)
        lines += [f"![{dataset}]({plot.name})", ""]
    submitted = [r for r in records if r.submission]
    if submitted:
        lines += ["## Test-server submissions", "",
                  "These splits have no public ground truth: upload the files to the evaluation server.", ""]
        for r in submitted:
            for path in r.submission:
                lines.append(f"- {r.encoder.label} / {method_label(r)} / {r.dataset.name}:{r.dataset.split}: `{path}`")
        lines.append("")
    comparison = paper_comparison(frame)
    lines += ["## Paper numbers beside measured ones", ""]
    if comparison.empty:
        lines += ["No result matches a published number (they need the same method, encoder, dataset, split "
                  "and metric; see cirbench/data/paper_numbers.csv).", ""]
    else:
        lines += ["| method | backbone | dataset | split | metric | measured | paper | difference | verified |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for row in comparison.itertuples():
            lines.append(f"| {row.method} | {row.backbone} | {row.dataset} | {row.split} | {row.metric} | "
                         f"{row.value_measured:.2f} | {row.value_paper:.2f} | {row.difference:+.2f} | {row.verified} |")
        lines.append("")
        written.append(fsutil.atomic_write(out / "paper_comparison.csv",
                                           lambda fh: comparison.to_csv(fh, index=False, float_format="%.2f"),
                                           binary=False))
    lines += ["## Methods and protocols", "", "What each method ran with: image transform, prompt template, "
              "caption rule and options.", "", *protocol_lines(records), ""]
    encoders = {}
    for r in records:
        encoders.setdefault(r.encoder.model_key, r.encoder)
    labels = encoder_labels(records)
    lines += ["## Encoders", ""]
    for key, enc in encoders.items():
        ident = enc.identity
        lines.append(f"- `{labels[key]}` (model key {key}): precision {ident.get('precision')}, QuickGELU "
                     f"{ident.get('quick_gelu')}{' (' + ident['quick_gelu_reason'] + ')' if ident.get('quick_gelu_reason') else ''}, "
                     f"open_clip {ident.get('open_clip_version')}")
        for note in ident.get("notes", []):
            lines.append(f"  - {note}")
    if warnings:
        lines += ["", "## Result files not read", "", *[f"- {w}" for w in warnings]]
    md = fsutil.write_text(out / "results.md", "\n".join(lines) + "\n")
    csv = fsutil.atomic_write(out / "results.csv", lambda fh: frame.to_csv(fh, index=False), binary=False)
    summary = []
    for dataset, table in tables.items():
        flat = table.copy()
        flat.columns = [f"{s} {m}" for s, m in table.columns]
        flat.insert(0, "dataset", dataset)
        summary.append(flat.reset_index())
    import pandas as pd

    summary_frame = pd.concat(summary) if summary else pd.DataFrame(columns=["dataset", "encoder", "method"])
    summary_csv = fsutil.atomic_write(out / "summary.csv",
                                      lambda fh: summary_frame.to_csv(fh, index=False, float_format="%.2f"),
                                      binary=False)
    return [md, csv, summary_csv, *written], warnings
