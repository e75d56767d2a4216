"""CIRCO (Baldrati et al., ICCV 2023): composed retrieval with several ground truths on COCO.

Layout (under <data root>/circo/, as SEARLE documents it): annotations/{val,test}.json (a list of
{id, reference_img_id, target_img_id, relative_caption, shared_concept, gt_img_ids});
COCO2017_unlabeled/annotations/image_info_unlabeled2017.json (the gallery, about 120k images);
COCO2017_unlabeled/unlabeled2017/<12-digit id>.jpg.

Protocol: mAP@5/10/25/50 over all ground truths, the reference NOT removed (also Recall@K of
target_img_id). ``circo:test`` has no ground truth: it writes the server file {query id: top-50 ids}.
"""

from __future__ import annotations

import json
from pathlib import Path

from cirbench.contracts.split import Query, Split
from cirbench.contracts.dataset import Dataset, expect, read_json, register_dataset


# the official fields; anything else a row carries (shared_concept, released captions and rewrites such
# as blip2_caption, gpt-3.5-turbo, multi_caption_opt, multi_gpt-3.5_opt) reaches the methods
CIRCO_KEYS = ("id", "reference_img_id", "target_img_id", "relative_caption", "gt_img_ids")


@register_dataset("circo")
class CIRCO(Dataset):
    name = "circo"
    description = "CIRCO: val (mAP@K, several ground truths) and test (server file)"
    splits = ("val", "test")
    default_splits = ("val",)
    expected_layout = ("circo/annotations/val.json, circo/COCO2017_unlabeled/annotations/"
                       "image_info_unlabeled2017.json, circo/COCO2017_unlabeled/unlabeled2017/<id>.jpg")

    def gallery_ids(self) -> list[str]:
        path = self.root / "COCO2017_unlabeled" / "annotations" / "image_info_unlabeled2017.json"
        info = read_json(path, "COCO unlabeled image list")
        expect(isinstance(info, dict) and isinstance(info.get("images"), list), path, "expected {'images': [...]}")
        ids = []
        for i, image in enumerate(info["images"]):
            expect(isinstance(image, dict) and isinstance(image.get("id"), int), f"{path} images[{i}]",
                   "expected an object with an integer 'id'")
            ids.append(str(image["id"]))
        return ids

    def image_path(self, image_id: str) -> Path:
        return self.root / "COCO2017_unlabeled" / "unlabeled2017" / f"{int(image_id):012d}.jpg"

    def load(self, split: str) -> Split:
        self.require_root()
        self.require_split(split)
        gallery = self.gallery_ids()
        in_gallery = set(gallery)
        path = self.root / "annotations" / f"{split}.json"
        rows = read_json(path, "CIRCO annotation file")
        expect(isinstance(rows, list), path, "expected a list of queries")
        test = split == "test"
        queries = []
        for i, row in enumerate(rows):
            where = f"{path}[{i}]"
            expect(isinstance(row, dict) and {"id", "reference_img_id", "relative_caption"} <= set(row), where,
                   "expected fields id, reference_img_id, relative_caption")
            ref = str(row["reference_img_id"])
            expect(ref in in_gallery, where, f"reference image {ref} is not in the unlabeled gallery")
            targets: tuple[str, ...] = ()
            if not test:
                gt = [str(g) for g in row.get("gt_img_ids", [])]
                expect(bool(gt), where, "val queries need gt_img_ids")
                expect(str(row.get("target_img_id")) == gt[0], where, "target_img_id must be gt_img_ids[0]")
                missing = [g for g in gt if g not in in_gallery]
                expect(not missing, where, f"ground truth {missing[:3]} not in the unlabeled gallery")
                targets = tuple(gt)  # as listed: the official mAP counts a duplicated id twice in |GT|
            extra = {k: v for k, v in row.items() if k not in CIRCO_KEYS}  # e.g. released LLM captions
            queries.append(Query(qid=str(row["id"]), reference=ref, text=row["relative_caption"], targets=targets,
                                 fields=extra))
        images = {g: self.image_path(g) for g in gallery}
        split_obj = Split(
            dataset=self.name, split=split, root=self.root, images=images, gallery=gallery, queries=queries,
            metrics={"map": [5, 10, 25, 50], "primary_recall": [5, 10, 25, 50]},
            main_metrics=["mAP@5", "mAP@10", "mAP@25", "mAP@50"],
            prompts={"pseudo": "a photo of * , {text}", "text": "{text}", "caption": "{text}"},
            has_ground_truth=not test, info={"annotations": str(path)},
        )
        if test:
            qids = [q.qid for q in queries]

            def write(ranked, _subset, folder: Path) -> list[Path]:
                out = folder / "circo_test_submission.json"
                out.write_text(json.dumps({qid: [int(x) for x in names[:50]] for qid, names in zip(qids, ranked)}))
                return [out]

            split_obj.write_submission = write
        return split_obj
