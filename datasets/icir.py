"""i-CIR (Psomas et al., NeurIPS 2025, "Instance-Level Composed Image Retrieval"; billpsomas/icir): each
composed query names one instance (a specific object) and is ranked against that instance's own
database, which holds its positives and hard negatives.

Layout (under <data root>/icir/, as the release tarball icir_v1.0.0.tar.gz unpacks): query_files.csv and
database_files.csv, query/ and database/ with the images they list. A line is ``image_path,text,instance``
(no header); the path is relative to the folder holding icir/ (so it starts with ``icir/``, which is
dropped here) or, without that prefix, to icir/ itself.

Protocol (run_retrieval.py process_instance, utils_features.icir_dataset, utils_retrieval.map_calc_icir):
- a line is split at every comma and its first three fields read (a text holding a comma would be cut
  there, as the official loader cuts it; such lines are counted in the results' info);
- each query ranks only the database lines of its instance (a per-query gallery), in file order; its
  positives are those whose instance and text are both the query's;
- metrics over the whole ranking: mAP by Radenovic's trapezoid rule (a query without positives scores 0
  and counts), mmAP (each instance's mean AP, averaged over instances) and minmAP (each instance's
  smallest AP, averaged); the official code rounds only the final numbers;
- the reference image is kept (the query images are not in the databases);
- texts are encoded raw (no template); the product baseline clamps both similarities at 0
  (``info["product_clamp"]``), the sum baseline does not.

A database image listed on two lines of one instance (it would be two candidates in the official code,
ranked side by side) is one candidate here, a positive of every text it is listed with; such lines are
counted in the results' info and warned about.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from cirbench.contracts.dataset import Dataset, expect, read_text, register_dataset
from cirbench.contracts.split import Query, Split
from cirbench.errors import DataError, short

FILES = ("query_files.csv", "database_files.csv")
PROTOCOL = "i-CIR (billpsomas/icir run_retrieval.py): per-instance databases, whole-ranking AP, mmAP, minmAP"


def read_lines(path: Path) -> tuple[list[tuple[str, str, str, str]], int]:
    """(path, text, instance, where) per line of an official file list, and how many lines hold more than
    three comma-separated fields (their text was cut at its first comma, as the official loader does)."""
    rows, cut = [], 0
    for lineno, line in enumerate(read_text(path, "i-CIR file list").splitlines(), 1):
        if not line.strip():
            continue
        fields = line.strip().split(",")
        expect(len(fields) >= 3 and fields[0] and fields[2], f"{path}:{lineno}",
               f"expected 'image_path,text,instance', got {short(line.strip())}")
        cut += len(fields) > 3
        rows.append((fields[0], fields[1], fields[2], f"{path}:{lineno}"))
    expect(bool(rows), path, "lists no image")
    return rows, cut


@register_dataset("icir")
class ICIR(Dataset):
    name = "icir"
    description = "i-CIR: instance-level composed retrieval, each query against its instance's database (mAP, mmAP)"
    splits = ("test",)
    default_splits = ("test",)
    expected_layout = "icir/query_files.csv, icir/database_files.csv and the query/ and database/ images they list"

    def load(self, split: str) -> Split:
        self.require_root()
        self.require_split(split)
        query_file, database_file = (self.root / f for f in FILES)
        query_rows, cut_q = read_lines(query_file)
        database_rows, cut_d = read_lines(database_file)
        images: dict[str, Path] = {}
        gallery: dict[str, None] = {}
        members: dict[str, dict[str, None]] = {}  # instance -> its database, in file order
        texts: dict[tuple[str, str], set[str]] = {}  # (instance, image) -> the texts it is listed with
        repeated = 0
        for rel, text, instance, where in database_rows:
            image = self.listed_image(images, rel, where)
            gallery[image] = None
            listed = texts.setdefault((instance, image), set())
            repeated += bool(listed)
            listed.add(text)
            members.setdefault(instance, {})[image] = None
        if repeated:
            warnings.warn(f"{database_file}: {repeated} line(s) list an image already in its instance's database; "
                          "each such image is one candidate here (the official code ranks every line)", stacklevel=2)
        queries = []
        for i, (rel, text, instance, where) in enumerate(query_rows):
            if instance not in members:
                raise DataError(f"{where}: instance {instance!r} has no database line in {database_file}")
            subset = tuple(members[instance])
            positives = tuple(g for g in subset if text in texts[(instance, g)])
            queries.append(Query(qid=str(i), reference=self.listed_image(images, rel, where), text=text, targets=positives,
                                 subset=subset, fields={"instance": instance}))
        return Split(
            dataset=self.name, split=split, root=self.root, images=images, gallery=list(gallery), queries=queries,
            metrics={"ap": [], "ap_by_group": []}, main_metrics=["mAP", "mmAP", "minmAP"], scope="subset",
            group_by="instance", remove_reference=False,
            prompts={"pseudo": "a photo of * , {text}", "text": "{text}", "caption": "{text}"},
            info={"protocol": PROTOCOL, "query_file": str(query_file), "database_file": str(database_file),
                  "instances": len(members), "product_clamp": True, "lines_cut_at_a_comma": cut_q + cut_d,
                  "database_lines_repeating_an_image": repeated},
        )
