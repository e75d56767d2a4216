"""The guides, run as written: the code blocks of the README and of docs/*.md (```python blocks whose first
line names a file, "# my_reranker.py") are written to files and run the way the guides show."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import real_fixtures as F
from cli_helpers import cirbench
from helpers import result_file

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
GUIDES = [README, *sorted((ROOT / "docs").glob("*.md"))]


def blocks() -> dict[str, str]:
    """File name -> code of every block of the guides that names its file (each name once)."""
    out = {}
    for guide in GUIDES:
        for code in re.findall(r"```python\n(.*?)```", guide.read_text(encoding="utf-8"), flags=re.S):
            first = code.splitlines()[0]
            if re.fullmatch(r"# [\w.]+\.py", first.strip()):
                assert first[2:].strip() not in out, f"{guide}: {first} is named twice in the guides"
                out[first[2:].strip()] = code
    return out


def test_every_python_block_of_the_guides_names_its_file_and_is_run():
    """A guide's python block either names its file (and runs here) or is not a python block."""
    for guide in GUIDES:
        for code in re.findall(r"```python\n(.*?)```", guide.read_text(encoding="utf-8"), flags=re.S):
            assert re.fullmatch(r"# [\w.]+\.py", code.splitlines()[0].strip()), f"{guide}: {code.splitlines()[0]}"
    assert set(blocks()) == {"my_reranker.py", "my_scorer.py", "my_dataset.py", "try_my_reranker.py",
                             "my_encoder.py"}


def test_the_readme_is_a_quick_start_and_its_links_lead_somewhere():
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 250
    for guide in GUIDES:
        for target in re.findall(r"\]\((?!https?://|#)([^)#]+)", guide.read_text(encoding="utf-8")):
            assert (guide.parent / target).exists(), f"{guide.name}: link to {target} leads nowhere"


@pytest.fixture
def guide(tmp_path) -> Path:
    folder = tmp_path / "guide"
    folder.mkdir()
    found = blocks()
    assert set(found) >= {"my_reranker.py", "my_scorer.py", "my_dataset.py", "try_my_reranker.py", "my_encoder.py"}
    for name, code in found.items():
        (folder / name).write_text(code)
    return folder


def run(folder, *args, env=None):
    proc = cirbench("run", *args, "--workers", "0", "--json", "--quiet", cwd=folder, env=env or {})
    return json.loads(proc.stdout)


def tops(folder: Path, method: str):
    from cirbench.storage import results

    path = result_file(folder, method)
    out = results.load_outcomes(results.read(path))
    return (out.views["gallery"] if "gallery" in out.views else out.views["subset"])[0]


def test_the_reranking_plugin_reranks_each_querys_own_gallery_on_genecis(guide, tiny_dir, tmp_path):
    """A subset-scoped split: the plugin's rerank() gets each query's own candidates with the Gallery, on
    the device (its own assert checks that), in one whole-split batch. With weight 0 the re-ranking
    keeps the first stage's order; with weight 100 the text decides, and the order changes."""
    root = F.genecis(tmp_path / "genecis")
    common = ["--plugin", "my_reranker.py", "-m", "my-reranker", "--dataset", "genecis:focus_attribute",
              "--data", f"genecis={root}", "--encoder", f"local-dir:{tiny_dir}", "--cache-dir", str(tmp_path / "c")]
    orders = {}
    for weight in ("0", "100"):
        out = run(guide, *common, "-o", f"my-reranker.weight={weight}", "--results-dir", f"results-{weight}")
        assert [c["status"] for c in out["cells"]] == ["computed"]
        orders[weight] = tops(guide / f"results-{weight}", "my-reranker")
    assert (orders["0"] != orders["100"]).any()


@pytest.mark.slow
def test_the_reranking_plugin_runs_on_the_embedded_world(guide, tmp_path):
    env = {"CIRBENCH_CACHE": str(tmp_path / "cache")}
    out = run(guide, "--plugin", "my_reranker.py", "-m", "my-reranker,image+text", "--set", "world=tiny",
              "--dataset", "world-edit:color", env=env)
    assert {c["method"]: c["status"] for c in out["cells"]} == {"my-reranker": "computed", "image+text": "computed"}
    record = {r["method"]["name"]: r for r in out["results"]}["my-reranker"]
    assert record["method"]["config"] == {"prompt": "{text}", "weight": 0.5}


def test_the_scoring_plugin_and_the_dataset_plugin(guide, tiny_dir, tmp_path):
    """my-shop: three images, a query whose reference is red; my-scorer ranks with the better of the two
    similarities. Both plugins load from files; the dataset has no default encoder, so --encoder is given."""
    from PIL import Image

    shop = tmp_path / "shop"
    (shop / "images").mkdir(parents=True)
    for name, rgb in {"red.png": (220, 30, 30), "blue.png": (30, 30, 220), "green.png": (30, 200, 30)}.items():
        Image.new("RGB", (40, 24), rgb).save(shop / "images" / name)
    (shop / "queries.csv").write_text("reference,caption,target\nred.png,make it blue,blue.png\n")
    out = run(guide, "--plugin", "my_dataset.py", "--plugin", "my_scorer.py", "-m", "my-scorer,image-only",
              "--dataset", "my-shop", "--data", f"my-shop={shop}", "--encoder", f"local-dir:{tiny_dir}",
              "--cache-dir", str(tmp_path / "c"))
    assert {c["method"]: c["status"] for c in out["cells"]} == {"my-scorer": "computed", "image-only": "computed"}
    records = {r["method"]["name"]: r for r in out["results"]}
    assert set(records["my-scorer"]["metrics"]) == {"R@1", "R@5", "R@10"}
    assert records["image-only"]["metrics"]["R@1"] == 0.0  # the red reference itself ranks first
    listing = cirbench("list", "datasets", "--plugin", "my_dataset.py", cwd=guide).stdout
    assert "my-shop" in listing


def test_the_api_example_records_the_registered_name(guide, tmp_path):
    proc = subprocess.run([sys.executable, "try_my_reranker.py"], cwd=guide, capture_output=True, text=True,
                          env={**__import__("os").environ, "CIRBENCH_CACHE": str(tmp_path / "c")})
    assert proc.returncode == 0, proc.stderr
    names = [line.split()[0] for line in proc.stdout.splitlines()]
    assert names == ["my-reranker", "image-only"]


def test_a_broken_plugin_file_is_listed_and_stops_only_the_run_that_names_it(tmp_path, guide):
    (guide / "broken.py").write_text("import no_such_module_here\n")
    listing = cirbench("list", "methods", "--plugin", "broken.py", cwd=guide).stdout
    assert "plugin broken.py  BROKEN: ModuleNotFoundError: No module named 'no_such_module_here'" in listing
    proc = cirbench("run", "--plugin", "broken.py", "-m", "image-only", cwd=guide, check=False)
    assert proc.returncode == 2 and "plugin broken.py does not load: ModuleNotFoundError" in proc.stderr
    (guide / "taken.py").write_text("from cirbench import Method, register_method\n\n\n"
                                    "@register_method('image-only')\nclass Mine(Method):\n    pass\n")
    proc = cirbench("run", "--plugin", "taken.py", "-m", "image-only", cwd=guide, check=False)
    assert proc.returncode == 2 and "'image-only' is registered twice" in proc.stderr
    (guide / "notamethod.py").write_text("from cirbench import register_method\n\n\n"
                                         "@register_method('odd')\nclass Odd:\n    pass\n")
    proc = cirbench("run", "--plugin", "notamethod.py", "-m", "odd", cwd=guide, check=False)
    assert proc.returncode == 2 and "not a subclass of cirbench.method.Method" in proc.stderr


def test_the_encoder_example_brings_its_own_model_beside_a_shared_encoder_method(guide, tmp_path):
    """colour-words embeds the text's colour word with its own mean-colour model: on flat colours every
    target is first (R@1 100, by hand), in the same run as image-only on a random CLIP; the run's table
    names each row's model, and `list encoders` lists the kind."""
    from PIL import Image

    tiny = tmp_path / "tiny"
    (tiny / "gallery").mkdir(parents=True)
    for name, rgb in {"red": (220, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 220)}.items():
        Image.new("RGB", (48, 32), rgb).save(tiny / "gallery" / f"{name}.png")
    (tiny / "val.jsonl").write_text("".join(json.dumps({"reference": f"gallery/{r}.png", "text": f"make it {t}",
                                                        "target": f"gallery/{t}.png"}) + "\n"
                                            for r, t in (("red", "blue"), ("blue", "green"), ("green", "red"))))
    out = run(guide, "--plugin", "my_encoder.py", "-m", "colour-words,image-only", "--dataset", str(tiny),
              "--encoder", "random:ViT-B-32", "--cache-dir", str(tmp_path / "c"))
    records = {r["method"]["name"]: r for r in out["results"]}
    assert records["colour-words"]["metrics"]["R@1"] == 100.0
    assert records["colour-words"]["encoder"]["spec"] == "mean-colour:v1" and records["colour-words"]["method"]["own_model"]
    assert records["image-only"]["encoder"]["spec"] == "random:ViT-B-32"
    table = cirbench("run", "--plugin", "my_encoder.py", "-m", "colour-words,image-only", "--dataset", str(tiny),
                     "--encoder", "random:ViT-B-32", "--cache-dir", str(tmp_path / "c"), "--workers", "0",
                     "--quiet", cwd=guide).stdout
    assert any("mean-colour:v1" in line and "colour-words" in line for line in table.splitlines())
    listing = cirbench("list", "encoders", "--plugin", "my_encoder.py", cwd=guide).stdout
    assert "mean-colour  Mean colours and colour words (an example of the encoder contract)." in listing
