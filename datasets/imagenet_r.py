"""ImageNet -> ImageNet-R domain conversion (the Pic2Word protocol).

Layout (under <data root>/imagenet-r/): real/<wnid>/ILSVRC2012_val_*.JPEG, imagenet-r/<wnid>/<domain>_<n>.jpg
and the official list files imgnet_real_query.txt (10,000 real query images) and imgnet_targets.txt
(16,983 gallery lines: ImageNet-R cartoon, origami, toy, sculpture images and the real images as
distractors). Each line is "imgnet/<relative path> <label>", resolved against imagenet-r/; a label is
class + 1000 * domain (cartoon 0, origami 1, toy 2, sculpture 3; real distractors + 6000).
``--set query_list=PATH --set target_list=PATH`` point at lists elsewhere; without any list file,
equivalent lists are built from the two folders (50 real images per class, drawn with ``--set seed=N``,
recorded in the results).

Protocol: for domain d, a query's positives are the gallery items labelled class + 1000 * d; recall@K =
mean over queries of (positives in the top K) / (positives in the gallery), a query with no positive
scoring 0 (the official quirk); prompts "a {domain} of *" and, for text-only, "a {domain} of ".
``--set metric=hit`` scores the hit rate instead (a query counts when any positive is in its top K), as
MagicLens's official code does; its results go to their own folder (imagenet-r-hit).
"""

from __future__ import annotations

import random
from pathlib import Path

from cirbench.contracts.split import Query, Split
from cirbench.contracts.dataset import Dataset, read_text, register_dataset
from cirbench.errors import DataError, UsageError, short

DOMAINS = ("cartoon", "origami", "toy", "sculpture")
REAL_OFFSET = 6000
QUERY_LIST, TARGET_LIST = "imgnet_real_query.txt", "imgnet_targets.txt"


def read_list(path: Path, labels: range | None = None) -> list[tuple[str, int]]:
    """Lines "relative/path label" of an official list file; ``labels``: the labels it may hold (a bad
    one is named with its line of the file, blank lines counted)."""
    out = []
    for lineno, line in enumerate(read_text(path, "ImageNet-R list file").splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
            raise DataError(f"{path}:{lineno}: expected 'relative/path label', got {short(line.strip())}")
        label = int(parts[1])
        if labels is not None and label not in labels:
            raise DataError(f"{path}:{lineno}: query label {label} is not a class index "
                            f"({labels.start}-{labels.stop - 1})")
        out.append((parts[0], label))
    return out


@register_dataset("imagenet-r")
class ImageNetR(Dataset):
    name = "imagenet-r"
    description = "ImageNet -> ImageNet-R domain conversion: cartoon, origami, toy, sculpture (R@10/R@50)"
    splits = DOMAINS
    default_splits = DOMAINS
    expected_layout = ("imagenet-r/real/<wnid>/*.JPEG, imagenet-r/imagenet-r/<wnid>/<domain>_<n>.jpg and the "
                       "list files imgnet_real_query.txt, imgnet_targets.txt")
    settings = ("query_list", "target_list", "seed", "metric")
    METRICS = {"positive": "positive_recall", "hit": "recall"}

    @property
    def metric(self) -> str:
        chosen = str(self.options.get("metric", "positive"))
        if chosen not in self.METRICS:
            raise UsageError(f"--set metric={chosen}: imagenet-r scores 'positive' (Pic2Word's positive recall, the "
                             "default) or 'hit' (any positive in the top K, MagicLens's code)")
        return chosen

    @property
    def result_name(self) -> str:
        return self.label + ("-hit" if self.metric == "hit" else "")

    def __init__(self, root, options=None, cache_dir=None):
        super().__init__(root, options, cache_dir)
        self._lists = None

    def _resolve(self, rel: str, where: str) -> Path:
        return self.inside(rel.removeprefix("imgnet/"), where)

    def lists(self) -> tuple[list[tuple[str, int]], list[tuple[str, int]], dict]:
        if self._lists is None:
            q = Path(self.options.get("query_list", self.root / QUERY_LIST))
            t = Path(self.options.get("target_list", self.root / TARGET_LIST))
            if q.is_file() and t.is_file():
                self._lists = (read_list(q, range(1000)), read_list(t),
                               {"lists": "official", "query_list": str(q), "target_list": str(t)})
            elif "query_list" in self.options or "target_list" in self.options or q.is_file() or t.is_file():
                missing = q if not q.is_file() else t
                raise DataError(f"list file {missing} is missing (both {QUERY_LIST} and {TARGET_LIST} are needed)")
            else:
                self._lists = self.build_lists(int(self.options.get("seed", 0)))
        return self._lists

    def build_lists(self, seed: int):
        """Equivalent lists from the folders: 50 real images per class shared with ImageNet-R (seeded)."""
        real, rendition = self.root / "real", self.root / "imagenet-r"
        for folder in (real, rendition):
            if not folder.is_dir():
                raise DataError(f"{folder} is missing and there are no list files. Expected: {self.expected_layout}")
        wnids = sorted({p.name for p in real.iterdir() if p.is_dir()} & {p.name for p in rendition.iterdir() if p.is_dir()})
        if not wnids:
            raise DataError(f"no class folder is in both {real} and {rendition}")
        rng = random.Random(seed)
        queries, targets = [], []
        for label, wnid in enumerate(wnids):
            images = sorted(p.name for p in (real / wnid).iterdir() if p.is_file())
            for name in sorted(rng.sample(images, min(50, len(images)))):
                queries.append((f"imgnet/real/{wnid}/{name}", label))
            for path in sorted((rendition / wnid).iterdir()):
                domain = path.name.split("_", 1)[0]
                if domain in DOMAINS:
                    targets.append((f"imgnet/imagenet-r/{wnid}/{path.name}", label + 1000 * DOMAINS.index(domain)))
        targets += [(path, label + REAL_OFFSET) for path, label in queries]
        return queries, targets, {"lists": "built from folders", "seed": seed, "classes": len(wnids)}

    def load(self, split: str) -> Split:
        self.require_root()
        self.require_split(split)
        query_lines, target_lines, info = self.lists()
        d = DOMAINS.index(split)
        images: dict[str, Path] = {}
        by_label: dict[int, list[str]] = {}
        gallery = []
        for rel, label in target_lines:
            if rel not in images:
                images[rel] = self._resolve(rel, TARGET_LIST)
                gallery.append(rel)
            by_label.setdefault(label, []).append(rel)
        queries = []
        for i, (rel, label) in enumerate(query_lines):
            images.setdefault(rel, self._resolve(rel, QUERY_LIST))
            queries.append(Query(qid=str(i), reference=rel, text=split,
                                 targets=tuple(by_label.get(label + 1000 * d, ()))))
        with_positive = sum(1 for q in queries if q.targets)
        return Split(
            dataset=self.name, split=split, root=self.root, images=images, gallery=gallery, queries=queries,
            metrics={self.METRICS[self.metric]: [1, 5, 10, 50, 100, 200]}, main_metrics=["R@10", "R@50"],
            prompts={"pseudo": "a {text} of *", "text": "a {text} of ", "caption": "a {text} of "},
            info={**info, "queries_with_a_positive": with_positive, "metric": self.metric},
        )
