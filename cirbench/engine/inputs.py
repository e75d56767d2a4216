"""What a split's cells rank with: the run's model under each method's view (transform, rounding of the
weights), the image features of the split through the cache -- once per view, shared by every method --
and the split without its unreadable images when the run skips them.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from cirbench.contracts.split import Split
from cirbench.errors import DataError
from cirbench.protocol.images import unreadable
from cirbench.storage.content_keys import ContentKeys
from cirbench.storage.features import FeatureStore, TextFeatures


class Views:
    """The run's encoder under every view a method asks for, with their feature stores and text
    features; the weights are copied once per rounding and shared by its transforms."""

    def __init__(self, encoder, options, progress=None):
        self.encoder, self.options, self.progress = encoder, options, progress
        self.content_keys = ContentKeys(options.cache_dir)
        self._encoders: dict[tuple, object] = {(encoder.transform, "loaded", None): encoder}
        self._texts: dict[tuple, TextFeatures] = {}
        self._stores: dict[tuple[str, str], FeatureStore] = {}

    def encoder_for(self, transform: str, weights: str = "loaded", text_length: int | None = None):
        key = (transform, weights, text_length)
        if key not in self._encoders:
            if text_length is not None:
                self._encoders[key] = self.encoder_for(transform, weights).with_text_length(text_length)
            elif transform == self.encoder.transform:
                self._encoders[key] = self.encoder.with_weights(weights)
            else:
                self._encoders[key] = self.encoder_for(self.encoder.transform, weights).with_transform(transform)
        return self._encoders[key]

    def texts_for(self, weights: str = "loaded", text_length: int | None = None) -> TextFeatures:
        """Cached text features of the run's model with these weights and truncation."""
        key = (weights, text_length)
        if key not in self._texts:
            self._texts[key] = TextFeatures(self.encoder_for(self.encoder.transform, weights, text_length),
                                            self.options.cache_dir)
        return self._texts[key]

    def store(self, transform: str, weights: str = "loaded") -> FeatureStore:
        key = (transform, weights)
        if key not in self._stores:
            self._stores[key] = FeatureStore(
                self.encoder_for(transform, weights), self.options.cache_dir, self.options.batch_size,
                self.options.workers, self.progress, dtype=self.options.feature_dtype, content_keys=self.content_keys)
        return self._stores[key]


@dataclass
class SplitInputs:
    """The image features of one split for the views its cells use."""

    split: Split  # without unreadable images when they were skipped
    rows: dict[str, int]  # image id -> row of the features
    features: dict[tuple[str, str], object] = field(default_factory=dict)  # view -> N x D features
    references: dict[tuple[str, str], tuple[dict[str, int], object]] = field(default_factory=dict)
    cache: dict[tuple[str, str], dict] = field(default_factory=dict)  # view -> feature-cache hits, misses
    skipped: dict = field(default_factory=dict)  # unreadable images and the queries they drop

    def gallery_features(self, view, gallery: list[str]):
        """G x D features of the gallery items, with the view's transform."""
        return self.features[(view.transform, view.weights)][[self.rows[g] for g in gallery]]

    def reference_features(self, view, queries):
        """Q x D reference features of the queries, with the view's reference transform."""
        group = (view.references, view.weights)
        if group in self.references:
            rows, feats = self.references[group]
        else:
            rows, feats = self.rows, self.features[(view.transform, view.weights)]
        return feats[[rows[q.reference] for q in queries]]

    def cache_stats(self, view) -> dict:
        stats = {"hits": 0, "misses": 0}
        for group in dict.fromkeys([(view.transform, view.weights), (view.references, view.weights)]):
            if group in self.cache:
                stats = {k: stats[k] + self.cache[group][k] for k in stats}
        return stats


def drop_unreadable(split: Split, bad_ids: set[str]) -> tuple[Split, dict]:
    """The split without unreadable images; queries that lose their reference or every target are counted."""
    gallery = [g for g in split.gallery if g not in bad_ids]
    kept, dropped = [], []
    for q in split.queries:
        targets = tuple(t for t in q.targets if t not in bad_ids)
        if q.reference in bad_ids or (q.targets and not targets):
            dropped.append(q.qid)
            continue
        subset = tuple(s for s in q.subset if s not in bad_ids) if q.subset is not None else None
        kept.append(replace(q, targets=targets, subset=subset))
    info = {"unreadable_images": sorted(bad_ids), "dropped_queries": dropped,
            "dropped_gallery_items": len(split.gallery) - len(gallery)}
    return replace(split, gallery=gallery, queries=kept), info


def split_inputs(views: Views, split: Split, ids: list[str], image_keys: list, method_views, skip_bad: bool
                 ) -> SplitInputs:
    """Features of every image of the split for each view the methods use (the gallery's transform over
    every image; a reference transform of its own over the references only). An unreadable image stops
    the run with its name, or with ``skip_bad`` is dropped and recorded."""
    inputs = SplitInputs(split, {image_id: i for i, image_id in enumerate(ids)})
    for group in dict.fromkeys((v.transform, v.weights) for v in method_views):
        store = views.store(*group)
        hits0, misses0 = store.hits, store.misses
        values, bad = store.features([split.images[i] for i in ids], label=split.name, keys=image_keys)
        inputs.cache[group] = {"hits": store.hits - hits0, "misses": store.misses - misses0}
        if bad and not skip_bad:
            pos, err = bad[0]
            more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
            raise DataError(str(unreadable(split.images[ids[pos]], err)) + more)
        inputs.features[group] = values
        if bad and not inputs.skipped:
            inputs.split, inputs.skipped = drop_unreadable(inputs.split, {ids[p] for p, _ in bad})
    ref_ids = list(dict.fromkeys(q.reference for q in inputs.split.queries))
    for group in dict.fromkeys((v.references, v.weights) for v in method_views if v.references != v.transform):
        store = views.store(*group)
        hits0, misses0 = store.hits, store.misses
        values, _bad = store.features([split.images[i] for i in ref_ids], label=f"{split.name} references",
                                      keys=[image_keys[inputs.rows[i]] for i in ref_ids])
        inputs.cache[group] = {"hits": store.hits - hits0, "misses": store.misses - misses0}
        inputs.references[group] = ({image_id: i for i, image_id in enumerate(ref_ids)}, values)
    return inputs
