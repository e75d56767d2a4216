"""What a dataset adapter hands the engine: queries, a gallery and the images behind them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from cirbench.protocol.images import Image_

DEFAULT_PROMPTS = {
    # the text given to the pseudo-word methods; "*" is the pseudo-word, {text} the query text
    "pseudo": "a photo of * , {text}",
    # the text given to text-only, image+text and the combiner
    "text": "{text}",
    # the relative caption as CLIP-only fusion methods (slerp, weicom) encode it
    "caption": "{text}",
}


@dataclass(frozen=True)
class Query:
    qid: str
    reference: str  # image id
    text: str
    targets: tuple[str, ...]  # image ids; empty where ground truth is withheld (test servers)
    # a candidate subset: CIRR's img_set (Recall_subset), or the query's own gallery when the split's
    # scope is "subset" (GeneCIS)
    subset: tuple[str, ...] | None = None
    # every other field the annotation carries for this query (FashionIQ's two captions, released
    # LLM captions and rewrites, COCO's classes): methods read them, templates may name string fields
    fields: Mapping[str, Any] = field(default_factory=dict, hash=False)


# what the official code of CLIP4Cir, CIReVL and SEARLE strips from both ends of each FashionIQ caption
CAPTION_STRIP = ".?, "


def relative_captions(fields: Mapping[str, Any], strip: str | None = None) -> list[str] | None:
    """A query's first two relative captions (FashionIQ's ``captions`` field, a list of strings), as the
    annotation wrote them or, with ``strip``, each stripped of those characters at both ends (the
    official code's habit: ``strip=CAPTION_STRIP``); None where the fields hold no two captions. The
    methods that fuse or join the two read them from here."""
    captions = fields.get("captions") if hasattr(fields, "get") else None
    if isinstance(captions, (list, tuple)) and len(captions) >= 2 and all(isinstance(c, str) for c in captions):
        return [c.strip(strip) if strip else c for c in captions[:2]]
    return None


@dataclass(frozen=True)
class Triplet:
    """A supervised training example: reference image, modification text, target image; ``captions``:
    the relative captions the text was joined from, where the dataset has several (FashionIQ's two)."""

    reference: str
    text: str
    target: str
    captions: tuple[str, ...] | None = None


@dataclass
class Split:
    """One evaluation split: everything the engine needs and nothing about the dataset's format.

    ``images`` maps every image id used (gallery and references) to a file or an ImageRef.
    ``metrics`` maps a metric family (see cirbench.metrics.FAMILIES) to its cut-offs. ``main_metrics``
    are the columns of the summary tables. ``scope`` is "gallery" (each query ranks the whole gallery)
    or "subset" (each query ranks only its own ``subset``; no gallery-wide scores are computed).
    """

    dataset: str
    split: str
    root: Path
    images: dict[str, Image_]
    gallery: list[str]
    queries: list[Query]
    metrics: dict[str, list[int]]
    main_metrics: list[str]
    prompts: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_PROMPTS))
    remove_reference: bool = False
    has_ground_truth: bool = True
    scope: str = "gallery"
    # an explicit order for queries with several relative captions ("natural": c1 first, "official":
    # c2 first, as the Pic2Word code); None lets each method follow its own paper's code
    caption_order: str | None = None
    info: dict = field(default_factory=dict)  # recorded in results as is
    # test-server splits: the dataset writes its submission files from the rankings.
    # write_submission(ranked gallery ids per query, ranked subset ids per query or None, folder) -> [paths]
    write_submission: Callable[[list[list[str]], list[list[str]] | None, Path], list[Path]] | None = None
    submission_k: int = 50
    # checkpoints the orchestration trained for this dataset (method name -> path)
    checkpoints: dict[str, Path] = field(default_factory=dict)
    # the query field whose values group the queries for metrics averaged per group first (i-CIR's
    # "instance": its mmAP and minmAP); None where the split has no groups
    group_by: str | None = None

    @property
    def name(self) -> str:
        return f"{self.dataset}:{self.split}"

    def validate(self) -> None:
        """What every split must hold whatever its dataset (a DataError naming the split otherwise): query
        ids unique (per-query outcomes and paired tests pair queries by id); every image a query or the
        gallery names listed in ``images``; the ground truth, subsets and metric families well formed."""
        from collections import Counter

        from cirbench.errors import DataError
        from cirbench.protocol.metrics import FAMILIES

        where = f"{self.name}"
        twice = [qid for qid, n in Counter(q.qid for q in self.queries).items() if n > 1]
        if twice:
            raise DataError(f"{where}: query id {twice[0]!r} is used by {Counter(q.qid for q in self.queries)[twice[0]]} "
                            f"queries ({len(twice)} duplicated id(s)); ids must be unique")
        unknown = [f for f in self.metrics if f not in FAMILIES]
        if unknown:
            raise DataError(f"{where}: unknown metric family {unknown[0]!r} (known: {', '.join(FAMILIES)})")
        if self.scope not in ("gallery", "subset"):
            raise DataError(f"{where}: scope must be 'gallery' or 'subset', not {self.scope!r}")
        if "ap_by_group" in self.metrics and not self.group_by:
            raise DataError(f"{where}: the metric family 'ap_by_group' needs the split's group_by field")
        if self.group_by:
            ungrouped = next((q.qid for q in self.queries if self.group_by not in q.fields), None)
            if ungrouped is not None:
                raise DataError(f"{where}: query {ungrouped!r} has no {self.group_by!r} field, which groups the "
                                "split's queries")
        missing = [g for g in self.gallery if g not in self.images]
        for q in self.queries:
            missing += [i for i in (q.reference, *q.targets, *(q.subset or ())) if i not in self.images]
            if missing:
                raise DataError(f"{where}: image {missing[0]!r} (query {q.qid!r}) has no file in the split")
            if self.scope == "subset" and not q.subset:
                raise DataError(f"{where}: query {q.qid!r} has no candidate subset, and the split ranks each "
                                "query's own subset")
        if missing:
            raise DataError(f"{where}: gallery image {missing[0]!r} has no file in the split")
        self._check_gallery_once(where)

    def _check_gallery_once(self, where: str) -> None:
        """Each gallery image once: a second copy (the same id twice, or two ids of one file, e.g.
        ``gallery/./a.png`` beside ``gallery/a.png``) takes a rank of its own and pushes every target
        behind it down, a plausible but wrong number. Two crops of one file are two images."""
        import os

        from cirbench.errors import DataError
        from cirbench.protocol.images import ImageRef

        first: dict = {}
        for g in self.gallery:
            image = self.images[g]
            path, ops = (image.path, image.ops) if isinstance(image, ImageRef) else (image, ())
            key = (os.path.normpath(os.path.abspath(path)), ops)
            if key in first:
                same = "is listed twice" if first[key] == g else f"and {first[key]!r} are the same file ({path})"
                raise DataError(f"{where}: gallery image {g!r} {same}; each copy would take a rank of its own, so "
                                "list every image once")
            first[key] = g

    @property
    def queries_without_targets(self) -> int:
        """Queries with no ground truth on a split that has some (they score 0 on every metric)."""
        return sum(not q.targets for q in self.queries) if self.has_ground_truth else 0
