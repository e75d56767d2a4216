"""What the multimodal-LLM embedder kinds share (``llava-next``, ``qwen2-vl``): an embedding is one
forward pass of the language model over a prompt holding at most one image, read at one token.

A kind builds each prompt's input embeddings itself (``sequence``: the tokens, the image's features in
place of its placeholder) and says how many tokens the embedding reads (the whole prompt: its last
token; LamRA: the token before ``<emb>``). Sequences of a batch are padded on the left and numbered
from their first real token, so a batch gives what one prompt at a time gives (rotary positions are
relative: the official codes' offsets from padding change nothing but rounding). Sequences are run in
order of length, so a batch pads little (the order of the rows returned is the order asked).

Gallery images are encoded under a prompt a method names: the view ``prompt:TEXT``.
"""

from __future__ import annotations

from cirbench.contracts.encoder import Encoder, copy_with
from cirbench.errors import UsageError

PROMPT_PREFIX = "prompt:"  # a view's transform naming the prompt gallery images are encoded under
# the most padded tokens a forward pass may hold beyond its real ones, as a share of them
PADDING_SLACK = 0.25


def torch_dtype(precision: str):
    import torch

    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]


def split_settings(spec: str, rest: str, allowed: dict) -> tuple[str, str | None, dict]:
    """(model, revision, settings) of ``MODEL[@REVISION][?key=value&...]``; ``allowed`` maps each key to
    (a parser returning the value or None, the values it takes in words): a refusal names them all."""
    body, _, query = rest.partition("?")
    model_id, _, revision = body.partition("@")
    values = {}
    for part in filter(None, query.split("&")):
        key, _, value = part.partition("=")
        parsed = allowed[key][0](value) if key in allowed else None
        if parsed is None:
            named = " and ".join(f"{k}={words}" for k, (_, words) in allowed.items())
            raise UsageError(f"encoder {spec!r}: its settings are {named}, not {part!r}")
        values[key] = parsed
    if not model_id:
        raise UsageError(f"encoder {spec!r} names no model: KIND:REPO_OR_FOLDER[@REVISION][?setting=value&...]")
    return model_id, revision or None, values


def pil_resize(array, height: int, width: int, resample: int):
    """transformers 4.x's resize of a uint8 HWC array: through PIL (no reducing gap), back to uint8."""
    import numpy as np
    from PIL import Image

    return np.array(Image.fromarray(array).resize((width, height), resample=int(resample), reducing_gap=None))


def rescale_and_normalise(values, rescale_factor: float | None, mean=None, std=None):
    """transformers 4.x's rescale of an HWC array (in float64, cast to float32; None: not rescaled) and
    normalisation (in float32 with the mean and std cast to it; None: not normalised)."""
    import numpy as np

    if rescale_factor is not None:
        values = (values.astype(np.float64) * float(rescale_factor)).astype(np.float32)
    if mean is not None:
        values = (values - np.array(mean, dtype=values.dtype)) / np.array(std, dtype=values.dtype)
    return values


def positive_int(value: str) -> int | None:
    return int(value) if value.isdigit() and int(value) > 0 else None


class PromptEmbedder(Encoder):
    """Subclasses set model, tokenizer, language_model, device, precision, embed_dim, token_width, identity
    and preprocess, and implement ``sequence(prompt, image) -> (L x hidden) embeddings``; ``prompt`` is
    None until a view names it."""

    prompt: str | None = None

    @property
    def dtype(self):
        return torch_dtype(self.precision)

    def with_transform(self, transform: str):
        """``prompt:<text>``: the same model encoding gallery images under that prompt."""
        if transform == self.transform:
            return self
        if not transform.startswith(PROMPT_PREFIX):
            raise UsageError(f"encoder {self.label!r} encodes images under a prompt: its views are 'prompt:TEXT', "
                             f"not {transform!r}")
        clone = copy_with(self, prompt=transform[len(PROMPT_PREFIX):])
        clone.identity["transform"] = transform
        return clone

    def encode_images(self, images):
        if not self.prompt:
            raise UsageError(f"encoder {self.label!r} needs the prompt its gallery images are encoded under (a view "
                             "'prompt:TEXT' that the method names)")
        return self.embed([self.prompt] * len(images), list(images))

    def encode_texts(self, texts: list[str]):
        return self.embed(list(texts), [None] * len(texts))

    def encode_texts_with_pseudo(self, prompts, embeddings, token="*", prefixes=None, every_occurrence=False):
        raise UsageError(f"encoder {self.label!r} (a multimodal LLM) does not inject pseudo-words")

    def sequence(self, prompt: str, image):
        """The input embeddings (L x hidden) of one prompt up to its reading token, with its image."""
        raise NotImplementedError

    def image_features(self, image):
        """The image's features (tokens x hidden) in the language model's input space."""
        raise NotImplementedError

    def splice(self, ids, image, placeholder: int, name: str):
        """The embeddings of the token ids with the one ``placeholder`` token (named ``name``) replaced by
        the image's features; a prompt holding another number of placeholders than images is refused."""
        import torch

        slots = (ids == placeholder).nonzero().flatten().tolist()
        if len(slots) != (image is not None):
            raise UsageError(f"a prompt of encoder {self.label!r} holds {len(slots)} {name} token(s) before its "
                             f"reading token for {int(image is not None)} image")
        embed = self.language_model.get_input_embeddings()
        if image is None:
            return embed(ids).to(self.dtype)
        at = slots[0]
        return torch.cat([embed(ids[:at]).to(self.dtype), self.image_features(image).to(self.dtype),
                          embed(ids[at + 1:]).to(self.dtype)], dim=0)

    def embed(self, prompts: list[str], images: list):
        """Embeddings (N x hidden, float32, not normalised): the final hidden state (after the last norm)
        of each prompt's reading token, the prompt holding its image (or none)."""
        import torch

        with torch.no_grad():
            seqs = [self.sequence(p, im) for p, im in zip(prompts, images)]
            out = torch.empty(len(seqs), self.embed_dim)
            for rows in length_groups([len(s) for s in seqs]):
                out[rows] = self.last_states([seqs[i] for i in rows]).float().cpu()
            return out

    def last_states(self, seqs):
        """The final hidden state of each sequence's last token, the sequences run as one left-padded batch."""
        import torch

        longest = max(len(s) for s in seqs)
        padded = torch.zeros(len(seqs), longest, seqs[0].shape[1], dtype=self.dtype, device=self.device)
        mask = torch.zeros(len(seqs), longest, dtype=torch.long, device=self.device)
        for i, s in enumerate(seqs):
            padded[i, longest - len(s):] = s
            mask[i, longest - len(s):] = 1
        positions = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1)
        states = self.language_model(inputs_embeds=padded, attention_mask=mask,
                                     position_ids=self.position_ids(positions), return_dict=True)
        return states.last_hidden_state[:, -1, :]

    def position_ids(self, positions):
        """The language model's position ids from the (batch x length) token positions."""
        return positions


def length_groups(lengths: list[int]) -> list[list[int]]:
    """Row indices grouped for forward passes: by length, a new pass where padding to the group's longest
    would exceed PADDING_SLACK of its real tokens."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    groups, current, real = [], [], 0
    for i in order:
        if current and lengths[i] * (len(current) + 1) > (1 + PADDING_SLACK) * (real + lengths[i]):
            groups.append(current)
            current, real = [], 0
        current.append(i)
        real += lengths[i]
    if current:
        groups.append(current)
    return groups
