"""The embedded default benchmark: a seeded, procedurally rendered world of shapes.

Every image shows one object with a shape, a colour and a rendering domain (photo, sketch, cartoon,
painting) -- the attributes captions name -- and an instance identity captions never name: a surface
pattern (stripes, checks, dots, rings with their own period, phase and contrast), a size and a
position. As in real composed retrieval the target keeps the reference's unnamed identity and
changes only what the text says, so neither the text nor the image alone is enough.

The world is split into disjoint parts, each drawn from its own random stream:
- ``pretrain``: captioned images that train the small CLIP from scratch (cirbench.encoders.world);
- ``unlabeled``: images without captions for the Pic2Word mapping;
- ``train``: identities whose variants make the Combiner's supervised triplets;
- ``test``: identities whose variants make the galleries and queries of the two tasks.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import numpy as np

from cirbench.errors import UsageError
from cirbench.util.fsutil import atomic_dir

SHAPES = ("circle", "square", "triangle", "star", "diamond", "cross")
COLORS = {"red": (205, 35, 35), "green": (35, 160, 55), "blue": (35, 75, 205), "yellow": (235, 200, 30),
          "purple": (135, 55, 175), "orange": (240, 125, 25)}
DOMAINS = ("photo", "sketch", "cartoon", "painting")
PATTERNS = ("hstripes", "vstripes", "diagonal", "checker", "dots", "rings")
# every caption names the shape; colour and domain are named in most. With only these, a batch could
# often be told apart by colour and domain alone, so captions without them make the shape count too.
CAPTIONS = ("a {domain} of a {color} {shape}", "a {color} {shape} , {domain}", "a {domain} of a {shape}",
            "a {color} {shape}", "a {shape} in {color} , {domain}", "a {shape}", "a {shape} , {domain}")


@dataclass(frozen=True)
class WorldConfig:
    seed: int = 0
    image_size: int = 32
    pretrain: int = 12000  # captioned images for the small CLIP
    unlabeled: int = 4000  # images for the Pic2Word mapping
    train_ids: int = 24  # identities for the Combiner's triplets
    test_ids: int = 16  # identities in the test galleries
    queries_per_id: int = 24  # distinct reference photos per test identity (of its 36 shape x colour ones)
    clip_epochs: int = 10
    clip_batch: int = 256
    clip_lr: float = 2e-3
    pic2word_epochs: int = 6
    pic2word_batch: int = 128
    combiner_epochs: int = 30
    combiner_batch: int = 256

    # what the pixels depend on (queries_per_id only picks queries among rendered images)
    RENDER_FIELDS = ("seed", "image_size", "pretrain", "unlabeled", "train_ids", "test_ids")
    CLIP_FIELDS = ("clip_epochs", "clip_batch", "clip_lr")

    def render_key(self) -> str:
        return _hash({**{k: getattr(self, k) for k in self.RENDER_FIELDS}, "render_version": RENDER_VERSION})

    def clip_key(self) -> str:
        return _hash({**{k: getattr(self, k) for k in self.RENDER_FIELDS + self.CLIP_FIELDS},
                      "render_version": RENDER_VERSION})

    def spec(self, names: tuple[str, ...] | None = None) -> str:
        """The non-default settings among ``names`` (default: all) as KEY=VALUE,..."""
        default = WorldConfig()
        names = names or tuple(f.name for f in fields(self))
        return ",".join(f"{n}={getattr(self, n)}" for n in names if getattr(self, n) != getattr(default, n))

    def encoder_spec(self) -> str:
        """The world encoder's spec: only the settings the small CLIP depends on."""
        spec = self.spec(self.RENDER_FIELDS + self.CLIP_FIELDS)
        return f"world:{spec}" if spec else "world"

    @classmethod
    def parse(cls, options: dict | str) -> "WorldConfig":
        if isinstance(options, str):
            options = dict(kv.split("=", 1) for kv in options.split(",") if kv)
        options = dict(options)
        config = PRESETS[options.pop("world", "default")] if "world" in options else cls()
        known = {f.name: f.type for f in fields(cls)}
        updates = {}
        for key, value in options.items():
            if key not in known:
                raise UsageError(f"unknown world option {key!r}; options: world (preset: {', '.join(PRESETS)}), "
                                 + ", ".join(known))
            try:
                updates[key] = float(value) if known[key] in ("float", float) else int(value)
            except ValueError:
                raise UsageError(f"world option {key}={value!r} is not a number") from None
        return replace(config, **updates)


PRESETS = {
    "default": WorldConfig(),
    # for tests and smoke runs: the same world in miniature
    "tiny": WorldConfig(image_size=16, pretrain=1000, unlabeled=300, train_ids=3, test_ids=3, queries_per_id=4,
                        clip_epochs=2, pic2word_epochs=2, combiner_epochs=2, clip_batch=128, pic2word_batch=64,
                        combiner_batch=64),
}


def _hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:12]


# -- rendering -----------------------------------------------------------------------------------
def _identity(rng: np.random.Generator) -> dict:
    return {"pattern": PATTERNS[rng.integers(len(PATTERNS))], "period": float(rng.uniform(2.5, 5.5)),
            "phase": float(rng.uniform(0, 2 * np.pi)), "contrast": float(rng.uniform(0.35, 0.7)),
            "size": float(rng.uniform(0.55, 0.8))}


def _polygon(shape: str, cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    def ring(n, radii, start=-np.pi / 2):
        angles = start + np.arange(n * len(radii)) * 2 * np.pi / (n * len(radii))
        rs = np.tile(radii, n)
        return [(cx + rr * np.cos(a), cy + rr * np.sin(a)) for a, rr in zip(angles, rs)]

    if shape == "circle":
        return ring(32, [r])
    if shape == "square":
        return ring(4, [r * 1.2], start=np.pi / 4)
    if shape == "triangle":
        return ring(3, [r * 1.15])
    if shape == "star":
        return ring(5, [r * 1.15, r * 0.45])
    if shape == "diamond":
        return [(cx, cy - r * 1.15), (cx + r * 0.7, cy), (cx, cy + r * 1.15), (cx - r * 0.7, cy)]
    if shape == "cross":
        a, b = r * 1.05, r * 0.38
        return [(cx - b, cy - a), (cx + b, cy - a), (cx + b, cy - b), (cx + a, cy - b), (cx + a, cy + b),
                (cx + b, cy + b), (cx + b, cy + a), (cx - b, cy + a), (cx - b, cy + b), (cx - a, cy + b),
                (cx - a, cy - b), (cx - b, cy - b)]
    raise ValueError(shape)


def _pattern(ident: dict, xx: np.ndarray, yy: np.ndarray) -> np.ndarray:
    p, ph, kind = ident["period"], ident["phase"], ident["pattern"]
    w = 2 * np.pi / p
    if kind == "hstripes":
        v = np.sin(w * yy + ph)
    elif kind == "vstripes":
        v = np.sin(w * xx + ph)
    elif kind == "diagonal":
        v = np.sin(w * (xx + yy) / 1.4 + ph)
    elif kind == "checker":
        v = np.sin(w * xx + ph) * np.sin(w * yy + ph)
    elif kind == "dots":
        v = np.cos(w * xx + ph) + np.cos(w * yy + ph) - 1.0
    else:  # rings
        c = xx.shape[0] / 2
        v = np.sin(w * np.hypot(xx - c, yy - c) + ph)
    return (v > 0).astype(np.float32)


def _edge(mask: np.ndarray, width: int) -> np.ndarray:
    inner = mask.copy()
    for _ in range(width):
        inner = inner & np.roll(inner, 1, 0) & np.roll(inner, -1, 0) & np.roll(inner, 1, 1) & np.roll(inner, -1, 1)
    return mask & ~inner


def render(shape: str, color: str, domain: str, ident: dict, position: tuple[float, float], size: int,
           rng: np.random.Generator) -> np.ndarray:
    """One H x W x 3 uint8 image."""
    from PIL import Image, ImageDraw

    s = size
    cx, cy = s / 2 + position[0] * s, s / 2 + position[1] * s
    r = ident["size"] * s / 2.6
    mask_img = Image.new("L", (s, s), 0)
    points = _polygon(shape, cx, cy, r)
    if domain == "painting":  # loose brushwork: wobbly outline
        points = [(x + rng.normal(0, s * 0.02), y + rng.normal(0, s * 0.02)) for x, y in points]
    ImageDraw.Draw(mask_img).polygon(points, fill=255)
    mask = np.asarray(mask_img) > 127
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32)
    pattern = _pattern(ident, xx, yy)[..., None]
    base = np.asarray(COLORS[color], dtype=np.float32)[None, None, :] / 255
    if domain == "photo":
        tint = rng.uniform(0.75, 0.95, size=3)
        bg = tint[None, None, :] * (0.85 + 0.15 * yy[..., None] / s) + rng.normal(0, 0.02, (s, s, 3))
        shade = 1.0 - 0.35 * np.clip(np.hypot(xx - cx + r / 3, yy - cy + r / 3) / (1.6 * r), 0, 1)[..., None]
        fill = base * (1 - ident["contrast"] * 0.6 * pattern) * shade
        img = np.where(mask[..., None], fill, bg)
    elif domain == "cartoon":
        bg = np.ones((s, s, 3)) * rng.uniform(0.8, 1.0, size=3)[None, None, :]
        fill = np.clip(base * 1.15, 0, 1) * (1 - ident["contrast"] * 0.3 * pattern)
        img = np.where(mask[..., None], fill, bg)
        img[_edge(mask, 2)] = 0.05
    elif domain == "sketch":
        bg = 0.96 + rng.normal(0, 0.015, (s, s, 3))
        hatch = 1 - (1 - base) * 0.55 * pattern
        img = np.where(mask[..., None], hatch, bg)
        img[_edge(mask, 1)] = base[0, 0] * 0.7
    else:  # painting
        bg = np.clip(rng.uniform(0.4, 0.9, size=3)[None, None, :] + rng.normal(0, 0.08, (s, s, 3)), 0, 1)
        fill = base * (1 - ident["contrast"] * 0.35 * pattern) + rng.normal(0, 0.07, (s, s, 3))
        img = np.where(mask[..., None], fill, bg)
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


# -- the world on disk -----------------------------------------------------------------------------
def _position(rng) -> tuple[float, float]:
    return (float(rng.uniform(-0.12, 0.12)), float(rng.uniform(-0.12, 0.12)))


def _items(config: WorldConfig) -> dict[str, list[dict]]:
    """Every image of the world with its attributes (no pixels yet)."""
    streams = np.random.SeedSequence(config.seed).spawn(5)
    rng_pre, rng_unl, rng_train, rng_test, rng_q = (np.random.default_rng(s) for s in streams)
    parts: dict[str, list[dict]] = {"pretrain": [], "unlabeled": [], "train": [], "test": []}

    def random_item(rng, part, i):
        item = {"file": f"{part}/{i:06d}.png", "shape": SHAPES[rng.integers(6)],
                "color": list(COLORS)[rng.integers(6)], "domain": DOMAINS[rng.integers(4)],
                "identity": _identity(rng), "position": _position(rng)}
        if part == "pretrain":
            item["caption"] = CAPTIONS[rng.integers(len(CAPTIONS))].format(**item)
        return item

    parts["pretrain"] = [random_item(rng_pre, "pretrain", i) for i in range(config.pretrain)]
    parts["unlabeled"] = [random_item(rng_unl, "unlabeled", i) for i in range(config.unlabeled)]
    for part, rng, n_ids in (("train", rng_train, config.train_ids), ("test", rng_test, config.test_ids)):
        for k in range(n_ids):
            ident = _identity(rng)
            for shape in SHAPES:
                for color in COLORS:
                    for domain in DOMAINS:
                        # photos come in two poses (unnamed), other domains in one
                        for pose in range(2 if domain == "photo" else 1):
                            parts[part].append({
                                "file": f"{part}/id{k:03d}/{shape}_{color}_{domain}_{pose}.png", "id": k,
                                "shape": shape, "color": color, "domain": domain, "pose": pose,
                                "identity": ident, "position": _position(rng)})
    return parts


RENDER_VERSION = 2  # 2: one random stream per part, the pretraining images rendered only when needed
PART_ORDER = ("pretrain", "unlabeled", "train", "test")
LAZY_PARTS = ("pretrain",)  # only the small CLIP's training reads them (not needed with shipped weights)


def _render_part(config: WorldConfig, items: list[dict], part: str, into: Path, task=None) -> None:
    from PIL import Image

    rng = np.random.default_rng(np.random.SeedSequence([config.seed, 99, PART_ORDER.index(part)]))
    for item in items:
        path = into / item["file"]
        path.parent.mkdir(parents=True, exist_ok=True)
        pixels = render(item["shape"], item["color"], item["domain"], item["identity"], item["position"],
                        config.image_size, rng)
        Image.fromarray(pixels).save(path, compress_level=1)
        if task:
            task.advance(1)


def build(config: WorldConfig, cache_dir: Path, progress=None) -> Path:
    """Render the world into <cache>/world/<render key>/ (atomically) and return that folder.

    The pretraining images are left for ``render_lazy_part`` (the small CLIP's training asks for them)."""
    final = Path(cache_dir) / "world" / config.render_key()
    if (final / "world.json").is_file():
        return final
    with atomic_dir(final) as tmp:  # two runs rendering at once: the second keeps the first's folder
        parts = _items(config)
        now = [p for p in PART_ORDER if p not in LAZY_PARTS]
        task = progress.task("render world", total=sum(len(parts[p]) for p in now)) if progress else None
        for part in now:
            _render_part(config, parts[part], part, tmp, task)
        meta = {"config": asdict(config), "render_key": config.render_key(), "render_version": RENDER_VERSION,
                "counts": {k: len(v) for k, v in parts.items()}, "parts": parts}
        (tmp / "world.json").write_text(json.dumps(meta))
        if task:
            task.done()
    return final


def render_lazy_part(config: WorldConfig, world_dir: Path, part: str, progress=None) -> None:
    """Render one of the parts ``build`` leaves out into the world's folder (atomically), once."""
    world_dir = Path(world_dir)
    if (world_dir / part).is_dir():
        return
    items = load(world_dir)["parts"][part]
    with atomic_dir(world_dir / part) as tmp:
        task = progress.task(f"render world ({part} images)", total=len(items)) if progress else None
        # an item's file is "<part>/<name>": rendered as <name> into the part's temporary folder
        _render_part(config, [{**it, "file": it["file"].split("/", 1)[1]} for it in items], part, tmp, task)
        if task:
            task.done()


def load(folder: Path) -> dict:
    return json.loads((Path(folder) / "world.json").read_text())
