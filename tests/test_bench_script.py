"""The benchmark script's scale measurement works on a small gallery (its figures are not asserted:
speed is shown by the script, not by timed tests)."""

import importlib.util
from pathlib import Path


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
