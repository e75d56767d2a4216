"""Tables and plots from result files only: `cirbench report` never runs a model."""

from __future__ import annotations

from pathlib import Path

from . import results


def method_label(record: dict) -> str:
    method = record["method"]
    if method.get("supervised"):
        trained = method.get("config", {}).get("train_dataset", "?")
        return f"{method['name']} (supervised, trained on {trained})"
    return method["name"]


def long_frame(records: list[dict]):
    """One row per (encoder, method, dataset, split, metric)."""
    import pandas as pd

    rows = []
    for r in records:
        for metric, value in r["metrics"].items():
            rows.append({"encoder": r["encoder"]["label"], "encoder_spec": r["encoder"].get("spec"),
                         "method_name": r["method"]["name"], "method": method_label(r),
                         "supervised": r["method"].get("supervised", False),
                         "dataset": r["dataset"]["name"], "split": r["dataset"]["split"], "metric": metric,
                         "value": value, "main": metric in r.get("main_metrics", []),
                         "n_queries": r["dataset"]["n_queries"], "n_gallery": r["dataset"]["n_gallery"],
                         "split_order": _split_position(r)})
    return pd.DataFrame(rows, columns=["encoder", "encoder_spec", "method_name", "method", "supervised", "dataset", "split", "metric", "value",
                                       "main", "n_queries", "n_gallery", "split_order"])


def _split_position(record: dict) -> int:
    order = record["dataset"].get("split_order") or []
    split = record["dataset"]["split"]
    return order.index(split) if split in order else len(order)


def method_order(names) -> list[str]:
    preferred = ["image-only", "text-only", "image+text", "pic2word"]
    return sorted(names, key=lambda n: (n.split(" ")[0] not in preferred,
                                        preferred.index(n.split(" ")[0]) if n.split(" ")[0] in preferred else 0, n))


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
    for i, ((encoder, method), row) in enumerate(table.iterrows()):
        xs = [j + i * width for j in range(len(columns))]
        ax.bar(xs, row.fillna(0).tolist(), width=width, label=method if table.index.get_level_values(0).nunique() == 1
               else f"{method} [{encoder}]")
    ax.set_xticks([j + width * (n - 1) / 2 for j in range(len(columns))])
    ax.set_xticklabels([f"{s}\n{m}" for s, m in columns], fontsize=8)
    ax.set_ylabel("score (%)")
    ax.set_title(f"{dataset}")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    path = out / f"{dataset}.png"
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


def load_records(results_dir: Path) -> list[dict]:
    return [results.read(p) for p in results.find(results_dir)]


def render(results_dir: Path, out: Path) -> list[Path]:
    """Write results.md, results.csv (every metric, long form), summary.csv and one PNG per dataset."""
    from .errors import DataError

    records = load_records(results_dir)
    if not records:
        raise DataError(f"no result files under {results_dir}: run `cirbench run` first "
                        "(or pass --results-dir)")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    frame = long_frame(records)
    tables = dataset_tables(frame)
    written = []
    lines = ["# cirbench results", "",
             f"{len(records)} result files from `{results_dir}`. Scores are percentages. Methods marked "
             "supervised were trained on the dataset's own training triplets and are not zero-shot.", ""]
    for dataset, table in tables.items():
        lines += [f"## {dataset}", "", _markdown(table), ""]
        written.append(_plot(dataset, table, out))
        lines += [f"![{dataset}]({dataset}.png)", ""]
    submitted = [r for r in records if r.get("submission")]
    if submitted:
        lines += ["## Test-server submissions", "",
                  "These splits have no public ground truth: upload the files to the evaluation server.", ""]
        for r in submitted:
            for path in r["submission"]:
                lines.append(f"- {r['encoder']['label']} / {method_label(r)} / "
                             f"{r['dataset']['name']}:{r['dataset']['split']}: `{path}`")
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
        comparison.to_csv(out / "paper_comparison.csv", index=False, float_format="%.2f")
    encoders = {r["encoder"]["label"]: r["encoder"] for r in records}
    lines += ["## Encoders", ""]
    for label, enc in encoders.items():
        lines.append(f"- `{label}`: transform {enc.get('transform')}, precision {enc.get('precision')}, "
                     f"QuickGELU {enc.get('quick_gelu')}, open_clip {enc.get('open_clip_version')}")
        for note in enc.get("notes", []):
            lines.append(f"  - {note}")
    md = out / "results.md"
    md.write_text("\n".join(lines) + "\n", encoding="utf-8")
    frame.to_csv(out / "results.csv", index=False)
    summary = []
    for dataset, table in tables.items():
        flat = table.copy()
        flat.columns = [f"{s} {m}" for s, m in table.columns]
        flat.insert(0, "dataset", dataset)
        summary.append(flat.reset_index())
    import pandas as pd

    summary_frame = pd.concat(summary) if summary else pd.DataFrame(columns=["dataset", "encoder", "method"])
    summary_frame.to_csv(out / "summary.csv", index=False, float_format="%.2f")
    return [md, out / "results.csv", out / "summary.csv", *written]
