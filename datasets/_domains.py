"""The domain-conversion family as FREEDOM's official code evaluates it (NikosEfth/freedom,
run_retrieval.py, utils_retrieval.py, set_dataset.py): what MiniDomainNet, NICO++ and LTLL share.

Files, as the official data/<name>/ folders hold them: ``query_files.csv`` and ``database_files.csv``
(or one ``full_files.csv`` serving as both), one image a line, ``path domain class`` separated by single
spaces, the path relative to the official data/ folder (so it starts with the dataset's folder name,
which is dropped here: paths are read inside this dataset's folder). Folder and file names are the ones
set_dataset.py leaves (spaces replaced).

Protocol: every ordered pair of domains (source != target) is a split, named ``SOURCE-TARGET`` with the
domains as the code renames them; its queries are the query images of the source domain, the text is
the target domain's name alone (no template), the gallery is the whole database (a query in its own
database where one file serves as both: the reference is kept), and a query's positives are the
database images of the target domain and the query's class. Metrics over the whole ranking: mAP by
Radenovic's trapezoid rule and R@K, P@K over the positives, each with the code's 1e-5 (see
cirbench.protocol.metrics); a query without positives scores 0 and counts. The code rounds each pair's
numbers to 2 decimals before averaging them over targets and then sources; cirbench averages the
unrounded numbers (the average over all pairs, which equals the per-source then over-sources one:
every source has the same number of targets).
"""

from __future__ import annotations

from pathlib import Path

from cirbench.contracts.dataset import Dataset, expect, read_text
from cirbench.contracts.split import Query, Split
from cirbench.errors import DataError, short

PROTOCOL = "FREEDOM (NikosEfth/freedom run_retrieval.py): raw target domain name, whole-ranking metrics"


def pairs(domains: dict[str, str]) -> tuple[str, ...]:
    """Every ordered pair of the renamed domains, in the code's order (source, then target)."""
    names = list(domains.values())
    return tuple(f"{s}-{t}" for s in names for t in names if s != t)


def read_rows(path: Path) -> list[tuple[str, str, str, str]]:
    """(path, domain, class, where) per line of an official file list."""
    rows = []
    for lineno, line in enumerate(read_text(path, "image list").splitlines(), 1):
        if not line.strip():
            continue
        fields = line.strip().split(" ")
        expect(len(fields) == 3 and all(fields), f"{path}:{lineno}",
               f"expected 'path domain class' separated by single spaces, got {short(line.strip())}")
        rows.append((*fields, f"{path}:{lineno}"))
    return rows


class DomainConversion(Dataset):
    """A dataset of the family: subclasses set ``name`` (also the official data/ folder the listed paths
    start with), ``description``, ``DOMAINS`` (official domain -> its name in the code's tables), ``FILES``
    (query file, database file) and ``AT`` (the K of R@K and P@K); their splits (every ordered pair) and
    expected layout follow from those."""

    DOMAINS: dict[str, str] = {}
    FILES: tuple[str, str] = ("query_files.csv", "database_files.csv")
    AT: tuple[int, ...] = ()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.splits = cls.default_splits = pairs(cls.DOMAINS)
        files = ", ".join(f"{cls.name}/{f}" for f in dict.fromkeys(cls.FILES))
        cls.expected_layout = f"{files} and the images they list"

    def _rows(self, which: str) -> list[tuple[str, str, str, str]]:
        path = self.root / which
        rows = read_rows(path)
        expect(bool(rows), path, "lists no image")
        return [(p, self.DOMAINS.get(d, d), c, where) for p, d, c, where in rows]

    def load(self, split: str) -> Split:
        self.require_root()
        self.require_split(split)
        source, _, target = split.partition("-")
        query_file, database_file = self.FILES
        database = self._rows(database_file)
        queries_rows = database if query_file == database_file else self._rows(query_file)
        images: dict[str, Path] = {}
        gallery = [self.listed_image(images, p, where) for p, _d, _c, where in database]
        positives: dict[str, list[str]] = {}
        for p, d, c, _where in database:
            if d == target:
                positives.setdefault(c, []).append(p)
        queries = [Query(qid=str(i), reference=self.listed_image(images, p, where), text=target,
                         targets=tuple(positives.get(c, ())), fields={"class": c, "source": source, "domain": target})
                   for i, (p, d, c, where) in enumerate(queries_rows) if d == source]
        if not queries:
            raise DataError(f"{self.root / query_file}: no query image of the domain {source!r}")
        ks = list(self.AT)
        return Split(
            dataset=self.name, split=split, root=self.root, images=images, gallery=gallery, queries=queries,
            metrics={"ap": [], "recall_over_positives": ks, "precision_over_positives": ks},
            main_metrics=["mAP", *(f"R@{k}" for k in ks)],
            prompts={"pseudo": "a {text} of *", "text": "{text}", "caption": "{text}"},
            remove_reference=False,
            info={"protocol": PROTOCOL, "query_file": str(self.root / query_file),
                  "database_file": str(self.root / database_file), "domains": dict(self.DOMAINS)},
        )
