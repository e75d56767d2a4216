"""What a reviewer reads in the report (issue 33): only rows that exist, an own model named on its row,
a significance matrix per main metric with Holm's correction stated and applied, a table of contents,
LaTeX with the best zero-shot value in bold and supervised / own-model rows apart, and each method's
protocol as it ran (an option chosen per dataset with its value, a prompt with an example filled in).

Flat colours, colour encoder (image feature = mean colour, text feature = the colour word). Gallery in
folder order: blue 0, gray 1, green 2, red 3, white 4, yellow 5.
"""

from __future__ import annotations

from typer.testing import CliRunner

import colour_encoder
from cirbench.cli import app
from cirbench.contracts.method import Method
from helpers import flat_dataset

colour_encoder.register()
G = "gallery/{}.png".format
# red -> "blue" (blue), green -> "yellow" (yellow), white -> "red" (red), blue -> "green" (green)
QUERIES = [{"reference": G(r), "text": t, "target": G(t)} for r, t in
           (("red", "blue"), ("green", "yellow"), ("white", "red"), ("blue", "green"))]


def invoke(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.output


def report(tmp_path, *extra):
    code, out = invoke("report", "--results-dir", tmp_path / "r", "--out", tmp_path / "o", "--no-grids",
                       "--bootstrap", 200, *extra)
    assert code == 0, out
    return (tmp_path / "o" / "results.md").read_text()


class OwnColour(Method):
    """Brings its own model (the colour encoder), whatever the run's: its text feature alone."""

    own_model_test = True

    @classmethod
    def own_encoder(cls, options, checkpoint):
        return "colour-test"

    def encode_queries(self, batch):
        return self.ctx.text_features(batch.texts).to(batch.reference_features.device)


def test_an_own_model_method_beside_image_plus_text_gets_only_its_own_row(tmp_path, tiny_dir, monkeypatch):
    from cirbench.contracts.registry import methods

    methods.names()  # the built-ins first, then this test's method, for this test only
    monkeypatch.setitem(methods._items, "own-colour", OwnColour)
    monkeypatch.setitem(methods._origin, "own-colour", "tests")
    monkeypatch.setattr(OwnColour, "registry_name", "own-colour", raising=False)
    root = flat_dataset(tmp_path / "ds", QUERIES)
    code, out = invoke("run", "--dataset", root, "--encoder", f"local-dir:{tiny_dir}", "-m", "image+text,own-colour",
                       "--workers", 0, "--quiet", "--results-dir", tmp_path / "r", "--cache-dir", tmp_path / "c")
    assert code == 0, out
    table = [line for line in out.splitlines() if "│" in line and ("own-colour" in line or "image+text" in line)]
    assert len(table) == 2  # one row each, no row of dashes for the pairs that do not exist
    assert any("colour-test" in line and "own-colour" in line for line in table)  # the model on its row
    # own-colour ranks by the text's colour: every target first (R@1 100), by hand
    own = next(line for line in table if "own-colour" in line)
    assert own.split("│")[3].strip() == "100.00"
    md = report(tmp_path)
    section = md.split("## ds")[1].split("\n\n")[1].splitlines()  # the results table of the dataset
    assert sorted(line.split("|")[2].strip() for line in section[2:]) == ["image+text", "own-colour"]
    assert all("|  |" not in line for line in section[2:])  # no empty cells: each row is a result


def test_matrices_per_main_metric_with_holm_contents_latex_and_protocols(tmp_path):
    root = flat_dataset(tmp_path / "ds", QUERIES)
    code, out = invoke("run", "--dataset", root, "--encoder", "colour-test", "-m", "image-only,text-only,slerp",
                       "--workers", 0, "--quiet", "--results-dir", tmp_path / "r", "--cache-dir", tmp_path / "c")
    assert code == 0, out
    md = report(tmp_path)
    assert md.splitlines()[4].startswith("Contents: [ds](#ds) · [Paper numbers beside measured ones]"
                                         "(#paper-numbers-beside-measured-ones)")
    for metric in ("R@1", "R@10", "R@50"):
        assert f"Paired comparisons, val {metric} (colour-test): row minus column, * where the paired bootstrap " \
               "gives p < 0.05 after Holm's correction over the matrix's pairs" in md
    comp = (tmp_path / "o" / "comparisons.csv").read_text().splitlines()
    head = comp[0].split(",")
    rows = [dict(zip(head, line.split(","))) for line in comp[1:]]
    r1 = [r for r in rows if r["metric"] == "R@1" and r["split"] == "val"]
    assert len(r1) == 3  # three pairs in the family
    ps = sorted(float(r["p"]) for r in r1)
    holm = sorted(float(r["p_holm"]) for r in r1)
    assert all(h >= p - 1e-4 for h, p in zip(holm, ps)) and abs(holm[0] - min(1.0, 3 * ps[0])) < 1e-3  # csv: 4 digits
    tex = (tmp_path / "o" / "tables.tex").read_text()
    # text-only has every target first (R@1 100): the best value of that column, in bold
    text_row = next(line for line in tex.splitlines() if line.startswith("text-only"))
    assert text_row.split("&")[1].strip().startswith(r"\textbf{100.0}")
    assert r"\textbf" not in next(line for line in tex.splitlines() if line.startswith("image-only")).split("&")[1]
    # slerp's t, chosen per dataset, shown with the value it took; the prompt with an example filled in
    slerp = next(line for line in md.splitlines() if line.startswith("| colour-test | ds | slerp |"))
    assert "t=0.8" in slerp and "t=None" not in slerp and "(e.g. `blue`)" in slerp
