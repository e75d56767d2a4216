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

``--set protocol=freedom``: FREEDOM's protocol (NikosEfth/freedom set_dataset.py make_csv, run_retrieval.py,
utils_retrieval.py, dataset "imagenet_r"), results in imagenet-r-freedom. The images of imgnet_targets.txt
(the same file as Pic2Word's) are both the queries and the database; a line's domain is read off its label
(below 1000 cartoon, 2000 origami, 3000 toy, 4000 sculpture, else real, renamed "photo"), its class is the
name label_names.csv (FREEDOM's data/imagenet_r/, ``wnid,name`` lines; ``--set label_names=PATH``) gives
its folder's wnid -- the wnid itself where that file is absent, which is the same grouping for the 200
ImageNet-R classes (their names are distinct). Splits are every ordered pair of the five domains
(``photo-cartoon``, ``cartoon-photo``, ...), the query in its own database (kept), the text the target
domain's name, and the metrics FREEDOM's: mAP (trapezoid), R@10/50 and P@10/50 over the positives.
"""

from __future__ import annotations

import random
from pathlib import Path

import csv

from cirbench.contracts.split import Query, Split
from cirbench.contracts.dataset import Dataset, read_text, register_dataset
from cirbench.errors import DataError, UsageError, short

from ._domains import PROTOCOL as FREEDOM_PROTOCOL, pairs

DOMAINS = ("cartoon", "origami", "toy", "sculpture")
REAL_OFFSET = 6000
QUERY_LIST, TARGET_LIST = "imgnet_real_query.txt", "imgnet_targets.txt"
LABEL_NAMES = "label_names.csv"
# FREEDOM's domains, in its code's order (real renamed "photo"), and the label bounds that assign them
FREEDOM_DOMAINS = {"real": "photo", "cartoon": "cartoon", "origami": "origami", "toy": "toy",
                   "sculpture": "sculpture"}
FREEDOM_AT = (10, 50)


def freedom_domain(label: int) -> str:
    """set_dataset.py make_csv: below 1000 cartoon, 2000 origami, 3000 toy, 4000 sculpture, else real."""
    for bound, name in ((1000, "cartoon"), (2000, "origami"), (3000, "toy"), (4000, "sculpture")):
        if label < bound:
            return FREEDOM_DOMAINS[name]
    return FREEDOM_DOMAINS["real"]


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
    description = ("ImageNet -> ImageNet-R domain conversion: cartoon, origami, toy, sculpture (R@10/R@50); "
                   "--set protocol=freedom: FREEDOM's 20 ordered pairs of five domains (mAP, R@10/50, P@10/50)")
    splits = DOMAINS
    default_splits = DOMAINS
    expected_layout = ("imagenet-r/real/<wnid>/*.JPEG, imagenet-r/imagenet-r/<wnid>/<domain>_<n>.jpg and the "
                       "list files imgnet_real_query.txt, imgnet_targets.txt")
    settings = ("query_list", "target_list", "seed", "metric", "protocol", "label_names")
    METRICS = {"positive": "positive_recall", "hit": "recall"}
    PROTOCOLS = ("pic2word", "freedom")

    @property
    def metric(self) -> str:
        chosen = str(self.options.get("metric", "positive"))
        if chosen not in self.METRICS:
            raise UsageError(f"--set metric={chosen}: imagenet-r scores 'positive' (Pic2Word's positive recall, the "
                             "default) or 'hit' (any positive in the top K, MagicLens's code)")
        return chosen

    @property
    def result_name(self) -> str:
        if self.protocol == "freedom":
            return self.label + "-freedom"
        return self.label + ("-hit" if self.metric == "hit" else "")

    def __init__(self, root, options=None, cache_dir=None):
        super().__init__(root, options, cache_dir)
        self._lists = None
        self.protocol = str(self.options.get("protocol", "pic2word"))
        if self.protocol not in self.PROTOCOLS:
            raise UsageError(f"--set protocol={self.protocol}: imagenet-r runs 'pic2word' (the default: real queries, "
                             "four target domains) or 'freedom' (every ordered pair of five domains)")
        if self.protocol == "freedom":
            if "metric" in self.options or "query_list" in self.options or "seed" in self.options:
                raise UsageError("--set protocol=freedom reads imgnet_targets.txt alone with FREEDOM's metrics: "
                                 "metric, query_list and seed do not apply")
            self.splits = self.default_splits = pairs(FREEDOM_DOMAINS)

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

    def class_names(self) -> tuple[dict[str, str] | None, dict]:
        """wnid -> class name from label_names.csv, or None (classes are then the wnids)."""
        path = Path(self.options.get("label_names", self.root / LABEL_NAMES))
        if not path.is_file():
            if "label_names" in self.options:
                raise DataError(f"class-name file {path} is missing (--set label_names=PATH)")
            return None, {"classes": "wnid (label_names.csv absent; the same grouping for ImageNet-R's 200 classes)"}
        names = {}
        for lineno, row in enumerate(csv.reader(read_text(path, "class-name file").splitlines()), 1):
            if not row:
                continue
            if len(row) != 2:
                raise DataError(f"{path}:{lineno}: expected 'wnid,name', got {short(','.join(row))}")
            names[row[0]] = row[1]
        return names, {"classes": "label_names.csv", "label_names": str(path)}

    def load_freedom(self, split: str) -> Split:
        source, _, target = split.partition("-")
        t = Path(self.options.get("target_list", self.root / TARGET_LIST))
        lines = read_list(t)
        names, info = self.class_names()
        images: dict[str, Path] = {}
        rows = []
        for rel, label in lines:
            if rel in images:
                raise DataError(f"{t}: {rel} is listed twice (each line is a query and a database image)")
            images[rel] = self._resolve(rel, TARGET_LIST)
            wnid = rel.split("/")[-2] if rel.count("/") >= 1 else ""
            if names is not None and wnid not in names:
                raise DataError(f"{info['label_names']}: has no name for {wnid!r} (the folder of {rel} in {t})")
            rows.append((rel, freedom_domain(label), names[wnid] if names is not None else wnid))
        positives: dict[str, list[str]] = {}
        for rel, domain, cls in rows:
            if domain == target:
                positives.setdefault(cls, []).append(rel)
        queries = [Query(qid=str(i), reference=rel, text=target, targets=tuple(positives.get(cls, ())),
                         fields={"class": cls, "source": source, "domain": target})
                   for i, (rel, domain, cls) in enumerate(rows) if domain == source]
        if not queries:
            raise DataError(f"{t}: no image of the domain {source!r}")
        ks = list(FREEDOM_AT)
        return Split(
            dataset=self.name, split=split, root=self.root, images=images, gallery=[r for r, _d, _c in rows],
            queries=queries, metrics={"ap": [], "recall_over_positives": ks, "precision_over_positives": ks},
            main_metrics=["mAP", *(f"R@{k}" for k in ks)],
            prompts={"pseudo": "a {text} of *", "text": "{text}", "caption": "{text}"}, remove_reference=False,
            info={"protocol": FREEDOM_PROTOCOL, "target_list": str(t), **info,
                  "domains": dict(FREEDOM_DOMAINS)},
        )

    def load(self, split: str) -> Split:
        self.require_root()
        self.require_split(split)
        if self.protocol == "freedom":
            return self.load_freedom(split)
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
