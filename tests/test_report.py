"""Tables from result files, and the paper's numbers beside measured ones."""

import copy
import json

from cirbench import results
from cirbench.report import paper_comparison, paper_numbers, long_frame, render


def record(method, dataset, split, metrics, spec="ViT-L-14:openai", supervised=False):
    return {"schema_version": results.SCHEMA_VERSION, "cell_key": "x",
            "encoder": {"label": spec, "spec": spec, "transform": "clip", "precision": "fp32"},
            "method": {"name": method, "supervised": supervised, "config": {"train_dataset": "cirr"}},
            "dataset": {"name": dataset, "split": split, "n_queries": 2, "n_gallery": 5,
                        "split_order": ["dress", "shirt", "toptee"]},
            "metrics": metrics, "main_metrics": list(metrics), "run": {}}


def test_paper_numbers_are_shipped_with_sources():
    paper = paper_numbers()
    row = paper[(paper.method == "pic2word") & (paper.dataset == "fashioniq") & (paper.split == "average")
                & (paper.metric == "R@10")]
    assert row["value"].item() == 24.7 and row["backbone"].item() == "ViT-L-14:openai"
    assert set(paper["verified"]) == {"yes", "no"} and paper["source"].notna().all()


def test_measured_values_meet_the_paper_only_where_everything_matches():
    recs = [record("pic2word", "fashioniq", s, {"R@10": v, "R@50": 40.0})
            for s, v in (("dress", 20.0), ("shirt", 27.0), ("toptee", 28.0))]
    recs.append(record("pic2word", "fashioniq", "dress", {"R@10": 99.0}, spec="ViT-B-32:openai"))
    table = paper_comparison(long_frame(recs))
    dress = table[(table.split == "dress") & (table.metric == "R@10")]
    assert len(dress) == 1 and dress["value_measured"].item() == 20.0 and dress["difference"].item() == 0.0
    avg = table[(table.split == "average") & (table.metric == "R@10")]
    assert abs(avg["value_measured"].item() - 25.0) < 1e-9 and abs(avg["difference"].item() - 0.3) < 1e-9


def test_render_writes_tables_plots_and_comparison(tmp_path):
    recs = [record("pic2word", "fashioniq", s, {"R@10": 20.0, "R@50": 40.0}) for s in ("toptee", "dress", "shirt")]
    recs.append(record("combiner", "fashioniq", "dress", {"R@10": 30.0, "R@50": 50.0}, supervised=True))
    for i, r in enumerate(recs):
        path = results.result_path(tmp_path / "results", "enc", r["dataset"]["name"], r["dataset"]["split"],
                                   f"{r['method']['name']}")
        results.write(path, r)
    written = render(tmp_path / "results", tmp_path / "reports")
    md = (tmp_path / "reports" / "results.md").read_text()
    header = next(line for line in md.splitlines() if line.startswith("| encoder | method |"))
    assert header.index("dress R@10") < header.index("shirt R@10") < header.index("toptee R@10")
    assert "average R@10" in header
    combiner_row = next(line for line in md.splitlines() if "| combiner" in line)
    assert combiner_row.count("|  |") >= 2  # no shirt/toptee values, so no average either
    assert "combiner (supervised, trained on cirr)" in md
    assert "Paper numbers beside measured ones" in md and "| pic2word | ViT-L-14:openai | fashioniq | dress |" in md
    assert (tmp_path / "reports" / "paper_comparison.csv").is_file()
    assert (tmp_path / "reports" / "fashioniq.png").stat().st_size > 1000
    assert {p.name for p in written} >= {"results.md", "results.csv", "summary.csv", "fashioniq.png"}


def test_report_refuses_unknown_schema_and_empty_dirs(tmp_path):
    import pytest

    from cirbench.errors import DataError

    with pytest.raises(DataError, match="no result files"):
        render(tmp_path / "none", tmp_path / "out")
    bad = copy.deepcopy(record("pic2word", "x", "y", {"R@1": 1.0}))
    bad["schema_version"] = 99
    path = results.result_path(tmp_path / "r", "enc", "x", "y", "pic2word")
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(bad))
    with pytest.raises(DataError, match="schema version 99"):
        render(tmp_path / "r", tmp_path / "out")
