"""Pic2Word (Saito et al., CVPR 2023): a mapping network turns the image into a pseudo-word.

The network f_M maps the (unnormalised) CLIP image feature to the input embedding of the pseudo-word
``*``; the query is the text feature of the split's pseudo prompt (e.g. "a photo of * , {text}") with
that embedding injected. Trained on unlabeled images only, with the encoder frozen:
``cirbench train pic2word --images DIR``. Checkpoints use the official layout
(``state_dict_img2text`` with keys layers.N.0.* and fc_out.*; a ``module.`` prefix is accepted).

The slot is the template's own ``*``: a ``*`` inside a caption stays text. (The official code takes
the first ``*`` of the first prompt of a batch; every official template puts the slot before the
text, so both agree there.)
"""

from __future__ import annotations

import re

from cirbench.storage import checkpoints
from cirbench.contracts.method import Method, TrainRequest, register_method
from cirbench.protocol.prompts import split_pseudo
from cirbench.training.loop import (batches, decay_groups, option, steps_per_epoch, symmetric_infonce,
                               warmup_cosine)

TRAIN_PROMPT = "a photo of *"
HOW_TO_TRAIN = "train one with `cirbench train pic2word --encoder ENCODER --images FOLDER_OR_MANIFEST`"


def build_mapping(embed_dim: int, middle_dim: int, output_dim: int, n_layer: int = 2, dropout: float = 0.1):
    """The paper's IM2TEXT network; parameter names match the released checkpoint."""
    import torch.nn as nn

    class Mapping(nn.Module):
        def __init__(self):
            super().__init__()
            blocks, dim = [], embed_dim
            for _ in range(n_layer):
                blocks.append(nn.Sequential(nn.Linear(dim, middle_dim), nn.Dropout(dropout), nn.ReLU()))
                dim = middle_dim
            self.layers = nn.Sequential(*blocks)
            self.fc_out = nn.Linear(middle_dim, output_dim)

        def forward(self, x):
            return self.fc_out(self.layers(x))

    return Mapping()


def mixed_precision(device, opts: dict):
    """The training step's precision: bfloat16 autocast on a GPU unless ``-o amp=0``, full precision on
    the CPU. Not the official code's: its --precision amp default autocasts to float16 and scales the
    loss with a GradScaler (src/trainer.py); cirbench's bfloat16 needs no scaler."""
    import contextlib

    import torch

    if str(device).startswith("cuda") and option(opts, "amp", 1):
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def load_mapping(path, encoder):
    """Load f_M from a checkpoint in the official layout, checking it fits the encoder."""
    from cirbench.errors import DataError

    ckpt = checkpoints.load(path)
    state = checkpoints.section(ckpt, "state_dict_img2text", path)
    n_layer = len({m.group(1) for k in state if (m := re.match(r"layers\.(\d+)\.0\.weight$", k))})
    expected = {f"layers.{i}.0.{p}" for i in range(n_layer) for p in ("weight", "bias")}
    expected |= {"fc_out.weight", "fc_out.bias"}
    checkpoints.check_keys(state, expected, path, "Pic2Word")
    middle, in_dim = state["layers.0.0.weight"].shape
    out_dim = state["fc_out.weight"].shape[0]
    if in_dim != encoder.embed_dim or out_dim != encoder.token_width:
        raise DataError(
            f"{path}: this Pic2Word mapping takes {in_dim}-d image features to {out_dim}-d token embeddings, "
            f"but encoder {encoder.label!r} has {encoder.embed_dim}-d features and {encoder.token_width}-d "
            f"token embeddings (a checkpoint for another backbone?)")
    net = checkpoints.instantiate(lambda: build_mapping(in_dim, middle, out_dim, n_layer), state, path)
    return net, ckpt


@register_method("pic2word")
class Pic2Word(Method):
    description = "Pic2Word mapping network f_M; pseudo-word * in the split's prompt"
    display_order = 3
    training = "images"
    takes_checkpoint = True

    def __init__(self, ctx):
        super().__init__(ctx)
        self.path = None
        self.net = None

    def prepare(self, split):
        path = checkpoints.locate(self.ctx, "pic2word", split, None, HOW_TO_TRAIN)
        if path != self.path:
            self.net, ckpt = load_mapping(path, self.ctx.encoder)
            self.net.to(self.ctx.encoder.device)
            self.path, self.checkpoint_info = path, checkpoints.describe(path, ckpt)
        split_pseudo(split.prompts["pseudo"], "*")  # fail before any work if the template has no slot

    def encode_queries(self, batch):
        import torch

        with torch.no_grad():
            tokens = self.net(batch.reference_features.float().to(next(self.net.parameters()).device))
            prompts, prefixes = batch.pseudo_prompts(self.split.prompts["pseudo"], "*")
            return self.ctx.encoder.encode_texts_with_pseudo(prompts, tokens, "*", prefixes)

    def config(self):
        return {"prompt": self.split.prompts["pseudo"], "checkpoint": self.checkpoint_info}

    @classmethod
    def train(cls, request: TrainRequest):
        """The official recipe: frozen encoder, symmetric InfoNCE at the encoder's logit scale between the
        image feature and the text feature of "a photo of *", AdamW (no decay on biases), warm-up then
        cosine. Under torchrun each rank takes its slice of every global batch and the features of all
        ranks are gathered for the loss. A checkpoint is written after every epoch; --resume continues."""
        import torch

        from cirbench.util import distributed
        from cirbench.errors import UsageError

        enc, opts = request.encoder, request.options
        rank, world = distributed.world()
        epochs = request.epochs or 30
        batch_size = request.batch_size or 128  # per process, as in the paper (128 per GPU)
        lr = request.lr or 1e-4
        middle = option(opts, "middle_dim", 512)
        features = request.image_features(request.images)  # frozen encoder: features come from the cache
        torch.manual_seed(request.seed)
        net = build_mapping(enc.embed_dim, middle, enc.token_width).to(request.device)
        optim = torch.optim.AdamW(decay_groups(net, option(opts, "weight_decay", 0.1)), lr=lr,
                                  betas=(0.9, 0.98), eps=1e-6)
        global_batch = batch_size * world
        per_epoch = steps_per_epoch(len(features), global_batch)
        total = epochs * per_epoch
        warmup = option(opts, "warmup", min(10000, max(1, total // 10)))
        set_lr = warmup_cosine(optim, lr, warmup, total)
        start = 0
        if request.resume and request.out.is_file():
            ckpt = checkpoints.load(request.out)
            meta = ckpt.get("cirbench", {})
            if meta.get("encoder_key") != enc.key or meta.get("middle_dim") != middle:
                raise UsageError(f"{request.out}: cannot resume: it was trained for another encoder or size")
            net.load_state_dict(checkpoints.section(ckpt, "state_dict_img2text", request.out))
            optim.load_state_dict(ckpt["optimizer"])
            start = int(ckpt["epoch"])
        amp = mixed_precision(request.device, opts)
        scale = enc.logit_scale
        step, last = start * per_epoch, float("nan")
        task = request.progress.task("train pic2word", total=total) if request.progress and rank == 0 else None
        if task:
            task.advance(step)
        for epoch in range(start, epochs):
            net.train()
            torch.manual_seed(request.seed * 100003 + epoch)  # dropout and order: an epoch is resumable
            generator = torch.Generator().manual_seed(request.seed * 100003 + epoch)
            for idx in batches(len(features), global_batch, generator):
                local = idx.tensor_split(world)[rank] if world > 1 else idx
                with amp:
                    loss = contrastive_loss(net, enc, features[local].to(request.device), scale)
                set_lr(step)
                optim.zero_grad(set_to_none=True)
                loss.backward()
                distributed.average_gradients(net)
                optim.step()
                step, last = step + 1, loss.item()
                if task:
                    task.advance(1, f"epoch {epoch + 1}/{epochs} loss {last:.3f}")
            if distributed.is_main():
                checkpoints.save(request.out, {
                    "epoch": epoch + 1, "name": "cirbench-pic2word", "state_dict": {},
                    "state_dict_img2text": net.state_dict(), "optimizer": optim.state_dict(),
                    "cirbench": {"trained_on": f"{len(features)} unlabeled images", "epochs": epoch + 1,
                                 "encoder": enc.identity, "encoder_key": enc.key, "middle_dim": middle,
                                 "batch_size_per_process": batch_size, "processes": world, "lr": lr,
                                 "warmup": warmup, "seed": request.seed, "final_loss": last}})
            distributed.barrier()
        return request.out


def contrastive_loss(net, encoder, image_features, logit_scale: float):
    """Pic2Word's loss on this process's images; with several processes, the features of every rank
    are gathered (differentiably) so the loss sees the global batch."""
    from cirbench.util import distributed

    text = encoder.encode_texts_with_pseudo([TRAIN_PROMPT] * len(image_features), net(image_features.float()))
    image = distributed.gather(image_features.float(), with_grad=False)
    return symmetric_infonce(image, distributed.gather(text), logit_scale)
