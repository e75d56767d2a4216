"""CIReVL, LDRE and SEIZE: from released texts (rankings worked out by hand) and generated locally by
tiny randomly initialised transformers models built from configs (no download).

CIRCO fixture: gallery 1 red, 2 red, 3 yellow, 4 blue, 5 red, 6 green, 7 white (identical JPEGs per
colour tie exactly and rank by gallery order); q0 reference 1, ground truth [5, 3]; q1 reference 4,
ground truth [7]. The colour test encoder's text feature is the first colour word's RGB.
"""

import json

import pytest
import torch
from typer.testing import CliRunner

import colour_encoder
import real_fixtures as F
from cirbench.cli import app
from helpers import result_file

colour_encoder.register()


def released(captions0, rewrites0, captions1, rewrites1, n=15):
    return {0: {"blip2_caption": captions0, "gpt-3.5-turbo": rewrites0, "multi_caption_opt": [captions0] * n,
                "multi_gpt-3.5_opt": [rewrites0] * n},
            1: {"blip2_caption": captions1, "gpt-3.5-turbo": rewrites1, "multi_caption_opt": [captions1] * n,
                "multi_gpt-3.5_opt": [rewrites1] * n}}


def run(tmp_path, root, methods, *extra, code=0, env=None):
    result = CliRunner().invoke(app, ["run", "--dataset", "circo", "--data", f"circo={root}", "--encoder", "colour-test",
                                      "--transform", "clip",  # the colour encoder has one transform
                                      "-m", methods, "--workers", "0", "--json", "--quiet", "--results-dir",
                                      str(tmp_path / "r"), "--cache-dir", str(tmp_path / "c"), *extra], env=env)
    assert result.exit_code == code, result.output
    return result


def records(result):
    return {r["method"]["name"]: r for r in json.loads(result.stdout)["results"]}


def test_cirevl_and_ldre_from_released_texts(tmp_path):
    """q0's rewrite "a red thing": the reds (1, 2, 5) rank first in gallery order, then yellow (cos .74),
    white (.63): the ground truth 5 at rank 3 and 3 at rank 4, AP@5 = (1/3 + 2/4) / 2. q1's "a white one":
    white first, AP = 1. mAP@5 = 70.83. LDRE's 15 rewrites are all the same text, so whatever the
    weights its ensemble is that text's feature: the same ranking."""
    root = F.circo_released(tmp_path / "circo", released("a blue thing", "a red thing", "a blue thing", "a white one"))
    got = records(run(tmp_path, root, "cirevl,ldre"))
    for name in ("cirevl", "ldre"):
        m = got[name]["metrics"]
        assert m["mAP@5"] == pytest.approx(100 * (5 / 12 + 1) / 2), name
        assert m["R@5"] == 100.0 and got[name]["method"]["config"]["texts"] == "released"
    assert got["cirevl"]["method"]["config"]["rewrite_field"] == "gpt-3.5-turbo"
    assert got["ldre"]["method"]["config"]["rewrites_field"] == "multi_gpt-3.5_opt"


def test_seize_from_released_texts(tmp_path):
    """q0: captions "a blue thing", rewrites "a red thing": the reds score 1 + 0.13 x 0.90 = 1.117, but the
    reference (1) is set to -1; yellow .74 + 0.13 x .64 = .83; white .63 (no change); green .10; blue
    .10 + 2.1 x (-.90) = -1.78. Ranking 2, 5, 3, 7, 6, 1, 4: AP@5 = (1/2 + 2/3) / 2. q1 ("a white one"
    over "a blue thing"): white first, AP = 1."""
    root = F.circo_released(tmp_path / "circo", released("a blue thing", "a red thing", "a blue thing", "a white one"))
    result = run(tmp_path, root, "seize")
    m = records(result)["seize"]["metrics"]
    assert m["mAP@5"] == pytest.approx(100 * (7 / 12 + 1) / 2)
    from cirbench.storage import results

    record = results.read(result_file(tmp_path / "r", "seize"))
    top, _ranks, _first = results.load_outcomes(record).views["gallery"]
    assert [record_id(record, g) for g in top[0, :7]] == ["2", "5", "3", "7", "6", "1", "4"]
    # the code's default factors (the ranking above would hold for other ones)
    config = records(result)["seize"]["method"]["config"]
    assert (config["neg_factor"], config["pos_factor"]) == (2.1, 0.13)


def record_id(record, index):
    from cirbench.storage import results

    return results.load_outcomes(record).gallery[index]


def test_ldre_weights_by_hand():
    from cirbench.methods.ldre import ensemble_weights

    x = torch.eye(2)  # two gallery items
    before = torch.tensor([[[1.0, 0.0]], [[1.0, 0.0]]])  # n = 2 captions, one query
    after = torch.tensor([[[0.0, 1.0]], [[1.0, 0.0]]])
    # index 0 moves the query away from item 0: drops (1, 0), top-1 sum 1; index 1 changes nothing: 0.
    # softmax([1, 0] / 1 / 0.04) = softmax([25, 0])
    w = ensemble_weights(after, before, x, topk=1, temperature=0.04)
    assert w.tolist() == pytest.approx([1 / (1 + torch.exp(torch.tensor(-25.0)).item()),
                                        torch.exp(torch.tensor(-25.0)).item() / (1 + torch.exp(torch.tensor(-25.0)).item())])


def test_cirevl_parses_the_edited_description_as_the_official_code():
    from cirbench.methods.cirevl import edited_description

    assert edited_description("Edited Description: a red dog", "rel") == "a red dog"
    assert edited_description("blah\n  Edited Description: a dog: with a hat\nmore", "rel") == "a dog"  # split(':')[1]
    assert edited_description("Edited Description:   ", "rel") == "rel"
    assert edited_description("no answer", "rel") == "rel"


def test_the_llm_methods_join_fashioniqs_two_captions_as_their_code():
    """CIReVL: "{c1} and {c2}", each stripped of '.?, ' at both ends; SEIZE: rel_caps[0] + rel_caps[1] as
    written. Captions with punctuation at both ends, inside, and a third caption make each habit visible;
    a query without two captions keeps its own text."""
    from types import SimpleNamespace

    from cirbench.generation.texts import concatenated_text, relative_text

    batch = SimpleNamespace(fields=[{"captions": [" ?is red, not blue. ", "has long sleeves?", "third."]}, {}],
                            texts=["joined 0", "own text"])
    assert relative_text(batch, 0) == "is red, not blue and has long sleeves"
    assert concatenated_text(batch, 0) == " ?is red, not blue. has long sleeves?"
    assert relative_text(batch, 1) == concatenated_text(batch, 1) == "own text"
    # the reasoner's instruction for LDRE and SEIZE is the concatenation (their scripts share it)
    from cirbench.methods.ldre import LDRE
    from cirbench.methods.seize import SEIZE

    assert LDRE.relative_text(None, batch, 0) == SEIZE.relative_text(None, batch, 0) == concatenated_text(batch, 0)


def test_seize_reads_the_gpt4o_rewrites_where_present_except_on_fashioniq():
    """SEIZE's released rewrites: multi_gpt-4o_opt where a split carries it, on every dataset but FashionIQ
    (whose official script reads the gpt-3.5 ones); datasets named before and after "fashioniq" in
    alphabetical order, so that no comparison but equality picks FashionIQ alone."""
    from types import SimpleNamespace

    from cirbench.methods.seize import SEIZE

    method = SEIZE(SimpleNamespace(options={"rewrites_field": None}))
    both = ("multi_gpt-4o_opt", "multi_gpt-3.5_opt")
    for dataset in ("circo", "cirr", "coco", "genecis", "imagenet_r", "world"):
        split = SimpleNamespace(dataset=dataset, query_fields=both)
        assert method.rewrites_field(split) == "multi_gpt-4o_opt", dataset
        assert method.rewrites_field(SimpleNamespace(dataset=dataset, query_fields=both[1:])) == "multi_gpt-3.5_opt"
    assert method.rewrites_field(SimpleNamespace(dataset="fashioniq", query_fields=both)) == "multi_gpt-3.5_opt"
    method.ctx.options["rewrites_field"] = "mine"
    assert method.rewrites_field(SimpleNamespace(dataset="fashioniq", query_fields=both)) == "mine"


def test_seize_scores_by_hand_with_a_reference_outside_the_gallery():
    """SEIZE's score s_after + 2.1 min(d, 0) + 0.13 max(d, 0) on a 3-item gallery, the reference set to
    -1 only where it is in the gallery: q0's reference is item 1; q1's is not in the gallery (position -1),
    and its last item, where a -1 position would land, keeps its score."""
    from types import SimpleNamespace

    from cirbench.methods.seize import SEIZE

    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    rewrites = torch.tensor([[[1.0, 0.0], [0.0, 2.0]], [[3.0, 0.0], [0.0, 2.0]]])  # n = 2 x Q = 2 x D
    captions = torch.tensor([[[0.0, 1.0], [3.0, 0.0]], [[0.0, 5.0], [1.0, 0.0]]])
    method = SEIZE(SimpleNamespace(options={"neg_factor": 2.1, "pos_factor": 0.13}))
    method.features = lambda batch, gallery: (rewrites, captions, x)
    score = method.score(SimpleNamespace(reference_positions=[1, -1]), None)
    # q0: after = x . (1, 0) = (1, 0, .6), before = x . (0, 1) = (0, 1, .8), d = (1, -1, -.2)
    # q1: after = x . (0, 1) = (0, 1, .8), before = x . (1, 0) = (1, 0, .6), d = (-1, 1, .2)
    expected = torch.tensor([[1 + 0.13, -1.0, 0.6 - 2.1 * 0.2], [-2.1, 1 + 0.13, 0.8 + 0.13 * 0.2]])
    assert torch.allclose(score, expected, atol=1e-6), score


def test_cirevl_picks_main_pys_prompt_per_dataset_and_genecis_task():
    """main.py's --llm_prompt per dataset; on GeneCIS the short prompt, but focus_object its own (the
    other three task names sort before and after it); a named prompt wins everywhere."""
    from types import SimpleNamespace

    from cirbench.methods.cirevl import CIReVL

    method = CIReVL(SimpleNamespace(options={"llm_prompt": None}))
    expected = {("genecis", "focus_object"): "short_focus_object_modifier_prompt",
                ("genecis", "focus_attribute"): "short_modifier_prompt",
                ("genecis", "change_object"): "short_modifier_prompt",
                ("genecis", "change_attribute"): "short_modifier_prompt",
                # a split of that name on a dataset named before or after genecis: not GeneCIS's
                ("circo", "focus_object"): "structural_modifier_prompt",
                ("imagenet_r", "focus_object"): "simple_modifier_prompt",
                ("cirr", "val"): "contextual_modifier_prompt",
                ("fashioniq", "dress"): "structural_modifier_prompt_fashion",
                ("imagenet_r", "val"): "simple_modifier_prompt", ("world", "val"): "simple_modifier_prompt"}
    got = {k: method.prompt_name(SimpleNamespace(dataset=k[0], split=k[1])) for k in expected}
    assert got == expected
    method.ctx.options["llm_prompt"] = "mine"
    assert method.prompt_name(SimpleNamespace(dataset="genecis", split="focus_object")) == "mine"


class _Batch(list):
    """A query batch of len() queries with the attributes a method reads."""

    def __init__(self, n, **attributes):
        super().__init__(range(n))
        self.__dict__.update(attributes)


def test_cirevl_asks_the_llm_as_main_py():
    """One chat turn per query: the prompt, "Image Content: " + the first caption, "Instruction: " + the
    relative caption, each on its own line; BLIP-2 with 5 beams and 30 new tokens; the LLM with up to 700
    new tokens (-o cirevl.max_new_tokens= sets them) stopping at a blank line; the edited description
    parsed out, else the relative caption."""
    from types import SimpleNamespace

    from cirbench.methods.cirevl import CIReVL

    seen = {}

    class Local:
        def captions(self, images, prompt, decoding):
            seen["captions"] = (images, prompt, decoding)
            return [["a dog", "unused"], ["a cat"]]

        def complete(self, conversations, key, decoding):
            seen["complete"] = (conversations, key, decoding)
            return ["Sure.\nEdited Description: a red dog\n", "no answer"]

    method = CIReVL(SimpleNamespace(options={"max_new_tokens": None}))
    method.source, method.local = "generate", Local()
    method.prompts = {"llm": ("structural_modifier_prompt", "BASE"), "blip": ("blip_prompt", "BLIP")}
    batch = _Batch(2, reference_images=["r0.jpg", "r1.jpg"], texts=["joined", "make it a cat"],
                   fields=[{"captions": ["is red.", "has sleeves"]}, {}])
    assert method.rewrites(batch) == ["a red dog", "make it a cat"]
    images, prompt, decoding = seen["captions"]
    assert (images, prompt, decoding.max_new_tokens, decoding.num_beams, decoding.sample) == (
        ["r0.jpg", "r1.jpg"], "BLIP", 30, 5, False)
    conversations, key, decoding = seen["complete"]
    assert conversations == [
        [{"role": "user", "content": "BASE\nImage Content: a dog\nInstruction: is red and has sleeves"}],
        [{"role": "user", "content": "BASE\nImage Content: a cat\nInstruction: make it a cat"}]]
    assert key["name"] == "structural_modifier_prompt"
    assert (decoding.max_new_tokens, decoding.stop, decoding.sample) == (700, ("\n\n",), False)
    method.ctx.options["max_new_tokens"] = 5
    method.rewrites(batch)
    assert seen["complete"][2].max_new_tokens == 5


def test_cirevl_adds_the_reference_on_genecis_focus_attribute_only():
    """main.py on GeneCIS focus_attribute: normalise(text) + normalise(reference image) (the engine
    normalises the sum); every other split the normalised text alone. Features of norms 5 and 2."""
    from types import SimpleNamespace

    from cirbench.methods.cirevl import CIReVL

    method = CIReVL(SimpleNamespace(text_features=lambda texts: torch.tensor([[3.0, 4.0]] * len(texts))))
    method.rewrites = lambda batch: ["a rewrite"]
    for split, expected in (("focus_attribute", [0.3, 0.9]), ("focus_object", [0.6, 0.8]),
                            ("change_attribute", [0.6, 0.8])):
        batch = _Batch(1, reference_features=torch.tensor([[0.0, 2.0]]),
                       split=SimpleNamespace(dataset="genecis", split=split))
        query = method.encode_queries(batch)
        assert torch.allclose(torch.nn.functional.normalize(query, dim=-1),
                              torch.nn.functional.normalize(torch.tensor([expected]), dim=-1)), split
    for dataset in ("circo", "imagenet_r"):  # a split of that name elsewhere (named before, after genecis)
        batch.split = SimpleNamespace(dataset=dataset, split="focus_attribute")
        assert torch.allclose(method.encode_queries(batch), torch.tensor([[0.6, 0.8]])), dataset
    # and the result says so on that split alone
    method.source, method.ctx.options = "released", {"rewrite_field": "gpt-3.5-turbo"}
    method.split = SimpleNamespace(dataset="genecis", split="focus_attribute")
    assert "normalise(reference image)" in method.config()["query"]
    method.split = SimpleNamespace(dataset="genecis", split="focus_object")
    assert method.config() == {"texts": "released", "rewrite_field": "gpt-3.5-turbo"}


def test_released_texts_asked_for_but_absent(tmp_path):
    root = F.circo(tmp_path / "circo")
    result = run(tmp_path, root, "cirevl", "--option", "cirevl.texts=released", code=2)
    assert "needs the released texts gpt-3.5-turbo" in result.output


# -- generated locally ------------------------------------------------------------------------------

CIREVL_PROMPTS = 'blip_prompt = "a photo of"\nstructural_modifier_prompt = "edit the image content ."\n'
LDRE_SCRIPT = ('for ans in []:\n    sys_prompt = "a system ."\n'
               '    usr_prompt = "image content : {} instruction : {} edited description :".format(cap, rel_cap)\n')


@pytest.fixture
def models(hf_models):
    return hf_models


def generating(models, method, prompts_file, *extra, tokens=8):
    blip2, llm = models
    return ["--option", f"{method}.captioner={blip2}", "--option", f"{method}.llm={llm}", "--option",
            f"{method}.prompts_file={prompts_file}", "--option", f"{method}.max_new_tokens={tokens}", *extra]


def test_cirevl_generates_captions_and_rewrites_once(tmp_path, models, monkeypatch):
    """Without released texts CIReVL captions the references and asks the LLM; the tiny LLM never writes
    an "Edited Description:" line, so (as the official code) the relative caption is the query: the same
    ranking as text-only. A rerun reads the texts back from the artefact store."""
    from cirbench.generation.models import Captioner, Rewriter

    calls = {"caption": 0, "complete": 0}
    caption, complete = Captioner.caption, Rewriter.complete

    def counting_caption(self, images, *a, **k):
        calls["caption"] += len(images)
        return caption(self, images, *a, **k)

    def counting_complete(self, conversations, *a, **k):
        calls["complete"] += len(conversations)
        return complete(self, conversations, *a, **k)

    monkeypatch.setattr(Captioner, "caption", counting_caption)
    monkeypatch.setattr(Rewriter, "complete", counting_complete)
    root = F.circo(tmp_path / "circo")
    (tmp_path / "prompts.py").write_text(CIREVL_PROMPTS)
    got = records(run(tmp_path, root, "cirevl,text-only", *generating(models, "cirevl", tmp_path / "prompts.py")))
    assert calls == {"caption": 2, "complete": 2}
    assert got["cirevl"]["metrics"] == got["text-only"]["metrics"]
    config = got["cirevl"]["method"]["config"]
    assert config["texts"] == "generate" and config["captioner"] == str(models[0])
    assert config["captioner_revision"].startswith("local-") and config["llm_prompt"] == "structural_modifier_prompt"
    assert config["blip_prompt"] == "a photo of"
    # the prompt's own text identified (its digest), not its name
    import hashlib

    assert config["llm_prompt_sha256"] == hashlib.sha256(b"edit the image content .").hexdigest()[:16]
    stored = list((tmp_path / "c" / "artefacts" / "cirevl").glob("*.json"))
    assert len(stored) == 2 and {json.loads(p.read_text())["producer"]["task"] for p in stored} == {"caption", "rewrite"}
    run(tmp_path, root, "cirevl", "--overwrite", *generating(models, "cirevl", tmp_path / "prompts.py"))
    assert calls == {"caption": 2, "complete": 2}  # read back, not generated again
    run(tmp_path, root, "cirevl", "--overwrite", *generating(models, "cirevl", tmp_path / "prompts.py", tokens=9))
    assert calls == {"caption": 2, "complete": 4}  # other decoding settings: new rewrites, same captions


def test_ldre_and_seize_generate_n_sampled_captions_deterministically(tmp_path, models):
    from cirbench.storage.artefacts import ArtefactStore

    root = F.circo(tmp_path / "circo")
    (tmp_path / "reason.py").write_text(LDRE_SCRIPT)
    args = [*generating(models, "ldre", tmp_path / "reason.py", "--option", "ldre.n=3"),
            *generating(models, "seize", tmp_path / "reason.py", "--option", "seize.n=3")]
    first = records(run(tmp_path, root, "ldre,seize", *args))
    config = first["ldre"]["method"]["config"]
    assert config["texts"] == "generate" and config["prompts_file"] == "reason.py" and len(config["prompts_sha256"]) == 16
    store = ArtefactStore(tmp_path / "c", "ldre")
    entries = store._load()
    captions = [v for v in entries.values() if isinstance(v, list)]
    assert len(captions) == 2 and all(len(c) == 3 for c in captions)  # 3 sampled captions per reference
    assert sum(isinstance(v, str) for v in entries.values()) == 6  # one rewrite per caption
    # seeded per image: another cache gives the same texts and so the same numbers
    again = records(run(tmp_path / "other", root, "ldre,seize", *args))
    assert again["ldre"]["metrics"] == first["ldre"]["metrics"]
    assert again["seize"]["metrics"] == first["seize"]["metrics"]
    assert sorted(map(str, ArtefactStore(tmp_path / "other" / "c", "ldre")._load().values())) == sorted(
        map(str, entries.values()))


def test_a_missing_model_is_one_line_naming_it_and_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    root = F.circo(tmp_path / "circo")
    (tmp_path / "prompts.py").write_text(CIREVL_PROMPTS)
    result = run(tmp_path, root, "cirevl", "--option", "cirevl.captioner=nobody/no-such-blip2", "--option",
                 f"cirevl.prompts_file={tmp_path / 'prompts.py'}", code=2)
    line = [x for x in result.output.splitlines() if x.startswith("error: cirevl")][0]
    assert "cannot load the captioner's processor 'nobody/no-such-blip2' (offline" in line
    assert "looked in the local cache" in line
    # under --method all it is skipped with a note instead, as methods without released weights
    result = run(tmp_path, root, "all", "--option", "cirevl.captioner=nobody/no-such-blip2", "--option",
                 f"cirevl.prompts_file={tmp_path / 'prompts.py'}", code=2)
    cells = {c["method"]: c["status"] for c in json.loads(result.stdout)["cells"]}
    assert cells["cirevl"] == "skipped" and cells["ldre"] == "skipped" and cells["seize"] == "skipped"
    # so is a released-phi method without its weights (SEARLE; LinCIR fails first: this encoder cannot
    # round its weights to fp16 as LinCIR's code does); a method one trains here is a failure
    assert cells["searle"] == "skipped" and cells["pic2word"] == "failed" and cells["combiner"] == "failed"


def test_without_transformers_one_line_names_the_extra(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_transformers(name, *args, **kwargs):
        if name == "transformers" or name.startswith("transformers."):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_transformers)
    root = F.circo(tmp_path / "circo")
    (tmp_path / "prompts.py").write_text(CIREVL_PROMPTS)
    result = run(tmp_path, root, "cirevl", "--option", f"cirevl.prompts_file={tmp_path / 'prompts.py'}", code=2)
    assert 'pip install -e ".[llm]"' in result.output


def test_official_prompt_reading(tmp_path):
    from cirbench.errors import UsageError
    from cirbench.generation.models import official_prompt

    (tmp_path / "p.py").write_text(CIREVL_PROMPTS + LDRE_SCRIPT)
    assert official_prompt(tmp_path / "p.py", "blip_prompt") == "a photo of"
    assert official_prompt(tmp_path / "p.py", "usr_prompt").format("A", "B") == \
        "image content : A instruction : B edited description :"
    with pytest.raises(UsageError, match="assigns no string to 'missing'"):
        official_prompt(tmp_path / "p.py", "missing")


def test_cirr_passes_released_fields_through_to_cirevl(tmp_path):
    """LDRE's released CIRR test1 file is cap.rc2.test1.json with extra fields per query; the only query
    (reference blue, subset {blue, green, yellow}) rewritten "a yellow one": yellow first among the
    subset (the reference removed), so CIReVL's Rs@1 ranking puts test1-0-1-img0 first."""
    from cirbench.api import open_dataset

    root = tmp_path / "data"
    path = F.cirr(root / "cirr") / "cirr" / "captions" / "cap.rc2.test1.json"
    rows = json.loads(path.read_text())
    rows[0].update({"blip2_caption": "a blue thing", "gpt-3.5-turbo": "a yellow one"})
    path.write_text(json.dumps(rows))
    dataset, _ = open_dataset("cirr:test1", data_root=root, cache_dir=tmp_path / "c")
    query = dataset.load("test1").queries[0]
    assert query.fields["gpt-3.5-turbo"] == "a yellow one" and "img_set" not in query.fields
    result = CliRunner().invoke(app, ["run", "--dataset", "cirr:test1", "--data-root", str(root), "--encoder",
                                      "colour-test", "--transform", "clip", "-m", "cirevl", "--workers", "0",
                                      "--quiet", "--json", "--results-dir", str(tmp_path / "r"), "--cache-dir",
                                      str(tmp_path / "c")])
    assert result.exit_code == 0, result.output
    submission = json.loads(next((tmp_path / "r").rglob("*subset*.json")).read_text())
    assert submission["7"][0] == "test1-0-1-img0"
