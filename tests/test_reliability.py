"""Never a stale or wrong number, never lost work: edited data, odd files, unwritable places, clear errors."""

import json
import os
import shutil

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import colour_encoder
from cirbench.cli import app
from helpers import folder_dataset, result_file

colour_encoder.register()


def invoke(*args, **kw):
    result = CliRunner().invoke(app, [str(a) for a in args], **kw)
    return result.exit_code, result.output


def run_json(tmp_path, dataset, *extra, methods="image-only,text-only", encoder="colour-test"):
    code, out = invoke("run", "--dataset", dataset, "--encoder", encoder, "-m", methods, "--workers", 0,
                       "--json", "--quiet", "--results-dir", tmp_path / "r", "--cache-dir", tmp_path / "cache", *extra)
    assert code == 0, out
    return json.loads(out[out.index("{"):])


def statuses(out):
    return {c["method"]: c["status"] for c in out["cells"]}


# -- stale numbers ------------------------------------------------------------------------------

def test_rotated_captions_with_the_same_count_are_recomputed(tmp_path, mydata):
    first = run_json(tmp_path, mydata)
    lines = (mydata / "val.jsonl").read_text().splitlines()
    rows = [json.loads(x) for x in lines]
    texts = [r["text"] for r in rows]
    for r, t in zip(rows, texts[1:] + texts[:1]):  # rotate the captions: same count, new content
        r["text"] = t
    (mydata / "val.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    again = run_json(tmp_path, mydata)
    assert set(statuses(first).values()) == {"computed"} and set(statuses(again).values()) == {"computed"}
    text_only = {r["method"]["name"]: r["metrics"] for r in again["results"]}["text-only"]
    assert text_only != {r["method"]["name"]: r["metrics"] for r in first["results"]}["text-only"]
    assert set(statuses(run_json(tmp_path, mydata)).values()) == {"reused"}


def test_replaced_pixels_under_the_same_names_are_never_served_from_any_cache(tmp_path, mydata):
    """cp -p / rsync -a keep size and mtime: the features and the results must still follow the pixels."""
    first = run_json(tmp_path, mydata, methods="image-only")
    red, blue = mydata / "gallery" / "circle_red.png", mydata / "gallery" / "circle_blue.png"
    for a, b in ((red, blue),):
        sa, sb = a.stat(), b.stat()
        data_a, data_b = a.read_bytes(), b.read_bytes()
        a.write_bytes(data_b)
        b.write_bytes(data_a)
        os.utime(a, ns=(sa.st_atime_ns, sa.st_mtime_ns))
        os.utime(b, ns=(sb.st_atime_ns, sb.st_mtime_ns))
    again = run_json(tmp_path, mydata, methods="image-only")
    assert statuses(again) == {"image-only": "computed"}
    assert again["results"][0]["run"]["feature_cache"]["misses"] == 0  # the swapped files' features exist ...
    assert again["results"][0]["metrics"] != first["results"][0]["metrics"]  # ... and are the right ones
    forced = run_json(tmp_path, mydata, "--overwrite", methods="image-only")
    assert forced["results"][0]["metrics"] == again["results"][0]["metrics"]


def test_sixteen_bit_pngs_are_scaled_not_saturated(tmp_path):
    from cirbench.protocol.images import load_rgb

    ramp = np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode == "I;16"
    rgb = np.asarray(load_rgb(tmp_path / "g16.png"))
    assert rgb.dtype == np.uint8 and rgb.shape == (64, 64, 3)
    assert rgb[0, 0, 0] == 0 and rgb[-1, -1, 0] == 255 and abs(int(rgb[32, 0, 0]) - 128) <= 2
    assert (rgb == 255).mean() < 0.01  # Pillow's convert("RGB") makes 99.6% of it white


def test_a_sixteen_bit_gallery_ranks_like_its_eight_bit_twin(tmp_path):
    """The colour encoder reads mean colour: a 16-bit grey image must look as grey as its 8-bit twin."""
    for name, bits16 in (("eight", False), ("sixteen", True)):
        root = tmp_path / name
        (root / "gallery").mkdir(parents=True)
        for i, level in enumerate((40, 128, 220)):
            array = np.full((8, 8), level, dtype=np.uint16 if bits16 else np.uint8)
            Image.fromarray(array * 257 if bits16 else array).save(root / "gallery" / f"{i}.png")
        (root / "val.jsonl").write_text(json.dumps({"reference": "gallery/1.png", "text": "x",
                                                    "target": "gallery/1.png"}) + "\n")
    a = run_json(tmp_path / "a", tmp_path / "eight", methods="image-only")["results"][0]["metrics"]
    b = run_json(tmp_path / "b", tmp_path / "sixteen", methods="image-only")["results"][0]["metrics"]
    assert a == b


def test_a_star_or_dollar_in_a_caption_is_text(tmp_path, mydata, tiny_dir, tiny_encoder):
    """Pic2Word and SEARLE networks that output the embedding of "dog" whatever the image: their queries
    must be exactly the text features of "a photo of dog , {caption}" and "a photo of dog that {caption}"
    with the caption's own * and $ left as text -- the same rankings as text-only given those prompts."""
    from cirbench.storage import results
    from test_pinned_protocols import word_token_ckpt

    rows = [json.loads(x) for x in (mydata / "val.jsonl").read_text().splitlines()]
    rows[0]["text"] = "make it * red, the $ 5 one"
    (mydata / "val.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    word_token_ckpt(tmp_path / "p.pt", tiny_encoder, "dog", "pic2word")
    word_token_ckpt(tmp_path / "s.pt", tiny_encoder, "dog", "phi")
    tops = {}
    for method, extra in (("pic2word", ["--checkpoint", f"pic2word={tmp_path / 'p.pt'}"]),
                          ("searle", ["--checkpoint", f"searle={tmp_path / 's.pt'}"]),
                          ("text-only", ["--prompt", "text=a photo of dog , {text}"]),
                          ("text-only", ["--prompt", "text=a photo of dog that {text}"])):
        out = run_json(tmp_path / f"{method}-{len(tops)}", mydata, *extra, "--transform", "clip",
                       "--feature-dtype", "fp32", methods=method, encoder=f"local-dir:{tiny_dir}")
        assert statuses(out) == {method: "computed"}
        record = results.read(result_file(tmp_path / f"{method}-{len(tops)}" / "r", method))
        tops[len(tops)] = results.load_outcomes(record).views["gallery"][0]
    assert (tops[0] == tops[2]).all() and (tops[1] == tops[3]).all()
    code, text = invoke("data", "check", mydata)
    assert code == 0


# -- results and reports -------------------------------------------------------------------------

def test_two_folder_datasets_of_one_name_do_not_overwrite_each_other(tmp_path):
    a = folder_dataset(tmp_path / "one" / "mydata", with_train=False)
    b = folder_dataset(tmp_path / "two" / "mydata", with_train=False)
    (b / "val.jsonl").write_text((b / "val.jsonl").read_text().splitlines()[0] + "\n")
    run_json(tmp_path, a, methods="image-only")
    run_json(tmp_path, b, methods="image-only")
    files = sorted((tmp_path / "r").rglob("image-only.json"))
    assert len(files) == 2 and files[0].parent.parent != files[1].parent.parent
    assert sorted(json.loads(f.read_text())["dataset"]["n_queries"] for f in files) == [1, 9]


def test_slugs_keep_names_apart():
    from cirbench.util.fsutil import slug

    assert slug("données") != slug("donn_es") and slug("données").startswith("données")
    assert slug("world-edit") == "world-edit" and slug("image+text") == "image+text"
    assert slug("a/b") != slug("a_b") and "/" not in slug("a/b")


def test_results_and_cache_files_follow_the_umask(tmp_path, mydata):
    old = os.umask(0o022)
    try:
        run_json(tmp_path, mydata, methods="image-only")
    finally:
        os.umask(old)
    result = next((tmp_path / "r").rglob("image-only.json"))
    shard = next((tmp_path / "cache" / "features").rglob("*.npy"))
    assert oct(result.stat().st_mode & 0o777) == "0o644" and oct(shard.stat().st_mode & 0o777) == "0o644"


# -- unwritable places: one line, exit 2, before any work -----------------------------------------

def test_unwritable_results_or_cache_folder_fails_before_any_work(tmp_path, mydata):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    code, out = invoke("run", "--dataset", mydata, "--encoder", "colour-test", "-m", "image-only", "--quiet",
                       "--results-dir", blocker / "results", "--cache-dir", tmp_path / "cache")
    assert code == 2 and f"cannot write the results folder {blocker / 'results'}" in out and "internal" not in out
    assert not (tmp_path / "cache" / "features").exists()  # nothing was encoded
    code, out = invoke("run", "--dataset", mydata, "--encoder", "colour-test", "-m", "image-only", "--quiet",
                       "--results-dir", tmp_path / "r", "--cache-dir", blocker / "cache")
    assert code == 2 and "cannot write the cache folder" in out and "--cache-dir" in out


def test_an_unwritable_home_without_cache_dir_says_so(tmp_path, mydata, monkeypatch):
    blocker = tmp_path / "home-is-a-file"
    blocker.write_text("x")
    monkeypatch.setenv("HOME", str(blocker))
    monkeypatch.delenv("CIRBENCH_CACHE", raising=False)
    code, out = invoke("run", "--dataset", mydata, "--encoder", "colour-test", "-m", "image-only", "--quiet",
                       "--results-dir", tmp_path / "r")
    assert code == 2 and str(blocker / ".cache" / "cirbench") in out and "--cache-dir" in out


def test_a_read_only_results_folder(tmp_path, mydata, monkeypatch):
    """A folder whose permission bits refuse writing. Root writes through permission bits (CI runs as
    root), so where chmod cannot make the refusal happen the probe write itself is refused with EACCES,
    as the kernel refuses it to a user: the same path through fsutil.ensure_writable either way."""
    import errno
    import tempfile

    (tmp_path / "ro").mkdir()
    os.chmod(tmp_path / "ro", 0o500)
    if os.geteuid() == 0:
        mkstemp = tempfile.mkstemp

        def refusing(*args, dir=None, **kwargs):
            if dir is not None and os.path.realpath(dir) == os.path.realpath(tmp_path / "ro"):
                raise PermissionError(errno.EACCES, "Permission denied", str(dir))
            return mkstemp(*args, dir=dir, **kwargs)

        monkeypatch.setattr(tempfile, "mkstemp", refusing)
    code, out = invoke("run", "--dataset", mydata, "--encoder", "colour-test", "-m", "image-only", "--quiet",
                       "--results-dir", tmp_path / "ro", "--cache-dir", tmp_path / "cache")
    assert code == 2 and f"cannot write the results folder {tmp_path / 'ro'}: Permission denied" in out
    assert not (tmp_path / "cache" / "features").exists()  # nothing was encoded


# -- clearer errors ------------------------------------------------------------------------------

@pytest.mark.parametrize("subset, message", [(5, "'subset' must be a list of image paths (strings), found 5"),
                                             ("gallery/a.jpg", "found 'gallery/a.jpg'")])
def test_subsets_of_the_wrong_type_name_file_and_line(mydata, subset, message):
    rows = [json.loads(x) for x in (mydata / "val.jsonl").read_text().splitlines()]
    rows[1]["subset"] = subset
    (mydata / "val.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    code, out = invoke("run", "--dataset", mydata, "--encoder", "colour-test", "-m", "image-only", "--quiet")
    assert code == 2 and "val.jsonl:2" in out and message in out and "Traceback" not in out


def test_a_symlinked_gallery_folder_is_followed(tmp_path):
    real = folder_dataset(tmp_path / "real", with_train=False)
    ds = tmp_path / "linked"
    ds.mkdir()
    (ds / "gallery").symlink_to(real / "gallery")
    shutil.copy(real / "val.jsonl", ds / "val.jsonl")
    out = run_json(tmp_path, ds, methods="image-only")
    assert out["results"][0]["dataset"]["n_gallery"] == 18
    code, text = invoke("data", "check", ds)
    assert code == 0, text


def test_a_path_that_climbs_out_is_refused_naming_where_it_leads(tmp_path, mydata):
    (tmp_path / "secret.png").write_bytes((mydata / "gallery" / "circle_red.png").read_bytes())
    rows = [json.loads(x) for x in (mydata / "val.jsonl").read_text().splitlines()]
    rows[0]["reference"] = "gallery/../../secret.png"
    (mydata / "val.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    code, out = invoke("run", "--dataset", mydata, "--encoder", "colour-test", "-m", "image-only", "--quiet")
    assert code == 2 and "escapes the dataset folder" in out and str(tmp_path / "secret.png") in out


def test_a_missing_folder_dataset_names_the_folder(tmp_path):
    code, out = invoke("run", "--dataset", tmp_path / "nothere", "--encoder", "colour-test", "--quiet")
    assert code == 2 and f"dataset folder {tmp_path / 'nothere'} does not exist" in out
    assert "''" not in out and "--data =" not in out


def test_json_errors_read_well(tmp_path, mydata):
    (mydata / "val.jsonl").write_text('{"reference": "gallery/circle_red.png", "text": "unterminated}\n')
    code, out = invoke("run", "--dataset", mydata, "--encoder", "colour-test", "-m", "image-only", "--quiet")
    assert code == 2 and "val.jsonl:1: invalid JSON at column" in out and "at at" not in out


def test_a_code_carrying_checkpoint_is_refused_without_advice_to_disable_the_check(tmp_path, mydata, tiny_dir):
    import torch

    torch.save({"state_dict_img2text": {"x": Interesting()}}, tmp_path / "evil.pt")
    code, out = invoke("run", "--dataset", mydata, "--encoder", f"local-dir:{tiny_dir}", "-m", "pic2word",
                       "--checkpoint", tmp_path / "evil.pt", "--quiet", "--results-dir", tmp_path / "r",
                       "--cache-dir", tmp_path / "c")
    assert code == 2 and "refuses to unpickle" in out and "Interesting" in out
    assert "weights_only" not in out and "set to `False`" not in out


class Interesting:
    pass


# -- progress without a terminal -----------------------------------------------------------------

def test_progress_without_a_terminal_prints_plain_lines():
    import io

    from cirbench.util.progress import Progress

    stream = io.StringIO()
    with Progress(stream=stream, interval=0.0) as progress:
        task = progress.task("encode x", total=10)
        task.started -= 10  # as if it had been running a while
        for _ in range(10):
            task.advance(1)
        task.done()
    lines = stream.getvalue().splitlines()
    assert lines and all(line.startswith("encode x: ") for line in lines)
    assert lines[-1].startswith("encode x: 10/10 (100%)") and lines[-1].endswith("done")
    # the time left, from the rate so far: 4 of 10 done after about 10 s -> about 15 s to go
    fourth = next(line for line in lines if line.startswith("encode x: 4/10"))
    assert ", about 15s left" in fourth
    assert "left" not in lines[-1]


def test_progress_of_a_counted_unit_shows_its_rate():
    """4 images after 10 s: 0.4 images/s, on the plain line (and in the bars' rate column)."""
    import io

    from cirbench.util.progress import Progress

    stream = io.StringIO()
    with Progress(stream=stream, interval=0.0) as progress:
        task = progress.task("encode x", total=10, unit="images")
        task.started -= 10
        task.advance(4)
        assert task.rate() == "0.4 images/s"
    assert "encode x: 4/10 (40%) 10s, 0.4 images/s, about 15s left" in stream.getvalue()


def test_a_run_in_a_pipe_shows_progress_on_stderr(tmp_path, mydata):
    from cli_helpers import cirbench

    proc = cirbench("run", "--dataset", mydata, "--encoder", "random:ViT-B-32", "-m", "image-only", "--workers", 0,
                    cwd=tmp_path, env={"CIRBENCH_CACHE": str(tmp_path / "c")})
    assert "encode mydata:val: 18/18 (100%)" in proc.stderr and "done" in proc.stderr
    assert "images/s" in proc.stderr


# -- plugins --------------------------------------------------------------------------------------

def plugin_site(tmp_path, entries: str, module: str):
    site = tmp_path / "site"
    (site / "odd_plugin-0.1.dist-info").mkdir(parents=True)
    (site / "odd_plugin.py").write_text(module)
    (site / "odd_plugin-0.1.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: odd-plugin\nVersion: 0.1\n")
    (site / "odd_plugin-0.1.dist-info" / "entry_points.txt").write_text(entries)
    return site


def test_a_plugin_that_loads_to_something_unusable_is_listed_as_broken(tmp_path, mydata):
    from cli_helpers import cirbench

    site = plugin_site(tmp_path, "[cirbench.methods]\nnothing = odd_plugin:NOTHING\nnotamethod = odd_plugin:Plain\n"
                                 "crashes = odd_plugin_missing:X\n",
                       "NOTHING = None\n\nclass Plain:\n    pass\n")
    env = {"PYTHONPATH": str(site), "CIRBENCH_ENTRY_POINTS": "1", "CIRBENCH_CACHE": str(tmp_path / "c")}
    listing = cirbench("list", "methods", cwd=tmp_path, env=env).stdout
    assert "nothing      BROKEN: it loads to None" in listing
    assert "notamethod   BROKEN: it loads to <class 'odd_plugin.Plain'>, not a subclass" in listing
    assert "crashes      BROKEN: importing odd_plugin_missing:X failed: ModuleNotFoundError" in listing
    proc = cirbench("run", "-m", "nothing", "--dataset", mydata, "--encoder", "colour-test", cwd=tmp_path, env=env,
                    check=False)
    assert proc.returncode == 2 and "method 'nothing' is a broken plugin: it loads to None" in proc.stderr


def test_a_lone_checkpoint_belongs_to_the_one_method_that_takes_weights(tmp_path, mydata, tiny_dir, tiny_encoder):
    from test_checkpoints import searle_ckpt

    searle_ckpt(tmp_path / "phi.pt", tiny_encoder.embed_dim, tiny_encoder.token_width)
    out = run_json(tmp_path, mydata, "--checkpoint", tmp_path / "phi.pt", methods="searle,image-only",
                   encoder=f"local-dir:{tiny_dir}")
    assert statuses(out) == {"searle": "computed", "image-only": "computed"}
    searle = next(r for r in out["results"] if r["method"]["name"] == "searle")
    assert searle["method"]["config"]["checkpoint"]["path"] == str((tmp_path / "phi.pt").resolve())
