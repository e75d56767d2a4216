"""COCO object composition (the Pic2Word protocol), prepared reproducibly.

Layout (under <data root>/coco/): val2017/<12-digit id>.jpg and annotations/instances_val2017.json.
``cirbench data prepare coco [--set seed=N]`` builds the queries (needs pycocotools: pip install -e
".[coco]"): for each image with a candidate object (0.05 < area < 0.5 of the image, not a crowd), one
candidate is drawn with the recorded seed (the official preparation is unseeded), the pixels outside
its mask are whited out and the image is cropped to its box. The query is that crop plus the names of
the other classes in the image ("a photo of * and {text}"); the target is the full original image;
the gallery is every original image that has a query. Written to coco/cirbench_queries/seed-N/.
Metrics: Recall@1/5/10 and the mean and median rank of the target.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from cirbench.data import Query, Split
from cirbench.dataset import Dataset, expect, read_json, register_dataset
from cirbench.errors import DataError, UsageError

MIN_AREA, MAX_AREA = 0.05, 0.5


@register_dataset("coco")
class COCOComposition(Dataset):
    name = "coco"
    description = "COCO object composition: masked object crop + other classes -> full image (R@1/5/10)"
    splits = ("val",)
    default_splits = ("val",)
    expected_layout = ("coco/val2017/<id>.jpg, coco/annotations/instances_val2017.json, and queries from "
                       "`cirbench data prepare coco`")

    settings = ("seed",)

    def __init__(self, root, options=None):
        super().__init__(root, options)
        try:
            self.seed = int(self.options.get("seed", 0))
        except ValueError:
            raise UsageError("coco setting seed must be an integer") from None

    @property
    def prepared(self) -> Path:
        return self.root / "cirbench_queries" / f"seed-{self.seed}"

    def prepare_data(self, progress=None) -> list[str]:
        try:
            from pycocotools.coco import COCO
        except ImportError:
            raise UsageError('preparing coco needs pycocotools: pip install -e ".[coco]"') from None
        import contextlib
        import io
        import os
        import tempfile

        import numpy as np
        from PIL import Image

        self.require_root()
        ann_path = self.root / "annotations" / "instances_val2017.json"
        read_json(ann_path, "COCO instances file")  # a clear error before pycocotools' own
        with contextlib.redirect_stdout(io.StringIO()):
            coco = COCO(str(ann_path))
        names = {c["id"]: c["name"] for c in coco.loadCats(coco.getCatIds())}
        rng = random.Random(self.seed)
        self.prepared.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=self.prepared.parent, prefix=f".{self.prepared.name}."))
        image_ids = sorted(coco.getImgIds())
        task = progress.task("prepare coco", total=len(image_ids)) if progress else None
        rows, skipped = [], {"no_candidate": 0, "no_other_class": 0}
        for image_id in image_ids:
            if task:
                task.advance(1)
            info = coco.loadImgs(image_id)[0]
            anns = coco.loadAnns(coco.getAnnIds(imgIds=image_id, iscrowd=None))
            size = info["width"] * info["height"]
            candidates = [a for a in anns if not a.get("iscrowd") and MIN_AREA < a["area"] / size < MAX_AREA]
            if not candidates:
                skipped["no_candidate"] += 1
                continue
            chosen = candidates[rng.randrange(len(candidates))]
            others = sorted({names[a["category_id"]] for a in anns} - {names[chosen["category_id"]]})
            if not others:
                skipped["no_other_class"] += 1
                continue
            source = self.inside(f"val2017/{info['file_name']}", str(ann_path))
            try:
                with Image.open(source) as image:
                    pixels = np.asarray(image.convert("RGB")).copy()
            except (OSError, ValueError) as exc:
                raise DataError(f"{source}: cannot read image ({exc})") from None
            mask = coco.annToMask(chosen).astype(bool)
            pixels[~mask] = 255
            x, y, w, h = (int(round(v)) for v in chosen["bbox"])
            crop = pixels[y:y + max(1, h), x:x + max(1, w)]
            query_file = f"{image_id:012d}.png"
            Image.fromarray(crop).save(tmp / query_file)
            rows.append({"image_id": image_id, "target": f"val2017/{info['file_name']}",
                         "query_image": f"cirbench_queries/seed-{self.seed}/{query_file}",
                         "query_class": names[chosen["category_id"]], "other_classes": others,
                         "annotation_id": chosen["id"]})
        meta = {"seed": self.seed, "rule": f"{MIN_AREA} < area / image area < {MAX_AREA}, iscrowd = 0",
                "images": len(image_ids), "queries": len(rows), "skipped": skipped, "queries_list": rows}
        (tmp / "queries.json").write_text(json.dumps(meta, indent=1))
        if self.prepared.exists():
            import shutil

            shutil.rmtree(self.prepared)
        os.replace(tmp, self.prepared)
        return [f"coco: {len(rows)} queries from {len(image_ids)} images (seed {self.seed}); skipped "
                f"{skipped['no_candidate']} without a candidate object and {skipped['no_other_class']} "
                f"without another class; written to {self.prepared}"]

    def load(self, split: str) -> Split:
        self.require_root()
        self.require_split(split)
        path = self.prepared / "queries.json"
        if not path.is_file():
            raise DataError(f"no prepared coco queries at {path}: run `cirbench data prepare coco "
                            f"--data-root ROOT{' --set seed=' + str(self.seed) if self.seed else ''}` first")
        meta = read_json(path, "prepared coco queries")
        expect(isinstance(meta, dict) and isinstance(meta.get("queries_list"), list), path, "expected queries_list")
        images, queries, gallery = {}, [], []
        for i, row in enumerate(meta["queries_list"]):
            where = f"{path} queries_list[{i}]"
            target, query_image = row["target"], row["query_image"]
            images[target] = self.inside(target, where)
            images[query_image] = self.inside(query_image, where)
            gallery.append(target)
            queries.append(Query(qid=str(row["image_id"]), reference=query_image,
                                 text=" and ".join(row["other_classes"]), targets=(target,)))
        return Split(
            dataset=self.name, split=split, root=self.root, images=images, gallery=gallery, queries=queries,
            metrics={"recall": [1, 5, 10], "rank": []}, main_metrics=["R@1", "R@5", "R@10"],
            prompts={"pseudo": "a photo of * and {text}", "text": "a photo of {text}"},
            info={"seed": meta.get("seed"), "prepared": str(path), "skipped_in_preparation": meta.get("skipped")},
        )
