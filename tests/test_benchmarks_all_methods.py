"""Every method on every benchmark fixture: Pic2Word and Combiner weights from `cirbench train`,
SEARLE and LinCIR phi weights saved in the released layout, CIReVL, LDRE and SEIZE generating their
texts with tiny local captioner and LLM folders, on a tiny open_clip model."""

import json

import pytest
from typer.testing import CliRunner

import real_fixtures as F
from cirbench.cli import app
from test_checkpoints import searle_ckpt

pytestmark = pytest.mark.slow
METHODS = {"image-only", "text-only", "image+text", "product", "pic2word", "combiner", "searle", "lincir", "slerp",
           "weicom", "cirevl", "ldre", "seize"}
# every prompt name the LLM methods read, per dataset (the official files hold the real ones)
PROMPTS = "\n".join(f'{name} = "edit the image content ."' for name in (
    "blip_prompt", "contextual_modifier_prompt", "structural_modifier_prompt", "structural_modifier_prompt_fashion",
    "short_modifier_prompt", "short_focus_object_modifier_prompt", "simple_modifier_prompt", "sys_prompt")) + \
    '\nusr_prompt = "image content : {} instruction : {}"\n'


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_all_methods_on_all_benchmark_fixtures(tmp_path, tiny_dir, tiny_encoder, hf_models):
    data = tmp_path / "data"
    F.fashioniq(data / "fashioniq"), F.cirr(data / "cirr"), F.circo(data / "circo")
    F.imagenet_r(data / "imagenet-r"), F.coco(data / "coco"), F.genecis(data / "genecis")
    common = ["--encoder", f"local-dir:{tiny_dir}", "--data-root", data, "--cache-dir", tmp_path / "cache",
              "--workers", "0", "--quiet"]
    assert invoke("data", "prepare", "coco", "--data-root", data, "--cache-dir", tmp_path / "cache",
                  "--quiet").exit_code == 0
    r = invoke("train", "pic2word", "--images", data / "fashioniq" / "images", "--epochs", "1", "--batch-size", "4",
               "-o", "middle_dim=16", *common)
    assert r.exit_code == 0, r.output
    for name in ("fashioniq", "cirr"):
        r = invoke("train", "combiner", "--dataset", name, "--epochs", "1", "--batch-size", "2",
                   "-o", "projection_dim=8", "-o", "hidden_dim=16", *common)
        assert r.exit_code == 0, r.output
    searle_ckpt(tmp_path / "searle.pt", tiny_encoder.embed_dim, tiny_encoder.token_width)
    searle_ckpt(tmp_path / "lincir.pt", tiny_encoder.embed_dim, tiny_encoder.token_width, prefix="module.")
    phis = ["--checkpoint", f"searle={tmp_path / 'searle.pt'}", "--checkpoint", f"lincir={tmp_path / 'lincir.pt'}"]
    (tmp_path / "prompts.py").write_text(PROMPTS)
    blip2, llm = hf_models
    llms = [x for m in ("cirevl", "ldre", "seize") for x in (
        "-o", f"{m}.captioner={blip2}", "-o", f"{m}.llm={llm}", "-o", f"{m}.prompts_file={tmp_path / 'prompts.py'}",
        "-o", f"{m}.max_new_tokens=6")] + ["-o", "ldre.n=2", "-o", "seize.n=2"]
    run = ["run", "-m", "all", "--results-dir", tmp_path / "results", "--json", *common, *phis, *llms]
    r = invoke(*run, "--dataset", "fashioniq,cirr")
    assert r.exit_code == 0, r.output
    cells = json.loads(r.stdout)["cells"]
    # the methods that bring their own model are skipped: none is on disk here, and `all` downloads nothing
    own = {c["method"] for c in cells if c["status"] == "skipped"}
    # freedom and basic: no class-name list, no released statistics given
    assert own == {"bge-vl", "bge-vl-large", "magiclens", "e5-v", "bge-vl-mllm", "lamra", "freedom", "basic"}
    cells = [c for c in cells if c["method"] not in own]
    assert {(c["dataset"], c["method"]) for c in cells} == {(d, m) for d in ("fashioniq", "cirr") for m in METHODS}
    assert {c["status"] for c in cells} == {"computed"}
    transforms = {x["method"]["name"]: x["method"]["transform"] for x in json.loads(r.stdout)["results"]}
    # each official code's preprocessing: TargetPad in CLIP4Cir, SEARLE, CIReVL, LDRE and SEIZE; Hugging
    # Face's CLIPImageProcessor in LinCIR; CLIP's own transform in Pic2Word and Slerp
    assert transforms["searle"] == transforms["combiner"] == transforms["cirevl"] == "targetpad"
    assert transforms["ldre"] == transforms["seize"] == "targetpad"
    assert transforms["pic2word"] == transforms["slerp"] == "clip" and transforms["lincir"] == "hf-clip"

    # no train triplets of their own: the Combiner says how to get weights, the other methods still run
    r = invoke(*run, "--dataset", "circo,imagenet-r,coco,genecis")
    assert r.exit_code == 2
    assert "cirbench train combiner" in r.output and "--checkpoint combiner=PATH" in r.output
    done = {(c["dataset"], c["method"]) for c in json.loads(r.stdout)["cells"] if c["status"] == "computed"}
    assert {m for _, m in done} == METHODS - {"combiner"}
    assert {d for d, _ in done} == {"circo", "imagenet-r", "coco", "genecis"}

    cirr_combiner = next((tmp_path / "cache" / "checkpoints" / "combiner").rglob("cirr.pt"))
    r = invoke(*run, "--dataset", "circo,imagenet-r,coco,genecis", "--checkpoint", f"combiner={cirr_combiner}")
    assert r.exit_code == 0, r.output
    records = [x for x in json.loads(r.stdout)["results"] if x["method"]["name"] == "combiner"]
    assert {x["dataset"]["name"] for x in records} == {"circo", "imagenet-r", "coco", "genecis"}
    genecis = {(x["dataset"]["split"], x["method"]["name"]) for x in json.loads(r.stdout)["results"]
               if x["dataset"]["name"] == "genecis"}
    assert genecis == {(t, m) for t in ("focus_attribute", "change_attribute", "focus_object", "change_object")
                       for m in METHODS}
    assert all(x["method"]["config"]["train_dataset"] == "cirr" for x in records)

    r = invoke("report", "--results-dir", tmp_path / "results", "--out", tmp_path / "reports")
    assert r.exit_code == 0, r.output
    md = (tmp_path / "reports" / "results.md").read_text()
    for name in ("fashioniq", "cirr", "circo", "imagenet-r", "coco", "genecis"):
        assert f"## {name}" in md
    assert "change_object R@1" in md and "average R@1" in md
    assert "combiner (supervised, trained on cirr)" in md
    for name in METHODS:
        assert f"| {name}" in md
