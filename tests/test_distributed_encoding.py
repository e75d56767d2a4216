"""Gallery encoding sharded over 2 gloo processes gives the single process's features and rankings."""

from pathlib import Path

import pytest
import torch

from helpers import COLORS, SHAPES, render

pytestmark = pytest.mark.slow


def images(folder: Path) -> list[Path]:
    return [render(folder / f"{s}_{c}_{o}.png", s, c, offset=o) for s in SHAPES for c in COLORS for o in (0, 3)]


def _worker(rank, world, init_file, tiny_dir, folder, out_dir):
    import torch.distributed as dist

    from cirbench.contracts.encoder import load_encoder
    from cirbench.storage.features import FeatureStore

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    encoder = load_encoder(f"local-dir:{tiny_dir}")
    paths = sorted(Path(folder).glob("*.png"))
    store = FeatureStore(encoder, Path(out_dir) / "cache", batch_size=5, workers=0)
    feats, bad = store.features(paths)
    torch.save({"feats": feats, "bad": bad, "misses": store.misses}, Path(out_dir) / f"rank{rank}.pt")
    dist.destroy_process_group()


def test_two_processes_encode_like_one(tmp_path, tiny_dir, tiny_encoder):
    import torch.multiprocessing as mp

    from cirbench.storage.features import FeatureStore
    from cirbench.protocol.scoring import normalize, topk

    folder = tmp_path / "images"
    paths = sorted(images(folder))
    (folder / "zz_broken.png").write_bytes(b"not an image")
    paths = sorted(folder.glob("*.png"))
    single, single_bad = FeatureStore(tiny_encoder, tmp_path / "single", batch_size=5, workers=0).features(paths)
    mp.spawn(_worker, args=(2, str(tmp_path / "init"), str(tiny_dir), str(folder), str(tmp_path)), nprocs=2,
             join=True)
    for rank in range(2):
        got = torch.load(tmp_path / f"rank{rank}.pt", weights_only=False)
        assert torch.equal(got["feats"].nan_to_num(7.0), single.nan_to_num(7.0))  # bit for bit
        assert [b[0] for b in got["bad"]] == [b[0] for b in single_bad] == [len(paths) - 1]
    ok = ~torch.isnan(single).any(dim=1)
    g1, g2 = normalize(single[ok]), normalize(got["feats"][ok])
    assert torch.equal(topk(g1[:10], g1, 20)[1], topk(g2[:10], g2, 20)[1])
    # the main process wrote the cache: a later single process finds every readable image there
    again = FeatureStore(tiny_encoder, tmp_path / "cache", batch_size=5, workers=0)
    feats, _ = again.features(paths)
    assert again.hits == len(paths) - 1 and torch.equal(feats.nan_to_num(7.0), single.nan_to_num(7.0))
