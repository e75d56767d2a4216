"""The benchmark script's scale and first-run measurements work on small cases (their figures are not
asserted: speed is shown by the script, not by timed tests)."""

import importlib.util
from pathlib import Path

import pytest


def load_bench():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench.py"
    spec = importlib.util.spec_from_file_location("bench", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_scale_worker_reports_its_figures():
    """The scale figure's top-k is the full sort's (checked inside the worker on a gallery this small),
    its per-query time is its total over its queries, and the memory it reports above a 0.3 MiB gallery
    stays far under the 512 MiB the figure targets for a 1,465 MiB one."""
    bench = load_bench()
    out = bench.scale_worker(5000, 20, 32, 7)
    assert out["result_shape"] == [20, 7] and out["matches_full_sort"] is True
    assert out["gallery_mib"] == 5000 * 32 * 2 / 2**20
    assert out["ms_per_query"] == 1000 * out["seconds"] / 20
    assert out["scale_extra_mib"] < 64


@pytest.mark.slow
def test_first_run_figure_times_every_stage(tmp_path):
    """The first-run figure, on the miniature world: a cold run from this tree timed stage by stage (the
    tiny world has no shipped small CLIP, so it is trained), the report, then a warm rerun that trains
    and renders nothing."""
    bench = load_bench()
    root = Path(__file__).resolve().parents[1]
    run = bench.first_run(root, tmp_path, "this tree", ["world=tiny"])
    stages = run["stages_s"]
    assert set(stages) == {"render", "small CLIP", "Pic2Word", "Combiner", "encoding", "ranking", "other", "report"}
    for stage in ("render", "small CLIP", "Pic2Word", "Combiner", "encoding", "ranking", "report"):
        assert stages[stage] > 0, stage
    assert sum(stages.values()) == pytest.approx(run["cold_s"])
    assert sum(run["stage_share"].values()) == pytest.approx(1.0)
    warm = run["warm_stages_s"]  # the rerun renders, trains and encodes nothing
    assert warm["render"] == warm["small CLIP"] == warm["Pic2Word"] == warm["Combiner"] == warm["encoding"] == 0
    assert run["warm_s"] == pytest.approx(sum(warm.values()))
    assert (tmp_path / "project" / "reports" / "results.md").is_file()
