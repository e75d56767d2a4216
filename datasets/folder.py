"""A dataset of the user's own: a folder with query files and a gallery.

    mydata/
      gallery/                 the gallery: every image below it (or gallery.txt: one path per line)
      val.jsonl                one eval split per <split>.jsonl, one query per line:
                               {"reference": "gallery/a.jpg", "text": "make it red",
                                "target": "gallery/b.jpg"}      (or "targets": [...], optional "subset": [...], "id")
      train.jsonl              optional training triplets for the Combiner (same fields, one target)
      cirbench.json            optional: {"prompts": {"pseudo": "a photo of * , {text}", "text": "{text}"},
                                          "remove_reference": false, "metrics": {"recall": [1, 5, 10, 50]}}

Image paths are relative to the folder and must stay inside it. Run it with
``cirbench run --dataset path/to/mydata`` (or ``--dataset folder --data folder=path/to/mydata``).
"""

from __future__ import annotations

from pathlib import Path

from cirbench.contracts.split import DEFAULT_PROMPTS, Query, Split, Triplet
from cirbench.contracts.dataset import Dataset, parse_json, read_text, register_dataset, string_list
from cirbench.errors import DataError, short
from cirbench.util.fsutil import slug
from cirbench.protocol.images import IMAGE_SUFFIXES, list_images

QUERY_KEYS = ("id", "reference", "text", "target", "targets", "subset")


def read_jsonl(path: Path) -> list[tuple[int, dict]]:
    rows = []
    for lineno, line in enumerate(read_text(path, "query file").splitlines(), 1):
        if not line.strip():
            continue
        row = parse_json(line, f"{path}:{lineno}")
        if not isinstance(row, dict):
            raise DataError(f"{path}:{lineno}: expected a JSON object, found {type(row).__name__}")
        rows.append((lineno, row))
    return rows


@register_dataset("folder")
class FolderDataset(Dataset):
    description = "your own data: <split>.jsonl queries + gallery/ folder (see docs/datasets.md)"
    expected_layout = "a folder with gallery/ (or gallery.txt) and one or more <split>.jsonl query files"

    @property
    def label(self) -> str:
        return self.root.resolve().name or str(self.root)

    @property
    def result_name(self) -> str:
        """The folder's name plus a hash of where it lives: two folders of one name never share results."""
        import hashlib

        where = hashlib.sha1(str(self.root.resolve()).encode("utf-8")).hexdigest()[:8]
        return f"{slug(self.label)}-{where}"

    def require_root(self) -> None:
        if not self.root.is_dir():
            raise DataError(f"dataset folder {self.root} does not exist (expected {self.expected_layout})")

    def _settings(self) -> dict:
        path = self.root / "cirbench.json"
        if not path.is_file():
            return {}
        settings = parse_json(read_text(path, "dataset settings"), path)
        if not isinstance(settings, dict):
            raise DataError(f"{path}: expected a JSON object")
        return settings

    def available_splits(self) -> tuple[str, ...]:
        self.require_root()
        splits = tuple(sorted(p.stem for p in self.root.glob("*.jsonl") if p.stem != "train"))
        if not splits:
            raise DataError(f"{self.root}: no query file (<split>.jsonl) found. Expected: {self.expected_layout}")
        return splits

    @property
    def default_splits(self) -> tuple[str, ...]:  # type: ignore[override]
        return self.available_splits()

    def _gallery(self) -> list[tuple[str, str]]:
        """(name, where it was read) per gallery image, in order."""
        listing = self.root / "gallery.txt"
        if listing.is_file():
            # in the listing's order; load() resolves each name inside the folder, naming gallery.txt
            lines = read_text(listing, "gallery list").splitlines()
            return [(ln.strip(), f"{listing}:{i}") for i, ln in enumerate(lines, 1) if ln.strip()]
        folder = self.root / "gallery"
        if not folder.is_dir():
            raise DataError(f"{self.root}: no gallery: expected a gallery/ folder of images or a gallery.txt list")
        names = sorted(p.relative_to(self.root).as_posix() for p in list_images(folder))
        if not names:
            raise DataError(f"{folder}: the gallery folder holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        return [(name, str(folder)) for name in names]

    def _image(self, images: dict, name, where: str) -> str:
        if not isinstance(name, str) or not name:
            raise DataError(f"{where}: image paths must be non-empty strings, found {short(name)}")
        if name not in images:
            images[name] = self.inside(name, where)
        return name

    def load(self, split: str) -> Split:
        self.require_split(split)
        settings = self._settings()
        path = self.root / f"{split}.jsonl"
        images: dict[str, Path] = {}
        gallery, listed = [], {}
        for name, where in self._gallery():
            file = images[self._image(images, name, where)]
            if file in listed:  # each copy would take a rank of its own
                raise DataError(f"{where}: {name!r} is the image of {listed[file]} again ({file}); each copy "
                                "would take a rank of its own, so list each gallery image once")
            listed[file] = f"{where} ({name!r})"
            gallery.append(name)
        in_gallery = set(gallery)
        queries = []
        seen: dict[str, int] = {}
        without_target = None
        for lineno, row in read_jsonl(path):
            where = f"{path}:{lineno}"
            for field in ("reference", "text"):
                if field not in row:
                    raise DataError(f"{where}: missing field {field!r}")
            if not isinstance(row["text"], str):
                raise DataError(f"{where}: 'text' must be a string, found {short(row['text'])}")
            if "targets" in row:
                targets = string_list(row["targets"], where, "'targets'")
            elif "target" in row:
                targets = string_list([row["target"]], where, "'target'")
            else:
                targets = []
            for t in targets:
                self._image(images, t, where)
                if t not in in_gallery:
                    raise DataError(f"{where}: target {t!r} is not in the gallery")
            subset = row.get("subset")
            if subset is not None:
                subset = string_list(subset, where, "'subset'")
                for s_ in subset:
                    if self._image(images, s_, where) not in in_gallery:
                        raise DataError(f"{where}: subset image {s_!r} is not in the gallery")
            qid = row.get("id", lineno)
            if not isinstance(qid, (str, int)) or isinstance(qid, bool):
                raise DataError(f"{where}: 'id' must be a string or an integer, found {short(qid)}")
            if str(qid) in seen:
                raise DataError(f"{where}: query id {str(qid)!r} is already used on line {seen[str(qid)]}")
            seen[str(qid)] = lineno
            if not targets and without_target is None:
                without_target = where
            fields = {k: v for k, v in row.items() if k not in QUERY_KEYS}
            queries.append(Query(qid=str(qid), reference=self._image(images, row["reference"], where),
                                 text=row["text"], targets=tuple(targets),
                                 subset=tuple(subset) if subset is not None else None, fields=fields))
        if not queries:
            raise DataError(f"{path}: holds no queries")
        with_target = [q for q in queries if q.targets]
        if with_target and without_target is not None:  # a split is evaluated (all) or a test split (none)
            raise DataError(f"{without_target}: this query has no target (\"target\" or a non-empty \"targets\"), "
                            f"while {len(with_target)} other queries of the file have one; give every query its "
                            "ground truth, or none (a test split)")
        metrics = settings.get("metrics")
        if metrics is None:
            metrics = {"recall": [1, 5, 10, 50]}
            if any(q.subset for q in queries):
                metrics["recall_subset"] = [1, 2, 3]
            if any(len(q.targets) > 1 for q in queries):
                metrics["map"] = [5, 10, 25, 50]
        return Split(
            dataset=self.label, split=split, root=self.root, images=images, gallery=gallery, queries=queries,
            metrics=metrics, main_metrics=settings.get("main_metrics", ["R@1", "R@10", "R@50"]),
            prompts={**DEFAULT_PROMPTS, **settings.get("prompts", {})},
            remove_reference=bool(settings.get("remove_reference", False)),
            has_ground_truth=bool(with_target),
            info={"queries_file": str(path)},
        )

    def _train_rows(self) -> list[tuple[str, Triplet]]:
        """Each training triplet of train.jsonl with the place it was read from (file:line)."""
        path = self.root / "train.jsonl"
        if not path.is_file():
            raise DataError(f"{self.root}: no train.jsonl with training triplets (reference, text, target)")
        rows = []
        for lineno, row in read_jsonl(path):
            where = f"{path}:{lineno}"
            missing = [f for f in ("reference", "text", "target") if f not in row]
            if missing:
                raise DataError(f"{where}: missing field(s) {', '.join(missing)}")
            rows.append((where, Triplet(row["reference"], row["text"], row["target"])))
        return rows

    def train_triplets(self) -> list[Triplet]:
        return [t for _, t in self._train_rows()]

    def train_images(self) -> dict[str, Path]:
        out: dict[str, Path] = {}
        for where, t in self._train_rows():  # a bad image is named with its own line (blank lines counted)
            self._image(out, t.reference, where)
            self._image(out, t.target, where)
        return out
