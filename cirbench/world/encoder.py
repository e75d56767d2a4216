"""The embedded benchmark's encoder: a small CLIP trained from scratch on the world's captions.

``world`` (or ``world:KEY=VALUE,...`` with the world's settings) renders the world if needed, puts the
small CLIP in place once (cached under <cache>/world/<render key>/clip-<settings key>/ in open_clip's
local-dir format) and loads it like any open_clip model. For the default settings the weights shipped
with cirbench are used (cirbench.world.shipped; ``cirbench world rebuild`` retrains them); any setting
that changes the training trains it here (cirbench.world.small_clip). Its zero-shot attribute accuracy
on held-out images is measured when it is put in place and recorded with every result.
"""

from __future__ import annotations

import json
from pathlib import Path

from cirbench.contracts.encoder import register_encoder
from cirbench.world import shipped
from cirbench.world.build import WorldConfig, build
from cirbench.world.small_clip import CONTEXT_LENGTH, train_small_clip  # noqa: F401  (their earlier home)


def clip_dir(config: WorldConfig, cache_dir: Path, progress=None) -> Path:
    """The small CLIP's folder for these settings: the weights shipped with cirbench where they were
    trained for exactly these settings (``cirbench world rebuild`` retrains them), otherwise trained here."""
    world_dir = build(config, cache_dir, progress)
    folder = world_dir / f"clip-{config.clip_key()}"
    if not (folder / "world_clip.json").is_file():
        if not shipped.install(config, world_dir, folder, progress):
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
        "weights": meta.get("weights", "trained here"),
        "notes": [f"small CLIP trained from scratch on {meta['config']['pretrain']} captioned world images "
                  f"({meta.get('weights', 'trained here')}); "
                  f"zero-shot attribute accuracy on {meta['accuracy_on']}: shape {acc['shape']:.1f}% "
                  f"(chance {acc['shape_chance']:.1f}%), colour {acc['color']:.1f}% (chance {acc['color_chance']:.1f}%), "
                  f"domain {acc['domain']:.1f}% (chance {acc['domain_chance']:.1f}%)"],
    })
    return encoder
