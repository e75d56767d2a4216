"""Builders for the tests: tiny open_clip models saved in open_clip's folder format, rendered images,
and datasets of the user's own written in the documented layout."""

from __future__ import annotations

import json
from pathlib import Path

TINY_CFG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8, "head_width": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}
COLORS = {"red": (220, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 220), "yellow": (230, 220, 30),
          "purple": (150, 30, 180), "orange": (240, 140, 20)}
SHAPES = ("circle", "square", "triangle")


def tiny_clip_dir(folder: Path, seed: int = 0) -> Path:
    """A random-weight tiny CLIP in open_clip's local-dir format (open_clip_config.json + weights)."""
    import open_clip
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = open_clip.CLIP(**TINY_CFG)
    (folder / "open_clip_config.json").write_text(json.dumps(
        {"model_cfg": TINY_CFG, "preprocess_cfg": {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}}))
    torch.save(model.state_dict(), folder / "open_clip_pytorch_model.bin")
    return folder


def render(path: Path, shape: str, color: str, size: int = 48, offset: int = 0) -> Path:
    from PIL import Image, ImageDraw

    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", (size, size), (245, 245, 245))
    draw = ImageDraw.Draw(image)
    lo, hi = 8 + offset, size - 8 + offset
    if shape == "circle":
        draw.ellipse([lo, lo, hi, hi], fill=COLORS[color])
    elif shape == "square":
        draw.rectangle([lo, lo, hi, hi], fill=COLORS[color])
    else:
        draw.polygon([(size // 2 + offset, lo), (lo, hi), (hi, hi)], fill=COLORS[color])
    image.save(path)
    return path


def folder_dataset(root: Path, with_train: bool = True, extra_queries: list[dict] | None = None) -> Path:
    """Gallery: every shape in every colour; queries: change the colour of a shape."""
    colors = list(COLORS)
    for shape in SHAPES:
        for color in colors:
            render(root / "gallery" / f"{shape}_{color}.png", shape, color)
    queries = []
    for i, shape in enumerate(SHAPES):
        for j, color in enumerate(colors[:3]):
            new = colors[(j + 1 + i) % len(colors)]
            queries.append({"id": f"q{i}{j}", "reference": f"gallery/{shape}_{color}.png", "text": f"make it {new}",
                            "target": f"gallery/{shape}_{new}.png",
                            "subset": [f"gallery/{s}_{new}.png" for s in SHAPES] + [f"gallery/{shape}_{color}.png"]})
    queries += extra_queries or []
    (root / "val.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    if with_train:
        train = []
        for shape in SHAPES:
            for j, color in enumerate(colors):
                new = colors[(j + 2) % len(colors)]
                render(root / "train" / f"{shape}_{color}.png", shape, color, offset=2)
                render(root / "train" / f"{shape}_{new}.png", shape, new, offset=2)
                train.append({"reference": f"train/{shape}_{color}.png", "text": f"make it {new}",
                              "target": f"train/{shape}_{new}.png"})
        (root / "train.jsonl").write_text("".join(json.dumps(t) + "\n" for t in train))
    return root


def split_view(prompts=None, dataset="mydata", caption_order=None, scope="gallery", checkpoints=None):
    from cirbench.contracts.split import DEFAULT_PROMPTS
    from cirbench.contracts.method import SplitView

    return SplitView(dataset=dataset, split="val", prompts={**DEFAULT_PROMPTS, **(prompts or {})},
                     caption_order=caption_order, scope=scope, checkpoints=checkpoints or {})


def method_for(name, encoder, checkpoint=None, prompts=None, dataset="mydata", options=None, caption_order=None,
               store=None):
    """A registered method built and prepared for one split, as the engine does it."""
    from cirbench.contracts.method import MethodContext, resolve_options
    from cirbench.contracts.registry import methods

    cls = methods.get(name)
    ctx = MethodContext(encoder=encoder, text_features=encoder.encode_texts, checkpoint=checkpoint,
                        checkpoint_store=Path(store or "/nonexistent-store"),
                        options=resolve_options(name, cls.options, options or {}))
    method = cls(ctx)
    view = split_view(prompts, dataset, caption_order)
    method.split = view
    ctx.split_prompts, ctx.dataset = view.prompts, view.dataset
    method.prepare(view)
    return method


def query_batch(method, reference_features, texts, fields=None):
    from cirbench.contracts.method import QueryBatch

    n = len(texts)
    return QueryBatch(ids=[str(i) for i in range(n)], reference_ids=[f"r{i}" for i in range(n)],
                      reference_images=[None] * n, reference_features=reference_features, texts=list(texts),
                      fields=list(fields or [{}] * n), split=method.split)


FLAT = {"red": (255, 13, 13), "green": (13, 255, 13), "blue": (13, 13, 255), "yellow": (255, 255, 13),
        "white": (255, 255, 255), "gray": (128, 128, 128)}


def flat_dataset(root: Path, queries: list[dict], extra: dict | None = None) -> Path:
    """A folder dataset of flat-colour images gallery/<colour>.png (for the colour test encoder, whose
    image feature is the mean colour and text feature the first colour word)."""
    from PIL import Image

    (root / "gallery").mkdir(parents=True, exist_ok=True)
    for name, rgb in FLAT.items():
        Image.new("RGB", (8, 8), rgb).save(root / "gallery" / f"{name}.png")
    (root / "val.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    if extra:
        (root / "cirbench.json").write_text(json.dumps(extra))
    return root


def run_cli(tmp_path, *args, code=0):
    """`cirbench run` in-process (quiet, JSON), results and cache under tmp_path."""
    from typer.testing import CliRunner

    from cirbench.cli import app

    result = CliRunner().invoke(app, ["run", "--workers", "0", "--json", "--quiet", "--results-dir",
                                      str(tmp_path / "r"), "--cache-dir", str(tmp_path / "c"), *args])
    assert result.exit_code == code, result.output
    return result


def result_files(folder: Path, method: str) -> list[Path]:
    """The result files of a method under a folder, whatever its setting (<method>.json for the default
    one, <method>~<setting>.json for the others)."""
    return sorted(p for p in Path(folder).rglob("*.json") if "submissions" not in p.parts
                  and (p.stem == method or p.stem.startswith(f"{method}~")))


def result_file(folder: Path, method: str) -> Path:
    (path,) = result_files(folder, method)
    return path


def rankings(tmp_path, method: str) -> list[list[str]]:
    """Each query's top gallery ids, from the outcomes of the method's result file under tmp_path/r."""
    from cirbench.storage import results

    path = result_file(tmp_path / "r", method)
    record = results.read(path)
    out = results.load_outcomes(record)
    top = out.views["gallery"][0]
    return [[out.gallery[g] for g in row if g >= 0] for row in top.tolist()]


def pic2word_request(encoder, out, features, **fields):
    """A Pic2Word TrainRequest over precomputed image features (the frozen encoder's, as the feature
    cache hands them to training); ``fields`` are the request's other settings."""
    from cirbench.contracts.method import TrainRequest

    return TrainRequest(encoder=encoder, out=out, images=list(range(len(features))),
                        image_features=lambda _paths: features, **fields)


class RecordingProgress:
    """A progress display that records the tasks it is asked for, the text of every advance, the steps
    advanced in all and whether its task was marked done."""

    def __init__(self):
        self.tasks, self.texts, self.advanced, self.finished = [], [], 0, False

    def task(self, name, total=None, unit=None):
        self.tasks.append((name, total))
        return self

    def advance(self, n=1, text=None):
        self.texts.append(text)
        self.advanced += n

    def done(self):
        self.finished = True


def invoke(*args, **kw):
    """The command line in this process: (exit code, what it printed, stderr included)."""
    from typer.testing import CliRunner

    from cirbench.cli import app

    result = CliRunner().invoke(app, [str(a) for a in args], **kw)
    return result.exit_code, result.output


def evaluate_colours(root, methods, tmp_path, **kw):
    """cirbench.evaluate on a folder dataset with the colour test encoder (nothing written unless asked)."""
    import cirbench

    kw.setdefault("results_dir", None)
    return cirbench.evaluate(methods=methods, datasets=[str(root)], encoder="colour-test", workers=0,
                             cache_dir=tmp_path / "cache", **kw)
