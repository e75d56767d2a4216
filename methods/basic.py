"""BASIC (Psomas et al., NeurIPS 2025, "Instance-Level Composed Image Retrieval"; billpsomas/icir): the
image and text similarities, each centred, the image side projected onto what separates object words
from style words, fused by Harris's rule. Training-free; it reads three released files.

As the official run_retrieval.py (preset "basic"), utils_retrieval.calculate_rankings and
utils_features.contextualize compute it, on L2-normalised CLIP features:

- text: the query text "contextualised": the mean of the normalised features of "{w} {text}" and
  "{text} {w}" for the first 100 lines w of corpora/generic_subjects.csv (its header line
  "object_name" included, as csv.reader reads it), normalised;
- corpora: every line of generic_subjects.csv (positive) and generic_styles.csv (negative), encoded
  raw and normalised; the text mean is the positive corpus's mean, subtracted from both corpora and the
  query text;
- image mean: the LAION-1M mean of the released pickle (data/laion_mean/laion_1m_mean_clip.pkl;
  ``--option basic.image_mean=database`` uses the mean of the query's database instead, the code's
  ``--use_laion_mean`` off), subtracted from the query image and the database;
- contrastive PCA: C = (1 - aa) Sa - aa Sb + 1e-5 (the 1e-5 added to every entry), Sa, Sb the centred
  corpora's scatter matrices over n - 1; the eigenvectors of the 250 largest eigenvalues that are
  positive span the projection P = V^T V; only the query image is projected;
- query expansion: the 25 database images most similar to the projected query, and the centred query
  image with similarity 1, weighted by softmax(0.1 x similarity) -- exp(0.1 s) normalised --, averaged,
  then projected (``--option basic.query_expansion=false``: the variant without it);
- similarities: image = projected query . centred database, text = centred text . centred database;
  both shifted by the minimum over the released synthetic set (synthetic_data/dataset_1_sd_clip.pkl.npy:
  its image-image minimum for the image score, its text-image minimum for the text score) and divided
  by the *image* minimum's magnitude for both, as the code does; clamped at 0;
- fusion: s_text x s_image - 0.1 (s_text + s_image)^2.

On i-CIR each query's database is its instance's (the split's per-query gallery): the database mean and
the expansion's neighbours come from it. Elsewhere the whole gallery is the database. The expansion takes
min(25, database size) neighbours (the code fails on a database under 25 images). Ties are broken by
the database order (the code's argsort is unstable).

Files: ``--option basic.image_mean=FILE``, ``basic.synthetic=FILE`` and ``basic.corpora=DIR`` (holding
generic_subjects.csv and generic_styles.csv); by default the released ones in <dataset folder>/basic/
that ``cirbench data get icir`` fetches (the _clip files; the _siglip ones for a SigLIP encoder). The
pickles are read without running code (cirbench.storage.safe_pickle).
"""

from __future__ import annotations

from pathlib import Path

from cirbench.contracts.method import Method, Option, register_method
from cirbench.errors import DataError, MissingResourceError
from cirbench.protocol.scoring import normalize

from ._shared import fetch_hint, subset_groups
from .freedom import read_corpus

POSITIVE, NEGATIVE = "generic_subjects.csv", "generic_styles.csv"
EXPANSION = 25  # neighbours of the query expansion (hard-coded in the official code)
EXPANSION_TEMPERATURE = 0.1  # exp(0.1 x similarity)
SCATTER_SHIFT = 1e-5  # added to every entry of the contrastive scatter matrix


def contrastive_projection(positive, negative, aa: float, components: int):
    """P = V^T V over the eigenvectors of (1 - aa) Sa - aa Sb + 1e-5 with the largest positive
    eigenvalues (at most ``components``), Sa and Sb the scatter matrices of the centred corpora."""
    import torch

    sa = positive.T @ positive / (positive.shape[0] - 1)
    sb = negative.T @ negative / (negative.shape[0] - 1)
    eigenvalues, vectors = torch.linalg.eigh((1 - aa) * sa - aa * sb + SCATTER_SHIFT)
    eigenvalues, vectors = eigenvalues.flip(0), vectors.flip(1).T
    kept = vectors[:min(int(components), int((eigenvalues > 0).sum()))]
    return kept.T @ kept


def expand(projected, centred_image, centred_database, projection, k: int):
    """The official query expansion: the k nearest centred database images and the centred query,
    weighted by exp(0.1 x similarity) normalised, averaged, projected."""
    import torch

    values, indices = torch.topk(projected @ centred_database.T, k, dim=1)
    neighbours = torch.cat([centred_database[indices], centred_image[:, None]], dim=1)
    values = torch.cat([values, torch.ones(len(values), 1, device=values.device, dtype=values.dtype)], dim=1)
    weights = torch.exp(EXPANSION_TEMPERATURE * values)
    weights = weights / weights.sum(dim=1, keepdim=True)
    return (neighbours * weights[..., None]).sum(dim=1) @ projection


@register_method("basic")
class Basic(Method):
    description = "BASIC: centred, contrastively projected image and text similarities fused by Harris (i-CIR)"
    display_order = 8.5
    scoring = "scores"
    external_weights = True  # needs the released statistics and corpora
    options = {
        "image_mean": Option(str, None, "the LAION image mean pickle, or 'database' for the database's own mean "
                                        "(default: <dataset>/basic/laion_1m_mean_clip.pkl)", in_setting=False),
        "synthetic": Option(str, None, "the synthetic normalisation set (default: "
                                       "<dataset>/basic/dataset_1_sd_clip.pkl.npy)", in_setting=False),
        "corpora": Option(str, None, "folder of generic_subjects.csv and generic_styles.csv (default: "
                                     "<dataset>/basic)", in_setting=False),
        "query_expansion": Option(bool, True, "expand the query with its 25 nearest database images"),
        "contextualize": Option(bool, True, "average the text over the first corpus words before and after it"),
        "normalize": Option(bool, True, "shift and scale both similarities by the synthetic set's minima"),
        "components": Option(int, 250, "projection components (at most the positive eigenvalues)", bounds=(1, 10**6)),
        "aa": Option(float, 0.2, "the negative corpus's weight in the contrastive PCA", bounds=(0, 1)),
        "harris_lambda": Option(float, 0.1, "lambda of the Harris fusion", bounds=(0, 100)),
        "context_words": Option(int, 100, "corpus words the text is contextualised with", bounds=(1, 10**6)),
    }

    def _backbone(self) -> str:
        spec = str(getattr(self.ctx.encoder, "identity", {}).get("spec", "")).lower()
        return "siglip" if "siglip" in spec else "clip"

    def _file(self, key: str, default_name: str, split) -> Path:
        given = self.option(key)
        if given:
            path = Path(given).expanduser()
        elif split.root is not None:
            path = Path(split.root) / "basic" / default_name
        else:
            path = Path("basic") / default_name
        if not path.exists():
            raise MissingResourceError(
                f"basic's {key.replace('_', ' ')} {path} is missing: {fetch_hint(split.dataset, path.name)}pass "
                f"--option basic.{key}=PATH (BASIC's released files: corpora/, data/laion_mean/, synthetic_data/ of "
                "billpsomas/icir)")
        return path

    def prepare(self, split):
        import torch

        from cirbench.storage.safe_pickle import load_npy_dict, load_tensor_dict

        backbone = self._backbone()
        corpora = self._file("corpora", "", split) if self.option("corpora") else \
            self._file("corpora", POSITIVE, split).parent
        self.files = {"positive": corpora / POSITIVE, "negative": corpora / NEGATIVE}
        for path in self.files.values():
            if not path.is_file():
                raise MissingResourceError(f"basic's corpus {path} is missing (--option basic.corpora=DIR)")
        self.positive_words = read_corpus(self.files["positive"])
        self.negative_words = read_corpus(self.files["negative"])
        dim = self.ctx.encoder.embed_dim
        self.laion_mean = None
        if self.option("image_mean") != "database":
            self.files["image_mean"] = self._file("image_mean", f"laion_1m_mean_{backbone}.pkl", split)
            stats = load_tensor_dict(self.files["image_mean"], "BASIC's LAION image mean")
            mean = stats.get("laion_1m_mean")
            if not isinstance(mean, torch.Tensor) or mean.numel() != dim:
                raise DataError(f"{self.files['image_mean']}: expected 'laion_1m_mean', a tensor of {dim} numbers (the "
                                f"encoder's width), found {_shape(mean)}")
            self.laion_mean = mean.reshape(1, dim).float()
        self.synthetic = None
        if self.option("normalize"):
            self.files["synthetic"] = self._file("synthetic", f"dataset_1_sd_{backbone}.pkl.npy", split)
            saved = load_npy_dict(self.files["synthetic"], "BASIC's synthetic normalisation set")
            parts = []
            for key in ("image_features", "text_features"):
                value = saved.get(key)
                if getattr(value, "ndim", 0) != 2 or value.shape[1] != dim or not value.shape[0]:
                    raise DataError(f"{self.files['synthetic']}: expected {key!r}, an N x {dim} array, found "
                                    f"{_shape(value)}")
                parts.append(torch.tensor(value, dtype=torch.float32))
            self.synthetic = tuple(normalize(p) for p in parts)
        self._corpus = None
        self._projection = None
        self._fixed = None

    # -- the official pipeline ------------------------------------------------------------------------
    def _corpora(self, device):
        if self._corpus is None:
            pos = normalize(self.ctx.text_features(self.positive_words).float())
            neg = normalize(self.ctx.text_features(self.negative_words).float())
            self._corpus = (pos, neg, pos.mean(dim=0, keepdim=True))
        return tuple(t.to(device) for t in self._corpus)

    def _statistics(self, mean_image, device):
        """(projection, (image minimum, text minimum) of the synthetic set or None, text mean) for an image
        mean; the projection depends on the corpora alone and is computed once."""
        pos, neg, mean_text = self._corpora(device)
        if self._projection is None:
            self._projection = contrastive_projection(pos - mean_text, neg - mean_text, self.option("aa"),
                                                      self.option("components"))
        projection = self._projection.to(device)
        minima = None
        if self.synthetic is not None:
            image, text = (t.to(device) for t in self.synthetic)
            image, text = image - mean_image, text - mean_text
            minima = (float((image @ image.T).min()), float((text @ image.T).min()))
        return projection, minima, mean_text

    def _texts(self, batch, device):
        import torch

        texts = batch.prompts("text")
        if not self.option("contextualize"):
            return normalize(self.ctx.text_features(texts).to(device).float())
        words = self.positive_words[:min(self.option("context_words"), len(self.positive_words))]
        out = []
        for text in texts:
            combined = [f"{w} {text}" for w in words] + [f"{text} {w}" for w in words]
            out.append(normalize(self.ctx.text_features(combined).to(device).float()).mean(dim=0))
        return normalize(torch.stack(out))

    def _scores(self, image, text, database):
        """Scores of queries (normalised image and text features) over one database (normalised)."""
        device = image.device
        if self.laion_mean is not None:
            mean_image = self.laion_mean.to(device)
            if self._fixed is None:
                self._fixed = self._statistics(mean_image, device)
            projection, minima, mean_text = self._fixed
        else:
            mean_image = database.mean(dim=0, keepdim=True)
            projection, minima, mean_text = self._statistics(mean_image, device)
        centred_db, centred_image = database - mean_image, image - mean_image
        projected = centred_image @ projection
        if self.option("query_expansion"):
            projected = expand(projected, centred_image, centred_db, projection, min(EXPANSION, len(database)))
        sim_image = projected @ centred_db.T
        sim_text = (text - mean_text) @ centred_db.T
        if minima is not None:
            image_min, text_min = minima
            sim_text = (sim_text - text_min) / abs(image_min)
            sim_image = (sim_image - image_min) / abs(image_min)
        sim_text, sim_image = sim_text.clamp(min=0), sim_image.clamp(min=0)
        return sim_text * sim_image - self.option("harris_lambda") * (sim_text + sim_image) ** 2

    def score(self, batch, gallery):
        image = normalize(batch.reference_features.float())
        return self._scores(image, self._texts(batch, image.device),
                            normalize(gallery.features.to(image.device).float()))

    def score_subsets(self, batch, gallery):
        """Queries sharing a database (one i-CIR instance) are scored together against it alone."""
        import torch

        image = normalize(batch.reference_features.float())
        text = self._texts(batch, image.device)
        width = max([1, *(len(s) for s in batch.subsets)])
        out = torch.zeros(len(batch), width, device=image.device)
        for members, rows in subset_groups(batch.subsets).items():
            database = normalize(gallery.features[list(members)].to(image.device).float())
            out[rows, :len(members)] = self._scores(image[rows], text[rows], database)
        return out

    def config(self):
        from cirbench.util.fsutil import sha256_file

        files = {name: str(path) for name, path in self.files.items()}
        hashes = {f"{name}_sha256": sha256_file(path) for name, path in self.files.items()}
        return {**{k: self.option(k) for k in ("query_expansion", "contextualize", "normalize", "components", "aa",
                                                 "harris_lambda", "context_words")},
                "image_mean": "LAION file" if self.laion_mean is not None else "the database's mean",
                "expansion": EXPANSION, "files": files, **hashes,
                "positive_words": len(self.positive_words), "negative_words": len(self.negative_words)}

    def protocol(self, config):
        notes = [f"components={config['components']}, aa={config['aa']}, lambda={config['harris_lambda']}",
                 "query expansion with 25 neighbours" if config["query_expansion"] else "no query expansion",
                 f"image mean: {config['image_mean']}"]
        text = "{text} contextualised with the first subject words" if config["contextualize"] else "{text}"
        return {"text": text, "notes": notes}


def _shape(value) -> str:
    if value is None:
        return "nothing"
    shape = getattr(value, "shape", None)
    return f"a {type(value).__name__} of shape {tuple(shape)}" if shape is not None else f"a {type(value).__name__}"
