"""The engine: one split, many methods. It knows no method or dataset by name: it receives a Split and
built method objects, asks each what it declares (its encoder view, vectors or scores, re-ranking,
whole-split batches), and writes one result file per (encoder, method, dataset, split).

    plan      the run's options, the built methods, each cell's key and place (or why it is reused,
              skipped or failed before any work)
    inputs    the run's model under each method's view, and the split's image features through the cache
    ranking   the one ranking of a method on a split (producers, re-ranking, views, metric values)
    records   the result record, the per-query outcomes and the submission files of a cell

May import: cirbench.errors, cirbench.util, cirbench.protocol, cirbench.contracts, cirbench.storage.
"""

from __future__ import annotations

import time

from cirbench.contracts.split import Split
from cirbench.engine import records
from cirbench.engine.inputs import Views, split_inputs
from cirbench.engine.plan import (BuiltMethod, Cell, CellOutcome, RunOptions, method_bug, plan_cell,
                                  split_content_key, split_view)
from cirbench.engine.ranking import rank
from cirbench.errors import CirbenchError
from cirbench.storage import results
from cirbench.util import distributed, fsutil


class Engine:
    """One encoder model: its features through the cache, and the evaluation of splits."""

    def __init__(self, encoder, options: RunOptions, progress=None):
        self.encoder = encoder
        self.options = options
        self.progress = progress
        self.views = Views(encoder, options, progress)
        self.content_keys = self.views.content_keys

    def encoder_for(self, transform: str, weights: str = "loaded", text_length: int | None = None):
        """The run's model with another image transform, its weights rounded or its texts truncated
        (see EncoderView)."""
        return self.views.encoder_for(transform, weights, text_length)

    def texts_for(self, weights: str = "loaded", text_length: int | None = None):
        return self.views.texts_for(weights, text_length)

    @property
    def texts(self):
        return self.views.texts_for("loaded")

    def store(self, transform: str, weights: str = "loaded"):
        return self.views.store(transform, weights)

    def evaluate(self, split: Split, built: list[BuiltMethod], result_name: str | None = None) -> list[CellOutcome]:
        """Every built method on one split: plan the cells, check where they write, encode the split's
        images once per view, rank each method once, record."""
        result_name = result_name or split.dataset
        split.validate()
        view = split_view(split, self.options.prompts)
        ids = list(dict.fromkeys([*split.gallery, *(q.reference for q in split.queries),
                                  *(m for q in split.queries for m in (q.subset or ()))]))
        content = split_content_key(split)
        image_keys = self.content_keys.keys([split.images[i] for i in ids], self.progress)
        images_key = fsutil.stable_hash([ids, image_keys])[:24]
        outcomes, todo = [], []
        for m in built:
            cell = plan_cell(self, m, split, view, content, images_key, result_name)
            (outcomes if isinstance(cell, CellOutcome) else todo).append(cell)
        if not todo:
            return outcomes
        if distributed.is_main():  # every place this split's cells will write, before any work
            for cell in todo:
                if cell.path is not None:
                    fsutil.ensure_writable(cell.path.parent, "result folder", "pass --results-dir PATH")
                    if split.write_submission is not None:
                        fsutil.ensure_writable(cell.path.parent / "submissions" / cell.path.stem, "submission folder")
        start = time.perf_counter()
        inputs = split_inputs(self.views, split, ids, image_keys, [c.encoder_view for c in todo],
                              self.options.skip_bad_images)
        split = inputs.split
        view.n_queries, view.n_gallery = len(split.queries), len(split.gallery)
        shared = time.perf_counter() - start
        for cell in todo:
            outcomes.append(self._compute(cell, split, view, inputs, content, result_name, shared))
        return outcomes

    def _compute(self, cell: Cell, split: Split, view, inputs, content: str, result_name: str,
                 shared: float) -> CellOutcome:
        m, ev = cell.built, cell.encoder_view
        t0 = time.perf_counter()
        try:
            views, values = rank(m.instance, split, view, inputs.gallery_features(ev, split.gallery),
                                 inputs.reference_features(ev, split.queries), batch_size=self.options.batch_size,
                                 chunk_size=self.options.chunk_size, device=self.encoder.device,
                                 progress=self.progress,
                                 reference_encoder=self.encoder_for(ev.references, ev.weights))
            folder = cell.path.parent / "submissions" / cell.path.stem if cell.path is not None else None
            submission = records.submission(split, views, folder)
        except CirbenchError as exc:
            return CellOutcome(m.name, split.dataset, split.split, "failed", error=exc, setting=cell.setting)
        except Exception as exc:  # a bug in a (plugin) method fails its cell, not the whole run
            return CellOutcome(m.name, split.dataset, split.split, "failed", error=method_bug(m.name, exc),
                               setting=cell.setting)
        record = records.record(self, split, view, cell, values, inputs.cache_stats(ev), inputs.skipped,
                                result_name, content, wall=time.perf_counter() - t0 + shared)
        record.submission = [str(p) for p in submission]
        replaced = cell.path is not None and cell.path.is_file()  # the same method and setting, made before
        if cell.path is not None and distributed.is_main():  # under torchrun every process scores; one writes
            results.write(cell.path, record, records.outcomes(split, views, values))
        return CellOutcome(m.name, split.dataset, split.split, "computed", record, path=cell.path,
                           setting=cell.setting, replaced=replaced)


__all__ = ["Engine", "RunOptions", "BuiltMethod", "CellOutcome", "split_content_key"]
