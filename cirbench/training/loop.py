"""Pieces shared by the training loops of trainable methods."""

from __future__ import annotations

import math


def batches(n: int, batch_size: int, generator):
    """Shuffled index batches of one epoch; a last batch of one item is dropped (contrastive losses need 2)."""
    import torch

    order = torch.randperm(n, generator=generator)
    for start in range(0, n, batch_size):
        chunk = order[start:start + batch_size]
        if len(chunk) >= 2:
            yield chunk


def steps_per_epoch(n: int, batch_size: int) -> int:
    full, rest = divmod(n, batch_size)
    return full + (1 if rest >= 2 else 0)


def warmup_cosine(optimizer, base_lr: float, warmup: int, total: int):
    """Linear warm-up to base_lr over `warmup` steps, then cosine decay to 0 at `total` (open_clip's schedule)."""

    def set_lr(step: int) -> float:
        if step < warmup:
            lr = base_lr * (step + 1) / warmup
        else:
            progress = (step - warmup) / max(1, total - warmup)
            lr = 0.5 * (1 + math.cos(math.pi * min(1.0, progress))) * base_lr
        for group in optimizer.param_groups:
            group["lr"] = lr
        return lr

    return set_lr


def decay_groups(module, weight_decay: float):
    """AdamW parameter groups: no weight decay on biases and norm gains (1-d parameters)."""
    decay = [p for p in module.parameters() if p.requires_grad and p.ndim >= 2]
    no_decay = [p for p in module.parameters() if p.requires_grad and p.ndim < 2]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def symmetric_infonce(a, b, logit_scale: float):
    """CLIP's loss between row-aligned features a and b (both normalised here)."""
    import torch
    import torch.nn.functional as F

    a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
    logits = logit_scale * a @ b.T
    labels = torch.arange(a.shape[0], device=a.device)
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


def option(options: dict, key: str, default, cast=None):
    if key not in options:
        return default
    from cirbench.errors import UsageError

    cast = cast or type(default)
    try:
        return cast(options[key])
    except (TypeError, ValueError):
        raise UsageError(f"option {key}={options[key]!r} is not a valid {cast.__name__}") from None
