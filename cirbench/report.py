"""Tables, intervals, comparisons and plots from result files only: `cirbench report` never runs a model.

Rows are keyed by the encoder's identity (its model key), not its label: the same ``local-dir:`` path
before and after its weights changed gives two rows, labelled apart. Datasets are keyed by where their
results live (two folder datasets of one name stay apart). Intervals and paired tests come from the
per-query outcomes beside each result file (cirbench.stats); result files without them still report,
their intervals "n/a".
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import fsutil, results, stats

FRAME_COLUMNS = ["encoder", "encoder_key", "encoder_spec", "method_name", "method", "supervised", "transform",
                 "dataset", "dataset_key", "split", "metric", "value", "low", "high", "main", "n_queries",
                 "n_gallery", "split_order"]
PREFERRED = ["image-only", "text-only", "image+text", "pic2word", "searle", "lincir", "slerp", "weicom"]


def method_label(record) -> str:
    if record.method.supervised:
        return f"{record.method.name} (supervised, trained on {record.method.train_dataset})"
    return record.method.name


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


def method_order(names) -> list[str]:
    def key(n):
        base = n.split(" ")[0]
        return (base not in PREFERRED, PREFERRED.index(base) if base in PREFERRED else 0, n)

    return sorted(names, key=key)


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
                             "encoder_spec": r.encoder.spec, "method_name": r.method.name, "method": method_label(r),
                             "supervised": r.method.supervised, "transform": r.method.transform,
                             "dataset": ds_labels[dataset_key(r)], "dataset_key": dataset_key(r),
                             "split": r.dataset.split, "metric": metric, "value": value, "low": low, "high": high,
                             "main": metric in r.main_metrics, "n_queries": r.dataset.n_queries,
                             "n_gallery": r.dataset.n_gallery, "split_order": _split_position(r)})
        return pd.DataFrame(rows, columns=FRAME_COLUMNS)

    def find(self, encoder_key: str, method: str, ds_key: str, split: str) -> Cell | None:
        for c in self.cells:
            r = c.record
            if (r.encoder.model_key, r.method.name, dataset_key(r), r.dataset.split) == (encoder_key, method, ds_key, split):
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

    def paired(self, encoder_key, method_a, method_b, ds_key, splits, metric) -> stats.Paired | None:
        """Paired bootstrap of a - b on one split, or on the mean over several."""
        parts = []
        for split in splits:
            a, b = self.find(encoder_key, method_a, ds_key, split), self.find(encoder_key, method_b, ds_key, split)
            va = a.values(metric) if a else None
            vb = b.values(metric) if b else None
            if va is None or vb is None:
                return None
            x, y = stats.align(a.outcomes.qids, va[0], b.outcomes.qids, vb[0])
            parts.append((x, y, va[1], split_key(a.record)))
        return stats.paired_parts(parts, self.resamples, self.seed) if self.resamples and parts else None


def _split_position(record) -> int:
    order = record.dataset.split_order
    split = record.dataset.split
    return order.index(split) if split in order else len(order)


def load(results_dir: Path, resamples: int = stats.DEFAULT_RESAMPLES, seed: int = 0) -> Report:
    """Every readable result file with its outcomes; a warning for each file that is not one."""
    from .errors import DataError

    cells, warnings = [], []
    for path in results.find(results_dir):
        try:
            record = results.read(path)
        except DataError as exc:
            warnings.append(f"skipped {exc}")
            continue
        try:
            outcomes = results.load_outcomes(record)
        except DataError as exc:
            warnings.append(f"{path}: per-query outcomes not read ({exc}); its intervals are n/a")
            outcomes = None
        cells.append(Cell(record, outcomes))
    return Report(cells, resamples, seed, warnings)


def long_frame(records: list):
    """One row per (encoder, method, dataset, split, metric) (without intervals)."""
    return Report([Cell(r) for r in records], resamples=0).frame()


def load_records(results_dir: Path) -> tuple[list, list[str]]:
    report = load(results_dir, resamples=0)
    return report.records, report.warnings


@dataclass
class Table:
    """A dataset's main metrics: rows (encoder, method), columns (split, metric) incl. the average."""

    value: object  # DataFrame
    low: object
    high: object
    splits: list[str]


def dataset_tables(frame, report: Report | None = None) -> dict:
    """dataset -> wide table of values (rows: encoder, method; columns: split / metric), with the split
    average where a dataset has several splits. With a report, returns Table objects with intervals."""
    import pandas as pd

    out = {}
    main = frame.loc[frame["main"].astype(bool)]
    for dataset, part in main.groupby("dataset", sort=True):
        splits = list(dict.fromkeys(part.sort_values("split_order", kind="stable")["split"]))  # declared order
        metric_order = list(dict.fromkeys(part["metric"]))
        wide = {}
        for name in ("value", "low", "high"):
            w = part.pivot_table(index=["encoder", "method"], columns=["split", "metric"], values=name,
                                 aggfunc="first", dropna=False)
            w = w.reindex(columns=pd.MultiIndex.from_tuples(
                [(s, m) for s in splits for m in metric_order if (s, m) in w.columns]))
            wide[name] = w
        if len(splits) > 1:
            keys = part.drop_duplicates(["encoder", "method"]).set_index(["encoder", "method"])
            for metric in metric_order:
                cols = [(s, metric) for s in splits if (s, metric) in wide["value"].columns]
                if len(cols) != len(splits):
                    continue
                wide["value"][("average", metric)] = wide["value"][cols].mean(axis=1, skipna=False)
                lows, highs = [], []
                for ix in wide["value"].index:
                    if report is None or wide["value"].loc[ix, ("average", metric)] != wide["value"].loc[ix, ("average", metric)]:
                        lows.append(float("nan")), highs.append(float("nan"))
                        continue
                    row = keys.loc[ix]
                    low, high = report.average_interval(row["encoder_key"], row["method_name"], row["dataset_key"],
                                                        splits, metric)
                    lows.append(low), highs.append(high)
                wide["low"][("average", metric)] = lows
                wide["high"][("average", metric)] = highs
        order = method_order(wide["value"].index.get_level_values("method").unique())
        index = sorted(wide["value"].index, key=lambda ix: (ix[0], order.index(ix[1])))
        for name in wide:
            wide[name] = wide[name].reindex(index)
        out[dataset] = Table(wide["value"], wide["low"], wide["high"], splits) if report is not None else wide["value"]
    return out


def fmt(value: float, low: float = float("nan"), high: float = float("nan"), intervals: bool = True) -> str:
    if value != value:
        return ""
    if not intervals:
        return f"{value:.2f}"
    if low != low:
        return f"{value:.2f} (n/a)"
    return f"{value:.2f} [{low:.1f}, {high:.1f}]"


def _markdown(table: Table) -> str:
    head = ["encoder", "method"] + [f"{s} {m}" for s, m in table.value.columns]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for ix in table.value.index:
        cells = [fmt(table.value.loc[ix, c], table.low.loc[ix, c], table.high.loc[ix, c]) for c in table.value.columns]
        lines.append("| " + " | ".join([ix[0], ix[1], *cells]) + " |")
    return "\n".join(lines)


def _plot(dataset: str, table: Table, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = list(table.value.columns)
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(columns) + 2), 4))
    n = len(table.value.index)
    width = 0.8 / max(1, n)
    one_encoder = table.value.index.get_level_values(0).nunique() == 1
    for i, ix in enumerate(table.value.index):
        xs = [j + i * width for j in range(len(columns))]
        values = table.value.loc[ix].astype(float).to_numpy()
        low, high = table.low.loc[ix].astype(float).to_numpy(), table.high.loc[ix].astype(float).to_numpy()
        # a percentile interval need not contain the point value (a skewed metric): no negative bars
        err = np.clip(np.vstack([np.nan_to_num(values - low), np.nan_to_num(high - values)]), 0, None)
        ax.bar(xs, np.nan_to_num(values), width=width, yerr=err, capsize=2, error_kw={"elinewidth": 0.8},
               label=ix[1] if one_encoder else f"{ix[1]} [{ix[0]}]")
    ax.set_xticks([j + width * (n - 1) / 2 for j in range(len(columns))])
    ax.set_xticklabels([f"{s}\n{m}" for s, m in columns], fontsize=8)
    ax.set_ylabel("score (%), 95% bootstrap interval")
    ax.set_title(f"{dataset}")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    path = out / f"{fsutil.slug(dataset)}.png"
    fig.savefig(path, dpi=120, bbox_inches="tight")  # room for the legend beside the axes
    plt.close(fig)
    return path


def paper_numbers():
    """The published reference numbers shipped with cirbench (cirbench/data/paper_numbers.csv)."""
    from importlib import resources

    import pandas as pd

    with resources.files("cirbench").joinpath("data/paper_numbers.csv").open(encoding="utf-8") as fh:
        return pd.read_csv(fh)


def paper_comparison(frame, tables: dict | None = None):
    """Measured values beside the paper's, where method, encoder (backbone and weights), dataset, split
    and metric all match; a split 'average' matches the mean over the dataset's measured splits. With
    the tables, the measured interval is added and whether the paper's number lies inside it."""
    import pandas as pd

    paper = paper_numbers()
    cols = ["encoder_spec", "method_name", "method", "encoder", "dataset", "split", "metric", "value", "low", "high"]
    measured = frame[cols].rename(columns={"method": "method_label"})
    averages = (measured.groupby(["encoder_spec", "method_name", "method_label", "encoder", "dataset", "metric"],
                                 as_index=False)
                .agg(value=("value", "mean"), splits=("split", "nunique")))
    averages = averages[averages["splits"] > 1].assign(split="average", low=float("nan"), high=float("nan"))
    if tables:
        for i, row in averages.iterrows():
            table = tables.get(row["dataset"])
            col = ("average", row["metric"])
            ix = (row["encoder"], row["method_label"])
            if isinstance(table, Table) and col in table.low.columns and ix in table.low.index:
                averages.loc[i, ["low", "high"]] = [table.low.loc[ix, col], table.high.loc[ix, col]]
    both = pd.concat([measured, averages.drop(columns="splits")], ignore_index=True)
    joined = paper.merge(both, left_on=["backbone", "method", "dataset", "split", "metric"],
                         right_on=["encoder_spec", "method_name", "dataset", "split", "metric"],
                         suffixes=("_paper", "_measured"))
    joined["difference"] = joined["value_measured"] - joined["value_paper"]
    joined["paper_inside_interval"] = [
        "n/a" if lo != lo else ("yes" if lo <= p <= hi else "no")
        for p, lo, hi in zip(joined["value_paper"], joined["low"], joined["high"])]
    return joined.rename(columns={"low": "measured_low", "high": "measured_high"})[
        ["method", "backbone", "dataset", "split", "metric", "value_measured", "measured_low", "measured_high",
         "value_paper", "difference", "paper_inside_interval", "source", "verified"]]


def comparisons(report: Report, frame, tables: dict):
    """Paired tests between every two methods of an encoder on each dataset's main metrics, per split and
    on the split average: difference, its interval and p."""
    import pandas as pd

    rows = []
    main = frame.loc[frame["main"].astype(bool)]
    for (dataset, enc), part in main.groupby(["dataset", "encoder_key"], sort=True):
        ds_key = part["dataset_key"].iloc[0]
        table = tables[dataset]
        methods = [m for m in method_order(part["method"].unique())]
        names = dict(zip(part["method"], part["method_name"]))
        scopes = [([s], s) for s in table.splits] + ([(table.splits, "average")] if len(table.splits) > 1 else [])
        for metric in dict.fromkeys(part["metric"]):
            for splits, label in scopes:
                for a, b in itertools.combinations(methods, 2):
                    result = report.paired(enc, names[a], names[b], ds_key, splits, metric)
                    if result is None:
                        continue
                    rows.append({"dataset": dataset, "encoder": part["encoder"].iloc[0], "split": label,
                                 "metric": metric, "method_a": a, "method_b": b, "difference": result.difference,
                                 "low": result.low, "high": result.high, "p": result.p,
                                 "significant": result.significant, "queries": result.n_queries})
    return pd.DataFrame(rows, columns=["dataset", "encoder", "split", "metric", "method_a", "method_b", "difference",
                                       "low", "high", "p", "significant", "queries"])


def comparison_matrix(comp, dataset: str, encoder: str, split: str, metric: str) -> list[str]:
    """Markdown: row method minus column method, * where the paired test says p < 0.05."""
    part = comp[(comp.dataset == dataset) & (comp.encoder == encoder) & (comp.split == split) & (comp.metric == metric)]
    if part.empty:
        return []
    methods = method_order(set(part.method_a) | set(part.method_b))
    cell = {}
    for r in part.itertuples():
        cell[(r.method_a, r.method_b)] = (r.difference, r.significant)
        cell[(r.method_b, r.method_a)] = (-r.difference, r.significant)
    short = [m.split(" ")[0] for m in methods]
    lines = ["| " + " | ".join(["minus →", *short]) + " |", "|" + "---|" * (len(methods) + 1)]
    for a, name in zip(methods, short):
        row = []
        for b in methods:
            if a == b:
                row.append("")
            elif (a, b) in cell:
                d, sig = cell[(a, b)]
                row.append(f"{0.0 if abs(d) < 0.05 else d:+.1f}{'*' if sig else ''}")
            else:
                row.append("n/a")
        lines.append("| " + " | ".join([name, *row]) + " |")
    return lines


def protocol_lines(records) -> list[str]:
    """Per (encoder, dataset, method): the transform, prompt, caption rule and options it ran with."""
    enc_labels, ds_labels = encoder_labels(records), dataset_labels(records)
    seen, lines = set(), ["| encoder | dataset | method | transform | prompt | rule / options |", "|---|---|---|---|---|---|"]
    for r in sorted(records, key=lambda r: (r.encoder.label, r.dataset.name, r.method.name)):
        key = (r.encoder.model_key, dataset_key(r), r.method.name)
        if key in seen:
            continue
        seen.add(key)
        cfg = r.method.config
        prompt = cfg.get("prompt", "(image only)" if r.method.name == "image-only" else "")
        notes = [cfg["caption_rule"]] if "caption_rule" in cfg else []
        notes += [f"{k}={v}" for k, v in r.method.options.items()]
        notes += [f"{k}: {cfg[k]}" for k in ("t_source", "injection") if k in cfg]
        text = "; ".join(notes).replace("|", "\\|")
        images = r.method.transform
        if r.method.reference_transform and r.method.reference_transform != r.method.transform:
            images += f"; references {r.method.reference_transform}"
        if r.method.weights != "loaded":
            images += f"; weights rounded through {r.method.weights}"
        lines.append(f"| {enc_labels[r.encoder.model_key]} | {ds_labels[dataset_key(r)]} | {r.method.name} | "
                     f"{images} | `{str(prompt).replace('|', '/')}` | {text} |")
    return lines


def latex(tables: dict) -> str:
    """Booktabs tables of the main metrics (value and 95% interval), one per dataset."""
    def esc(text: str) -> str:
        for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("$", r"\$"), ("#", r"\#"),
                     ("_", r"\_"), ("{", r"\{"), ("}", r"\}"), ("~", r"\textasciitilde{}"), ("^", r"\^{}")):
            text = text.replace(a, b)
        return text

    out = ["% cirbench report --latex: needs \\usepackage{booktabs}; values in %, 95% bootstrap intervals in brackets", ""]
    for dataset, table in tables.items():
        cols = list(table.value.columns)
        multi = table.value.index.get_level_values(0).nunique() > 1
        out += [r"\begin{table}[t]", r"\centering", r"\small",
                r"\begin{tabular}{l" + ("l" if multi else "") + "r" * len(cols) + "}", r"\toprule"]
        head = (["Encoder"] if multi else []) + ["Method"] + [f"{esc(s)} {esc(m)}" for s, m in cols]
        out.append(" & ".join(head) + r" \\")
        out.append(r"\midrule")
        for ix in table.value.index:
            cells = []
            for c in cols:
                v, lo, hi = table.value.loc[ix, c], table.low.loc[ix, c], table.high.loc[ix, c]
                cells.append("" if v != v else (f"{v:.1f}" if lo != lo else f"{v:.1f} {{\\scriptsize [{lo:.1f}, {hi:.1f}]}}"))
            out.append(" & ".join(([esc(ix[0])] if multi else []) + [esc(ix[1])] + cells) + r" \\")
        out += [r"\bottomrule", r"\end{tabular}", rf"\caption{{{esc(dataset)}: main metrics (\%).}}",
                rf"\label{{tab:{fsutil.slug(dataset)}}}", r"\end{table}", ""]
    return "\n".join(out)


def render(results_dir: Path, out: Path, resamples: int = stats.DEFAULT_RESAMPLES, seed: int = 0,
           write_latex: bool = False, grids: bool = True, grid_queries: int = 4, grid_sample: str = "random",
           queries: list[str] | None = None, html: bool = True, browser_queries: int = 100) -> tuple[list[Path], list[str]]:
    """Write results.md, results.csv, summary.csv, comparisons.csv, a PNG per dataset, retrieval grids,
    index.html and (with write_latex) tables.tex. Returns (written files, warnings)."""
    from .errors import DataError

    from .errors import UsageError

    if 0 < resamples < stats.MIN_RESAMPLES:
        raise UsageError(f"--bootstrap {resamples}: intervals and paired tests need at least {stats.MIN_RESAMPLES} "
                         "resamples (0: none)")
    report = load(results_dir, resamples, seed)
    if not report.cells:
        raise DataError(f"no result files under {results_dir}: run `cirbench run` first (or pass --results-dir)"
                        + (f" ({len(report.warnings)} unreadable)" if report.warnings else ""))
    out = fsutil.ensure_writable(Path(out), "report folder", "pass --out PATH")
    frame = report.frame()
    tables = dataset_tables(frame, report)
    comp = comparisons(report, frame, tables)
    written, plots = [], {}
    records = report.records
    missing = sum(c.outcomes is None for c in report.cells)
    lines = ["# cirbench results", "",
             f"{len(records)} result files from `{results_dir}`. Scores are percentages with 95% bootstrap intervals "
             f"over queries ({resamples} resamples, seed {seed}) in brackets"
             + (f"; {missing} older result file(s) have no per-query outcomes (intervals n/a)" if missing else "")
             + ". Methods marked supervised were trained on the dataset's own training triplets and are not "
             "zero-shot.", ""]
    for dataset, table in tables.items():
        lines += [f"## {dataset}", "", _markdown(table), ""]
        plot = _plot(dataset, table, out)
        plots[dataset] = plot
        written.append(plot)
        lines += [f"![{dataset}]({plot.name})", ""]
        headline = [c for c in table.value.columns if c[0] == ("average" if len(table.splits) > 1 else table.splits[0])]
        if headline and not comp.empty:
            split, metric = headline[0]
            for enc in dict.fromkeys(ix[0] for ix in table.value.index):
                matrix = comparison_matrix(comp, dataset, enc, split, metric)
                if matrix:
                    lines += [f"Paired comparisons, {split} {metric} ({enc}): row minus column, * where the paired "
                              "bootstrap gives p < 0.05 (every pair, split and main metric: comparisons.csv).", "",
                              *matrix, ""]
    submitted = [r for r in records if r.submission]
    if submitted:
        lines += ["## Test-server submissions", "",
                  "These splits have no public ground truth: upload the files to the evaluation server.", ""]
        for r in submitted:
            for path in r.submission:
                lines.append(f"- {r.encoder.label} / {method_label(r)} / {r.dataset.name}:{r.dataset.split}: `{path}`")
        lines.append("")
    paper = paper_comparison(frame, tables)
    lines += ["## Paper numbers beside measured ones", ""]
    if paper.empty:
        lines += ["No result matches a published number (they need the same method, encoder, dataset, split "
                  "and metric; see cirbench/data/paper_numbers.csv).", ""]
    else:
        lines += ["| method | backbone | dataset | split | metric | measured | paper | difference | paper inside the "
                  "interval | verified |", "|---|---|---|---|---|---|---|---|---|---|"]
        for row in paper.itertuples():
            lines.append(f"| {row.method} | {row.backbone} | {row.dataset} | {row.split} | {row.metric} | "
                         f"{fmt(row.value_measured, row.measured_low, row.measured_high)} | {row.value_paper:.2f} | "
                         f"{row.difference:+.2f} | {row.paper_inside_interval} | {row.verified} |")
        outside = paper[paper.paper_inside_interval == "no"]
        if len(outside):
            lines += ["", f"{len(outside)} published number(s) lie outside the measured interval: "
                      + "; ".join(f"{r.method} {r.dataset}:{r.split} {r.metric} (paper {r.value_paper:.2f})"
                                  for r in outside.itertuples()) + "."]
        lines.append("")
        written.append(fsutil.atomic_write(out / "paper_comparison.csv",
                                           lambda fh: paper.to_csv(fh, index=False, float_format="%.2f"), binary=False))
    grid_files = []
    if grids:
        from .grids import render_grids

        grid_files = render_grids(report, out / "grids", per_split=grid_queries, sample=grid_sample,
                                  queries=queries, seed=seed)
        written += [p for _, p in grid_files]
        if grid_files:
            lines += ["## Retrieval grids", "", "Each method's top 5 for a sample of queries "
                      f"({'the given queries' if queries else grid_sample + ' sample'}); ground truth outlined in "
                      "green.", ""] + [f"![{p.stem}](grids/{p.name})" for _, p in grid_files] + [""]
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
    if report.warnings:
        lines += ["", "## Result files not read", "", *[f"- {w}" for w in report.warnings]]
    md = fsutil.write_text(out / "results.md", "\n".join(lines) + "\n")
    csv = fsutil.atomic_write(out / "results.csv", lambda fh: frame.to_csv(fh, index=False), binary=False)
    comp_csv = fsutil.atomic_write(out / "comparisons.csv", lambda fh: comp.to_csv(fh, index=False, float_format="%.4f"),
                                   binary=False)
    summary_csv = fsutil.atomic_write(out / "summary.csv", lambda fh: _summary(tables).to_csv(
        fh, index=False, float_format="%.2f"), binary=False)
    written = [md, csv, summary_csv, comp_csv, *written]
    if write_latex:
        written.append(fsutil.write_text(out / "tables.tex", latex(tables)))
    if html:
        from .html import render_html

        written.append(render_html(report, tables, comp, paper, plots, grid_files, out, browser_queries, seed))
    return written, report.warnings


def _summary(tables: dict):
    import pandas as pd

    parts = []
    for dataset, table in tables.items():
        flat = pd.DataFrame(index=table.value.index)
        for s, m in table.value.columns:
            flat[f"{s} {m}"] = table.value[(s, m)]
            flat[f"{s} {m} low"] = table.low[(s, m)]
            flat[f"{s} {m} high"] = table.high[(s, m)]
        flat.insert(0, "dataset", dataset)
        parts.append(flat.reset_index())
    return pd.concat(parts) if parts else pd.DataFrame(columns=["dataset", "encoder", "method"])
