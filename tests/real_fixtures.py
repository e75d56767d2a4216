"""Small fixtures in the exact official on-disk layouts (file names, JSON fields, folders, formats).

Images are flat colours so that, with the colour test encoder, image-only rankings can be worked out
by hand."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from PIL import Image

RGB255 = {"red": (255, 13, 13), "green": (13, 255, 13), "blue": (13, 13, 255), "yellow": (255, 255, 13),
          "white": (255, 255, 255), "gray": (128, 128, 128)}


def flat(path: Path, colour: str, fmt: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), RGB255[colour]).save(path, format=fmt)
    return path


def dump(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def fashioniq(root: Path) -> Path:
    """Gallery per category: 4 images; dress uses png, shirt jpg, toptee a mix."""
    colours = ["red", "green", "blue", "yellow"]
    for cat, ext in (("dress", "png"), ("shirt", "jpg"), ("toptee", "png")):
        names = [f"{cat}{i}" for i in range(4)]
        for i, (name, colour) in enumerate(zip(names, colours)):
            e = "jpg" if cat == "toptee" and i % 2 else ext
            flat(root / "images" / f"{name}.{e}", colour, "JPEG" if e == "jpg" else "PNG")
        dump(root / "image_splits" / f"split.{cat}.val.json", names)
        dump(root / "captions" / f"cap.{cat}.val.json", [
            {"candidate": names[0], "target": names[1], "captions": ["is green", "has short sleeves"]},
            {"candidate": names[2], "target": names[2 if cat == "dress" else 3], "captions": ["is yellow", "is shiny"]},
        ])
        train = [f"{cat}_t{i}" for i in range(4)]
        for name, colour in zip(train, colours):
            flat(root / "images" / f"{name}.png", colour)
        dump(root / "image_splits" / f"split.{cat}.train.json", train)
        dump(root / "captions" / f"cap.{cat}.train.json", [
            {"candidate": train[i], "target": train[(i + 1) % 4], "captions": ["is different", "changes colour"]}
            for i in range(4)])
    return root


def cirr(root: Path, nested: bool = True) -> Path:
    base = root / "cirr" if nested else root
    colours = {"dev-0-0-img0": "red", "dev-0-0-img1": "red", "dev-0-1-img0": "green", "dev-0-1-img1": "blue",
               "dev-1-0-img0": "yellow", "dev-1-0-img1": "white"}
    for name, colour in colours.items():
        flat(root / "dev" / f"{name}.png", colour)
    dump(base / "image_splits" / "split.rc2.val.json", {n: f"./dev/{n}.png" for n in colours})
    dump(base / "captions" / "cap.rc2.val.json", [
        {"pairid": 11, "reference": "dev-0-0-img0", "target_hard": "dev-0-0-img1", "caption": "the same but brighter",
         "target_soft": {"dev-0-0-img1": 1.0},
         "img_set": {"id": 1, "members": ["dev-0-0-img0", "dev-0-0-img1", "dev-0-1-img0", "dev-1-0-img1"]}},
        {"pairid": 12, "reference": "dev-0-1-img0", "target_hard": "dev-1-0-img1", "caption": "make it white",
         "target_soft": {}, "img_set": {"id": 2, "members": ["dev-0-1-img0", "dev-0-1-img1", "dev-1-0-img0",
                                                              "dev-1-0-img1"]}},
    ])
    test = {"test1-0-0-img0": "blue", "test1-0-0-img1": "green", "test1-0-1-img0": "yellow"}
    for name, colour in test.items():
        flat(root / "test1" / f"{name}.png", colour)
    dump(base / "image_splits" / "split.rc2.test1.json", {n: f"./test1/{n}.png" for n in test})
    dump(base / "captions" / "cap.rc2.test1.json", [
        {"pairid": 7, "reference": "test1-0-0-img0", "caption": "greener",
         "img_set": {"id": 9, "members": ["test1-0-0-img0", "test1-0-0-img1", "test1-0-1-img0"]}}])
    train = {"train-0-img0": "red", "train-0-img1": "green", "train-1-img0": "blue", "train-1-img1": "yellow"}
    for name, colour in train.items():
        flat(root / "train" / "0" / f"{name}.png", colour)
    dump(base / "image_splits" / "split.rc2.train.json", {n: f"./train/0/{n}.png" for n in train})
    dump(base / "captions" / "cap.rc2.train.json", [
        {"pairid": i, "reference": a, "target_hard": b, "caption": "change it", "img_set": {"members": []}}
        for i, (a, b) in enumerate([("train-0-img0", "train-0-img1"), ("train-1-img0", "train-1-img1")])])
    return root


def circo(root: Path) -> Path:
    colours = {1: "red", 2: "red", 3: "yellow", 4: "blue", 5: "red", 6: "green", 7: "white"}
    for image_id, colour in colours.items():
        flat(root / "COCO2017_unlabeled" / "unlabeled2017" / f"{image_id:012d}.jpg", colour, "JPEG")
    dump(root / "COCO2017_unlabeled" / "annotations" / "image_info_unlabeled2017.json",
         {"images": [{"id": i, "file_name": f"{i:012d}.jpg"} for i in colours]})
    dump(root / "annotations" / "val.json", [
        {"id": 0, "reference_img_id": 1, "target_img_id": 5, "relative_caption": "is in a kitchen",
         "shared_concept": "a thing", "gt_img_ids": [5, 3]},
        {"id": 1, "reference_img_id": 4, "target_img_id": 7, "relative_caption": "is larger",
         "shared_concept": "a thing", "gt_img_ids": [7]},
    ])
    dump(root / "annotations" / "test.json", [
        {"id": 3, "reference_img_id": 3, "relative_caption": "has two of them", "shared_concept": "x"}])
    return root


def imagenet_r(root: Path, with_lists: bool = True) -> Path:
    """Two classes; real images red (class 0) and blue (class 1); renditions in some domains."""
    real = {"n001": ["ILSVRC2012_val_00000001.JPEG", "ILSVRC2012_val_00000002.JPEG"],
            "n002": ["ILSVRC2012_val_00000003.JPEG"]}
    colour = {"n001": "red", "n002": "blue"}
    for wnid, names in real.items():
        for name in names:
            flat(root / "real" / wnid / name, colour[wnid], "JPEG")
    renditions = {("n001", "cartoon_0.jpg"): "red", ("n001", "cartoon_1.jpg"): "yellow",
                  ("n001", "toy_0.jpg"): "green", ("n002", "cartoon_0.jpg"): "blue", ("n002", "origami_0.jpg"): "gray"}
    for (wnid, name), c in renditions.items():
        flat(root / "imagenet-r" / wnid / name, c, "JPEG")
    if with_lists:
        labels = {"n001": 0, "n002": 1}
        queries = [(f"imgnet/real/{w}/{n}", labels[w]) for w, names in real.items() for n in names]
        dom = {"cartoon": 0, "origami": 1, "toy": 2, "sculpture": 3}
        targets = [(f"imgnet/imagenet-r/{w}/{n}", labels[w] + 1000 * dom[n.split("_")[0]]) for w, n in renditions]
        targets += [(p, lab + 6000) for p, lab in queries]
        (root / "imgnet_real_query.txt").write_text("".join(f"{p} {lab} \n" for p, lab in queries))
        (root / "imgnet_targets.txt").write_text("".join(f"{p} {lab} \n" for p, lab in targets))
    return root


def copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def coco(root: Path) -> Path:
    """COCO val2017 in the official layout: images with polygon-annotated objects of flat colours.

    1: red background, a blue triangle "dog" (9% of the image, a candidate) and a tiny "cat";
    2: green background, a yellow square "cat" (16%) and a huge "dog" (75%, not a candidate);
    3: one "dog" only (a candidate, but no other class); 4: two 1x1 objects (candidates: the lower
    bound is 0.05 pixels);
    5: two candidates ("dog", "bird") and a "cat", to show the seeded draw."""
    from PIL import ImageDraw

    images, anns = [], []
    colours = {1: "red", 2: "green", 3: "white", 4: "white", 5: "gray"}

    def obj(image_id, cat, polygon, fill, draw):
        xs, ys = polygon[0::2], polygon[1::2]
        pts = list(zip(xs, ys))
        area = 0.5 * abs(sum(x1 * y2 - x2 * y1 for (x1, y1), (x2, y2) in zip(pts, pts[1:] + pts[:1])))
        anns.append({"id": len(anns) + 1, "image_id": image_id, "category_id": cat, "iscrowd": 0,
                     "segmentation": [polygon], "area": area,
                     "bbox": [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]})
        if fill:
            draw.polygon(pts, fill=RGB255[fill])

    for image_id, colour in colours.items():
        image = Image.new("RGB", (20, 20), RGB255[colour])
        draw = ImageDraw.Draw(image)
        if image_id == 1:
            obj(1, 1, [2, 2, 12, 2, 2, 12], "blue", draw)  # triangle, area 50 = 12.5%
            obj(1, 2, [15, 15, 16, 15, 16, 16, 15, 16], None, draw)
        elif image_id == 2:
            obj(2, 2, [4, 4, 12, 4, 12, 12, 4, 12], "yellow", draw)  # square, area 64 = 16%
            obj(2, 1, [0, 0, 20, 0, 20, 15, 0, 15], None, draw)  # area 300 = 75%
        elif image_id == 3:
            obj(3, 1, [2, 2, 10, 2, 10, 10, 2, 10], "red", draw)
        elif image_id == 4:
            obj(4, 1, [2, 2, 3, 2, 3, 3, 2, 3], None, draw)
            obj(4, 2, [5, 5, 6, 5, 6, 6, 5, 6], None, draw)
        else:
            obj(5, 1, [1, 1, 9, 1, 9, 9, 1, 9], "blue", draw)
            obj(5, 3, [11, 11, 19, 11, 19, 19, 11, 19], "green", draw)
            obj(5, 2, [0, 19, 1, 19, 1, 20, 0, 20], None, draw)
        path = root / "val2017" / f"{image_id:012d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        image.save(path, quality=100)
        images.append({"id": image_id, "file_name": path.name, "width": 20, "height": 20})
    dump(root / "annotations" / "instances_val2017.json", {  # with the released file's info and licenses
        "info": {"description": "COCO 2017 Dataset", "version": "1.0"}, "licenses": [],
        "images": images, "annotations": anns,
        "categories": [{"id": 1, "name": "dog"}, {"id": 2, "name": "cat"}, {"id": 3, "name": "bird"}]})
    return root


def genecis(root: Path) -> Path:
    """GeneCIS in the official layout: templates in annotations/, COCO val images, VG images split over
    VG 1.2's two folders. Images are flat colours (the crops of a VG image keep its colour)."""
    coco = {1: "red", 2: "green", 3: "blue", 4: "yellow", 5: "white", 6: "gray", 7: "red", 8: "blue"}
    for image_id, colour in coco.items():
        flat(root / "coco" / "val2017" / f"{image_id:012d}.jpg", colour, "JPEG")
    vg = {2001: "red", 2002: "green", 2003: "blue", 2004: "yellow", 2005: "white", 2006: "red"}
    for image_id, colour in vg.items():
        folder = "VG_100K" if image_id < 2005 else "VG_100K_2"
        path = root / "vg" / folder / f"{image_id}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (40, 30), RGB255[colour]).save(path, quality=100)

    def obj(i):
        return {"val_image_id": i}

    def attr(i, box=(5, 5, 10, 8)):
        return {"image_id": i, "instance_bbox": list(box), "attributes": ["x"]}

    # (reference, target, gallery, condition); image-only ranks by colour, text-only by the colour word
    objects = [(2, 1, [7, 5], "red"), (3, 4, [8, 5], "yellow"), (2, 5, [1, 3], "white")]
    attributes = [(2002, 2001, [2006, 2005], "red"), (2003, 2004, [2003, 2005], "yellow"),
                  (2002, 2005, [2001, 2003], "white")]
    for task in ("focus_object", "change_object"):
        dump(root / "annotations" / f"{task}.json", [
            {"reference": obj(r), "target": obj(t), "gallery": [obj(g) for g in gal], "condition": c}
            for r, t, gal, c in objects])
    for task in ("focus_attribute", "change_attribute"):
        dump(root / "annotations" / f"{task}.json", [
            {"reference": attr(r), "target": attr(t), "gallery": [attr(g, (1, 2, 12, 9)) for g in gal], "condition": c}
            for r, t, gal, c in attributes])
    return root


def circo_released(root: Path, texts: dict) -> Path:
    """CIRCO with the released LLM texts as extra fields of the val annotations (the released files'
    format: blip2_caption, gpt-3.5-turbo, multi_caption_opt and multi_gpt-3.5_opt)."""
    circo(root)
    path = root / "annotations" / "val.json"
    rows = json.loads(path.read_text())
    for row in rows:
        row.update(texts[row["id"]])
    path.write_text(json.dumps(rows))
    return root
