"""`cirbench data get` against a local HTTP server serving small archives in the official layouts (zip
and tar, with the official folder prefixes) under test manifests: get -> check -> run; an interrupted
transfer resumed with a Range request; corrupted and truncated files refused with nothing half-done; a
404 as one line; a second get transferring nothing; --mirror; --dry-run; --from-hub from the local
Hugging Face cache; the shipped manifests."""

from __future__ import annotations

import hashlib
import io
import json
import re
import tarfile
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from typer.testing import CliRunner

import real_fixtures as F
from cirbench.cli import app


class Server:
    """Serves ``files`` {path: bytes}; honours Range; records (method, path, Range); ``cut`` {path: n}
    sends only the first n bytes of the first full GET of that path, then drops the connection.
    Hostile habits, per path: ``stall`` {path: n} sends n bytes and then nothing for 3 s; ``unannounced``
    sends no Content-Length; ``ignore_range`` answers a Range request with the whole file (200);
    ``part_only`` answers every GET with 206 and the first half; ``loop`` redirects to itself."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.cut: dict[str, int] = {}
        self.stall: dict[str, int] = {}
        self.unannounced: set[str] = set()
        self.ignore_range: set[str] = set()
        self.part_only: set[str] = set()
        self.loop: set[str] = set()
        self.requests: list[tuple[str, str, str | None]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _serve(self, body: bool):
                server.requests.append((self.command, self.path, self.headers.get("Range")))
                if self.path in server.loop:
                    self.send_response(302)
                    self.send_header("Location", self.path)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                data = server.files.get(self.path)
                if data is None:
                    self.send_error(404, "Not Found")
                    return
                if self.path in server.part_only:
                    half = len(data) // 2
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes 0-{half - 1}/{len(data)}")
                    self.send_header("Content-Length", str(half))
                    self.end_headers()
                    self.wfile.write(data[:half] if body else b"")
                    return
                start = 0
                match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
                if self.path in server.ignore_range:
                    match = None
                if match:
                    start = int(match.group(1))
                    if start >= len(data):
                        self.send_error(416, "Range Not Satisfiable")
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                if self.path not in server.unannounced:
                    self.send_header("Content-Length", str(len(data) - start))
                else:
                    self.close_connection = True
                self.send_header("Accept-Ranges", "bytes")
                self.end_headers()
                if not body:
                    return
                if not match and self.path in server.stall:
                    self.wfile.write(data[:server.stall.pop(self.path)])
                    self.wfile.flush()
                    time.sleep(3)
                    self.close_connection = True
                    return
                if not match and self.path in server.cut:
                    self.wfile.write(data[:server.cut.pop(self.path)])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(data[start:])

            def do_GET(self):
                self._serve(True)

            def do_HEAD(self):
                self._serve(False)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def gets(self):
        return [r for r in self.requests if r[0] == "GET"]


@pytest.fixture
def server():
    s = Server()
    yield s
    s.httpd.shutdown()


def zip_of(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


def tar_of(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def circo_sources(tmp_path, server, base=None):
    """CIRCO as its sources ship it: two annotation files (raw), COCO's unlabeled images as a zip whose
    members sit under unlabeled2017/, and the image info as a zip under annotations/."""
    built = F.circo(tmp_path / "built")
    base = base or server.url
    unl = built / "COCO2017_unlabeled"
    images = {f"unlabeled2017/{p.name}": p.read_bytes() for p in sorted((unl / "unlabeled2017").iterdir())}
    info = {"annotations/image_info_unlabeled2017.json": (unl / "annotations" / "image_info_unlabeled2017.json").read_bytes()}
    served = {"/circo/annotations/val.json": (built / "annotations" / "val.json").read_bytes(),
              "/circo/annotations/test.json": (built / "annotations" / "test.json").read_bytes(),
              "/coco/zips/unlabeled2017.zip": zip_of(images),
              "/coco/annotations/image_info_unlabeled2017.zip": zip_of(info)}
    server.files.update(served)
    manifest = {"dataset": "circo", "files": [
        {"url": f"{base}/circo/annotations/val.json", "sha256": sha(served["/circo/annotations/val.json"]),
         "size": len(served["/circo/annotations/val.json"]), "archive": None, "to": "annotations"},
        {"url": f"{base}/circo/annotations/test.json", "sha256": None, "size": None, "archive": None,
         "to": "annotations"},
        {"url": f"{base}/coco/annotations/image_info_unlabeled2017.zip", "sha256": None, "size": None,
         "archive": "zip", "to": "COCO2017_unlabeled"},
        {"url": f"{base}/coco/zips/unlabeled2017.zip", "sha256": sha(served["/coco/zips/unlabeled2017.zip"]),
         "size": None, "archive": "zip", "to": "COCO2017_unlabeled", "name": "images"}],
        "manual": ["nothing else: this is a test"]}
    path = tmp_path / "circo-manifest.json"
    path.write_text(json.dumps(manifest))
    return path, served, built


def get(*args):
    return CliRunner().invoke(app, ["data", "get", *map(str, args), "--quiet"])


def test_get_then_check_then_run_and_a_second_get_transfers_nothing(tmp_path, server, tiny_dir):
    manifest, served, built = circo_sources(tmp_path, server)
    data = tmp_path / "data"
    result = get("circo", "--manifest", manifest, "--data-root", data)
    assert result.exit_code == 0, result.output
    assert "manual: nothing else: this is a test" in result.output and f"{data / 'circo'}: OK" in result.output
    # exactly the layout cirbench reads, byte for byte
    for rel in ("annotations/val.json", "COCO2017_unlabeled/annotations/image_info_unlabeled2017.json",
                "COCO2017_unlabeled/unlabeled2017/000000000001.jpg"):
        assert (data / "circo" / rel).read_bytes() == (built / rel).read_bytes()
    assert not list((data / "circo").glob(".cirbench-*/"))  # no downloads or extraction folders left
    run = CliRunner().invoke(app, ["run", "--method", "image-only", "--dataset", "circo:val", "--data-root", str(data),
                                   "--encoder", f"local-dir:{tiny_dir}", "--results-dir", str(tmp_path / "r"),
                                   "--cache-dir", str(tmp_path / "c"), "--workers", "0", "--quiet", "--json"])
    assert run.exit_code == 0, run.output
    assert json.loads(run.stdout)["cells"][0]["status"] == "computed"
    before = len(server.gets())
    again = get("circo", "--manifest", manifest, "--data-root", data)
    assert again.exit_code == 0, again.output
    assert len(server.gets()) == before and again.output.count("already there") == 4
    # a file changed after the download is what `data check` reports
    (data / "circo" / "annotations" / "val.json").write_text("[]")
    check = CliRunner().invoke(app, ["data", "check", "circo", "--data-root", str(data), "--quiet"])
    assert check.exit_code == 1 and "changed since it was fetched" in check.output


def test_an_interrupted_transfer_resumes_with_a_range_request(tmp_path, server):
    payload = bytes(range(256)) * 1000  # 256,000 bytes
    server.files["/big.bin"] = payload
    server.cut["/big.bin"] = 70_000
    manifest = tmp_path / "m.json"
    manifest.write_text(json.dumps({"dataset": "circo", "files": [
        {"url": f"{server.url}/big.bin", "sha256": sha(payload), "size": len(payload), "archive": None, "to": "x"}]}))
    data = tmp_path / "data"
    first = get("circo", "--manifest", manifest, "--data-root", data)
    assert first.exit_code == 1 and "run the same command again to resume" in first.output
    partial = data / "circo" / ".cirbench-downloads" / "big.bin.part"
    assert partial.stat().st_size == 70_000 and not (data / "circo" / "x" / "big.bin").exists()
    second = get("circo", "--manifest", manifest, "--data-root", data)
    assert "big.bin" in second.output and "fetched" in second.output
    assert server.gets()[-1][2] == "bytes=70000-"
    assert (data / "circo" / "x" / "big.bin").read_bytes() == payload and not partial.exists()


def test_corrupt_or_truncated_files_are_refused_and_nothing_is_half_done(tmp_path, server):
    good = zip_of({"unlabeled2017/000000000001.jpg": b"x" * 5000, "unlabeled2017/000000000002.jpg": b"y" * 5000})
    server.files["/bad-sum.json"] = b"[1, 2, 3]"
    server.files["/short.zip"] = good[: len(good) // 2]
    data = tmp_path / "data"
    mine = data / "circo" / "annotations" / "val.json"
    mine.parent.mkdir(parents=True)
    mine.write_text("the user's own file")
    manifest = tmp_path / "m.json"
    manifest.write_text(json.dumps({"dataset": "circo", "files": [
        {"url": f"{server.url}/bad-sum.json", "sha256": "0" * 64, "size": None, "archive": None, "to": "annotations"}]}))
    result = get("circo", "--manifest", manifest, "--data-root", data)
    assert result.exit_code == 2
    assert f"{server.url}/bad-sum.json: the download does not verify (sha256" in result.output
    assert mine.read_text() == "the user's own file" and not (data / "circo" / "annotations" / "bad-sum.json").exists()
    assert not list((data / "circo").rglob("*.part"))
    manifest.write_text(json.dumps({"dataset": "circo", "files": [
        {"url": f"{server.url}/short.zip", "sha256": None, "size": None, "archive": "zip", "to": "COCO2017_unlabeled"}]}))
    result = get("circo", "--manifest", manifest, "--data-root", data)
    assert result.exit_code == 2 and "is not a complete zip archive" in result.output and "/short.zip" in result.output
    assert not (data / "circo" / "COCO2017_unlabeled").exists() or not any((data / "circo" / "COCO2017_unlabeled").rglob("*"))
    assert mine.read_text() == "the user's own file"


def test_a_missing_file_is_one_line_with_its_url(tmp_path, server):
    manifest = tmp_path / "m.json"
    manifest.write_text(json.dumps({"dataset": "circo", "files": [
        {"url": f"{server.url}/gone.zip", "sha256": None, "size": None, "archive": "zip", "to": "."}]}))
    result = get("circo", "--manifest", manifest, "--data-root", tmp_path / "data")
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [f"error: {server.url}/gone.zip: HTTP 404 Not Found"]


def test_mirror_rewrites_hosts_and_dry_run_transfers_nothing(tmp_path, server):
    manifest, served, _ = circo_sources(tmp_path, server, base="https://files.example.org")
    server.files = {f"/files.example.org{k}": v for k, v in served.items()}
    data = tmp_path / "data"
    dry = get("circo", "--manifest", manifest, "--data-root", data, "--mirror", server.url, "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert server.requests == [] and not (data / "circo").exists()
    assert f"would fetch {server.url}/files.example.org/coco/zips/unlabeled2017.zip" in dry.output
    assert "B)" in dry.output  # sizes where the manifest has them
    result = get("circo", "--manifest", manifest, "--data-root", data, "--mirror", server.url)
    assert result.exit_code == 0, result.output
    assert {p for _, p, _ in server.gets()} == set(server.files)


def test_a_tar_with_a_prefix_to_strip_and_a_tar_kept_whole(tmp_path, server):
    """ImageNet-R's tar keeps its imagenet-r/ folder (the layout reads imagenet-r/imagenet-r/); a
    repository archive's top folder is stripped."""
    server.files["/imagenet-r.tar"] = tar_of({"imagenet-r/n01443537/cartoon_0.jpg": b"a" * 300,
                                              "imagenet-r/README.txt": b"read me"})
    server.files["/repo.zip"] = zip_of({"composed_image_retrieval-8c05/data/imgnet/imgnet_targets.txt": b"t 1\n",
                                        "composed_image_retrieval-8c05/README.md": b"r"})
    manifest = tmp_path / "m.json"
    manifest.write_text(json.dumps({"dataset": "imagenet-r", "files": [
        {"url": f"{server.url}/imagenet-r.tar", "archive": "tar", "to": "."},
        {"url": f"{server.url}/repo.zip", "archive": "zip", "to": ".", "strip": "composed_image_retrieval-8c05/data/imgnet"}]}))
    data = tmp_path / "data"
    mine = data / "imagenet-r" / "imagenet-r" / "README.txt"
    mine.parent.mkdir(parents=True)
    mine.write_bytes(b"my notes")
    result = get("imagenet-r", "--manifest", manifest, "--data-root", data)
    assert "2 file(s) extracted" in result.output and "1 already there and kept" in result.output
    root = data / "imagenet-r"
    assert (root / "imagenet-r" / "n01443537" / "cartoon_0.jpg").read_bytes() == b"a" * 300
    assert mine.read_bytes() == b"my notes"  # a user's file is never overwritten
    assert (root / "imgnet_targets.txt").read_bytes() == b"t 1\n" and not (root / "README.md").exists()


def test_an_archive_member_climbing_out_is_refused(tmp_path, server):
    server.files["/evil.zip"] = zip_of({"../../outside.txt": b"no"})
    manifest = tmp_path / "m.json"
    manifest.write_text(json.dumps({"dataset": "circo", "files": [{"url": f"{server.url}/evil.zip", "archive": "zip"}]}))
    result = get("circo", "--manifest", manifest, "--data-root", tmp_path / "data")
    assert result.exit_code == 2 and "would land outside the dataset folder" in result.output
    assert not (tmp_path / "outside.txt").exists()


def test_not_enough_disk_space_is_said_before_downloading(tmp_path, server, monkeypatch):
    import shutil
    from collections import namedtuple

    server.files["/huge.zip"] = b"z" * 1000
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10_000, 9_900, 100))
    manifest = tmp_path / "m.json"
    manifest.write_text(json.dumps({"dataset": "circo", "files": [{"url": f"{server.url}/huge.zip", "archive": "zip"}]}))
    result = get("circo", "--manifest", manifest, "--data-root", tmp_path / "data")
    assert result.exit_code == 2 and "needs about 2.0 KiB" in result.output and "100 B is free" in result.output
    assert server.gets() == []


def test_malformed_manifests_are_named(tmp_path):
    manifest = tmp_path / "m.json"
    manifest.write_text(json.dumps({"dataset": "circo", "files": [{"url": "http://x/a.zip", "to": "../elsewhere"}]}))
    result = get("circo", "--manifest", manifest, "--data-root", tmp_path / "data")
    assert result.exit_code == 2 and "files[0]: 'to' must be a folder inside the dataset folder" in result.output
    manifest.write_text(json.dumps({"dataset": "circo", "files": [{"url": "http://x/a", "sha256": "abc"}]}))
    assert "sha256 must be 64 hex digits" in get("circo", "--manifest", manifest, "--data-root", tmp_path).output


def test_the_shipped_manifests(tmp_path):
    """One per real benchmark; annotation files pinned to a commit with their checksums where the
    repository snapshot held them; every destination is a folder of the layout the dataset reads."""
    from cirbench.acquire import manifests

    assert manifests.shipped_names() == ["circo", "cirr", "coco", "fashioniq", "genecis", "icir", "imagenet-r",
                                         "ltll", "minidn", "nico"]
    layout = {"fashioniq": {"captions", "image_splits"}, "cirr": {"captions", "image_splits"},
              "circo": {"annotations", "COCO2017_unlabeled"}, "imagenet-r": {"."}, "coco": {"."},
              "genecis": {"annotations", "coco", "vg"}, "icir": {".", "basic"}, "ltll": {"."}, "minidn": {"."},
              "nico": {"."}}
    for name in manifests.shipped_names():
        m = manifests.shipped(name)
        assert m.dataset == name and {p.to for p in m.parts} == layout[name]
        for p in m.parts:
            if "raw.githubusercontent.com" in p.url:
                assert re.search(r"/[0-9a-f]{40}/", p.url), p.url
        dry = get(name, "--data-root", tmp_path / "data", "--dry-run")
        assert dry.exit_code == 0 and dry.output.count("would fetch") == len(m.parts)
    pinned = [p for n in manifests.shipped_names() for p in manifests.shipped(n).parts if p.sha256]
    assert len(pinned) == 42  # every annotation file whose bytes the snapshot held
    # FREEDOM's class list comes with each of its datasets, where freedom looks for it by default
    for name in ("imagenet-r", "ltll", "minidn", "nico"):
        assert any(p.file_name == "open_image_v7_class_names.csv" and p.to == "."
                   for p in manifests.shipped(name).parts)
    assert [p.spaces for p in manifests.shipped("ltll").parts if p.archive] == [("", "_")]
    assert any("NICO_DG" in step for step in manifests.shipped("nico").manual)
    assert any("NLVR2" in step for step in manifests.shipped("cirr").manual)
    assert any("image-net.org" in step for step in manifests.shipped("imagenet-r").manual)


def test_from_hub_copies_a_dataset_repository_from_the_local_cache(tmp_path, monkeypatch):
    import huggingface_hub

    hub = tmp_path / "hub"
    snap = hub / "datasets--someone--fiq-images" / "snapshots" / ("a" * 40)
    (snap / "images").mkdir(parents=True)
    (snap / "images" / "B001.png").write_bytes(b"png bytes")
    (snap / "README.md").write_text("card")
    (hub / "datasets--someone--fiq-images" / "refs").mkdir()
    (hub / "datasets--someone--fiq-images" / "refs" / "main").write_text("a" * 40)
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(hub))
    empty = tmp_path / "m.json"
    empty.write_text(json.dumps({"dataset": "fashioniq", "files": []}))
    data = tmp_path / "data"
    (data / "fashioniq" / "images").mkdir(parents=True)
    (data / "fashioniq" / "images" / "B002.png").write_bytes(b"mine")
    result = get("fashioniq", "--manifest", empty, "--data-root", data, "--from-hub", "someone/fiq-images")
    assert "someone/fiq-images: 1 file(s) copied" in result.output, result.output
    assert (data / "fashioniq" / "images" / "B001.png").read_bytes() == b"png bytes"
    assert (data / "fashioniq" / "images" / "B002.png").read_bytes() == b"mine"
    assert not (data / "fashioniq" / "README.md").exists()
    missing = get("fashioniq", "--manifest", empty, "--data-root", data, "--from-hub", "someone/nothing-here")
    assert missing.exit_code == 2
    line = [x for x in missing.output.splitlines() if "someone/nothing-here" in x][0]
    assert "offline" in line and str(hub) in line


# -- issue 32: what a hostile server or manifest tried ----------------------------------------------------

def one_file(tmp_path, server, path: str, data: bytes | None = None, **entry) -> tuple:
    """A manifest of one file served at ``path`` (saved in x/ of dataset circo under tmp/data)."""
    if data is not None:
        server.files[path] = data
    manifest = tmp_path / "m.json"
    manifest.write_text(json.dumps({"dataset": "circo", "files": [
        {"url": f"{server.url}{path}", "archive": None, "to": "x", **entry}]}))
    return manifest, tmp_path / "data"


@pytest.mark.parametrize("announced", [True, False])
def test_a_transfer_stops_at_the_declared_size(tmp_path, server, announced, monkeypatch):
    from cirbench.acquire import transfer

    written = []
    real_open = open

    def spy_open(path, mode="r", *a, **k):  # what reaches the .part file, write by write
        fh = real_open(path, mode, *a, **k)
        if str(path).endswith(".part") and "b" in mode and ("w" in mode or "a" in mode):
            raw_write = fh.write
            fh.write = lambda b: written.append(len(b)) or raw_write(b)
        return fh

    monkeypatch.setattr("builtins.open", spy_open)
    monkeypatch.setattr(transfer, "CHUNK", 64 * 1024)
    manifest, data = one_file(tmp_path, server, "/big.bin", b"b" * (4 << 20), size=100)
    if not announced:
        server.unannounced.add("/big.bin")
    result = get("circo", "--manifest", manifest, "--data-root", data)
    assert result.exit_code == 2
    said = "announces 4194304 bytes" if announced else "sent more than 100 bytes"
    assert f"{server.url}/big.bin: the server {said}, more than the 100 bytes the manifest says" in result.output
    assert sum(written) <= 100 and not list(data.rglob("*.part")) and not (data / "circo" / "x").exists()


def test_the_sha256_is_checked_when_the_size_matches(tmp_path, server):
    manifest, data = one_file(tmp_path, server, "/a.json", b"[1, 2, 3]", size=9, sha256=sha(b"[3, 2, 1]"))
    result = get("circo", "--manifest", manifest, "--data-root", data)
    assert result.exit_code == 2 and f"sha256 {sha(b'[1, 2, 3]')} where the manifest says" in result.output
    assert not (data / "circo" / "x" / "a.json").exists()


def test_a_resume_the_server_answers_with_the_whole_file_starts_over(tmp_path, server):
    payload = bytes(range(256)) * 40
    manifest, data = one_file(tmp_path, server, "/whole.bin", payload, size=len(payload), sha256=sha(payload))
    server.ignore_range.add("/whole.bin")
    partial = data / "circo" / ".cirbench-downloads" / "whole.bin.part"
    partial.parent.mkdir(parents=True)
    partial.write_bytes(payload[:3000])
    result = get("circo", "--manifest", manifest, "--data-root", data)
    assert "whole.bin: 10.0 KiB fetched" in result.output  # (the check after it finds no CIRCO there)
    assert server.gets()[-1][2] == "bytes=3000-"  # asked for the rest, was sent it all
    assert (data / "circo" / "x" / "whole.bin").read_bytes() == payload


def test_a_part_sent_to_a_request_for_the_whole_file_is_refused(tmp_path, server):
    manifest, data = one_file(tmp_path, server, "/half.bin", b"h" * 1000)
    server.part_only.add("/half.bin")
    result = get("circo", "--manifest", manifest, "--data-root", data)
    assert result.exit_code == 2
    assert (f"{server.url}/half.bin: the server answered with part of the file (bytes 0-499/1000) where bytes 0- "
            "were asked for") in result.output
    assert not (data / "circo" / "x").exists()


def test_a_redirect_loop_is_one_line(tmp_path, server):
    manifest, data = one_file(tmp_path, server, "/loop")
    server.loop.add("/loop")
    result = get("circo", "--manifest", manifest, "--data-root", data)
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        f"error: {server.url}/loop: the server's redirects go round in a loop (HTTP 302)"]


def test_an_interrupted_slow_transfer_keeps_what_arrived(tmp_path, server, monkeypatch):
    from cirbench.acquire import transfer

    monkeypatch.setattr(transfer, "TIMEOUT", 1.0)
    payload = bytes(range(256)) * 8192  # 2 MiB: more than one read
    manifest, data = one_file(tmp_path, server, "/slow.bin", payload, size=len(payload))
    server.stall["/slow.bin"] = 3000
    first = get("circo", "--manifest", manifest, "--data-root", data)
    assert first.exit_code == 1 and "the transfer stopped after 3000 bytes" in first.output
    assert (data / "circo" / ".cirbench-downloads" / "slow.bin.part").stat().st_size == 3000
    second = get("circo", "--manifest", manifest, "--data-root", data)
    assert "slow.bin: 2.0 MiB fetched" in second.output
    assert server.gets()[-1][2] == "bytes=3000-"
    assert (data / "circo" / "x" / "slow.bin").read_bytes() == payload


@pytest.mark.parametrize("declared", [None, 20_000])
def test_an_archive_that_expands_past_its_bound_is_refused_before_extracting(tmp_path, server, declared):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("a.bin", b"\0" * (4 << 20))  # 4 MiB of zeros in a few KiB
    server.files["/bomb.zip"] = buf.getvalue()
    entry = {"url": f"{server.url}/bomb.zip", "archive": "zip", "to": "."}
    if declared:
        entry["unpacked_size"] = declared
    manifest = tmp_path / "m.json"
    manifest.write_text(json.dumps({"dataset": "circo", "files": [entry]}))
    result = get("circo", "--manifest", manifest, "--data-root", tmp_path / "data")
    assert result.exit_code == 2 and "its members add up to 4194304 bytes, more than" in result.output
    bound = "the unpacked size the manifest says (20000 bytes)" if declared else "100 times the archive's size"
    assert bound in result.output
    assert not [p for p in (tmp_path / "data").rglob("*") if p.is_file() and p.name != "cirbench-download.json"]


def test_an_archive_whose_table_lies_is_stopped_while_writing(tmp_path):
    """A member that expands past what the table says: the bound holds while writing."""
    from cirbench.acquire import unpack
    from cirbench.errors import DataError

    archive = tmp_path / "liar.zip"
    archive.write_bytes(zip_of({"a.bin": b"\0" * 50_000}))
    budget = unpack._Budget(archive, 10_000, "a test bound")
    import io

    with pytest.raises(DataError, match="member 'a.bin' expands past a test bound"):
        budget.copy(io.BytesIO(b"\0" * 50_000), io.BytesIO(), "a.bin")


def test_a_tar_with_a_member_twice_is_refused(tmp_path, server):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for data in (b"first", b"second"):
            info = tarfile.TarInfo("dup.txt")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    server.files["/dup.tar"] = buf.getvalue()
    manifest = tmp_path / "m.json"
    manifest.write_text(json.dumps({"dataset": "circo", "files": [{"url": f"{server.url}/dup.tar", "archive": "tar"}]}))
    result = get("circo", "--manifest", manifest, "--data-root", tmp_path / "data")
    assert result.exit_code == 2 and "member 'dup.txt' appears twice in the archive" in result.output
    assert not (tmp_path / "data" / "circo" / "dup.txt").exists()


@pytest.mark.parametrize("name", ["../x", "/tmp/elsewhere", "a/b", ".."])
def test_a_dataset_name_is_a_folder_inside_the_data_root(tmp_path, server, name):
    manifest, data = one_file(tmp_path, server, "/a.json", b"[]")
    result = get(name, "--manifest", manifest, "--data-root", data)
    assert result.exit_code == 2 and f"dataset name {name!r} is not a folder name" in result.output
    assert server.requests == [] and not (tmp_path / "x").exists()


@pytest.mark.parametrize("entry,message", [
    ({"url": "http://x/a.zip", "to": 5}, "files[0]: 'to' must be a folder inside the dataset folder (a text), not 5"),
    ({"url": "http://x/data/%2e%2e"}, "files[0]: the URL 'http://x/data/%2e%2e' names no file cirbench can save"),
    ({"url": "http://x/a.zip", "archive": "zip", "unpacked_size": "big"}, "unpacked_size must be a number of bytes"),
])
def test_manifest_entries_that_were_internal_errors_are_named(tmp_path, entry, message):
    manifest = tmp_path / "m.json"
    manifest.write_text(json.dumps({"dataset": "circo", "files": [entry]}))
    result = get("circo", "--manifest", manifest, "--data-root", tmp_path / "data")
    assert result.exit_code == 2 and message in result.output
    assert not list((tmp_path / "data").rglob("*.part"))


def test_an_archive_can_be_renamed_as_a_set_up_script_would(tmp_path, server):
    """LTLL as FREEDOM's set_dataset.py leaves it: spaces dropped from folder names, '_' in file names;
    two members that the renaming makes one are refused, nothing extracted."""
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("New/images/Taj Mahal/taj mahal 1.jpg", b"a")
        zf.writestr("Old/images/Big Ben/x.jpg", b"b")
    server.files["/LTLL.zip"] = buf.getvalue()
    manifest = tmp_path / "m.json"
    entry = {"url": f"{server.url}/LTLL.zip", "archive": "zip", "spaces": {"folders": "", "files": "_"}}
    manifest.write_text(json.dumps({"dataset": "ltll", "files": [entry]}))
    result = get("ltll", "--manifest", manifest, "--data-root", tmp_path / "data")
    assert "2 file(s) extracted" in result.output, result.output  # (data check then misses full_files.csv)
    root = tmp_path / "data" / "ltll"
    assert (root / "New/images/TajMahal/taj_mahal_1.jpg").read_bytes() == b"a"
    assert (root / "Old/images/BigBen/x.jpg").is_file()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("A B/x.jpg", b"a")
        zf.writestr("AB/x.jpg", b"b")
    server.files["/two.zip"] = buf.getvalue()
    manifest.write_text(json.dumps({"dataset": "ltll", "files": [{**entry, "url": f"{server.url}/two.zip"}]}))
    result = get("ltll", "--manifest", manifest, "--data-root", tmp_path / "data2")
    assert result.exit_code == 2 and "appears twice" in result.output
    manifest.write_text(json.dumps({"dataset": "ltll", "files": [{**entry, "spaces": {"folders": "/"}}]}))
    result = get("ltll", "--manifest", manifest, "--data-root", tmp_path / "data3")
    assert result.exit_code == 2 and "spaces must be" in result.output
