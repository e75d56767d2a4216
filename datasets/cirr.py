"""CIRR (Liu et al., ICCV 2021): composed retrieval on natural images.

Layout (under <data root>/cirr/): captions/cap.rc2.{train,val,test1}.json and
image_splits/split.rc2.{train,val,test1}.json, either directly inside or nested one level in cirr/cirr/
(as the official annotation repository ships them); images at the relative paths the split files give
("./dev/<name>.png"), resolved against cirr/.

Protocol: rank the whole split gallery with the reference REMOVED; Recall@1/5/10/50 (target_hard) and
Recall_subset@1/2/3 within img_set.members (reference removed). ``cirr:test1`` has no ground truth:
it writes the evaluation server's two files, {"version": "rc2", "metric": "recall", pairid: top-50}
and {"version": "rc2", "metric": "recall_subset", pairid: top-3}.
"""

from __future__ import annotations

import json
from pathlib import Path

from cirbench.contracts.split import Query, Split, Triplet
from cirbench.contracts.dataset import Dataset, expect, read_json, register_dataset
from cirbench.errors import DataError



# the official fields; anything else a row carries (released captions, rewrites) reaches the methods
CIRR_KEYS = ("pairid", "reference", "target_hard", "target_soft", "caption", "img_set")


@register_dataset("cirr")
class CIRR(Dataset):
    name = "cirr"
    description = "CIRR: val (R@K reference removed, Recall_subset) and test1 (server files)"
    splits = ("val", "test1")
    default_splits = ("val",)
    expected_layout = ("cirr/captions/cap.rc2.val.json and cirr/image_splits/split.rc2.val.json "
                       "(or nested in cirr/cirr/), images at the split file's paths (./dev/...)")

    def _annotations(self) -> Path:
        for base in (self.root, self.root / "cirr"):
            if (base / "captions").is_dir() and (base / "image_splits").is_dir():
                return base
        raise DataError(f"{self.root}: no captions/ and image_splits/ (directly or in cirr/). "
                        f"Expected: {self.expected_layout}")

    def _split_files(self, split: str) -> tuple[list[dict], dict[str, Path], Path]:
        self.require_root()
        base = self._annotations()
        cap_path = base / "captions" / f"cap.rc2.{split}.json"
        rows = read_json(cap_path, "CIRR caption file")
        expect(isinstance(rows, list), cap_path, "expected a list of queries")
        split_path = base / "image_splits" / f"split.rc2.{split}.json"
        mapping = read_json(split_path, "CIRR image split")
        expect(isinstance(mapping, dict), split_path, "expected an object mapping image name -> relative path")
        images = {}
        for name, rel in mapping.items():
            expect(isinstance(rel, str), split_path, f"path of {name!r} must be a string")
            images[name] = self.inside(rel, str(split_path))
        return rows, images, cap_path

    def load(self, split: str) -> Split:
        self.require_split(split)
        rows, images, cap_path = self._split_files(split)
        gallery = list(images)
        test = split == "test1"
        queries = []
        for i, row in enumerate(rows):
            where = f"{cap_path}[{i}]"
            expect(isinstance(row, dict) and {"pairid", "reference", "caption"} <= set(row), where,
                   "expected fields pairid, reference, caption, img_set")
            expect(row["reference"] in images, where, f"reference {row['reference']!r} is not in the {split} split")
            members = row.get("img_set", {}).get("members", [])
            for m in members:
                expect(m in images, where, f"img_set member {m!r} is not in the {split} split")
            targets = ()
            if not test:
                expect(row.get("target_hard") in images, where,
                       f"target_hard {row.get('target_hard')!r} is not in the {split} split")
                targets = (row["target_hard"],)
            extra = {k: v for k, v in row.items() if k not in CIRR_KEYS}  # e.g. released LLM captions
            queries.append(Query(qid=str(row["pairid"]), reference=row["reference"], text=row["caption"],
                                 targets=targets, subset=tuple(members), fields=extra))
        split_obj = Split(
            dataset=self.name, split=split, root=self.root, images=images, gallery=gallery, queries=queries,
            metrics={"recall": [1, 5, 10, 50], "recall_subset": [1, 2, 3]},
            main_metrics=["R@1", "R@5", "R@10", "R@50", "Rs@1", "Rs@2", "Rs@3"],
            prompts={"pseudo": "a photo of * , {text}", "text": "{text}", "caption": "{text}"},
            remove_reference=True, has_ground_truth=not test, info={"captions_file": str(cap_path)},
        )
        if test:
            split_obj.write_submission = self._submission_writer([q.qid for q in queries])
        return split_obj

    @staticmethod
    def _submission_writer(pairids: list[str]):
        def write(ranked, subset_ranked, folder: Path) -> list[Path]:
            recall = {"version": "rc2", "metric": "recall"}
            recall.update({pid: names[:50] for pid, names in zip(pairids, ranked)})
            subset = {"version": "rc2", "metric": "recall_subset"}
            subset.update({pid: names[:3] for pid, names in zip(pairids, subset_ranked or [[]] * len(pairids))})
            paths = [folder / "cirr_test1_recall.json", folder / "cirr_test1_recall_subset.json"]
            for path, obj in zip(paths, (recall, subset)):
                path.write_text(json.dumps(obj))
            return paths

        return write

    def train_triplets(self) -> list[Triplet]:
        rows, _images, cap_path = self._split_files("train")
        return [Triplet(r["reference"], r["caption"], r["target_hard"]) for r in rows]

    def train_images(self) -> dict[str, Path]:
        return self._split_files("train")[1]
