"""The embedded world's small CLIP: its architecture and how it is trained from scratch on the world's
captions (open_clip's CLIP, symmetric InfoNCE, AdamW with warm-up and cosine decay), and its zero-shot
attribute accuracy on held-out images."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cirbench.util.fsutil import atomic_dir
from cirbench.world.build import COLORS, DOMAINS, SHAPES, WorldConfig, load, render_lazy_part

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


class CompactVocabulary:
    """Train the text tower on the token ids the captions use, not CLIP's 49,408-row table.

    The world's captions use a few dozen tokens; the other rows never get a gradient, yet dense training
    carries them through every backward pass and every AdamW step (6.3M of the model's 7.1M
    parameters). Under AdamW a row without gradient only decays -- its moments stay zero, so its update
    is zero and it is multiplied by (1 - lr_t * weight_decay) at each step -- so those rows are restored
    exactly at the end: the initial rows times the same factors, in the same order and precision. The
    ids are renumbered in their order, so the end-of-text token stays the largest (open_clip pools the
    text at the argmax id). The saved model is the dense one, row for row.
    """

    def __init__(self, model, texts):
        import torch

        self.model, self.full = model, model.token_embedding
        self.used = torch.unique(texts)  # sorted: renumbering keeps the order of ids
        compact = torch.nn.Embedding(len(self.used), self.full.embedding_dim)
        with torch.no_grad():
            compact.weight.copy_(self.full.weight[self.used])
        lookup = torch.full((self.full.num_embeddings,), -1, dtype=texts.dtype)
        lookup[self.used] = torch.arange(len(self.used), dtype=texts.dtype)
        self.texts = lookup[texts]
        self.initial = self.full.weight.detach().clone()
        model.token_embedding = compact

    def restore(self, decay_factors: list[float]):
        """Put the full table back: unused rows decayed as AdamW would have, used rows as trained."""
        import torch

        weight = self.initial
        for factor in decay_factors:
            weight.mul_(factor)
        with torch.no_grad():
            weight[self.used] = self.model.token_embedding.weight
            self.full.weight.copy_(weight)
        self.model.token_embedding = self.full


@dataclass
class Trained:
    model: object  # open_clip.CLIP, in eval mode
    cfg: dict  # its open_clip model config
    used_ids: object  # the token ids the captions use (a sorted LongTensor)
    decay_factors: list[float]  # AdamW's (1 - lr_t * weight_decay) per step
    final_loss: float
    steps: int


def train(config: WorldConfig, world_dir: Path, progress=None, compact: bool = True) -> Trained:
    """Train the small CLIP from scratch on the world's captioned pretraining images (rendered here if needed)."""
    import open_clip
    import torch

    from cirbench.training.loop import batches, decay_groups, steps_per_epoch, symmetric_infonce, warmup_cosine

    render_lazy_part(config, world_dir, "pretrain", progress)
    world = load(world_dir)
    items = world["parts"]["pretrain"]
    pixels = _images(world_dir, items)
    tokenizer = open_clip.tokenizer.SimpleTokenizer(context_length=CONTEXT_LENGTH)
    texts = tokenizer([it["caption"] for it in items])
    torch.manual_seed(config.seed)
    cfg = model_config(config.image_size)
    model = open_clip.CLIP(**cfg)
    vocabulary = CompactVocabulary(model, texts) if compact else None
    train_texts = vocabulary.texts if compact else texts
    weight_decay, decay_factors = 0.1, []
    optim = torch.optim.AdamW(decay_groups(model, weight_decay), lr=config.clip_lr, betas=(0.9, 0.98), eps=1e-6)
    total = config.clip_epochs * steps_per_epoch(len(items), config.clip_batch)
    set_lr = warmup_cosine(optim, config.clip_lr, max(1, total // 10), total)
    generator = torch.Generator().manual_seed(config.seed)
    task = progress.task("train small CLIP", total=total) if progress else None
    step, loss_value = 0, float("nan")
    model.train()
    for epoch in range(config.clip_epochs):
        for idx in batches(len(items), config.clip_batch, generator):
            loss = symmetric_infonce(model.encode_image(_normalise(pixels[idx])), model.encode_text(train_texts[idx]),
                                     model.logit_scale.exp())
            decay_factors.append(1 - set_lr(step) * weight_decay)
            optim.zero_grad(set_to_none=True)
            loss.backward()
            optim.step()
            with torch.no_grad():
                model.logit_scale.clamp_(0, float(np.log(100)))
            step, loss_value = step + 1, loss.item()
            if task:
                task.advance(1, f"epoch {epoch + 1}/{config.clip_epochs} loss {loss_value:.3f}")
    if vocabulary:
        vocabulary.restore(decay_factors)
    model.eval()
    return Trained(model, cfg, torch.unique(texts), decay_factors, loss_value, step)


def held_out_accuracy(model, world_dir: Path) -> dict:
    """Zero-shot attribute accuracy on the test identities' images (never seen in training)."""
    import open_clip

    held_out = load(world_dir)["parts"]["test"]
    tokenizer = open_clip.tokenizer.SimpleTokenizer(context_length=CONTEXT_LENGTH)
    return {**zero_shot_accuracy(model, tokenizer, _images(world_dir, held_out), held_out),
            "images": len(held_out)}


def write_clip(out: Path, config: WorldConfig, world_dir: Path, model, cfg: dict, meta: dict) -> Path:
    """The small CLIP in open_clip's local-dir layout, with its zero-shot accuracy on held-out images."""
    import torch

    accuracy = held_out_accuracy(model, world_dir)
    # two runs at once: the one that finishes second keeps the first one's folder
    with atomic_dir(out) as tmp:
        (tmp / "open_clip_config.json").write_text(json.dumps({
            "model_cfg": cfg, "preprocess_cfg": {"mean": [0.5] * 3, "std": [0.5] * 3}}))
        torch.save(model.state_dict(), tmp / "open_clip_pytorch_model.bin")
        (tmp / "world_clip.json").write_text(json.dumps({
            "config": {k: getattr(config, k) for k in config.RENDER_FIELDS + config.CLIP_FIELDS}, **meta,
            "zero_shot_accuracy": {k: v for k, v in accuracy.items() if k != "images"},
            "accuracy_on": f"{accuracy['images']} held-out test-identity images"}, indent=2))
    return out


def train_small_clip(config: WorldConfig, world_dir: Path, out: Path, progress=None, compact: bool = True) -> Path:
    """Train the small CLIP here and write it to ``out``."""
    t = train(config, world_dir, progress, compact)
    return write_clip(out, config, world_dir, t.model, t.cfg,
                      {"weights": "trained here", "final_loss": t.final_loss, "steps": t.steps})
