"""The whole path on a dataset of the user's own: CLI -> dataset -> encoder -> methods -> metrics ->
results -> report, in fresh processes as a user runs it."""

import json

import pytest

from cli_helpers import cirbench

pytestmark = pytest.mark.slow

METHODS = ["image-only", "text-only", "image+text", "product", "pic2word", "combiner", "slerp", "weicom"]
BASELINES = ["image-only", "text-only", "image+text", "product", "slerp", "weicom"]  # nothing to train


def test_train_run_rerun_report(tmp_path, mydata, tiny_dir):
    env = {"CIRBENCH_CACHE": str(tmp_path / "cache")}
    enc = f"local-dir:{tiny_dir}"
    common = ["--encoder", enc, "--workers", "0"]
    # the trained methods without weights: one clear line each, exit 1, others still run
    proc = cirbench("run", "--dataset", mydata, *common, "--quiet", cwd=tmp_path, env=env, check=False)
    assert proc.returncode == 2 and "cirbench train pic2word" in proc.stderr and "cirbench train combiner" in proc.stderr
    assert "Traceback" not in proc.stderr

    cirbench("train", "pic2word", "--images", mydata / "train", "--epochs", "2", "--batch-size", "8",
             "-o", "middle_dim=32", *common, cwd=tmp_path, env=env)
    cirbench("train", "combiner", "--dataset", mydata, "--epochs", "2", "--batch-size", "8",
             "-o", "projection_dim=16", "-o", "hidden_dim=32", *common, cwd=tmp_path, env=env)

    proc = cirbench("run", "--method", "all", "--dataset", mydata, *common, "--json", cwd=tmp_path, env=env)
    out = json.loads(proc.stdout)
    status = {c["method"]: c["status"] for c in out["cells"]}
    # released weights only (searle, lincir); released texts or local models and prompts (the LLM methods)
    # and those that bring their own model (BGE-VL, MagicLens), none of which is on disk here
    assert {status.pop(m) for m in ("searle", "lincir", "cirevl", "ldre", "seize", "bge-vl", "bge-vl-large",
                                    "magiclens", "e5-v", "bge-vl-mllm", "lamra", "freedom", "basic")} == {"skipped"}
    assert sorted(status) == sorted(METHODS)
    # the training-free methods finished in the first run and are reused; the trained ones are computed now
    assert status == {**{m: "reused" for m in BASELINES}, "pic2word": "computed", "combiner": "computed"}
    for record in out["results"]:
        assert set(record["metrics"]) >= {"R@1", "R@5", "R@10", "R@50", "Rs@1", "Rs@2", "Rs@3"}
        assert record["dataset"]["n_queries"] == 9 and record["dataset"]["n_gallery"] == 18
        assert record["run"]["versions"]["torch"] and record["encoder"]["identity"]["weights_sha256"]
    # the gallery and references were encoded once, in the first run, for the three baselines together;
    # the second run found all 18 images in the feature cache
    caches = {r["method"]["name"]: r["run"]["feature_cache"] for r in out["results"]}
    assert all(caches[m] == {"hits": 0, "misses": 18} for m in BASELINES)
    # pic2word reads the clip-transform features from the cache; the combiner's own TargetPad transform
    # is another set of features (encoded now, once)
    assert caches["pic2word"] == {"hits": 18, "misses": 0}
    assert caches["combiner"] == {"hits": 0, "misses": 18}
    combiner = next(r for r in out["results"] if r["method"]["name"] == "combiner")
    assert combiner["method"]["supervised"] and combiner["method"]["config"]["train_dataset"] == "mydata"
    pic2word = next(r for r in out["results"] if r["method"]["name"] == "pic2word")
    assert pic2word["method"]["config"]["checkpoint"]["sha256"]
    assert pic2word["method"]["config"]["prompt"] == "a photo of * , {text}"

    # rerun: finished cells are reused; with --overwrite they are recomputed from the feature cache
    proc = cirbench("run", "--dataset", mydata, *common, "--json", cwd=tmp_path, env=env)
    assert {c["status"] for c in json.loads(proc.stdout)["cells"]} == {"reused", "skipped"}
    proc = cirbench("run", "--dataset", mydata, *common, "--json", "--overwrite", cwd=tmp_path, env=env)
    again = json.loads(proc.stdout)["results"]
    assert {r["run"]["feature_cache"]["misses"] for r in again} == {0}
    assert {r["method"]["name"]: r["metrics"] for r in again} == {r["method"]["name"]: r["metrics"] for r in out["results"]}

    # the table on stdout names every method
    proc = cirbench("run", "--dataset", mydata, *common, cwd=tmp_path, env=env)
    for name in METHODS:
        assert name in proc.stdout
    assert "supervised" in proc.stdout
    assert "note: searle not run" in proc.stderr and "note: lincir not run" in proc.stderr

    proc = cirbench("report", cwd=tmp_path, env=env)
    reports = tmp_path / "reports"
    md = (reports / "results.md").read_text()
    assert "| encoder | method |" in md and "combiner (supervised, trained on mydata)" in md
    assert (reports / "mydata.png").stat().st_size > 1000
    assert "R@10" in (reports / "summary.csv").read_text()


PLUGIN = '''
from cirbench.method import Method  # the import path plugins written for cirbench 0.2 use


class Weighted(Method):
    description = "0.7 image + 0.3 text (a third-party plugin)"

    def compose(self, reference_features, texts):
        import torch.nn.functional as F
        text = self.ctx.text_features([self.prompt("text", t) for t in texts])
        return 0.7 * F.normalize(reference_features, dim=-1) + 0.3 * F.normalize(text, dim=-1)
'''


def test_third_party_method_through_an_entry_point(tmp_path, mydata, tiny_dir):
    """A distribution outside the package declares a cirbench.methods entry point; the CLI runs it."""
    site = tmp_path / "site"
    (site / "my_cir_plugin-0.1.dist-info").mkdir(parents=True)
    (site / "my_cir_plugin.py").write_text(PLUGIN)
    (site / "my_cir_plugin-0.1.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: my-cir-plugin\nVersion: 0.1\n")
    (site / "my_cir_plugin-0.1.dist-info" / "entry_points.txt").write_text(
        "[cirbench.methods]\nweighted = my_cir_plugin:Weighted\n")
    env = {"PYTHONPATH": str(site), "CIRBENCH_ENTRY_POINTS": "1", "CIRBENCH_CACHE": str(tmp_path / "cache")}
    listing = cirbench("list", "methods", cwd=tmp_path, env=env).stdout
    assert "weighted" in listing and "my_cir_plugin:Weighted" in listing
    proc = cirbench("run", "-m", "weighted,image-only", "--dataset", mydata, "--encoder", f"local-dir:{tiny_dir}",
                    "--workers", "0", "--json", "--feature-dtype", "fp32", cwd=tmp_path, env=env)
    records = json.loads(proc.stdout)["results"]
    assert {r["method"]["name"] for r in records} == {"weighted", "image-only"}
    # the plugin's ranking is 0.7 image + 0.3 text, computed here from the encoder directly
    import torch

    from cirbench.storage import results
    from cirbench.contracts.encoder import load_encoder
    from cirbench.protocol.images import load_image

    encoder = load_encoder(f"local-dir:{tiny_dir}")
    rows = [json.loads(x) for x in (mydata / "val.jsonl").read_text().splitlines()]
    path = next((tmp_path / "results").rglob("weighted.json"))
    outcomes = results.load_outcomes(results.read(path))
    gallery = outcomes.gallery
    with torch.no_grad():
        pixels = torch.stack([encoder.preprocess(load_image(mydata / g, keep_mode=True)) for g in gallery])
        feats = torch.nn.functional.normalize(encoder.encode_images(pixels), dim=-1)
        refs = feats[[gallery.index(r["reference"]) for r in rows]]
        text = torch.nn.functional.normalize(encoder.encode_texts([r["text"] for r in rows]), dim=-1)
        query = torch.nn.functional.normalize(0.7 * refs + 0.3 * text, dim=-1)
        expected = torch.argsort(query @ feats.T, dim=1, descending=True, stable=True)[:, :5]
    assert (outcomes.views["gallery"][0][:, :5] == expected.numpy()).all()
