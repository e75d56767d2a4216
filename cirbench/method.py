"""The contract of a method plugin.

A method is one file under methods/ (or in a third-party distribution, registered through the
``cirbench.methods`` entry-point group) that subclasses :class:`Method`. The engine builds one
instance per evaluated split with a :class:`MethodContext`, then calls :meth:`Method.compose` on
batches of queries. A method sees features and texts only; it never reads dataset files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar

from .data import fill
from .registry import methods

register_method = methods.register


@dataclass
class MethodContext:
    encoder: Any  # cirbench.encoder.Encoder
    prompts: dict[str, str]  # the split's prompt templates ("pseudo", "text"), after user overrides
    dataset: str
    text_features: Callable[[list[str]], Any]  # memoised, deduplicated text encoder (raw features)
    checkpoint: Path | None = None  # --checkpoint, or None
    checkpoint_store: Path | None = None  # where `cirbench train` puts default checkpoints
    options: dict[str, str] = field(default_factory=dict)


@dataclass
class TrainRequest:
    """What `cirbench train METHOD` hands a method's train()."""

    encoder: Any
    out: Path
    images: list[Path] | None = None  # unlabeled images (pic2word)
    triplets: list | None = None  # supervised (reference path, text, target path) triplets (combiner)
    train_dataset: str | None = None  # the name of the dataset the triplets came from
    image_features: Callable[[list[Path]], Any] | None = None  # cached, frozen image encoder
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    seed: int = 0
    options: dict[str, str] = field(default_factory=dict)
    progress: Any = None  # cirbench.progress.Progress
    device: str = "cpu"
    resume: bool = False  # continue from the checkpoint at `out`


class Method:
    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    supervised: ClassVar[bool] = False
    # "images" (unlabeled images), "triplets" (a dataset's train triplets) or None (nothing to train)
    train_data: ClassVar[str | None] = None

    def __init__(self, ctx: MethodContext):
        self.ctx = ctx

    def compose(self, reference_features, texts: list[str]):
        """Query features (B x D, any norm) for raw reference image features (B x D) and query texts."""
        raise NotImplementedError

    def config(self) -> dict:
        """Everything about this method's setting that changes its numbers (recorded in results)."""
        return {}

    # helpers for subclasses
    def prompt(self, kind: str, text: str) -> str:
        return fill(self.ctx.prompts[kind], text)

    @classmethod
    def train(cls, request: TrainRequest) -> Path:
        from .errors import UsageError

        raise UsageError(f"method {cls.name!r} has nothing to train")
