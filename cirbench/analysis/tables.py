"""Tables and plots from the result cells: the main-metric tables with intervals, markdown, LaTeX, the
plots, the published numbers beside the measured ones, paired comparisons and the protocol table (what
each method declares about how it ran)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cirbench.analysis import stats
from cirbench.analysis.cells import Report, dataset_key, dataset_labels, encoder_labels, method_order
from cirbench.storage.results import method_id
from cirbench.util import fsutil

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
        order = method_order(wide["value"].index.get_level_values("method").unique(),
                             dict(zip(part["method"], part["display_order"])))
        # only the (encoder, method) rows that have a result: the pivot makes every pair of them
        present = set(part.drop_duplicates(["encoder", "method"]).set_index(["encoder", "method"]).index)
        index = sorted((ix for ix in wide["value"].index if ix in present), key=lambda ix: (ix[0], order.index(ix[1])))
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
    """The published reference numbers shipped with cirbench (cirbench/resources/paper_numbers.csv)."""
    from importlib import resources

    import pandas as pd

    with resources.files("cirbench").joinpath("resources/paper_numbers.csv").open(encoding="utf-8") as fh:
        return pd.read_csv(fh)


def paper_comparison(frame, tables: dict | None = None):
    """Measured values beside the paper's, where method, encoder (backbone and weights), dataset, split
    and metric all match; a split 'average' matches the mean over the dataset's measured splits. With
    the tables, the measured interval is added and whether the paper's number lies inside it."""
    import pandas as pd

    paper = paper_numbers()
    cols = ["encoder_spec", "method_name", "method", "encoder", "dataset", "split", "metric", "value", "low", "high"]
    # a published number is of the method's own (default) setting: other settings are not compared with it
    default = frame[frame["setting"].fillna("") == ""].assign(method_name=lambda f: f["method_base"])
    measured = default[cols].rename(columns={"method": "method_label"})
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
    # a published row names its backbone by encoder spec or, for a model a method brings, by its model
    # name (a MagicLens file's spec is its path; its model name says base or large)
    names = default.drop_duplicates("encoder_spec").set_index("encoder_spec")["model_name"]
    both = pd.concat([both.assign(backbone_key=both["encoder_spec"]),
                      both.assign(backbone_key=both["encoder_spec"].map(names))], ignore_index=True)
    both = both.dropna(subset=["backbone_key"]).drop_duplicates(
        ["backbone_key", "method_name", "dataset", "split", "metric", "encoder_spec"])
    joined = paper.merge(both, left_on=["backbone", "method", "dataset", "split", "metric"],
                         right_on=["backbone_key", "method_name", "dataset", "split", "metric"],
                         suffixes=("_paper", "_measured"))
    joined["difference"] = joined["value_measured"] - joined["value_paper"]
    joined["paper_inside_interval"] = [
        "n/a" if lo != lo else ("yes" if lo <= p <= hi else "no")
        for p, lo, hi in zip(joined["value_paper"], joined["low"], joined["high"])]
    return joined.rename(columns={"low": "measured_low", "high": "measured_high"})[
        ["method", "backbone", "dataset", "split", "metric", "value_measured", "measured_low", "measured_high",
         "value_paper", "difference", "paper_inside_interval", "source", "verified"]]


ACROSS_ENCODERS = "across encoders"


def comparisons(report: Report, frame, tables: dict):
    """Paired tests on each dataset's main metrics, per split and on the split average: difference, its
    interval and p. Every two methods of an encoder are compared; a method that brought its own model is
    also compared with every method of the other encoders (rows "method [encoder]", encoder "across
    encoders"): the same queries, so the test is paired across models."""
    import pandas as pd

    rows = []
    main = frame.loc[frame["main"].astype(bool)]
    for dataset, part in main.groupby("dataset", sort=True):
        ds_key = part["dataset_key"].iloc[0]
        table = tables[dataset]
        orders = dict(zip(part["method"], part["display_order"]))
        scopes = [([s], s) for s in table.splits] + ([(table.splits, "average")] if len(table.splits) > 1 else [])
        keys = part.drop_duplicates(["encoder_key", "method"])
        rows_of = [(r.encoder_key, r.encoder, r.method, r.method_name, bool(r.own_model))
                   for r in keys.itertuples()]
        rows_of.sort(key=lambda r: (orders.get(r[2], 100.0), r[2], r[1]))
        pairs = []
        for enc in dict.fromkeys(r[0] for r in rows_of):
            mine = [r for r in rows_of if r[0] == enc]
            ordered = method_order([r[2] for r in mine], orders)
            by_label = {r[2]: r for r in mine}
            pairs += [(by_label[a], by_label[b], mine[0][1]) for a, b in itertools.combinations(ordered, 2)]
        for a, b in itertools.combinations(rows_of, 2):
            if a[0] != b[0] and (a[4] or b[4]):
                pairs.append((a, b, ACROSS_ENCODERS))
        families: dict[str, int] = {}  # Holm's families (one per encoder label and matrix) and their sizes
        for _a, _b, enc_label in pairs:
            families[enc_label] = families.get(enc_label, 0) + 1
        for metric in dict.fromkeys(part["metric"]):
            for splits, label in scopes:
                for a, b, enc_label in pairs:
                    n = stats.family_resamples(families[enc_label], report.resamples) if report.resamples else 0
                    result = report.paired(a[0], a[3], b[3], ds_key, splits, metric, encoder_b=b[0], resamples=n)
                    if result is None or result.difference != result.difference:  # none, or a metric with no test
                        continue
                    names = (a[2], b[2]) if enc_label != ACROSS_ENCODERS else (f"{a[2]} [{a[1]}]", f"{b[2]} [{b[1]}]")
                    rows.append({"dataset": dataset, "encoder": enc_label, "split": label,
                                 "metric": metric, "method_a": names[0], "method_b": names[1],
                                 "difference": result.difference, "low": result.low, "high": result.high,
                                 "p": result.p, "significant": result.significant, "queries": result.n_queries,
                                 "resamples": result.resamples})
    frame = pd.DataFrame(rows, columns=["dataset", "encoder", "split", "metric", "method_a", "method_b", "difference",
                                        "low", "high", "p", "significant", "queries", "resamples"])
    # Holm's correction within each family: every pair of methods of one matrix (dataset, encoder, split, metric)
    frame["p_holm"] = float("nan")
    for _, family in frame.groupby(["dataset", "encoder", "split", "metric"], sort=False):
        frame.loc[family.index, "p_holm"] = stats.holm(family["p"].to_numpy())
    frame["significant_holm"] = frame["p_holm"] < stats.ALPHA
    return frame


def comparison_matrix(comp, dataset: str, encoder: str, split: str, metric: str, orders: dict | None = None
                      ) -> list[str]:
    """Markdown: row method minus column method, * where the paired test says p < 0.05 after Holm's
    correction over the matrix's pairs."""
    part = comp[(comp.dataset == dataset) & (comp.encoder == encoder) & (comp.split == split) & (comp.metric == metric)]
    if part.empty:
        return []
    methods = method_order(set(part.method_a) | set(part.method_b), orders)
    cell = {}
    for r in part.itertuples():
        cell[(r.method_a, r.method_b)] = (r.difference, bool(r.significant_holm))
        cell[(r.method_b, r.method_a)] = (-r.difference, bool(r.significant_holm))
    short = [m.split(" (")[0] for m in methods]  # without "(supervised, ...)"; a setting stays: slerp [t=0.5]
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


def significance_matrices(comp, dataset: str, table, orders: dict | None = None) -> list[tuple[str, str, str, list]]:
    """(split, metric, encoder, matrix lines) of a dataset: one matrix per main metric and encoder, on
    the split average where the dataset has several splits (else its one split)."""
    split = "average" if len(table.splits) > 1 else table.splits[0]
    out = []
    for column_split, metric in (table.value.columns if not comp.empty else []):
        if column_split != split:
            continue
        for enc in dict.fromkeys(ix[0] for ix in table.value.index):
            matrix = comparison_matrix(comp, dataset, enc, split, metric, orders)
            if matrix:
                out.append((split, metric, enc, matrix))
    return out


def encoder_lines(records) -> list[str]:
    """A markdown list item per encoder: its label, model key, precision, activation and version, with its
    notes (the embedded small CLIP's zero-shot accuracy among them)."""
    encoders = {}
    for r in records:
        encoders.setdefault(r.encoder.model_key, r.encoder)
    labels = encoder_labels(records)
    lines = []
    for key, enc in encoders.items():
        ident = enc.identity
        why = f" ({ident['quick_gelu_reason']})" if ident.get("quick_gelu_reason") else ""
        lines.append(f"- `{labels[key]}` (model key {key}): precision {ident.get('precision')}, QuickGELU "
                     f"{ident.get('quick_gelu')}{why}, open_clip {ident.get('open_clip_version')}")
        lines += [f"  - {note}" for note in ident.get("notes", [])]
    return lines


def example_texts(report) -> dict:
    """result path -> its first query's text (what a prompt template was filled with), from the outcomes."""
    return {str(c.record.path): c.outcomes.texts[0] for c in report.cells
            if c.outcomes is not None and c.outcomes.texts}


def md_cell(text) -> str:
    """Text kept whole in one markdown table cell: line breaks shown as ``\\n``, pipes escaped (a
    chat template's ``<|im_start|>`` and its line breaks would otherwise split the row)."""
    return str(text).replace("\r", "\\r").replace("\n", "\\n").replace("|", "\\|")


def md_code(text) -> str:
    """A code span in a markdown table cell, exactly the text (a backtick in it fenced by two)."""
    body = md_cell(text)
    if "`" not in body:
        return f"`{body}`"
    return f"`` {body} ``"


def protocol_lines(records, examples: dict | None = None) -> list[str]:
    """Per (encoder, dataset, method): the transform, prompt (with an example of it filled, from
    ``examples``: result path -> a query text), caption rule and options it ran with -- an option chosen
    per dataset (slerp's t) shown with the value the method took."""
    enc_labels, ds_labels = encoder_labels(records), dataset_labels(records)
    seen, lines = set(), ["| encoder | dataset | method | transform | prompt | rule / options |", "|---|---|---|---|---|---|"]
    for r in sorted(records, key=lambda r: (r.encoder.label, r.dataset.name, method_id(r))):
        key = (r.encoder.model_key, dataset_key(r), method_id(r))
        if key in seen:
            continue
        seen.add(key)
        declared = r.method.protocol or {"text": r.method.config.get("prompt", ""), "notes": []}  # older records
        prompt = declared.get("text", "")
        chosen = {k: v if v is not None else r.method.config.get(k) for k, v in r.method.options.items()}
        notes = [*declared.get("notes", [])[:1], *(f"{k}={v}" for k, v in chosen.items() if v is not None),
                 *declared.get("notes", [])[1:]]
        shown = md_code(prompt)
        example = (examples or {}).get(str(r.path))
        if example is not None and "{text}" in str(prompt):  # the template as the first query filled it
            shown += f" (e.g. {md_code(str(prompt).replace('{text}', example))})"
        text = md_cell("; ".join(notes))
        images = r.method.transform
        if r.method.reference_transform and r.method.reference_transform != r.method.transform:
            images += f"; references {r.method.reference_transform}"
        if r.method.weights != "loaded":
            images += f"; weights rounded through {r.method.weights}"
        lines.append(f"| {md_cell(enc_labels[r.encoder.model_key])} | {ds_labels[dataset_key(r)]} | {method_id(r)} | "
                     f"{md_cell(images)} | {shown} | {text} |")
    return lines


def latex(tables: dict, kinds: dict | None = None) -> str:
    """Booktabs tables of the main metrics (value and 95% interval), one per dataset: the best zero-shot
    value of each column in bold, and the rows of supervised methods and of methods that bring their own
    model set apart below a rule each (``kinds``: method label -> "supervised" or "own model")."""
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
        kind = {ix: (kinds or {}).get(ix[1], "") for ix in table.value.index}
        groups = [[ix for ix in table.value.index if kind[ix] == k] for k in ("", "own model", "supervised")]
        zero_shot = groups[0] + groups[1]  # bold: the best of the zero-shot rows
        best = {c: max((table.value.loc[ix, c] for ix in zero_shot if table.value.loc[ix, c] == table.value.loc[ix, c]),
                       default=None) for c in cols}
        for group in groups:
            if not group:
                continue
            out.append(r"\midrule")
            for ix in group:
                cells = []
                for c in cols:
                    v, lo, hi = table.value.loc[ix, c], table.low.loc[ix, c], table.high.loc[ix, c]
                    shown = "" if v != v else (f"{v:.1f}" if ix not in zero_shot or round(v, 1) != round(best[c], 1)
                                               else rf"\textbf{{{v:.1f}}}")
                    cells.append(shown if v != v or lo != lo else f"{shown} {{\\scriptsize [{lo:.1f}, {hi:.1f}]}}")
                out.append(" & ".join(([esc(ix[0])] if multi else []) + [esc(ix[1])] + cells) + r" \\")
        out += [r"\bottomrule", r"\end{tabular}", rf"\caption{{{esc(dataset)}: main metrics (\%); best zero-shot value "
                                                   r"in bold; supervised and own-model methods below their own rules.}}",
                rf"\label{{tab:{fsutil.slug(dataset)}}}", r"\end{table}", ""]
    return "\n".join(out)
