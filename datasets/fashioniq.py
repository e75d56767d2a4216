"""FashionIQ (Wu et al., CVPR 2021): attribute editing of dresses, shirts and tops; the val split is
the standard test.

Layout (under <data root>/fashioniq/): captions/cap.{dress,shirt,toptee}.{train,val,test}.json (a list
of {candidate, target, captions: [c1, c2]}), image_splits/split.{category}.{split}.json (a list of image
names), images/<name>.<png|jpg|jpeg>.

Protocol: the gallery of a category is its val image split; the reference is NOT removed; one target
per query; Recall@10/50 (and @1/5) per category and their average.

Each method gets its own paper's text (the captions are fields of the query: ``captions``, ``c1``,
``c2``). Pic2Word and the three baselines as the official ``evaluate_fashion``: captions unstripped,
the SECOND caption first, "a photo of * , {c2} and {c1}" -- and the text-only and image+text
baselines encode that same prompt, literal ``*`` included (what produced the paper's baseline rows).
SEARLE / LinCIR and the Combiner apply their own caption rules (see those methods). ``--set
caption_order=natural`` (or ``official``) forces one order on every method, recorded in the results.
The captions may sit in ``captions/`` (SEARLE's layout) or ``json/`` (Pic2Word's).
"""

from __future__ import annotations

from pathlib import Path

from cirbench.contracts.split import Query, Split, Triplet
from cirbench.contracts.dataset import Dataset, expect, read_json, register_dataset
from cirbench.errors import DataError, UsageError

CATEGORIES = ("dress", "shirt", "toptee")
SUFFIXES = (".png", ".jpg", ".jpeg")


@register_dataset("fashioniq")
class FashionIQ(Dataset):
    name = "fashioniq"
    description = "FashionIQ val: dress, shirt, toptee (R@1/5/10/50, R@10 and R@50 in the tables; reference kept)"
    splits = CATEGORIES
    default_splits = CATEGORIES
    expected_layout = ("fashioniq/captions/cap.{dress,shirt,toptee}.val.json, "
                       "fashioniq/image_splits/split.{dress,shirt,toptee}.val.json, fashioniq/images/<name>.png|jpg")

    settings = ("caption_order",)

    def __init__(self, root, options=None, cache_dir=None):
        super().__init__(root, options, cache_dir)
        self.order = self.options.get("caption_order")  # None: each method's own paper's order
        if self.order not in (None, "official", "natural"):
            raise UsageError("fashioniq caption_order must be 'official' (c2 and c1) or 'natural' (c1 and c2)")
        self._images: dict[str, Path] | None = None

    def image_files(self) -> dict[str, Path]:
        """Image name -> file, from one listing of images/ (the extension may be png or jpg)."""
        if self._images is None:
            folder = self.root / "images"
            if not folder.is_dir():
                raise DataError(f"{folder} is missing (expected {self.expected_layout})")
            self._images = {}
            for entry in folder.iterdir():
                stem, suffix = entry.name.rsplit(".", 1) if "." in entry.name else (entry.name, "")
                if f".{suffix.lower()}" in SUFFIXES:
                    self._images.setdefault(stem, entry)
        return self._images

    def _resolve(self, name, where) -> Path:
        expect(isinstance(name, str) and name and "/" not in name and "\\" not in name and ".." not in name, where,
               f"image name {name!r} is not a plain file name")
        files = self.image_files()
        if name not in files:
            raise DataError(f"{where}: image {name!r} not found as images/{name}.png|.jpg|.jpeg")
        return files[name]

    def _text(self, captions, where) -> str:
        expect(isinstance(captions, list) and len(captions) == 2 and all(isinstance(c, str) for c in captions), where,
               "'captions' must be a list of two strings")
        c1, c2 = captions
        return f"{c1} and {c2}" if self.order == "natural" else f"{c2} and {c1}"

    def caption_file(self, category: str, split: str) -> Path:
        name = f"cap.{category}.{split}.json"
        for folder in ("captions", "json"):
            if (self.root / folder / name).is_file():
                return self.root / folder / name
        return self.root / "captions" / name

    def _captions(self, category: str, split: str) -> tuple[Path, list[dict]]:
        """The caption file found (captions/ or json/) and its validated rows."""
        path = self.caption_file(category, split)
        rows = read_json(path, "FashionIQ caption file")
        expect(isinstance(rows, list), path, "expected a list of {candidate, target, captions}")
        for i, row in enumerate(rows):
            expect(isinstance(row, dict) and {"candidate", "target", "captions"} <= set(row), f"{path}[{i}]",
                   "expected fields candidate, target, captions")
        return path, rows

    def load(self, split: str) -> Split:
        self.require_root()
        self.require_split(split)
        names_path = self.root / "image_splits" / f"split.{split}.val.json"
        names = read_json(names_path, "FashionIQ image split")
        expect(isinstance(names, list) and all(isinstance(n, str) for n in names), names_path,
               "expected a list of image names")
        images = {n: self._resolve(n, names_path) for n in names}
        gallery = list(dict.fromkeys(names))
        if len(gallery) < len(names):  # a name listed twice would take two ranks: kept once, said
            import warnings
            from collections import Counter

            twice = [n for n, k in Counter(names).items() if k > 1]
            warnings.warn(f"{names_path}: {len(names) - len(gallery)} repeated image name(s) (first: {twice[0]!r}); "
                          "each image is ranked once", stacklevel=2)
        in_gallery = set(gallery)
        cap_path, rows = self._captions(split, "val")
        queries = []
        for i, row in enumerate(rows):
            where = f"{cap_path}[{i}]"
            ref, target = row["candidate"], row["target"]
            images.setdefault(ref, self._resolve(ref, where))
            expect(target in in_gallery, where, f"target {target!r} is not in the {split} val image split")
            text = self._text(row["captions"], where)  # refuses anything but a list of two strings
            c1, c2 = row["captions"]
            extra = {k: v for k, v in row.items() if k not in ("candidate", "target", "captions")}
            queries.append(Query(qid=str(i), reference=ref, text=text,
                                 targets=(target,), fields={**extra, "captions": [c1, c2], "c1": c1, "c2": c2}))
        return Split(
            dataset=self.name, split=split, root=self.root, images=images, gallery=gallery, queries=queries,
            metrics={"recall": [1, 5, 10, 50]}, main_metrics=["R@10", "R@50"],
            # the baselines' text is the full Pic2Word prompt with its literal * (the official code's)
            prompts={"pseudo": "a photo of * , {text}", "text": "a photo of * , {text}",
                     "caption": "{c1} and {c2}" if self.order != "official" else "{c2} and {c1}"},
            caption_order=self.order,
            info={"captions_file": str(cap_path),
                  "caption_rule": "unstripped captions; '{c2} and {c1}' for the pseudo-word and text prompts"
                                  if self.order is None else f"caption order forced: {self.order}"},
        )

    def train_triplets(self) -> list[Triplet]:
        out = []
        for category in CATEGORIES:
            path, rows = self._captions(category, "train")
            for i, row in enumerate(rows):
                out.append(Triplet(row["candidate"], self._text(row["captions"], f"{path}[{i}]"), row["target"],
                                   captions=tuple(row["captions"])))
        return out

    def train_images(self) -> dict[str, Path]:
        return {name: self._resolve(name, "FashionIQ training triplets")
                for t in self.train_triplets() for name in (t.reference, t.target)}
