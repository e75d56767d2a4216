"""The CLIP4Cir Combiner (Baldrati et al., 2022): a supervised fusion of image and text features.

NOT zero-shot: it is trained on a benchmark's own train triplets (``cirbench train combiner --dataset
NAME``) and every table marks it supervised with the training set it used. Checkpoints use the
official layout ``{'epoch': e, 'Combiner': state_dict}`` (GeneCIS's combiner head, the same network
saved as a bare state dict, loads too); the projection and hidden sizes are read from the weights.

Protocol of CLIP4Cir's validate.py: TargetPad (ratio 1.25) images; on FashionIQ the text
"{c1} and {c2}" with each caption stripped of '.?, ' and the first capitalised; elsewhere the caption.
"""

from __future__ import annotations

from cirbench.storage import checkpoints
from cirbench.contracts.method import Method, TrainRequest, register_method
from cirbench.contracts.split import CAPTION_STRIP, relative_captions
from cirbench.training.loop import batches, option, steps_per_epoch

KEYS = {f"{layer}.{p}" for layer in ("text_projection_layer", "image_projection_layer", "combiner_layer",
                                      "output_layer", "dynamic_scalar.0", "dynamic_scalar.3")
        for p in ("weight", "bias")}


def build_combiner(feature_dim: int, projection_dim: int, hidden_dim: int):
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    class Combiner(nn.Module):
        def __init__(self):
            super().__init__()
            self.text_projection_layer = nn.Linear(feature_dim, projection_dim)
            self.image_projection_layer = nn.Linear(feature_dim, projection_dim)
            self.dropout1, self.dropout2, self.dropout3 = nn.Dropout(0.5), nn.Dropout(0.5), nn.Dropout(0.5)
            self.combiner_layer = nn.Linear(projection_dim * 2, hidden_dim)
            self.output_layer = nn.Linear(hidden_dim, feature_dim)
            self.dynamic_scalar = nn.Sequential(nn.Linear(projection_dim * 2, hidden_dim), nn.ReLU(),
                                                nn.Dropout(0.5), nn.Linear(hidden_dim, 1), nn.Sigmoid())

        def forward(self, image_features, text_features):
            text = self.dropout1(F.relu(self.text_projection_layer(text_features)))
            image = self.dropout2(F.relu(self.image_projection_layer(image_features)))
            joint = torch.cat((text, image), -1)
            mixed = self.dropout3(F.relu(self.combiner_layer(joint)))
            lam = self.dynamic_scalar(joint)
            out = self.output_layer(mixed) + lam * text_features + (1 - lam) * image_features
            return F.normalize(out, dim=-1)

    return Combiner()


def load_combiner(path, encoder):
    from cirbench.errors import DataError

    ckpt = checkpoints.load(path)
    if "Combiner" not in ckpt and {k.removeprefix("module.") for k in ckpt} == KEYS:
        ckpt = {"Combiner": ckpt}  # GeneCIS's released combiner head: the state dict itself
    state = checkpoints.section(ckpt, "Combiner", path)
    checkpoints.check_keys(state, KEYS, path, "CLIP4Cir Combiner")
    projection, feature_dim = state["text_projection_layer.weight"].shape
    hidden = state["combiner_layer.weight"].shape[0]
    if feature_dim != encoder.embed_dim:
        raise DataError(f"{path}: this Combiner takes {feature_dim}-d features but encoder {encoder.label!r} "
                        f"gives {encoder.embed_dim}-d (a checkpoint for another backbone?)")
    net = checkpoints.instantiate(lambda: build_combiner(feature_dim, projection, hidden), state, path)
    return net, ckpt


def clip4cir_caption(captions, order: str | None) -> str:
    """CLIP4Cir's validate.py text for a query's two relative captions (already stripped of '.?, ': see
    relative_captions): the first capitalised, joined with "and" in annotation order (c1 first) unless an
    order is forced."""
    c1, c2 = captions
    if order == "official":  # Pic2Word's order (c2 first), when the user asks for it explicitly
        c1, c2 = c2, c1
    return f"{c1.capitalize()} and {c2}"


def clip4cir_training_texts(captions) -> list[str]:
    """The four texts CLIP4Cir's combiner_train.py draws from, at each step, for a triplet with two
    relative captions (utils.generate_randomized_fiq_caption), in its order: "C1 and c2", "C2 and c1",
    "C1", "C2" -- from the two captions already stripped of '.?, ', the first capitalised."""
    c1, c2 = captions
    return [clip4cir_caption(captions, None), clip4cir_caption(captions, "official"), c1.capitalize(),
            c2.capitalize()]


@register_method("combiner")
class Combiner(Method):
    description = "CLIP4Cir Combiner (supervised: trained on the dataset's train triplets)"
    supervised = True
    training = "triplets"
    takes_checkpoint = True
    default_transform = "targetpad"  # CLIP4Cir's validate.py default (TargetPad, ratio 1.25)

    def __init__(self, ctx):
        super().__init__(ctx)
        self.path = None

    def prepare(self, split):
        how = f"train one with `cirbench train combiner --encoder ENCODER --dataset {split.dataset}`"
        path = checkpoints.locate(self.ctx, "combiner", split, split.dataset, how)
        if path != self.path:
            self.net, ckpt = load_combiner(path, self.ctx.encoder)
            self.net.to(self.ctx.encoder.device)
            self.path, self.checkpoint_info = path, checkpoints.describe(path, ckpt)
            self.train_dataset = ckpt.get("cirbench", {}).get("train_dataset", "unknown (external checkpoint)")

    def texts(self, batch) -> list[str]:
        prompts = batch.prompts("text")
        pairs = [relative_captions(f, CAPTION_STRIP) for f in batch.fields]
        return [clip4cir_caption(c, batch.split.caption_order) if c else p for c, p in zip(pairs, prompts)]

    def encode_queries(self, batch):
        import torch

        text = self.ctx.text_features(self.texts(batch)).to(batch.reference_features.device)
        with torch.no_grad():
            return self.net(batch.reference_features.float(), text.float())

    def config(self):
        rule = ("two relative captions: c1.strip('.?, ').capitalize() + ' and ' + c2.strip('.?, ') "
                f"(CLIP4Cir validate.py){'; order forced: ' + self.split.caption_order if self.split.caption_order else ''}"
                if "captions" in self.split.query_fields else "one text per query, as the split's text prompt gives it")
        return {"prompt": self.split.prompts["text"], "caption_rule": rule, "checkpoint": self.checkpoint_info,
                "train_dataset": self.train_dataset, "supervised": True}

    def protocol(self, config):
        return {"text": config["prompt"], "notes": [config["caption_rule"]]}

    @classmethod
    def training_defaults(cls, encoder) -> dict:
        # CLIP4Cir's sizes are 4x and 8x the feature width (2560 and 5120 for RN50x4's 640)
        return {"projection_dim": 4 * encoder.embed_dim, "hidden_dim": 8 * encoder.embed_dim}

    @classmethod
    def train(cls, request: TrainRequest):
        import torch
        import torch.nn.functional as F

        enc, opts = request.encoder, request.options
        # CLIP4Cir's README training command: 300 epochs (combiner_train.py's default too), batches of
        # 4096 (the script's own default is 1024), lr 2e-5, projection 2560, hidden 5120
        epochs, batch_size, lr = request.epochs or 300, request.batch_size or 4096, request.lr or 2e-5
        projection = option(opts, "projection_dim", 2560)
        hidden = option(opts, "hidden_dim", 5120)
        refs = request.image_features([t[0] for t in request.triplets])
        targets = F.normalize(request.image_features([t[2] for t in request.triplets]), dim=-1)
        # FashionIQ: each step draws one of four joins of a triplet's two captions, as CLIP4Cir does
        # (-o caption_mix=0: the dataset's query text throughout)
        pairs = (request.triplet_captions or []) if option(opts, "caption_mix", 1) else []
        pairs = [relative_captions({"captions": c}, CAPTION_STRIP) for c in pairs]
        joins = [clip4cir_training_texts(c) if c else None for c in pairs]
        mixed = any(joins)
        variants = [j or [t[1]] * 4 for t, j in zip(request.triplets, joins)] if mixed else \
            [[t[1]] for t in request.triplets]
        flat = [text for texts in zip(*variants) for text in texts]  # variant-major: row v * n + i
        with torch.no_grad():
            texts = torch.cat([enc.encode_texts(flat[i:i + 256]) for i in range(0, len(flat), 256)])
        torch.manual_seed(request.seed)
        net = build_combiner(enc.embed_dim, projection, hidden).to(request.device)
        optim = torch.optim.Adam(net.parameters(), lr=lr)
        generator = torch.Generator().manual_seed(request.seed)
        total = epochs * steps_per_epoch(len(refs), batch_size)
        task = request.progress.task("train combiner", total=total) if request.progress else None
        last = float("nan")
        for epoch in range(epochs):
            net.train()
            for idx in batches(len(refs), batch_size, generator):
                rows = idx
                if mixed:  # random.random() < .25, < .5, < .75, else: the variant floor(4u) (u < 1: 0..3)
                    rows = (4 * torch.rand(len(idx), generator=generator)).long() * len(refs) + idx
                out = net(refs[idx].to(request.device), texts[rows].to(request.device))
                logits = 100.0 * out @ targets[idx].to(request.device).T
                loss = F.cross_entropy(logits, torch.arange(len(idx), device=logits.device))
                optim.zero_grad(set_to_none=True)
                loss.backward()
                optim.step()
                last = loss.item()
                if task:
                    task.advance(1, f"epoch {epoch + 1}/{epochs} loss {last:.3f}")
        return checkpoints.save(request.out, {
            "epoch": epochs, "Combiner": net.state_dict(),
            "cirbench": {"train_dataset": request.train_dataset, "trained_on": f"{len(refs)} triplets",
                         "texts": ("one of four joins of the two captions, drawn each step (CLIP4Cir "
                                   "generate_randomized_fiq_caption)" if mixed else "the dataset's query text"),
                         "epochs": epochs, "encoder": enc.identity, "batch_size": batch_size, "lr": lr,
                         "seed": request.seed, "final_loss": last}})

