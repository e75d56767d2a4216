"""COCO object composition: the Pic2Word protocol, exactly as its official code prepares and evaluates it.

Layout (under <data root>/coco/): val2017/<12-digit id>.jpg, annotations/instances_val2017.json and,
from the official ``data/coco/prepare_data.py``, coco_eval.csv and val2017_masked/. When those two
exist they are used as they are. Otherwise ``cirbench data prepare coco [--set seed=N] [--out DIR]``
writes the same two artefacts the same way -- seeded and recorded (the official script is unseeded) --
under the cache (a shared dataset folder may be read-only), and runs read them from there.

Preparation (official): for each image with annotations, in annotation order, its objects (crowd
annotations included) with their class names in first-seen order; candidates are objects whose
bounding-box area in pixels satisfies 0.05 < w*h < 0.5 * image area; one is drawn with
``random.sample``; the image with everything outside that object's mask set to white is saved to
val2017_masked/; a row (id, "x1;y1;x2;y2 ", query class, the other classes ';'-joined) goes to
coco_eval.csv, sorted by id. Images with one class are kept (their other classes are empty).

Evaluation (official CsvCOCO / evaluate_coco): the query image is the int() box cut from the masked
image and squashed to the encoder's square (``Resize((n, n))``, no centre crop); the gallery is the
original image of every row; prompts "a photo of * and {query_class} and {others}" and, for the text
baselines, "a photo of {query_class} and {others}" (others ' and '-joined, "" when none). Metrics:
Recall@1/5/10 (and 50/100), mean rank, and the median rank as floor(median of 0-based ranks) + 1.
"""

from __future__ import annotations

import csv
import hashlib
import io
import random
from collections import defaultdict
from pathlib import Path

from cirbench import __version__, fsutil
from cirbench.contracts.split import Query, Split
from cirbench.contracts.dataset import Dataset, read_json, read_text, register_dataset
from cirbench.errors import DataError, UsageError
from cirbench.protocol.images import ImageRef

CSV_NAME, MASKED = "coco_eval.csv", "val2017_masked"
HEADER = ["id", "query_regions", "query_class", "classes"]


def prepare_rows(annotations: dict, images_dir: Path, masked_dir: Path, rng: random.Random, progress=None):
    """The official preparation: (csv rows, counts). Writes each masked image into ``masked_dir``."""
    import numpy as np
    from PIL import Image

    from pycocotools import mask as mask_utils

    names = {c["id"]: c["name"] for c in annotations["categories"]}
    files = {im["id"]: im for im in annotations["images"]}
    by_image: dict[int, list] = defaultdict(list)
    for ann in annotations["annotations"]:
        x1, y1 = ann["bbox"][0], ann["bbox"][1]
        x2, y2 = ann["bbox"][0] + ann["bbox"][2], ann["bbox"][1] + ann["bbox"][3]
        by_image[ann["image_id"]].append([x1, y1, x2, y2, names[ann["category_id"]], ann])
    rows, without = [], 0
    task = progress.task("prepare coco", total=len(by_image)) if progress else None
    for image_id, anns in by_image.items():
        if task:
            task.advance(1)
        labels = list(dict.fromkeys(a[-2] for a in anns))
        path = images_dir / f"{image_id:012d}.jpg"
        try:
            with Image.open(path) as opened:
                pixels = np.array(opened)
        except (OSError, ValueError) as exc:
            raise DataError(f"{path}: cannot read image ({exc})") from None
        area_image = pixels.shape[0] * pixels.shape[1]
        candidates = [a for a in anns if 0.05 < (float(a[2]) - float(a[0])) * (float(a[3]) - float(a[1])) < 0.5 * area_image]
        if not candidates:
            without += 1
            continue
        region = rng.sample(candidates, k=1)[0]
        info = files[image_id]
        h, w = info["height"], info["width"]
        segmentation = region[-1]["segmentation"]
        if isinstance(segmentation, list):  # polygons
            rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, h, w))
        elif isinstance(segmentation.get("counts"), list):  # uncompressed RLE (crowds)
            rle = mask_utils.frPyObjects(segmentation, h, w)
        else:
            rle = segmentation
        mask = mask_utils.decode(rle)
        image = pixels if pixels.ndim == 3 else pixels.reshape(pixels.shape[0], pixels.shape[1], 1)
        mask = mask.reshape(mask.shape[0], mask.shape[1], 1)
        masked = image * mask + (1 - mask) * 255
        if masked.shape[2] == 1:
            masked = masked[:, :, 0]
        out = Image.fromarray(masked)
        fsutil.atomic_write(masked_dir / info["file_name"], lambda fh: out.save(fh, format="JPEG"), fsync=False)
        labels.remove(region[-2])
        rows.append([f"{image_id:012d}.jpg", ";".join(str(x) for x in region[:4]) + " ", region[-2], ";".join(labels)])
    if task:
        task.done()
    rows.sort(key=lambda r: r[0])
    return rows, {"images_with_annotations": len(by_image), "without_candidate": without}


def read_rows(path: Path) -> list[dict]:
    """Rows of a coco_eval.csv (official or prepared), with the box as the official loader reads it."""
    if not path.is_file():
        raise DataError(f"COCO query file {path} is missing")
    with io.StringIO(read_text(path, "COCO query file"), newline="") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None or not set(HEADER) <= set(reader.fieldnames):
            raise DataError(f"{path}: expected the columns {', '.join(HEADER)}")
        rows = []
        for lineno, row in enumerate(reader, 2):
            try:
                box = [int(float(v)) for v in row["query_regions"].split(";")]
                if len(box) != 4:
                    raise ValueError
            except ValueError:
                raise DataError(f"{path}:{lineno}: query_regions must be 'x1;y1;x2;y2', got {row['query_regions']!r}") from None
            classes = row["classes"].split(";") if row["classes"] else [""]  # the official NaN -> [""]
            rows.append({"id": row["id"], "box": box, "query_class": row["query_class"], "classes": classes})
    return rows


@register_dataset("coco")
class COCOComposition(Dataset):
    name = "coco"
    description = "COCO object composition: masked object crop + other classes -> full image (R@1/5/10)"
    splits = ("val",)
    default_splits = ("val",)
    expected_layout = ("coco/val2017/<id>.jpg, coco/annotations/instances_val2017.json, and coco/coco_eval.csv + "
                       "coco/val2017_masked/ from the official prepare_data.py or `cirbench data prepare coco`")
    settings = ("seed", "prepared")

    def __init__(self, root, options=None, cache_dir=None):
        super().__init__(root, options, cache_dir)
        try:
            self.seed = int(self.options.get("seed", 0))
        except ValueError:
            raise UsageError("coco setting seed must be an integer") from None

    def prepared_dir(self, seed: int | None = None) -> Path:
        """Where `cirbench data prepare coco` writes (under the cache, one folder per dataset and seed)."""
        where = hashlib.sha1(str(self.root.resolve()).encode()).hexdigest()[:10]
        base = self.cache_dir or (Path.home() / ".cache" / "cirbench")
        return base / "prepared" / "coco" / where / f"seed-{self.seed if seed is None else seed}"

    def queries_source(self) -> tuple[Path, str]:
        """(folder holding coco_eval.csv and val2017_masked/, how it was made)."""
        if "prepared" in self.options:
            folder = Path(self.options["prepared"]).expanduser()
            return folder, f"prepared folder {folder}"
        official = self.root / CSV_NAME
        if "seed" not in self.options and official.is_file() and (self.root / MASKED).is_dir():
            return self.root, "the official coco_eval.csv and val2017_masked/"
        folder = self.prepared_dir()
        return folder, f"cirbench data prepare coco, seed {self.seed}"

    def prepare_data(self, progress=None, out: Path | None = None) -> list[str]:
        try:
            import pycocotools  # noqa: F401
        except ImportError:
            raise UsageError('preparing coco needs pycocotools: pip install -e ".[coco]"') from None
        self.require_root()
        ann_path = self.root / "annotations" / "instances_val2017.json"
        annotations = read_json(ann_path, "COCO instances file")
        if not isinstance(annotations, dict) or not {"images", "annotations", "categories"} <= set(annotations):
            raise DataError(f"{ann_path}: expected a COCO instances file (images, annotations, categories)")
        final = Path(out) if out else self.prepared_dir()
        fsutil.ensure_writable(final.parent, "output folder", "pass --out PATH")
        with fsutil.atomic_dir(final.with_name(final.name + ".new")) as tmp:
            rows, counts = prepare_rows(annotations, self.root / "val2017", tmp / MASKED, random.Random(self.seed),
                                        progress)
            text = io.StringIO()
            writer = csv.writer(text, lineterminator="\n")
            writer.writerow(HEADER)
            writer.writerows(rows)
            (tmp / CSV_NAME).write_text(text.getvalue(), encoding="utf-8")
            fsutil.write_json(tmp / "cirbench_prepare.json", {
                "seed": self.seed, "rule": "official prepare_data.py: 0.05 < bbox w*h < 0.5 * image area, crowds "
                "included, one object per image drawn with random.Random(seed).sample", "cirbench": __version__,
                "annotations": str(ann_path), "annotations_sha256": fsutil.sha256_file(ann_path),
                "queries": len(rows), **counts})
        fsutil.replace_dir(final.with_name(final.name + ".new"), final)
        return [f"coco: {len(rows)} queries from {counts['images_with_annotations']} annotated images (seed "
                f"{self.seed}); {counts['without_candidate']} without a candidate object; written to {final} "
                f"({CSV_NAME}, {MASKED}/)"]

    def load(self, split: str) -> Split:
        self.require_root()
        self.require_split(split)
        folder, how = self.queries_source()
        csv_path = folder / CSV_NAME
        if not csv_path.is_file():
            hint = f" --set seed={self.seed}" if "seed" in self.options else ""
            raise DataError(f"no COCO queries: {csv_path} is missing. Run `cirbench data prepare coco --data-root "
                            f"ROOT{hint}` (or put the official coco_eval.csv and val2017_masked/ in {self.root})")
        images, queries, gallery = {}, [], []
        for row in read_rows(csv_path):
            target = f"val2017/{row['id']}"
            x1, y1, x2, y2 = row["box"]
            reference = f"{MASKED}/{row['id']}#{x1},{y1},{x2},{y2}"
            images[target] = self.inside(target, str(csv_path))
            masked = folder / MASKED / row["id"]
            images[reference] = ImageRef(masked, (("crop", x1, y1, x2, y2), ("squash",)))
            gallery.append(target)
            others = " and ".join(row["classes"])
            queries.append(Query(qid=row["id"], reference=reference, text=f"{row['query_class']} and {others}",
                                 targets=(target,), fields={"query_class": row["query_class"], "others": others,
                                                            "classes": row["classes"]}))
        return Split(
            dataset=self.name, split=split, root=self.root, images=images, gallery=gallery, queries=queries,
            metrics={"recall": [1, 5, 10, 50, 100], "rank": []}, main_metrics=["R@1", "R@5", "R@10"],
            prompts={"pseudo": "a photo of * and {text}", "text": "a photo of {text}", "caption": "a photo of {text}"},
            info={"queries": how, "queries_file": str(csv_path)},
        )
