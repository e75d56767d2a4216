"""`cirbench report`: tables with intervals, paired comparisons, plots, grids, an HTML page and LaTeX,
from result files only (it never runs a model). Intervals and paired tests come from the per-query
outcomes beside each result file (cirbench.analysis.stats); result files without them still report,
their intervals "n/a".
"""

from __future__ import annotations

from pathlib import Path

from cirbench.analysis import stats
from cirbench.analysis.cells import display_orders, load, method_label
from cirbench.analysis.tables import (_markdown, _plot, comparisons, dataset_tables, encoder_lines, example_texts, fmt,
                                      latex, paper_comparison, protocol_lines, significance_matrices)
from cirbench.util import fsutil

HOLM = "Holm's correction over the matrix's pairs"


def _grouped_metrics(report) -> list[str]:
    """The metrics of the results that aggregate per group (i-CIR's mmAP, minmAP)."""
    names: dict[str, None] = {}
    for cell in report.cells:
        if cell.outcomes is not None:
            names.update({m: None for m, (_v, agg) in cell.outcomes.values.items() if agg == "grouped_percent"})
    return list(names)


def render(results_dir: Path, out: Path, resamples: int = stats.DEFAULT_RESAMPLES, seed: int = 0,
           write_latex: bool = True, grids: bool = True, grid_queries: int = 4, grid_sample: str = "random",
           queries: list[str] | None = None, html: bool = True, browser_queries: int = 40) -> tuple[list[Path], list[str]]:
    """Write results.md, results.csv, summary.csv, comparisons.csv, a PNG per dataset, retrieval grids,
    index.html and (with write_latex) tables.tex. Returns (written files, warnings)."""
    from cirbench.errors import DataError

    from cirbench.errors import UsageError

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
            + (f"; {', '.join(grouped)} are per-instance statistics, given without interval or test (n/a): a "
               "resampling of queries does not fit them" if (grouped := _grouped_metrics(report)) else "")
             + ". Methods marked supervised were trained on the dataset's own training triplets and are not "
             "zero-shot.", ""]
    for dataset, table in tables.items():
        lines += [f"## {dataset}", "", _markdown(table), ""]
        plot = _plot(dataset, table, out)
        plots[dataset] = plot
        written.append(plot)
        lines += [f"![{dataset}]({plot.name})", ""]
        for split, metric, enc, matrix in significance_matrices(comp, dataset, table, display_orders(records)):
            lines += [f"Paired comparisons, {split} {metric} ({enc}): row minus column, * where the paired "
                      f"bootstrap gives p < 0.05 after {HOLM} (every pair, split and main metric, with raw "
                      "and corrected p: comparisons.csv).", "", *matrix, ""]
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
                  "and metric; see cirbench/resources/paper_numbers.csv).", ""]
    else:
        lines += ["| method | backbone | dataset | split | metric | measured | paper | difference | paper inside the "
                  "interval | verified | source |", "|---|---|---|---|---|---|---|---|---|---|---|"]
        for row in paper.itertuples():
            lines.append(f"| {row.method} | {row.backbone} | {row.dataset} | {row.split} | {row.metric} | "
                         f"{fmt(row.value_measured, row.measured_low, row.measured_high)} | {row.value_paper:.2f} | "
                         f"{row.difference:+.2f} | {row.paper_inside_interval} | {row.verified} | {row.source} |")
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
        from cirbench.analysis.grids import render_grids

        grid_files = render_grids(report, out / "grids", per_split=grid_queries, sample=grid_sample,
                                  queries=queries, seed=seed)
        written += [p for _, p in grid_files]
        if grid_files:
            lines += ["## Retrieval grids", "", "Each method's top 5 for a sample of queries "
                      f"({'the given queries' if queries else grid_sample + ' sample'}); ground truth outlined in "
                      "green.", ""] + [f"![{p.stem}](grids/{p.name})" for _, p in grid_files] + [""]
    lines += ["## Methods and protocols", "", "What each method ran with: image transform, prompt template, "
              "caption rule and options.", "", *protocol_lines(records, example_texts(report)), ""]
    lines += ["## Encoders", "", *encoder_lines(records)]
    if report.warnings:
        lines += ["", "## Result files not read", "", *[f"- {w}" for w in report.warnings]]
    md = fsutil.write_text(out / "results.md", "\n".join(with_contents(lines)) + "\n")
    csv = fsutil.atomic_write(out / "results.csv", lambda fh: frame.to_csv(fh, index=False), binary=False)
    comp_csv = fsutil.atomic_write(out / "comparisons.csv", lambda fh: comp.to_csv(fh, index=False, float_format="%.4f"),
                                   binary=False)
    summary_csv = fsutil.atomic_write(out / "summary.csv", lambda fh: _summary(tables).to_csv(
        fh, index=False, float_format="%.2f"), binary=False)
    written = [md, csv, summary_csv, comp_csv, *written]
    if write_latex:
        kinds = {method_label(r): "supervised" if r.method.supervised else "own model" if r.method.own_model else ""
                 for r in records}
        written.append(fsutil.write_text(out / "tables.tex", latex(tables, kinds)))
    if html:
        from cirbench.analysis.html import render_html

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


def anchor(heading: str) -> str:
    """The anchor GitHub (and most markdown renderers) give a heading: lower case, punctuation dropped,
    spaces as hyphens."""
    import re

    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def with_contents(lines: list[str]) -> list[str]:
    """The report's lines with a table of contents (every ``## `` section) after its introduction."""
    sections = [line[3:] for line in lines if line.startswith("## ")]
    first = next((i for i, line in enumerate(lines) if line.startswith("## ")), len(lines))
    contents = ["Contents: " + " · ".join(f"[{name}](#{anchor(name)})" for name in sections), ""] if sections else []
    return lines[:first] + contents + lines[first:]
