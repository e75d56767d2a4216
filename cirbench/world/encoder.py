"""The embedded benchmark's encoder: a small CLIP trained from scratch on the world's captions.

``world`` (or ``world:KEY=VALUE,...`` with the world's settings) renders the world if needed, trains
the small CLIP once (cached under <cache>/world/<render key>/clip-<settings key>/ in open_clip's
local-dir format) and loads it like any open_clip model. Its zero-shot attribute accuracy on held-out
images is measured after training and recorded with every result.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from cirbench.contracts.encoder import register_encoder
from cirbench.util.fsutil import atomic_dir
from cirbench.world.build import COLORS, DOMAINS, SHAPES, WorldConfig, build, load

CONTEXT_LENGTH = 20


def model_config(image_size: int) -> dict:
    return {
        "embed_dim": 64,
        "vision_cfg": {"image_size": image_size, "layers": 4, "width": 64, "patch_size": max(4, image_size // 8),
                       "head_width": 32},
        "text_cfg": {"context_length": CONTEXT_LENGTH, "vocab_size": 49408, "width": 128, "heads": 4, "layers": 3},
    }


def _images(world_dir: Path, items: list[dict]):
    import torch
    from PIL import Image

    pixels = np.stack([np.asarray(Image.open(world_dir / it["file"]).convert("RGB")) for it in items])
    return torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous()  # uint8, N x 3 x H x W


def _normalise(batch):
    return (batch.float() / 255 - 0.5) / 0.5


def zero_shot_accuracy(model, tokenizer, pixels, items: list[dict]) -> dict:
    """Attribute accuracy with prompt ensembles ("a {domain} of a {color} {shape}" over the other attributes)."""
    import torch
    import torch.nn.functional as F

    with torch.no_grad():
        feats = torch.cat([F.normalize(model.encode_image(_normalise(pixels[i:i + 512])), dim=-1)
                           for i in range(0, len(pixels), 512)])
        grid = [(d, c, s) for d in DOMAINS for c in COLORS for s in SHAPES]
        text = F.normalize(model.encode_text(tokenizer([f"a {d} of a {c} {s}" for d, c, s in grid])), dim=-1)
        out = {}
        for attr, values, pos in (("shape", SHAPES, 2), ("color", list(COLORS), 1), ("domain", DOMAINS, 0)):
            classes = torch.stack([F.normalize(text[[i for i, g in enumerate(grid) if g[pos] == v]].mean(0), dim=-1)
                                   for v in values])
            pred = (feats @ classes.T).argmax(1)
            truth = torch.tensor([list(values).index(it[attr]) for it in items])
            out[attr] = round(100.0 * (pred == truth).float().mean().item(), 2)
            out[f"{attr}_chance"] = round(100.0 / len(values), 2)
    return out


def train_small_clip(config: WorldConfig, world_dir: Path, out: Path, progress=None) -> Path:
    import open_clip
    import torch

    from cirbench.training.loop import batches, decay_groups, steps_per_epoch, symmetric_infonce, warmup_cosine

    world = load(world_dir)
    items = world["parts"]["pretrain"]
    pixels = _images(world_dir, items)
    tokenizer = open_clip.tokenizer.SimpleTokenizer(context_length=CONTEXT_LENGTH)
    texts = tokenizer([it["caption"] for it in items])
    torch.manual_seed(config.seed)
    cfg = model_config(config.image_size)
    model = open_clip.CLIP(**cfg)
    optim = torch.optim.AdamW(decay_groups(model, 0.1), lr=config.clip_lr, betas=(0.9, 0.98), eps=1e-6)
    total = config.clip_epochs * steps_per_epoch(len(items), config.clip_batch)
    set_lr = warmup_cosine(optim, config.clip_lr, max(1, total // 10), total)
    generator = torch.Generator().manual_seed(config.seed)
    task = progress.task("train small CLIP", total=total) if progress else None
    step, loss_value = 0, float("nan")
    model.train()
    for epoch in range(config.clip_epochs):
        for idx in batches(len(items), config.clip_batch, generator):
            loss = symmetric_infonce(model.encode_image(_normalise(pixels[idx])), model.encode_text(texts[idx]),
                                     model.logit_scale.exp())
            set_lr(step)
            optim.zero_grad(set_to_none=True)
            loss.backward()
            optim.step()
            with torch.no_grad():
                model.logit_scale.clamp_(0, float(np.log(100)))
            step, loss_value = step + 1, loss.item()
            if task:
                task.advance(1, f"epoch {epoch + 1}/{config.clip_epochs} loss {loss_value:.3f}")
    model.eval()
    held_out = world["parts"]["test"]
    accuracy = zero_shot_accuracy(model, tokenizer, _images(world_dir, held_out), held_out)
    # two runs training at once: the one that finishes second keeps the first one's folder
    with atomic_dir(out) as tmp:
        (tmp / "open_clip_config.json").write_text(json.dumps({
            "model_cfg": cfg, "preprocess_cfg": {"mean": [0.5] * 3, "std": [0.5] * 3}}))
        torch.save(model.state_dict(), tmp / "open_clip_pytorch_model.bin")
        (tmp / "world_clip.json").write_text(json.dumps({
            "config": {k: getattr(config, k) for k in config.RENDER_FIELDS + config.CLIP_FIELDS},
            "final_loss": loss_value, "steps": step, "zero_shot_accuracy": accuracy,
            "accuracy_on": f"{len(held_out)} held-out test-identity images"}, indent=2))
    return out


def clip_dir(config: WorldConfig, cache_dir: Path, progress=None) -> Path:
    world_dir = build(config, cache_dir, progress)
    folder = world_dir / f"clip-{config.clip_key()}"
    if not (folder / "world_clip.json").is_file():
        train_small_clip(config, world_dir, folder, progress)
    return folder


@register_encoder("world")
def build_world(rest: str, *, spec: str, device: str, precision: str, transform: str, cache_dir=None,
                progress=None):
    """The embedded world's small CLIP, trained from scratch on first use and cached (world:KEY=VALUE,...)."""
    from cirbench.encoders.openclip import build_openclip

    config = WorldConfig.parse(rest)
    cache_dir = Path(cache_dir or Path.home() / ".cache" / "cirbench")
    folder = clip_dir(config, cache_dir, progress)
    encoder = build_openclip(f"local-dir:{folder}", spec=f"local-dir:{folder}", device=device, precision=precision,
                             transform=transform, cache_dir=cache_dir)
    meta = json.loads((folder / "world_clip.json").read_text())
    acc = meta["zero_shot_accuracy"]
    encoder.identity.update({
        "kind": "world", "spec": spec, "world": meta["config"], "zero_shot_accuracy": acc,
        "notes": [f"small CLIP trained from scratch on {meta['config']['pretrain']} captioned world images; "
                  f"zero-shot attribute accuracy on {meta['accuracy_on']}: shape {acc['shape']:.1f}% "
                  f"(chance {acc['shape_chance']:.1f}%), colour {acc['color']:.1f}% (chance {acc['color_chance']:.1f}%), "
                  f"domain {acc['domain']:.1f}% (chance {acc['domain_chance']:.1f}%)"],
    })
    return encoder
