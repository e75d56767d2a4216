"""FREEDOM (Efthymiadis et al., "Composed Image Retrieval for Training-FREE DOMain Conversion", WACV 2025;
NikosEfth/freedom): the query image's class is read off its neighbours, and each likely class name is
joined with the target domain in the text space.

As the official run_retrieval.py / utils_retrieval.py (calculate_rankings, method "freedom") and utils.py
compute it, every feature L2-normalised:

- proxies: the ``kappa`` (20) gallery images most similar to the query image (a sorted top-k); when the
  smallest, over the split's queries, of each query's best similarity is below 0.98 -- the queries are
  not in the database -- the query image itself is the first proxy and the last neighbour is dropped
  (a decision over the whole split: the method sees it in one batch); on a split that gives each query
  its own database (i-CIR's instances, GeneCIS), that database (the official code has no such split);
- for each proxy, the ``ni`` (7) names of the Open Images class list whose text features are most
  similar to it; per query, the names counted over its proxies, and the ``miu`` (7) most frequent kept
  in the order they were first seen among equal counts (Python's stable sort), weighted by count / the
  largest count; queries with fewer names are padded with "" at weight 0 (then encoded as " DOMAIN");
- query = sum over the kept names of weight x text feature of "NAME DOMAIN" (the name, a space, the
  query's text: the target domain's name); the gallery is scored by inner product with it (the engine
  normalises the query, which changes no ranking).

The class list is a file: ``--option freedom.corpus=PATH`` (the official data/open_image_v7_class_names.csv,
its first column), by default <dataset folder>/open_image_v7_class_names.csv, which ``cirbench data get``
fetches with minidn, nico, ltll and imagenet-r. Without it the method cannot run, and ``--method all``
skips it with one line.
"""

from __future__ import annotations

import csv
from pathlib import Path

from cirbench.contracts.method import Method, Option, register_method
from cirbench.errors import DataError, MissingResourceError
from cirbench.protocol.scoring import normalize

from ._shared import fetch_hint, subset_groups

CORPUS = "open_image_v7_class_names.csv"  # where `cirbench data get` puts it in the dataset folder
SELF_PROXY_BELOW = 0.98  # the official condition for adding the query itself as a proxy


def read_corpus(path: Path) -> list[str]:
    """The first column of the class-name list (csv.reader, as the official save_corpus_features)."""
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            names = [row[0] for row in csv.reader(fh) if row]
    except OSError as exc:
        raise DataError(f"{path}: cannot read the class-name list ({exc.strerror or exc})") from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: not a CSV list of class names ({exc})") from None
    if not names:
        raise DataError(f"{path}: the class-name list is empty")
    return names


def most_frequent(per_proxy: list[list[str]], miu: int) -> tuple[list[str], list[float]]:
    """The official keep_k_most_frequent for one query: names counted over its proxies (an empty name
    counts 0), the ``miu`` most frequent in first-seen order among equal counts, each weighted by its count
    over the largest."""
    counts: dict[str, int] = {}
    for names in per_proxy:
        for name in names:
            counts[name] = counts.get(name, 0) + 1
            if name == "":
                counts[name] = 0
    kept = sorted(counts, key=lambda n: counts[n], reverse=True)[:miu]
    top = max(max(counts[n] for n in kept), 0.0001)
    return kept, [counts[n] / top for n in kept]


@register_method("freedom")
class Freedom(Method):
    description = "FREEDOM: its neighbours' likeliest class names joined with the target domain (training-free)"
    display_order = 8
    external_weights = True  # needs the released class-name list
    whole_split = True  # the self-proxy condition is decided over the split's queries
    options = {
        "corpus": Option(str, None, "the Open Images class-name list (default: <dataset>/open_image_v7_class_names.csv, "
                                    "from `cirbench data get`)", in_setting=False),
        "kappa": Option(int, 20, "proxy images per query", bounds=(1, 10**6)),
        "ni": Option(int, 7, "class names per proxy image", bounds=(1, 10**6)),
        "miu": Option(int, 7, "most frequent names kept per query", bounds=(1, 10**6)),
    }

    def prepare(self, split):
        given = self.option("corpus")
        if given:
            path = Path(given).expanduser()
            if not path.is_file():
                raise MissingResourceError(f"freedom's class-name list {path} is missing (--option freedom.corpus=PATH)")
        else:
            path = Path(split.root or ".") / CORPUS
            if not path.is_file():
                raise MissingResourceError(
                    f"freedom needs the Open Images class-name list (data/{CORPUS} of NikosEfth/freedom): {path} is "
                    f"missing; {fetch_hint(split.dataset, CORPUS)}pass --option freedom.corpus=PATH")
        if getattr(self, "corpus_path", None) != path:
            self.corpus_path, self.names = path, read_corpus(path)
            self.corpus = None

    def encode_queries(self, batch):
        import torch

        kappa, ni, miu = self.option("kappa"), self.option("ni"), self.option("miu")
        device = batch.reference_features.device
        image = normalize(batch.reference_features)
        if self.corpus is None:
            self.corpus = normalize(self.ctx.text_features(self.names))
        corpus = self.corpus.to(device)
        best, neighbours = self._neighbours(batch, image, kappa)
        if float(best.min()) < SELF_PROXY_BELOW:
            neighbours = [torch.cat([image[i:i + 1], n[:-1]]) for i, n in enumerate(neighbours)]
        word_ids = [torch.topk(n @ corpus.T, min(ni, corpus.shape[0]), dim=1, largest=True, sorted=True).indices
                    for n in neighbours]
        kept = [most_frequent([[self.names[i] for i in proxy] for proxy in query.tolist()], miu) for query in word_ids]
        width = max(len(names) for names, _ in kept)
        texts, weights = [], []
        for (names, w), domain in zip(kept, batch.texts):
            names, w = names + [""] * (width - len(names)), w + [0.0] * (width - len(w))
            texts += [f"{name} {domain}" for name in names]
            weights += w
        features = normalize(self.ctx.text_features(texts).to(device))
        weighted = features * torch.tensor(weights, device=device, dtype=features.dtype)[:, None]
        return weighted.view(len(batch), width, -1).sum(dim=1)

    @staticmethod
    def _neighbours(batch, image, kappa: int):
        """(each query's best similarity in its database, its ``kappa`` nearest database images best first);
        the database is the gallery, or where the split gives each query its own (i-CIR's instance, a
        GeneCIS template) that one."""
        import torch

        features = batch.gallery.features
        if batch.subsets is None:
            database = normalize(features.to(image.device))
            sim = image @ database.T
            top = torch.topk(sim, min(kappa, database.shape[0]), dim=1, largest=True, sorted=True).indices
            return sim.max(dim=1).values, list(database[top])
        best = torch.empty(len(image), device=image.device)
        out: list = [None] * len(image)
        for members, rows in subset_groups(batch.subsets).items():
            database = normalize(features[list(members)].to(image.device))
            sim = image[rows] @ database.T
            best[rows] = sim.max(dim=1).values
            top = torch.topk(sim, min(kappa, len(members)), dim=1, largest=True, sorted=True).indices
            for row, idx in zip(rows, top):
                out[row] = database[idx]
        return best, out

    def config(self):
        from cirbench.util.fsutil import sha256_file

        return {"kappa": self.option("kappa"), "ni": self.option("ni"), "miu": self.option("miu"),
                "corpus": str(self.corpus_path), "corpus_sha256": sha256_file(self.corpus_path),
                "corpus_names": len(self.names),
                "self_proxy": f"the query itself is the first proxy when a query's best similarity is below "
                              f"{SELF_PROXY_BELOW}"}

    def protocol(self, config):
        return {"text": "{name} {text}", "notes": [f"kappa={config['kappa']}, ni={config['ni']}, miu={config['miu']}",
                                                   config["self_proxy"]]}
