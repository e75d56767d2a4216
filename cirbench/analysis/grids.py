"""Retrieval grids, as in the seed paper's figures: for a sample of queries, the reference image, the
query text and each method's top 5, the ground truth outlined in green. One PNG per split.

The sample is seeded: ``random`` draws queries, ``disagree`` takes those on which the methods' per-query
headline metric differs most, and explicit query ids may be given. Images are found through the paths
recorded in each result's outcomes file (no dataset is opened).
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np

from cirbench.analysis.cells import (dataset_key, dataset_labels, display_orders, encoder_labels, method_label,
                                     method_order)
from cirbench.storage.results import method_id
from cirbench.util import fsutil

THUMB = 96
LABEL_W = 170
PAD = 6
GREEN = (20, 170, 60)


def thumbnail(outcomes, image_id: str, size: int = THUMB):
    """A size x size RGB thumbnail of an image (letterboxed), or a grey square when it cannot be read."""
    from PIL import Image

    from cirbench.protocol.images import load_rgb

    image = outcomes.image(image_id) if outcomes is not None else None
    canvas = Image.new("RGB", (size, size), (235, 235, 235))
    if image is None:
        return canvas
    try:
        rgb = load_rgb(image)
    except Exception:
        return canvas
    scale = size / max(rgb.width, rgb.height)  # small images (the embedded world's) are enlarged too
    fit = (max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale)))
    rgb = rgb.resize(fit, Image.NEAREST if scale >= 2 else Image.LANCZOS)
    canvas.paste(rgb, ((size - rgb.width) // 2, (size - rgb.height) // 2))
    return canvas


def groups(report) -> dict:
    """(encoder key, dataset key, split) -> cells with outcomes, in method order."""
    out: dict[tuple, list] = {}
    for cell in report.cells:
        if cell.outcomes is None or not cell.outcomes.views:
            continue
        r = cell.record
        out.setdefault((r.encoder.model_key, dataset_key(r), r.dataset.split), []).append(cell)
    for key, cells in out.items():
        order = method_order([method_label(c.record) for c in cells], display_orders([c.record for c in cells]))
        cells.sort(key=lambda c: order.index(method_label(c.record)))
    return out


def view_of(cell):
    """The ranking a reader looks at: the whole gallery's, or each query's own gallery's (subset scope)."""
    outcomes = cell.outcomes
    if cell.record.dataset.scope == "subset" or "gallery" not in outcomes.views:
        return outcomes.views["subset"]
    return outcomes.views["gallery"]


def headline(cell) -> str | None:
    names = [m for m in cell.record.main_metrics if m in cell.outcomes.values]
    return names[0] if names else (next(iter(cell.outcomes.values), None))


def choose(cells, per_split: int, sample: str, queries: list[str] | None, seed: int, key: str) -> list[int]:
    """Row indices of the queries to show."""
    import zlib

    qids = cells[0].outcomes.qids
    if queries:
        where = {q: i for i, q in enumerate(qids)}
        return [where[q] for q in queries if q in where]
    rng = np.random.default_rng([seed, zlib.crc32(key.encode())])
    n = len(qids)
    if sample == "disagree" and len(cells) > 1:
        metric = headline(cells[0])
        rows = [c.outcomes.values[metric][0] for c in cells if metric in c.outcomes.values
                and len(c.outcomes.values[metric][0]) == n]
        if len(rows) > 1:
            spread = np.nanstd(np.vstack(rows).astype(float), axis=0)
            tiebreak = rng.random(n)
            return [int(i) for i in np.lexsort((tiebreak, -spread))[:per_split]]
    return sorted(int(i) for i in rng.choice(n, size=min(per_split, n), replace=False))


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # an old Pillow without scalable default font
        return ImageFont.load_default()


def draw_grid(cells, rows: list[int], title: str):
    """One image: per query a header (reference, text, first target) and one row per method."""
    from PIL import Image, ImageDraw

    font, small = _font(14), _font(12)
    width = LABEL_W + 5 * (THUMB + PAD) + PAD
    block = (THUMB + PAD) * (1 + len(cells)) + 2 * PAD
    title_lines = textwrap.wrap(title, 70)[:3]
    head = 12 + 18 * len(title_lines)
    canvas = Image.new("RGB", (width, head + block * len(rows)), "white")
    draw = ImageDraw.Draw(canvas)
    draw.multiline_text((PAD, 6), "\n".join(title_lines), fill="black", font=font)
    first = cells[0].outcomes
    for b, q in enumerate(rows):
        y = head + b * block
        draw.line([(0, y), (width, y)], fill=(200, 200, 200))
        y += PAD
        canvas.paste(thumbnail(first, first.references[q]), (PAD, y))
        text = f"{first.qids[q]}: {first.texts[q]}"
        draw.multiline_text((THUMB + 2 * PAD, y), "\n".join(textwrap.wrap(text, 46)[:4]), fill="black", font=small)
        target = first.first_targets[q] if first.first_targets else ""
        if target:
            x = width - THUMB - PAD
            canvas.paste(thumbnail(first, target), (x, y))
            draw.rectangle([x - 2, y - 2, x + THUMB + 1, y + THUMB + 1], outline=GREEN, width=3)
            draw.text((x - 52, y + THUMB - 16), "target", fill=GREEN, font=small)
        for m, cell in enumerate(cells):
            y_row = y + (m + 1) * (THUMB + PAD)
            draw.multiline_text((PAD, y_row + THUMB // 2 - 14), "\n".join(textwrap.wrap(method_id(cell.record), 20)[:2]),
                                fill="black", font=small)
            ranked, ranks, _first = view_of(cell)
            hits = {int(r) for r in ranks[q] if 0 < r <= 5}
            for k, g in enumerate(ranked[q, :5].tolist()):
                if g < 0:
                    continue
                x = LABEL_W + k * (THUMB + PAD)
                canvas.paste(thumbnail(cell.outcomes, cell.outcomes.gallery[g]), (x, y_row))
                if k + 1 in hits:
                    draw.rectangle([x - 2, y_row - 2, x + THUMB + 1, y_row + THUMB + 1], outline=GREEN, width=4)
    return canvas


def render_grids(report, folder: Path, per_split: int = 4, sample: str = "random", queries: list[str] | None = None,
                 seed: int = 0) -> list[tuple[str, Path]]:
    """A grid PNG per (encoder, dataset, split) with outcomes; returns (dataset label, file) pairs."""

    if sample not in ("random", "disagree"):
        from cirbench.errors import UsageError

        raise UsageError(f"grid sample must be 'random' or 'disagree', not {sample!r}")
    records = report.records
    enc_labels, ds_labels = encoder_labels(records), dataset_labels(records)
    several = len(set(enc_labels)) > 1
    written = []
    for (enc, ds, split), cells in sorted(groups(report).items()):
        key = f"{ds}:{split}"
        rows = choose(cells, per_split, sample, queries, seed, key)
        if not rows:
            continue
        title = f"{ds_labels[ds]}:{split} ({enc_labels[enc]})"
        image = draw_grid(cells, rows, title)
        stem = f"{fsutil.slug(ds_labels[ds])}_{fsutil.slug(split)}"
        if several:
            stem = f"{fsutil.slug(enc_labels[enc], 32)}_{stem}"
        path = folder / f"{stem}.png"
        folder.mkdir(parents=True, exist_ok=True)
        written.append((ds_labels[ds], fsutil.atomic_write(path, lambda fh: image.save(fh, format="PNG"), fsync=False)))
    return written
