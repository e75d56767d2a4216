"""The small CLIP's weights shipped with cirbench, so that a first run does not wait for its training.

They are what ``cirbench world rebuild`` produces: the world rendered and the small CLIP trained from
scratch by cirbench.world.small_clip, for the default settings. A file holds everything but the rows of
the token table no caption uses; those rows never get a gradient, so training only decays them, and
they are rebuilt here from the seeded initial table and the recorded decay factors (a digest of the
initial table guards against a torch whose seeded initialisation differs: then the CLIP is trained
here instead, as for any settings without a shipped file).

File: ``cirbench/resources/world/small-clip-<clip key>.pt``, a torch-saved dict (format 1):
``clip_key``, ``config`` (the settings the weights depend on), ``state`` (every tensor but
``token_embedding.weight``), ``used_ids`` and ``used_rows`` (the token table's trained rows),
``decay_factors``, ``initial_table_sha256``, ``trained`` (final loss, steps, zero-shot accuracy, torch
version and machine it was trained on).
"""

from __future__ import annotations

import hashlib
import os
import platform
from pathlib import Path

from cirbench.errors import DataError
from cirbench.util.fsutil import atomic_write, ensure_writable
from cirbench.world.build import WorldConfig, build
from cirbench.world.small_clip import held_out_accuracy, train, write_clip

FOLDER = Path(__file__).resolve().parents[1] / "resources" / "world"
FORMAT = 1


def path_for(config: WorldConfig, folder: Path | None = None) -> Path:
    return Path(folder or FOLDER) / f"small-clip-{config.clip_key()}.pt"


def _initial_model(config: WorldConfig, cfg: dict):
    """The model as training starts it: open_clip's initialisation under the world's seed."""
    import open_clip
    import torch

    torch.manual_seed(config.seed)
    return open_clip.CLIP(**cfg)


def _digest(tensor) -> str:
    return hashlib.sha256(tensor.detach().contiguous().numpy().tobytes()).hexdigest()


def pack(config: WorldConfig, trained, accuracy: dict) -> dict:
    import torch

    state = {k: v.detach().clone() for k, v in trained.model.state_dict().items() if k != "token_embedding.weight"}
    table = trained.model.token_embedding.weight.detach()
    initial = _initial_model(config, trained.cfg).token_embedding.weight
    return {"format": FORMAT, "clip_key": config.clip_key(), "cfg": trained.cfg,
            "config": {k: getattr(config, k) for k in config.RENDER_FIELDS + config.CLIP_FIELDS},
            "state": state, "used_ids": trained.used_ids.clone(), "used_rows": table[trained.used_ids].clone(),
            "decay_factors": list(trained.decay_factors), "initial_table_sha256": _digest(initial),
            "trained": {"final_loss": trained.final_loss, "steps": trained.steps, "zero_shot_accuracy": accuracy,
                        "torch": str(torch.__version__), "machine": f"{platform.machine()}, {os.cpu_count()} CPUs"}}


def unpack(config: WorldConfig, blob: dict):
    """The full model from a shipped file, or None when this torch initialises the table differently."""
    model = _initial_model(config, blob["cfg"])
    table = model.token_embedding.weight.detach().clone()
    if _digest(table) != blob["initial_table_sha256"]:
        return None
    for factor in blob["decay_factors"]:  # the same multiplications, in the same order, as AdamW's
        table.mul_(factor)
    table[blob["used_ids"]] = blob["used_rows"]
    model.load_state_dict({**blob["state"], "token_embedding.weight": table})
    return model.eval()


def read(path: Path, config: WorldConfig) -> dict:
    import torch

    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 -- a damaged package file: say which
        raise DataError(f"{path}: not a readable shipped small-CLIP file ({type(exc).__name__}: {exc})") from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT or blob.get("clip_key") != config.clip_key():
        raise DataError(f"{path}: not a format-{FORMAT} small-CLIP file for settings key {config.clip_key()}")
    return blob


def install(config: WorldConfig, world_dir: Path, out: Path, progress=None) -> bool:
    """Write the shipped weights for these settings to ``out`` (False when none ship or they cannot be used)."""
    path = path_for(config)
    if not path.is_file():
        return False
    task = progress.task("small CLIP: shipped weights, held-out accuracy", total=2) if progress else None
    blob = read(path, config)
    model = unpack(config, blob)
    if model is None:
        if progress:
            progress.log(f"{path.name}: this torch initialises the small CLIP differently; training it here")
        return False
    if task:
        task.advance(1)
    trained = blob["trained"]
    write_clip(out, config, world_dir, model, blob["cfg"], {
        "weights": f"shipped with cirbench ({path.name}, trained by `cirbench world rebuild` with torch "
                   f"{trained['torch']} on {trained['machine']})",
        "final_loss": trained["final_loss"], "steps": trained["steps"],
        "shipped_zero_shot_accuracy": trained["zero_shot_accuracy"]})
    if task:
        task.advance(1)
        task.done()
    return True


def rebuild(config: WorldConfig, cache_dir: Path, folder: Path | None = None, progress=None) -> tuple[Path, dict]:
    """Render the world and train the small CLIP from scratch; write its shipped file. Returns the file
    and what it records about the training."""
    import torch

    ensure_writable(Path(folder or FOLDER), "folder for the small CLIP's weights file", "pass --out DIR")
    world_dir = build(config, cache_dir, progress)
    trained = train(config, world_dir, progress)
    accuracy = {k: v for k, v in held_out_accuracy(trained.model, world_dir).items() if k != "images"}
    blob = pack(config, trained, accuracy)
    path = atomic_write(path_for(config, folder), lambda fh: torch.save(blob, fh))
    return path, blob["trained"]
