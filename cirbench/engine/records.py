"""What a computed cell leaves behind: its result record (how it was made), its per-query outcomes, and
for test-server splits the submission files, all from the one ranking."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import numpy as np

from cirbench.contracts.method import SplitView
from cirbench.contracts.split import Split
from cirbench.storage import results
from cirbench.util import distributed


def record(engine, split: Split, view: SplitView, cell, values: dict, cache: dict, skipped: dict,
           result_name: str, content_key: str, wall: float) -> results.Result:
    m, ev = cell.built, cell.encoder_view
    enc = engine.encoder_for(ev.transform, ev.weights, ev.text_length)
    method = m.instance
    info = {**split.info, **({"caption_order": split.caption_order} if split.caption_order else {})}
    if split.queries_without_targets:
        info["queries_without_targets"] = split.queries_without_targets
    return results.Result(
        cell_key=cell.key,
        encoder=results.EncoderRecord(label=enc.label, spec=enc.identity.get("spec", enc.label),
                                      model_key=enc.model_key, key=enc.key, slug=engine.encoder.slug,
                                      transform=enc.transform, identity=dict(enc.identity)),
        method=results.MethodRecord(name=m.name, supervised=bool(m.cls.supervised), description=m.cls.description,
                                    config=cell.config, options=dict(method.ctx.options), transform=ev.transform,
                                    reference_transform=ev.references, weights=ev.weights,
                                    protocol=cell.protocol, display_order=float(m.cls.display_order),
                                    text_length=ev.text_length, own_model=m.own_model, setting=cell.setting),
        dataset=results.DatasetRecord(
            name=split.dataset, split=split.split, root=str(Path(split.root).resolve()), result_name=result_name,
            n_queries=len(split.queries), n_gallery=len(split.gallery), remove_reference=split.remove_reference,
            prompts=view.prompts, has_ground_truth=split.has_ground_truth, scope=split.scope,
            content_key=content_key, info=info),
        metrics={k: v.value() for k, v in values.items()},
        main_metrics=[m_ for m_ in split.main_metrics if m_ in values],
        run=results.RunRecord(
            date=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), wall_time_s=round(wall, 3),
            device=str(engine.encoder.device), batch_size=engine.options.batch_size, workers=engine.options.workers,
            feature_cache=cache, feature_dtype=engine.options.feature_dtype, skipped=skipped,
            command=list(engine.options.command), versions=results.versions()))


def outcomes(split: Split, views: dict, values: dict) -> results.Outcomes:
    return results.Outcomes([q.qid for q in split.queries], list(split.gallery), views,
                            {k: (v.values, v.agg) for k, v in values.items()},
                            texts=[q.text for q in split.queries], references=[q.reference for q in split.queries],
                            first_targets=[q.targets[0] if q.targets else "" for q in split.queries],
                            images=image_table(split, views))


def image_table(split: Split, views: dict, top: int = 10) -> dict:
    """{id: [path, ops]} for the references, first targets and each query's top results."""
    from cirbench.protocol.images import ImageRef

    ids = {q.reference for q in split.queries} | {q.targets[0] for q in split.queries if q.targets}
    for top_ids, _ranks, _first in views.values():
        ids |= {split.gallery[i] for i in np.unique(top_ids[:, :top]) if i >= 0}
    table = {}
    for image_id in ids:
        image = split.images[image_id]
        if isinstance(image, ImageRef):
            table[image_id] = [os.path.abspath(image.path), [list(op) for op in image.ops]]
        else:
            table[image_id] = [os.path.abspath(image), []]
    return table


def submission(split: Split, views: dict, folder: Path | None) -> list[Path]:
    """Test-server files from the one ranking (and subset ranking), written by the dataset."""
    if split.write_submission is None or folder is None or not distributed.is_main():
        return []
    top = views["gallery"][0]
    ranked_ids = [[split.gallery[i] for i in row[:split.submission_k] if i >= 0] for row in top.tolist()]
    subset_ids = None
    if "subset" in views:
        subset_ids = [[split.gallery[i] for i in row if i >= 0] for row in views["subset"][0].tolist()]
    folder.mkdir(parents=True, exist_ok=True)
    return split.write_submission(ranked_ids, subset_ids, folder)
