"""Bad input gives one clear line and exit code 2, never a traceback."""

import pytest
from typer.testing import CliRunner

from cirbench.cli import app


def invoke(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.output


def test_unknown_method(tmp_path, mydata):
    code, out = invoke("run", "--method", "pic2wrd", "--dataset", mydata)
    assert code == 2 and "unknown method 'pic2wrd'" in out and "Did you mean 'pic2word'" in out
    assert "Traceback" not in out


def test_unknown_dataset():
    code, out = invoke("run", "--dataset", "fashoniq")
    assert code == 2 and "unknown dataset 'fashoniq'" in out


def test_missing_data_root(monkeypatch):
    monkeypatch.delenv("CIRBENCH_DATA_ROOT", raising=False)
    code, out = invoke("run", "--dataset", "folder")
    assert code == 2 and "--data-root" in out


def test_missing_folder(tmp_path):
    code, out = invoke("run", "--dataset", tmp_path / "nothere", "--encoder", "random:ViT-B-32")
    assert code == 2 and "does not exist" in out


def test_bad_split(mydata):
    code, out = invoke("run", "--dataset", f"{mydata}:test")
    assert code == 2 and "no split 'test'" in out and "val" in out


@pytest.mark.parametrize("line, message", [
    ('{"reference": "gallery/circle_red.png", "text": "x", "target": "gallery/nope.png"}', "not in the gallery"),
    ('{"reference": "../../etc/passwd", "text": "x", "target": "gallery/circle_red.png"}', "escapes the dataset"),
    ('{"reference": "gallery/circle_red.png", "text": "x", ', "invalid JSON"),
    ('{"text": "x", "target": "gallery/circle_red.png"}', "missing field 'reference'"),
])
def test_malformed_query_files_name_file_and_line(mydata, tiny_dir, line, message):
    lines = (mydata / "val.jsonl").read_text().splitlines()
    (mydata / "val.jsonl").write_text("\n".join(lines[:2] + [line] + lines[2:]) + "\n")
    code, out = invoke("run", "--dataset", mydata, "--encoder", f"local-dir:{tiny_dir}", "-m", "image-only")
    assert code == 2 and "val.jsonl:3" in out and message in out, out


def test_pic2word_prompt_without_star(tmp_path, mydata, tiny_dir, tiny_encoder, cache_env):

    from test_checkpoints import pic2word_ckpt

    pic2word_ckpt(tmp_path / "p.pt", tiny_encoder.embed_dim, tiny_encoder.token_width)
    code, out = invoke("run", "--dataset", mydata, "--encoder", f"local-dir:{tiny_dir}", "-m", "pic2word",
                       "--checkpoint", tmp_path / "p.pt", "--prompt", "pseudo=a photo of *, {text}",
                       "--results-dir", tmp_path / "r", "--workers", 0)
    assert code == 2 and "pseudo-word" in out and "Traceback" not in out
    assert not list((tmp_path / "r").rglob("*.json"))  # nothing half-written


def test_checkpoint_needs_a_method_when_ambiguous(mydata, tiny_dir):
    code, out = invoke("run", "--dataset", mydata, "--encoder", f"local-dir:{tiny_dir}", "--checkpoint", "x.pt")
    assert code == 2 and "METHOD=PATH" in out
