"""The embedded default benchmark (see cirbench.world): two composed-retrieval tasks on one world.

- ``world-edit`` (like FashionIQ): change one named attribute, keep the unnamed identity.
  Splits ``color`` ("in red") and ``shape`` ("a star"); the gallery is every test identity's photos
  in every shape and colour, in two poses, so each query has two ground truths (its identity and pose
  are unnamed); the reference stays in the gallery, as in FashionIQ. Recall@K and mAP@K.
- ``world-domain`` (like ImageNet -> ImageNet-R): a photo and a domain name; the positives are every
  gallery image of the reference's (unnamed) shape and colour in that domain. Splits ``sketch``,
  ``cartoon``, ``painting``; prompts "a {domain} of *" / "a {domain} of "; the multi-positive recall
  of the official domain-conversion code.

Nothing is downloaded: the world is rendered, and its small CLIP trained, on first use (cached).
Settings: ``--set world=tiny`` (a miniature for tests) or ``--set KEY=VALUE`` for any WorldConfig
field. The tasks declare their training data and budgets (``training_sources``); ``cirbench run``
trains the Pic2Word mapping and the Combiner on them when missing, with the code of ``cirbench train``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cirbench.contracts.split import Query, Split, Triplet
from cirbench.contracts.dataset import Dataset, register_dataset
from cirbench.util.fsutil import stable_hash
from cirbench.world.build import COLORS, SHAPES, WorldConfig, build, load


class WorldTask(Dataset):
    generated = True
    settings = None  # WorldConfig.parse checks them
    expected_layout = "nothing: the world is rendered into the cache on first use"

    def __init__(self, root: Path, options: dict | None = None, cache_dir: Path | None = None):
        super().__init__(root, options, cache_dir)
        self.config = WorldConfig.parse(self.options)
        self._world = None

    @property
    def default_encoder(self) -> str:  # type: ignore[override]
        return self.config.encoder_spec()

    def require_root(self) -> None:
        pass

    @property
    def folder(self) -> Path:
        return build(self.config, self.root)

    def ready(self, progress=None) -> None:
        build(self.config, self.root, progress)

    def world(self) -> dict:
        if self._world is None:
            self._world = load(self.folder)
        return self._world

    def items(self, part: str) -> list[dict]:
        return self.world()["parts"][part]

    def paths(self, items) -> dict[str, Path]:
        folder = self.folder
        return {it["file"]: folder / it["file"] for it in items}

    @staticmethod
    def index(items) -> dict[tuple, str]:
        return {(it["id"], it["shape"], it["color"], it["domain"], it.get("pose", 0)): it["file"] for it in items}

    def unlabeled_images(self) -> list[Path]:
        return list(self.paths(self.items("unlabeled")).values())

    def train_images(self) -> dict[str, Path]:
        return self.paths(self.items("train"))

    def training_sources(self) -> dict:
        """The world trains its own Pic2Word mapping (on its unlabeled images) and Combiner (on this task's
        training identities) on first use, with these budgets; each checkpoint is named by the settings it
        depends on, so a changed setting retrains what depends on it and nothing else."""
        from cirbench.training.sources import TrainingSource

        c = self.config
        images = {"render": c.render_key(), "epochs": c.pic2word_epochs, "batch_size": c.pic2word_batch}
        triplets = {"render": c.render_key(), "task": self.name, "epochs": c.combiner_epochs,
                    "batch_size": c.combiner_batch}
        return {"images": TrainingSource(f"world-{stable_hash(images)[:10]}", c.pic2word_epochs, c.pic2word_batch,
                                         seed=c.seed),
                "triplets": TrainingSource(f"{self.label}-{stable_hash(triplets)[:10]}", c.combiner_epochs,
                                           c.combiner_batch, seed=c.seed)}


@register_dataset("world-edit")
class WorldEdit(WorldTask):
    name = "world-edit"
    description = "embedded world: change a named attribute, keep the unnamed identity (like FashionIQ)"
    splits = ("color", "shape")
    default_splits = splits

    @staticmethod
    def _text(split: str, value: str) -> str:
        return f"in {value}" if split == "color" else f"a {value}"

    def _queries(self, split: str, part: str, per_id: int, seed_offset: int):
        items = [it for it in self.items(part) if it["domain"] == "photo"]
        index = self.index(items)
        ids = sorted({it["id"] for it in items})
        rng = np.random.default_rng([self.config.seed, seed_offset, 0 if split == "color" else 1])
        values = list(COLORS) if split == "color" else list(SHAPES)
        combos = [(shape, color) for shape in SHAPES for color in COLORS]
        out = []
        for k in ids:
            # distinct reference photos of this identity, each with a random new value of the attribute
            for c in rng.choice(len(combos), size=min(per_id, len(combos)), replace=False):
                shape, color = combos[c]
                old = color if split == "color" else shape
                new = values[(values.index(old) + 1 + rng.integers(len(values) - 1)) % len(values)]
                t_shape, t_color = (shape, new) if split == "color" else (new, color)
                out.append((index[(k, shape, color, "photo", 0)], self._text(split, new),
                            [index[(k, t_shape, t_color, "photo", pose)] for pose in (0, 1)]))
        return items, out

    def load(self, split: str) -> Split:
        items, queries = self._queries(split, "test", self.config.queries_per_id, 1)
        return Split(
            dataset=self.name, split=split, root=self.folder, images=self.paths(items),
            gallery=[it["file"] for it in items],
            queries=[Query(qid=str(i), reference=r, text=t, targets=tuple(g)) for i, (r, t, g) in enumerate(queries)],
            metrics={"recall": [1, 5, 10, 50], "map": [5, 10, 25, 50]}, main_metrics=["R@1", "R@10", "R@50"],
            prompts={"pseudo": "a photo of * , {text}", "text": "{text}", "caption": "{text}"},
            info={"world": self.config.render_key(), "ground_truths_per_query": 2},
        )

    def train_triplets(self) -> list[Triplet]:
        out = []
        for split in self.splits:
            items = [it for it in self.items("train") if it["domain"] == "photo"]
            index = self.index(items)
            values = list(COLORS) if split == "color" else list(SHAPES)
            for (k, shape, color, _d, pose), ref in index.items():
                if pose != 0:
                    continue
                for new in values:
                    if new == (color if split == "color" else shape):
                        continue
                    t_shape, t_color = (shape, new) if split == "color" else (new, color)
                    out.append(Triplet(ref, self._text(split, new), index[(k, t_shape, t_color, "photo", 1)]))
        return out


@register_dataset("world-domain")
class WorldDomain(WorldTask):
    name = "world-domain"
    description = "embedded world: photo -> sketch/cartoon/painting of the same object (like ImageNet-R)"
    splits = ("sketch", "cartoon", "painting")
    default_splits = splits

    def load(self, split: str) -> Split:
        items = self.items("test")
        index = self.index(items)
        ids = sorted({it["id"] for it in items})
        rng = np.random.default_rng([self.config.seed, 2])
        combos = [(shape, color) for shape in SHAPES for color in COLORS]
        queries = []
        for k in ids:  # the same distinct photos are the queries of every domain
            for c in rng.choice(len(combos), size=min(self.config.queries_per_id, len(combos)), replace=False):
                shape, color = combos[c]
                targets = tuple(index[(j, shape, color, split, 0)] for j in ids)
                queries.append(Query(qid=f"{k}-{len(queries)}", reference=index[(k, shape, color, "photo", 0)],
                                     text=split, targets=targets))
        return Split(
            dataset=self.name, split=split, root=self.folder, images=self.paths(items),
            gallery=[it["file"] for it in items], queries=queries,
            metrics={"positive_recall": [1, 5, 10, 50, 100, 200]}, main_metrics=["R@10", "R@50"],
            prompts={"pseudo": "a {text} of *", "text": "a {text} of ", "caption": "a {text} of "},
            info={"world": self.config.render_key(), "positives_per_query": len(ids)},
        )

    def train_triplets(self) -> list[Triplet]:
        index = self.index(self.items("train"))
        # the text as the Combiner sees it at evaluation: the split's text prompt filled in
        return [Triplet(ref, f"a {domain} of ", index[(k, shape, color, domain, 0)])
                for (k, shape, color, d, pose), ref in index.items() if d == "photo" and pose == 0
                for domain in self.splits]
