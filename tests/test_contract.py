"""The method contract: every hook exercised by a method that uses it, through the Python API and the
CLI, on flat-colour galleries whose rankings are worked out by hand.

Gallery (folder order): blue 0, gray 1, green 2, red 3, white 4, yellow 5. The colour test encoder's
image feature is the mean colour; its text feature the RGB of the first colour word in the text.
cos(red, .): red 1, yellow .743, white = gray .635, blue = green .104.
"""

import json

import numpy as np
import torch
from typer.testing import CliRunner

import cirbench
import colour_encoder
from cirbench.cli import app
from cirbench.contracts.method import Method, Option
from cirbench.contracts.registry import methods
from helpers import flat_dataset, result_file

colour_encoder.register()
G = "gallery/{}.png".format


def evaluate(root, method, tmp_path=None, **kw):
    kw.setdefault("results_dir", None)
    return cirbench.evaluate(methods=[method], datasets=[str(root)], encoder="colour-test", workers=0,
                             cache_dir=(tmp_path or root.parent) / "cache", **kw)


class ReverseTopTwo(Method):
    """Image-only, then a re-ranker that swaps each query's top two."""

    name = "reverse-top-two"
    rerank_depth = 2

    def compose(self, reference_features, texts):
        return reference_features

    def rerank(self, batch, candidates, scores):
        return -scores  # reversed


def test_a_reranker_reorders_the_top_and_everything_reads_the_new_order(tmp_path):
    root = flat_dataset(tmp_path / "ds", [{"reference": G("red"), "text": "x", "target": G("yellow")}])
    plain = evaluate(root, "image-only", tmp_path)
    reranked = evaluate(root, ReverseTopTwo, tmp_path)
    assert plain.results[0].metrics["R@1"] == 0.0  # the red reference itself comes first
    assert reranked.results[0].metrics["R@1"] == 100.0  # yellow (rank 2) swapped to rank 1
    out = cirbench.evaluate(methods=[ReverseTopTwo], datasets=[str(root)], encoder="colour-test", workers=0,
                            cache_dir=tmp_path / "cache", results_dir=tmp_path / "r")
    from cirbench.storage import results

    outcomes = results.load_outcomes(out.results[0])
    top, ranks, first = outcomes.views["gallery"]
    assert top[0, :2].tolist() == [5, 3] and first.tolist() == [1]  # yellow, then red


class BlueChannel(Method):
    """Scores the gallery directly: each item's blue channel (whatever the query)."""

    name = "blue-channel"
    scoring = "scores"

    def score(self, batch, gallery):
        return gallery.features[:, 2].expand(len(batch), -1).clone()


def test_a_method_can_score_the_gallery_instead_of_composing_a_vector(tmp_path):
    root = flat_dataset(tmp_path / "ds", [{"reference": G("red"), "text": "x", "target": G("white")},
                                          {"reference": G("red"), "text": "x", "target": G("gray")}],
                        {"metrics": {"recall": [1, 2, 3]}})
    result = evaluate(root, BlueChannel, tmp_path).results[0]
    # blue channel: blue 1.0 and white 1.0 tie (blue has the lower index), gray .5, the rest .05
    assert result.metrics == {"R@1": 0.0, "R@2": 50.0, "R@3": 100.0}


class HintedText(Method):
    """Reads an extra field of the annotation: the query's "colour_hint"."""

    name = "hinted-text"

    def encode_queries(self, batch):
        return self.ctx.text_features([f.get("colour_hint", batch.texts[i]) for i, f in enumerate(batch.fields)])


def test_a_method_reads_extra_annotation_fields(tmp_path):
    root = flat_dataset(tmp_path / "ds", [
        {"reference": G("red"), "text": "no colour here", "target": G("green"), "colour_hint": "green"},
        {"reference": G("red"), "text": "no colour here", "target": G("blue"), "colour_hint": "blue"}])
    assert evaluate(root, HintedText, tmp_path).results[0].metrics["R@1"] == 100.0
    assert evaluate(root, "text-only", tmp_path).results[0].metrics["R@1"] == 0.0


def test_relative_captions_reads_the_first_two_strings_as_written():
    # three captions with stray punctuation and spaces: the first two come back unchanged (the stripping
    # is each method's own habit); anything that is not two or more strings is no pair of captions
    assert cirbench.relative_captions({"captions": ["is red. ", " has sleeves?", "third"]}) == [
        "is red. ", " has sleeves?"]
    assert cirbench.relative_captions({"captions": ("a", "b")}) == ["a", "b"]
    for fields in ({"captions": ["only one"]}, {"captions": ["a", 2]}, {"captions": "ab"}, {}, ("a", "b")):
        assert cirbench.relative_captions(fields) is None, fields
    # strip=CAPTION_STRIP (the official code's '.?, '): both ends of each, inner punctuation kept, the
    # third caption still left out
    assert cirbench.CAPTION_STRIP == ".?, "
    assert cirbench.relative_captions({"captions": [" ?is red, not blue. ", "has sleeves?", "x."]},
                                      cirbench.CAPTION_STRIP) == ["is red, not blue", "has sleeves"]
    assert cirbench.relative_captions({"captions": ["a"]}, cirbench.CAPTION_STRIP) is None


class CaptionGallery(Method):
    """Represents each gallery image by its file name's colour word encoded as text (a gallery-side hook)."""

    name = "caption-gallery"

    def encode_gallery(self, gallery):
        words = [str(p).rsplit("/", 1)[-1].split(".")[0] for p in gallery.images]
        return self.ctx.text_features(words)

    def encode_queries(self, batch):
        return self.ctx.text_features(batch.texts)


def test_a_method_brings_its_own_gallery_representation(tmp_path):
    root = flat_dataset(tmp_path / "ds", [{"reference": G("red"), "text": "the blue one", "target": G("blue")},
                                          {"reference": G("red"), "text": "make it green", "target": G("green")}])
    assert evaluate(root, CaptionGallery, tmp_path).results[0].metrics["R@1"] == 100.0


class Counted(Method):
    """Counts constructions and prepares; generates (and stores) one 'caption' per reference."""

    name = "counted"
    built = 0
    prepared = 0
    generated = 0
    options = {"style": Option(str, "plain", "what the generator writes")}

    def __init__(self, ctx):
        super().__init__(ctx)
        Counted.built += 1

    def prepare(self, split):
        Counted.prepared += 1

    def encode_queries(self, batch):
        producer = {"generator": "colour-namer", "style": self.option("style")}

        def make(refs):
            Counted.generated += len(refs)
            return [r.rsplit("/", 1)[-1].split(".")[0] for r in refs]

        captions = self.ctx.artefacts.get_or_make(producer, batch.reference_ids, make)
        return self.ctx.text_features(captions)


def test_methods_are_built_once_per_encoder_and_generated_texts_are_stored(tmp_path):
    root = flat_dataset(tmp_path / "ds", [{"reference": G("green"), "text": "x", "target": G("green")}])
    (root / "test.jsonl").write_text(json.dumps({"reference": G("blue"), "text": "x", "target": G("blue")}) + "\n")
    Counted.built = Counted.prepared = Counted.generated = 0
    ev = evaluate(root, Counted, tmp_path)
    assert (Counted.built, Counted.prepared) == (1, 2)  # two splits, one method object
    assert Counted.generated == 2 and {r.metrics["R@1"] for r in ev.results} == {100.0}
    evaluate(root, Counted, tmp_path)
    assert Counted.generated == 2  # read back from the artefact store
    evaluate(root, Counted, tmp_path, options={"counted": {"style": "fancy"}})
    assert Counted.generated == 4  # another producer: generated again
    stored = list((tmp_path / "cache" / "artefacts" / "counted").glob("*.json"))
    assert len(stored) == 4 and "colour-namer" in stored[0].read_text()


def test_the_python_api_returns_records_and_a_frame_and_writes_only_when_asked(tmp_path):
    root = flat_dataset(tmp_path / "ds", [{"reference": G("red"), "text": "x", "target": G("yellow")}])
    ev = evaluate(root, "image-only", tmp_path)
    assert not (tmp_path / "results").exists()
    frame = ev.frame()
    assert set(frame.columns) >= {"encoder", "method", "dataset", "split", "metric", "value"}
    assert frame[(frame.metric == "R@10")]["value"].item() == 100.0
    assert ev.results[0].method.name == "image-only" and ev.results[0].dataset.n_gallery == 6
    written = evaluate(root, "image-only", tmp_path, results_dir=tmp_path / "results")
    assert written.results[0].path.is_file() and written.results[0].outcomes_path.is_file()


def test_options_are_validated_recorded_and_part_of_the_cell_key(tmp_path):
    root = flat_dataset(tmp_path / "ds", [{"reference": G("red"), "text": "blue", "target": G("blue")}])
    base = ["run", "--dataset", str(root), "--encoder", "colour-test", "-m", "slerp", "--workers", "0", "--quiet",
            "--json", "--results-dir", str(tmp_path / "r"), "--cache-dir", str(tmp_path / "cache")]
    bad = CliRunner().invoke(app, base + ["--option", "slerp.tee=0.5"])
    assert bad.exit_code == 2 and "method 'slerp' has no option 'tee'; its options: t (" in bad.output
    wrong = CliRunner().invoke(app, base + ["--option", "slerp.t=lots"])
    assert wrong.exit_code == 2 and "is not a valid float" in wrong.output
    other = CliRunner().invoke(app, base + ["--option", "weicom.lam=0.5"])
    assert other.exit_code == 2 and "not in this run" in other.output
    first = json.loads(CliRunner().invoke(app, base + ["--option", "slerp.t=0.25"]).stdout)
    assert first["results"][0]["method"]["options"] == {"t": 0.25}
    assert first["results"][0]["method"]["config"]["t_source"] == "--option"
    again = json.loads(CliRunner().invoke(app, base + ["--option", "slerp.t=0.25"]).stdout)
    assert again["cells"][0]["status"] == "reused"
    changed = json.loads(CliRunner().invoke(app, base + ["--option", "slerp.t=0.75"]).stdout)
    assert changed["cells"][0]["status"] == "computed"
    default = json.loads(CliRunner().invoke(app, base).stdout)
    assert default["results"][0]["method"]["config"]["t"] == 0.8  # no paper value for a folder dataset
    for edge in ("0", "1"):  # the two ends (image only, text only) are allowed; beyond them is refused
        assert CliRunner().invoke(app, base + ["--option", f"slerp.t={edge}"]).exit_code == 0
    for beyond in ("-0.01", "1.01"):
        refused = CliRunner().invoke(app, base + ["--option", f"slerp.t={beyond}"])
        assert refused.exit_code == 2 and "must lie between 0 and 1" in refused.output, refused.output


# -- the built-in training-free methods on hand-computed cases ----------------------------------

def test_slerp_formula():
    from cirbench.methods.slerp import slerp

    v = torch.tensor([[3.0, 0.0, 0.0], [1.0, 1.0, 0.0]])
    w = torch.tensor([[0.0, 2.0, 0.0], [1.0, 1.0001, 0.0]])
    out = slerp(v, w, 0.25)
    # orthogonal unit vectors: theta = pi/2, q = sin(3pi/8) e1 + sin(pi/8) e2 (already unit length)
    assert torch.allclose(out[0], torch.tensor([np.sin(3 * np.pi / 8), np.sin(np.pi / 8), 0.0]).float(), atol=1e-6)
    # nearly parallel (dot > 0.9995): the linear fallback normalise(v + t (w - v)) of the normalised rows
    vn, wn = v[1] / v[1].norm(), w[1] / w[1].norm()
    lin = vn + 0.25 * (wn - vn)
    assert torch.allclose(out[1], lin / lin.norm(), atol=1e-6)
    assert torch.allclose(slerp(v, w, 0.0)[0], torch.tensor([1.0, 0.0, 0.0]), atol=1e-6)
    assert torch.allclose(slerp(v, w, 1.0)[0], torch.tensor([0.0, 1.0, 0.0]), atol=1e-6)
    # at pi/2, sin((1+t) theta) = sin((1-t) theta), and a negative dot never occurs: angles of 60 and 120
    # degrees (rows of other norms) make both visible. The query lies t of the way along the great circle:
    # at angle t * theta from v, i.e. (cos(t theta), sin(t theta)) in the plane of v and w.
    for degrees in (60.0, 120.0):
        theta = np.radians(degrees)
        v = torch.tensor([[2.0, 0.0, 0.0]])
        w = 0.5 * torch.tensor([[np.cos(theta), np.sin(theta), 0.0]]).float()
        for t in (0.25, 0.8):
            want = torch.tensor([np.cos(t * theta), np.sin(t * theta), 0.0]).float()
            assert torch.allclose(slerp(v, w, t)[0], want, atol=1e-5), (degrees, t)
    # the fallback far enough from parallel to see it (cos = 0.9996, about 1.6 degrees): t = 0.5 lands
    # halfway, about 0.8 degrees from v (a fallback that stayed at v would be 0.014 away)
    theta = np.arccos(0.9996)
    v, w = torch.tensor([[3.0, 0.0, 0.0]]), 0.5 * torch.tensor([[np.cos(theta), np.sin(theta), 0.0]]).float()
    mid = torch.tensor([1.0 + np.cos(theta), np.sin(theta), 0.0]).float()
    assert torch.allclose(slerp(v, w, 0.5)[0], mid / mid.norm(), atol=1e-6)


def test_slerp_t_by_default_per_dataset(tiny_encoder):
    """The paper's t per dataset (0.9 on CIRR, 0.8 on CIRCO and FashionIQ), 0.8 elsewhere, and the source
    of each recorded; an option wins over every default."""
    from helpers import method_for

    got = {d: (m.t, m.t_source) for d in ("cirr", "circo", "fashioniq", "genecis")
           for m in [method_for("slerp", tiny_encoder, dataset=d)]}
    assert got == {"cirr": (0.9, "paper default for cirr"), "circo": (0.8, "paper default for circo"),
                   "fashioniq": (0.8, "paper default for fashioniq"),
                   "genecis": (0.8, "no paper value for this dataset: the CIRCO/FashionIQ value")}
    assert method_for("slerp", tiny_encoder, dataset="cirr", options={"t": "0.3"}).t == 0.3


def test_slerp_on_a_query(tmp_path):
    # red image, "blue" text: t = 0.1 stays near the image (red first), t = 0.9 reaches the text (blue first)
    root = flat_dataset(tmp_path / "ds", [{"reference": G("red"), "text": "blue", "target": G("blue")}])
    near_image = evaluate(root, "slerp", tmp_path, options={"slerp": {"t": 0.1}}).results[0]
    near_text = evaluate(root, "slerp", tmp_path, options={"slerp": {"t": 0.9}}).results[0]
    assert near_image.metrics["R@1"] == 0.0 and near_text.metrics["R@1"] == 100.0


def test_weicom_norm_cdf_and_fusions_by_hand():
    from cirbench.methods.weicom import fuse, norm_cdf

    s_img = torch.tensor([[1.0, 0.0, 0.0]])
    s_txt = torch.tensor([[0.0, 1.0, 0.0]])
    # mean 1/3, unbiased std sqrt(1/3): z(1) = 1.1547 -> 0.8759, z(0) = -0.5774 -> 0.2819
    ni, nt = norm_cdf(s_img), norm_cdf(s_txt)
    assert torch.allclose(ni, torch.tensor([[0.8759, 0.2819, 0.2819]]), atol=1e-4)
    weighted = fuse(ni, nt, "weighted", 0.3)
    assert torch.allclose(weighted, torch.tensor([[0.6977, 0.4601, 0.2819]]), atol=1e-4)
    assert fuse(ni, nt, "weighted", 0.7).argmax().item() == 1  # towards the text
    # the official "Minimum Similarity" ranks by the maximum, ascending: the item neither likes comes first
    assert fuse(ni, nt, "minimum", 0.3).argmax().item() == 2
    assert torch.allclose(fuse(ni, nt, "minimum-clean", 0.3), torch.tensor([[0.2819, 0.2819, 0.2819]]), atol=1e-4)
    # the unnormalised fusions of the same file, each by hand on ni and nt
    assert torch.allclose(fuse(ni, nt, "average", 0.3), torch.tensor([[0.5789, 0.5789, 0.2819]]), atol=1e-4)
    assert torch.allclose(fuse(ni, nt, "add", 0.3), torch.tensor([[1.1578, 1.1578, 0.5638]]), atol=1e-4)
    assert torch.allclose(fuse(ni, nt, "multiply", 0.3), torch.tensor([[0.2469, 0.2469, 0.0795]]), atol=1e-4)
    # standardised over a mask: only the first two columns count (mean 1/2, std sqrt(1/2))
    masked = norm_cdf(s_img, torch.tensor([[True, True, False]]))
    assert torch.allclose(masked[0, :2], torch.tensor([0.7602, 0.2398]), atol=1e-4)
    # each query its own mask: two queries, the first over two columns, the second over all three
    rows = norm_cdf(torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]]), torch.tensor([[True, True, False], [True] * 3]))
    assert torch.allclose(rows[0, :2], torch.tensor([0.7602, 0.2398]), atol=1e-4)
    assert torch.allclose(rows[1], torch.tensor([0.8759, 0.2819, 0.2819]), atol=1e-4)
    # a gallery of two images has a spread (the same values as the mask of two)
    assert torch.allclose(norm_cdf(torch.tensor([[1.0, 0.0]])), torch.tensor([[0.7602, 0.2398]]), atol=1e-4)


def test_weicom_on_a_query(tmp_path):
    # red image, "blue" text: lam 0.3 keeps the image's red first, lam 0.9 follows the text to blue
    root = flat_dataset(tmp_path / "ds", [{"reference": G("red"), "text": "blue", "target": G("blue")}])
    image_side = evaluate(root, "weicom", tmp_path, options={"weicom": {"lam": 0.3}}).results[0]
    text_side = evaluate(root, "weicom", tmp_path, options={"weicom": {"lam": 0.9}}).results[0]
    assert image_side.method.options == {"lam": 0.3, "fusion": "weighted", "normalize": None}
    assert image_side.method.config["normalize"] is True  # "Weighted Similarities Norm"
    assert image_side.metrics["R@1"] == 0.0 and text_side.metrics["R@1"] == 100.0
    default = evaluate(root, "weicom", tmp_path).results[0]
    assert default.method.options["lam"] == 0.5  # the official --lambdas default


# -- plugins using the new hooks, installed as a real distribution ---------------------------------

PLUGIN = '''
import torch
from cirbench.contracts.method import Method, Option


class ScoredReranked(Method):
    """Scores with the image, re-ranks the top 3 by the text."""

    description = "third-party: image scores, text re-ranking"
    scoring = "scores"
    rerank_depth = 3
    options = {"weight": Option(float, 1.0, "text weight in the re-ranking")}

    def score(self, batch, gallery):
        g = torch.nn.functional.normalize(gallery.features, dim=-1)
        return torch.nn.functional.normalize(batch.reference_features, dim=-1) @ g.T

    def rerank(self, batch, candidates, scores):
        return -self.option("weight") * scores  # the top 3 in reverse order
'''


def test_a_third_party_plugin_using_the_new_hooks_runs_from_the_cli(tmp_path, mydata, tiny_dir):
    from cli_helpers import cirbench as cli

    site = tmp_path / "site"
    (site / "hook_plugin-0.1.dist-info").mkdir(parents=True)
    (site / "hook_plugin.py").write_text(PLUGIN)
    (site / "hook_plugin-0.1.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: hook-plugin\nVersion: 0.1\n")
    (site / "hook_plugin-0.1.dist-info" / "entry_points.txt").write_text(
        "[cirbench.methods]\nscored-reranked = hook_plugin:ScoredReranked\n")
    env = {"PYTHONPATH": str(site), "CIRBENCH_ENTRY_POINTS": "1", "CIRBENCH_CACHE": str(tmp_path / "cache")}
    listing = cli("list", "methods", cwd=tmp_path, env=env).stdout
    assert "scored-reranked" in listing and "-o scored-reranked.weight=FLOAT" in listing
    proc = cli("run", "-m", "scored-reranked,image-only", "--dataset", mydata, "--encoder", f"local-dir:{tiny_dir}",
               "--option", "scored-reranked.weight=0.5", "--workers", "0", "--json", cwd=tmp_path, env=env)
    records = {r["method"]["name"]: r for r in json.loads(proc.stdout)["results"]}
    assert records["scored-reranked"]["method"]["options"] == {"weight": 0.5}
    # scoring the gallery with the image is image-only's ranking; the re-ranking reverses its top 3 and
    # leaves the rest in place
    from cirbench.storage import results

    tops = {}
    for name in ("scored-reranked", "image-only"):
        path = result_file(tmp_path / "results", name)
        tops[name] = results.load_outcomes(results.read(path)).views["gallery"][0]
    assert (tops["scored-reranked"][:, :3] == tops["image-only"][:, 2::-1]).all()
    assert (tops["scored-reranked"][:, 3:] == tops["image-only"][:, 3:]).all()


def test_a_method_declares_the_kind_of_data_it_trains_on(tmp_path, monkeypatch):
    """A text-only trainer (as LinCIR trains): `cirbench train` collects captions for it from --texts."""

    class TextOnlyTrainer(Method):
        name = "text-trainer"
        training = "texts"

        @classmethod
        def train(cls, request):
            request.out.parent.mkdir(parents=True, exist_ok=True)
            request.out.write_text(json.dumps({"captions": len(request.texts), "first": request.texts[0]}))
            return request.out

    methods.names()  # load the registry first, then add the test's method for this test only
    monkeypatch.setitem(methods._items, "text-trainer", TextOnlyTrainer)
    monkeypatch.setitem(methods._origin, "text-trainer", "tests")
    TextOnlyTrainer.registry_name = "text-trainer"
    (tmp_path / "caps.txt").write_text("a red dog\n\na blue cat\n")
    result = CliRunner().invoke(app, ["train", "text-trainer", "--texts", str(tmp_path / "caps.txt"), "--encoder",
                                      "colour-test", "--cache-dir", str(tmp_path / "cache"), "--quiet"])
    assert result.exit_code == 0, result.output
    written = json.loads(open(result.output.strip()).read())
    assert written == {"captions": 2, "first": "a red dog"}
    result = CliRunner().invoke(app, ["train", "text-trainer", "--encoder", "colour-test", "--cache-dir",
                                      str(tmp_path / "cache"), "--quiet"])
    assert result.exit_code == 2 and "--texts FILE" in result.output


class Buggy(Method):
    name = "buggy"

    def compose(self, reference_features, texts):
        raise ZeroDivisionError("oops")


def test_a_bug_in_a_method_fails_its_cell_not_the_run(tmp_path):
    root = flat_dataset(tmp_path / "ds", [{"reference": G("red"), "text": "x", "target": G("yellow")}])
    ev = cirbench.evaluate(methods=[Buggy, "image-only"], datasets=[str(root)], encoder="colour-test", workers=0,
                           cache_dir=tmp_path / "cache", results_dir=None)
    status = {c.method: c.status for c in ev.cells}
    assert status == {"buggy": "failed", "image-only": "computed"}
    assert "method 'buggy' raised ZeroDivisionError: oops (" in str(ev.failures[0].error)


# -- hooks keep their promises ------------------------------------------------------------------------

class Recording(Method):
    """Records what its hooks receive."""

    name = "recording"
    whole_split = True
    rerank_depth = 3
    seen: dict = {}

    def encode_queries(self, batch):
        Recording.seen.setdefault("encode", []).append(len(batch))
        return batch.reference_features

    def rerank(self, batch, candidates, scores):
        from cirbench.contracts.method import Gallery

        Recording.seen.setdefault("rerank", []).append(len(batch))
        Recording.seen["gallery"] = isinstance(batch.gallery, Gallery) and batch.gallery.features.shape[0] == 6
        Recording.seen["devices"] = {str(candidates.device), str(scores.device), str(batch.gallery.features.device),
                                     str(batch.reference_features.device)}
        Recording.seen["candidates"] = candidates.tolist()
        return -scores


def test_rerank_gets_the_whole_split_the_gallery_and_device_tensors(tmp_path):
    """Three queries and batch size 1: a whole-split method's encode_queries and rerank each get one batch
    of three; rerank gets the Gallery on batch.gallery and every tensor on the run's device."""
    root = flat_dataset(tmp_path / "ds", [{"reference": G(c), "text": "x", "target": G("blue")}
                                          for c in ("red", "green", "white")])
    Recording.seen = {}
    (cell,) = evaluate(root, Recording, tmp_path, batch_size=1).cells
    assert cell.status == "computed"
    assert Recording.seen["encode"] == [3] and Recording.seen["rerank"] == [3]
    assert Recording.seen["gallery"] is True and Recording.seen["devices"] == {"cpu"}


def test_rerank_runs_on_subset_scoped_splits(tmp_path):
    """GeneCIS ranks each query's own gallery: re-ranking gets those members (best first) and its order
    is what the metrics read. Reversing a query's top 3 moves its first target from rank 1 to 3 here."""
    import real_fixtures as F

    root = F.genecis(tmp_path / "genecis")
    kw = dict(datasets=["genecis:focus_object"], data={"genecis": str(root)}, encoder="colour-test",
              transform="clip", workers=0, cache_dir=tmp_path / "c", results_dir=None)
    Recording.seen = {}
    rec = cirbench.evaluate(methods=[Recording], **kw).results[0]
    plain = cirbench.evaluate(methods=["image-only"], **kw).results[0]
    assert len(Recording.seen["candidates"]) == 3 and all(len(row) == 3 for row in Recording.seen["candidates"])
    assert rec.metrics != plain.metrics


def test_the_python_api_records_a_registered_plugin_under_its_registered_name(tmp_path, monkeypatch):
    class Unnamed(Method):  # no `name`: a plugin registered from an entry point or a --plugin file
        def compose(self, reference_features, texts):
            return reference_features

    methods.names()
    monkeypatch.setitem(methods._items, "my-plugin", Unnamed)
    root = flat_dataset(tmp_path / "ds", [{"reference": G("red"), "text": "x", "target": G("yellow")}])
    (cell,) = evaluate(root, Unnamed, tmp_path).cells
    assert cell.method == "my-plugin" and cell.record.method.name == "my-plugin"
