"""Tables from result files, and the paper's numbers beside measured ones."""

import copy
import json

import pytest

from cirbench.storage import results
from cirbench.errors import DataError
from cirbench.analysis.cells import long_frame
from cirbench.analysis.report import render
from cirbench.analysis.tables import paper_comparison, paper_numbers


def record(method, dataset, split, metrics, spec="ViT-L-14:openai", supervised=False, model_key="k1",
           result_name=None, transform="clip"):
    raw = {"schema_version": results.SCHEMA_VERSION, "cell_key": "x",
           "encoder": {"label": spec, "spec": spec, "model_key": model_key, "key": model_key + transform,
                       "slug": "enc", "transform": transform, "identity": {"precision": "fp32", "quick_gelu": True}},
           "method": {"name": method, "supervised": supervised, "config": {"train_dataset": "cirr", "prompt": "{text}"},
                      "transform": transform},
           "dataset": {"name": dataset, "split": split, "n_queries": 2, "n_gallery": 5,
                       "result_name": result_name or dataset, "info": {"split_order": ["dress", "shirt", "toptee"]}},
           "metrics": metrics, "main_metrics": list(metrics), "run": {}}
    return results.Result.from_dict(raw)


def write_all(root, recs):
    for r in recs:
        path = results.result_path(root, f"enc-{r.encoder.model_key}", r.dataset.result_name, r.dataset.split,
                                   r.method.name)
        results.write(path, r)


def test_paper_numbers_are_shipped_with_sources():
    paper = paper_numbers()
    row = paper[(paper.method == "pic2word") & (paper.dataset == "fashioniq") & (paper.split == "average")
                & (paper.metric == "R@10")]
    assert row["value"].item() == 24.7 and row["backbone"].item() == "ViT-L-14:openai"
    assert set(paper["verified"]) == {"yes", "no"} and paper["source"].notna().all()


def test_measured_values_meet_the_paper_only_where_everything_matches():
    recs = [record("pic2word", "fashioniq", s, {"R@10": v, "R@50": 40.0})
            for s, v in (("dress", 20.0), ("shirt", 27.0), ("toptee", 28.0))]
    recs.append(record("pic2word", "fashioniq", "dress", {"R@10": 99.0}, spec="ViT-B-32:openai", model_key="k2"))
    table = paper_comparison(long_frame(recs))
    dress = table[(table.split == "dress") & (table.metric == "R@10")]
    assert len(dress) == 1 and dress["value_measured"].item() == 20.0 and dress["difference"].item() == 0.0
    avg = table[(table.split == "average") & (table.metric == "R@10")]
    assert abs(avg["value_measured"].item() - 25.0) < 1e-9 and abs(avg["difference"].item() - 0.3) < 1e-9


def test_a_magiclens_file_meets_both_published_circo_numbers_of_its_size():
    # a MagicLens checkpoint's spec is its path; its model name says base or large, and the official
    # README publishes two CIRCO rows per size (the original model, and the released converted files)
    rec = record("magiclens", "circo", "test", {"mAP@5": 22.0}, spec="/models/magic_lens_clip_base.pkl")
    rec.encoder.identity["model_name"] = "magiclens-base"
    table = paper_comparison(long_frame([rec]))
    rows = table[table.metric == "mAP@5"].sort_values("value_paper")
    assert list(rows["value_paper"]) == [22.3, 23.1] and set(rows["backbone"]) == {"magiclens-base"}
    assert rows["source"].str.contains("converted").tolist() == [True, False]
    assert abs(rows["difference"].iloc[0] - (-0.3)) < 1e-9


def test_render_writes_tables_plots_and_comparison(tmp_path):
    recs = [record("pic2word", "fashioniq", s, {"R@10": 20.0, "R@50": 40.0}) for s in ("toptee", "dress", "shirt")]
    recs.append(record("combiner", "fashioniq", "dress", {"R@10": 30.0, "R@50": 50.0}, supervised=True,
                       transform="targetpad"))
    write_all(tmp_path / "results", recs)
    written, warnings = render(tmp_path / "results", tmp_path / "reports")
    assert not warnings
    md = (tmp_path / "reports" / "results.md").read_text()
    header = next(line for line in md.splitlines() if line.startswith("| encoder | method |"))
    assert header.index("dress R@10") < header.index("shirt R@10") < header.index("toptee R@10")
    assert "average R@10" in header
    combiner_row = next(line for line in md.splitlines() if line.startswith("| ViT") and "| combiner" in line)
    assert combiner_row.count("|  |") >= 2  # no shirt/toptee values, so no average either
    assert "combiner (supervised, trained on cirr)" in md
    assert "Paper numbers beside measured ones" in md and "| pic2word | ViT-L-14:openai | fashioniq | dress |" in md
    # the protocol each method ran with: transform and prompt
    assert "| ViT-L-14:openai | fashioniq | combiner | targetpad | `{text}` |" in md
    assert (tmp_path / "reports" / "paper_comparison.csv").is_file()
    assert (tmp_path / "reports" / "fashioniq.png").stat().st_size > 1000
    assert {p.name for p in written} >= {"results.md", "results.csv", "summary.csv", "fashioniq.png"}


def test_encoders_that_share_a_label_stay_apart(tmp_path):
    """The same local-dir: path before and after its weights changed: two result files, two rows."""
    recs = [record("image-only", "cirr", "val", {"R@1": 10.0}, spec="local-dir:/m", model_key="aaaa1111"),
            record("image-only", "cirr", "val", {"R@1": 30.0}, spec="local-dir:/m", model_key="bbbb2222")]
    write_all(tmp_path / "r", recs)
    render(tmp_path / "r", tmp_path / "out")
    md = (tmp_path / "out" / "results.md").read_text()
    assert "| local-dir:/m [aaaa1111] | image-only | 10.00 (n/a) |" in md
    assert "| local-dir:/m [bbbb2222] | image-only | 30.00 (n/a) |" in md


def test_two_folder_datasets_of_one_name_stay_apart(tmp_path):
    recs = [record("image-only", "mydata", "val", {"R@1": 10.0}, result_name="mydata-11111111"),
            record("image-only", "mydata", "val", {"R@1": 30.0}, result_name="mydata-22222222")]
    write_all(tmp_path / "r", recs)
    assert len(results.find(tmp_path / "r")) == 2
    render(tmp_path / "r", tmp_path / "out")
    md = (tmp_path / "out" / "results.md").read_text()
    assert "## mydata [mydata-1]" in md and "## mydata [mydata-2]" in md


def test_report_skips_unreadable_result_files_and_says_so(tmp_path):
    with pytest.raises(DataError, match="no result files"):
        render(tmp_path / "none", tmp_path / "out")
    good = record("pic2word", "x", "y", {"R@1": 1.0})
    write_all(tmp_path / "r", [good])
    bad = copy.deepcopy(good.to_dict())
    bad["schema_version"] = 99
    no_metrics = copy.deepcopy(good.to_dict())
    del no_metrics["metrics"]
    for name, obj in (("other", bad), ("third", no_metrics)):
        path = results.result_path(tmp_path / "r", "enc", "x", "y", name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(obj))
    written, warnings = render(tmp_path / "r", tmp_path / "out")
    assert any("schema version 99" in w and "other.json" in w for w in warnings)
    assert any("missing metrics" in w and "third.json" in w for w in warnings)
    assert "pic2word" in (tmp_path / "out" / "results.md").read_text()


def test_schema_1_files_are_migrated():
    old = {"schema_version": 1, "cell_key": "c",
           "encoder": {"label": "world", "slug": "world-1", "key": "abc", "kind": "world", "spec": "world",
                       "transform": "clip", "quick_gelu": False},
           "method": {"name": "pic2word", "supervised": False, "description": "", "config": {"prompt": "p"}},
           "dataset": {"name": "world-edit", "split": "color", "root": "/x", "n_queries": 3, "n_gallery": 9,
                       "remove_reference": False, "prompts": {}, "has_ground_truth": True, "split_order": ["color"]},
           "metrics": {"R@1": 5.0}, "main_metrics": ["R@1"], "run": {"seed": 0, "wall_time_s": 1.0}}
    r = results.Result.from_dict(old)
    assert r.encoder.model_key == "abc" and r.encoder.identity["kind"] == "world"
    assert r.dataset.split_order == ["color"] and r.dataset.result_name == "world-edit"
    assert r.metrics == {"R@1": 5.0} and results.load_outcomes(r) is None


def test_e5v_meets_its_published_numbers_by_model_name():
    rec = record("e5-v", "cirr", "test1", {"R@1": 33.0}, spec="llava-next:royokong/e5-v?tiles=pinned",
                 transform="prompt:x")
    rec.encoder.identity["model_name"] = "e5-v"
    table = paper_comparison(long_frame([rec]))
    row = table[table.metric == "R@1"]
    assert row["value_paper"].item() == 33.9 and abs(row["difference"].item() - (33.0 - 33.9)) < 1e-9


def test_a_chat_prompt_stays_whole_in_the_protocol_table():
    """A chat template's pipes (<|im_start|>) and line breaks once split its row and were rewritten as
    '/': each row is now one line of six cells, the prompt shown exactly (line breaks as \\n), and the
    HTML report shows it with its real pipes."""
    from cirbench.analysis.html import _markdown_table_html
    from cirbench.analysis.tables import protocol_lines

    prompt = "<|im_start|>user\n<|image_pad|>`x` {text}\nSay it: <|im_end|>"
    view = "prompt:<|im_start|>user\n<|image_pad|>\nSummarize<|im_end|>"
    rec = record("lamra", "circo", "val", {"mAP@5": 1.0}, spec="qwen2-vl:m?processor=p", transform=view)
    rec.method.protocol = {"text": prompt, "notes": ["a | note"]}
    rec.path = "r.json"
    lines = protocol_lines([rec], {"r.json": "is red"})
    row = lines[2]
    assert len(lines) == 3 and "\n" not in row
    cells = __import__("re").split(r"(?<!\\)\|", row.strip()[1:-1])
    assert len(cells) == 6
    assert "<\\|im_start\\|>user\\n<\\|image_pad\\|>`x` {text}\\nSay it: <\\|im_end\\|>" in cells[4]
    assert "is red" in cells[4] and "a \\| note" in cells[5]
    html = _markdown_table_html(lines)
    assert "&lt;|im_start|&gt;user\\n&lt;|image_pad|&gt;`x` {text}\\nSay it: &lt;|im_end|&gt;" in html
    assert html.count("<tr>") == 2 and "prompt:&lt;|im_start|&gt;user\\n" in html
    from cirbench.analysis.html import inline

    assert inline("`a {text} of ` (e.g. `a cartoon of `)") == "<code>a {text} of </code> (e.g. <code>a cartoon of </code>)"
