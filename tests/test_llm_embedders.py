"""What the multimodal-LLM embedders (e5-v, bge-vl-mllm, lamra) share: a model that is not there offline
is one line naming it, bf16 on a GPU unless --precision says otherwise, prompts run grouped by length."""

from __future__ import annotations

import pytest

import real_fixtures as F


@pytest.mark.parametrize("method,model", [("e5-v", "royokong/e5-v"), ("bge-vl-mllm", "BAAI/BGE-VL-MLLM-S1"),
                                          ("lamra", "code-kunkun/LamRA-Ret")])
def test_a_missing_model_offline_is_one_line(tmp_path, monkeypatch, method, model):
    from helpers import invoke

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    root = F.cirr(tmp_path / "cirr")
    code, out = invoke("run", "-m", method, "--dataset", "cirr:val", "--data", f"cirr={root}", "--quiet",
                       "--results-dir", tmp_path / "r", "--cache-dir", tmp_path / "c")
    assert code == 2 and model in out and "Traceback" not in out


def test_auto_precision_is_bf16_for_the_llm_kinds_on_a_gpu_only():
    from cirbench.contracts.encoder import resolve_precision
    from cirbench.contracts.registry import encoders

    for kind in ("qwen2-vl", "llava-next"):
        assert resolve_precision(encoders.get(kind), "cuda:1", "auto") == "bf16"
        assert resolve_precision(encoders.get(kind), "cpu", "auto") == "fp32"
        assert resolve_precision(encoders.get(kind), "cuda", "fp16") == "fp16"
    assert resolve_precision(encoders.get("hf-clip"), "cuda", "auto") == "fp32"


def test_prompts_run_grouped_by_length():
    """Sorted by length, a new forward pass where padding would exceed a quarter of the real tokens:
    10, 11, 12 (36 of 33 real) together; 30 alone; 31 joins it (62 of 61)."""
    from cirbench.encoders.prompt_llm import length_groups

    assert length_groups([30, 10, 12, 31, 11]) == [[1, 4, 2], [0, 3]]
    assert length_groups([5]) == [[0]] and length_groups([]) == []
    assert length_groups([4, 100]) == [[0], [1]]


def test_a_processors_revision_is_its_cached_commit_or_its_folders_hash(tmp_path, monkeypatch):
    """LamRA's processor comes from another repository than its model: its exact revision is recorded --
    the hub commit of the cached snapshot (refs/main names it), or a hash of a local folder's files."""
    from cirbench.util.hub import files_revision

    commit = "0123456789abcdef0123456789abcdef01234567"
    cache = tmp_path / "hub"
    snapshot = cache / "models--Qwen--Qwen2-VL-7B-Instruct" / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (snapshot / "preprocessor_config.json").write_text("{}")
    (cache / "models--Qwen--Qwen2-VL-7B-Instruct" / "refs").mkdir()
    (cache / "models--Qwen--Qwen2-VL-7B-Instruct" / "refs" / "main").write_text(commit)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    assert files_revision("Qwen/Qwen2-VL-7B-Instruct", None, "preprocessor_config.json") == commit
    assert files_revision("Qwen/Other", "v1", "preprocessor_config.json") == "v1"
    local = files_revision(str(snapshot), None, "preprocessor_config.json")
    (snapshot / "preprocessor_config.json").write_text('{"min_pixels": 1}')
    assert local.startswith("local-") and files_revision(str(snapshot), None, "x") != local
