"""What a dataset adapter hands the engine: queries, a gallery and the images behind them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

DEFAULT_PROMPTS = {
    # the text given to the pseudo-word methods; "*" is the pseudo-word, {text} the query text
    "pseudo": "a photo of * , {text}",
    # the text given to text-only, image+text and the combiner
    "text": "{text}",
}


def fill(template: str, text: str) -> str:
    """Put a query text into a prompt template. Plain replacement: dataset text is data, never a format spec."""
    return template.replace("{text}", text)


@dataclass(frozen=True)
class Query:
    qid: str
    reference: str  # image id
    text: str
    targets: tuple[str, ...]  # image ids; empty where ground truth is withheld (test servers)
    subset: tuple[str, ...] | None = None  # CIRR-style candidate subset


@dataclass(frozen=True)
class Triplet:
    """A supervised training example: reference image, modification text, target image."""

    reference: str
    text: str
    target: str


@dataclass
class Split:
    """One evaluation split: everything the engine needs and nothing about the dataset's format.

    ``images`` maps every image id used (gallery and references) to a file. ``metrics`` maps a metric
    family (see cirbench.metrics.FAMILIES) to its cut-offs. ``main_metrics`` are the columns of the
    summary tables.
    """

    dataset: str
    split: str
    root: Path
    images: dict[str, Path]
    gallery: list[str]
    queries: list[Query]
    metrics: dict[str, list[int]]
    main_metrics: list[str]
    prompts: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_PROMPTS))
    remove_reference: bool = False
    has_ground_truth: bool = True
    info: dict = field(default_factory=dict)  # recorded in results as is
    # test-server splits: the dataset writes its submission files from the rankings.
    # write_submission(ranked gallery ids per query, ranked subset ids per query or None, folder) -> [paths]
    write_submission: Callable[[list[list[str]], list[list[str]] | None, Path], list[Path]] | None = None
    submission_k: int = 50

    @property
    def name(self) -> str:
        return f"{self.dataset}:{self.split}"
