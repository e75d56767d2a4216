"""Pic2Word training: resumable, and the same loss and gradient on 2 processes as on 1."""

from pathlib import Path

import pytest
import torch

from cirbench.contracts.registry import methods
from helpers import pic2word_request


def request(encoder, out, features, epochs, resume=False):
    return pic2word_request(encoder, out, features, epochs=epochs, batch_size=8, lr=1e-3,
                            options={"middle_dim": "16", "warmup": "2"}, resume=resume)


class Interrupt:
    """A progress display that stops the run (like Ctrl-C) after a number of steps."""

    def __init__(self, after: int):
        self.after = after

    def task(self, *_args, **_kwargs):
        return self

    def advance(self, n=1, *_args):
        self.after -= n
        if self.after < 0:
            raise KeyboardInterrupt


def test_resume_continues_to_the_same_weights(tmp_path, tiny_encoder):
    torch.manual_seed(0)
    features = torch.randn(20, tiny_encoder.embed_dim)
    train = methods.get("pic2word").train
    train(request(tiny_encoder, tmp_path / "straight.pt", features, 3))
    interrupted = request(tiny_encoder, tmp_path / "resumed.pt", features, 3)
    interrupted.progress = Interrupt(after=4)  # 3 steps an epoch: stops during the second epoch
    with pytest.raises(KeyboardInterrupt):
        train(interrupted)
    assert torch.load(tmp_path / "resumed.pt", weights_only=True)["epoch"] == 1
    train(request(tiny_encoder, tmp_path / "resumed.pt", features, 3, resume=True))
    a = torch.load(tmp_path / "straight.pt", weights_only=True)
    b = torch.load(tmp_path / "resumed.pt", weights_only=True)
    assert a["epoch"] == b["epoch"] == 3
    for key, value in a["state_dict_img2text"].items():
        assert torch.allclose(value, b["state_dict_img2text"][key], atol=1e-6), key
    assert set(a["state_dict_img2text"]) == {"layers.0.0.weight", "layers.0.0.bias", "layers.1.0.weight",
                                             "layers.1.0.bias", "fc_out.weight", "fc_out.bias"}


def _loss_and_grad(encoder, net, features):
    from cirbench.util import distributed
    from cirbench.methods.pic2word import contrastive_loss

    net.zero_grad()
    loss = contrastive_loss(net, encoder, features, encoder.logit_scale)
    loss.backward()
    distributed.average_gradients(net)
    return loss.item(), {k: p.grad.clone() for k, p in net.named_parameters()}


def _worker(rank, world, init_file, tiny_dir, out_dir):
    import torch.distributed as dist

    from cirbench.contracts.encoder import load_encoder
    from cirbench.methods.pic2word import build_mapping

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    encoder = load_encoder(f"local-dir:{tiny_dir}")
    torch.manual_seed(0)
    features = torch.randn(8, encoder.embed_dim)
    net = build_mapping(encoder.embed_dim, 16, encoder.token_width, dropout=0.0)
    loss, grads = _loss_and_grad(encoder, net, features.tensor_split(world)[rank])
    torch.save({"loss": loss, "grads": grads}, Path(out_dir) / f"rank{rank}.pt")
    dist.destroy_process_group()


@pytest.mark.slow
def test_two_gloo_processes_match_one(tmp_path, tiny_dir, tiny_encoder):
    import torch.multiprocessing as mp

    from cirbench.methods.pic2word import build_mapping

    torch.manual_seed(0)
    features = torch.randn(8, tiny_encoder.embed_dim)
    net = build_mapping(tiny_encoder.embed_dim, 16, tiny_encoder.token_width, dropout=0.0)
    single_loss, single_grads = _loss_and_grad(tiny_encoder, net, features)

    mp.spawn(_worker, args=(2, str(tmp_path / "init"), str(tiny_dir), str(tmp_path)), nprocs=2, join=True)
    for rank in range(2):
        got = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        assert got["loss"] == pytest.approx(single_loss, rel=1e-5)
        for key, grad in single_grads.items():
            assert torch.allclose(got["grads"][key], grad, atol=1e-6, rtol=1e-4), key
