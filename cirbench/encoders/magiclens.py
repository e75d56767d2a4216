"""MagicLens (Zhang et al., ICML 2024; google-deepmind/magiclens) as a cirbench encoder kind:
``magiclens:FILE`` with FILE a released checkpoint (``magic_lens_clip_base.pkl``,
``magic_lens_clip_large.pkl``) or any file of that format.

The released file is a pickle of one bytes object, ``flax.serialization.to_bytes({'params': ...})``:
msgpack whose arrays are extension type 1 (msgpack of (shape, dtype name, bytes)) and whose largest
arrays may be split into chunks. It is read here with msgpack alone (no JAX), through an unpickler that
accepts bytes and nothing else. Every size -- widths, heads, layers, patch, image resolution, context
length, vocabulary -- is read from the parameter shapes, so base, large and smaller files load alike.

The model, as the official model.py, layers.py and scenic's CLIP layers compute it (PyTorch, float32):

- scenic's CLIP: a ViT (patch conv without bias, class token, positional embedding, ln_pre, blocks of
  LayerNorm(eps 1e-5) -> multi-head attention -> LayerNorm -> MLP with QuickGELU, ln_post on the class
  token, projection) and a text transformer whose attention masks token id 0 as well as the future
  (``text > 0``: the BPE token "!" is masked like padding), pooled at the end token (the largest id);
- the multimodal encoder: 4 layers over the two tokens [image embedding, text embedding], each
  pre-LayerNorm as ``(x - mean) / sqrt(var + 1e-6) * (1 + scale) + bias``, attention logits capped at
  ``50 tanh(l / 50)``, a residual ReLU feed-forward layer with its own such LayerNorm, no final
  LayerNorm;
- the pooler: one learned query attending to the two tokens, its query scaled per dimension by
  ``1.442695041 / sqrt(d) * softplus(s)``, capped logits, a LayerNorm; the embedding is
  ``x / sqrt(sum(x^2) + 1e-12)``.

Images (data_utils.process_img, model._preprocess_images): RGB, divided by the image's own maximum
pixel value (not 255), resized to 224 x 224 with JAX's antialiased bilinear resize (no aspect kept,
no crop), resized again to the model's resolution (the same size for the released models), CLIP's
mean and std. Texts: CLIP's BPE, context 77 padded with 0; a text longer than the context is refused,
as the official tokenizer raises.

The encoder gives the CLIP image and text embeddings (``encode_images``, ``encode_texts``, cached by the
engine like any encoder's) and ``fuse(image_embeddings, text_embeddings)``, the multimodal embedding.
"""

from __future__ import annotations

import math
import pickle
from pathlib import Path

import numpy as np

from cirbench.contracts.encoder import Encoder, register_encoder
from cirbench.errors import DataError, UsageError, short
from cirbench.util.fsutil import sha256_file

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
PROCESS_SIZE = 224  # data_utils.process_img's fixed size, before the model's own resize


# -- the released file ---------------------------------------------------------------------------------

class _BytesOnly(pickle.Unpickler):
    """The released pickle holds one bytes object; nothing that could run code is allowed."""

    def find_class(self, module, name):
        if (module, name) == ("_codecs", "encode"):  # how protocol-2 pickles write bytes
            import codecs

            return codecs.encode
        raise pickle.UnpicklingError(f"refuses to load {module}.{name} (the file should hold bytes only)")


def _unchunk(tree):
    """flax's chunked arrays ({'__msgpack_chunked_array__': True, 'shape', 'chunks'}) put back together."""
    if isinstance(tree, dict):
        if tree.get("__msgpack_chunked_array__"):
            shape = tuple(tree["shape"][str(i)] for i in range(len(tree["shape"])))
            chunks = [tree["chunks"][str(i)] for i in range(len(tree["chunks"]))]
            return np.concatenate([np.asarray(c).reshape(-1) for c in chunks]).reshape(shape)
        return {k: _unchunk(v) for k, v in tree.items()}
    return tree


def read_params(path: Path) -> dict:
    """The parameter tree of a released MagicLens file (numpy arrays), without JAX."""
    try:
        import msgpack
    except ImportError:  # pragma: no cover - msgpack is a dependency
        raise UsageError("reading MagicLens checkpoints needs msgpack: pip install msgpack") from None

    def ext_hook(code, data):
        if code in (1, 3):  # ndarray, numpy scalar: msgpack((shape, dtype name, raw bytes))
            fields = msgpack.unpackb(data, raw=False)
            if not (isinstance(fields, (list, tuple)) and len(fields) == 3):
                raise ValueError(f"an array is msgpack of (shape, dtype, bytes), found {short(fields)}")
            shape, dtype, buffer = fields
            value = np.frombuffer(buffer, dtype=np.dtype(dtype)).reshape(shape)
            return value if code == 1 else value[()]
        if code == 2:  # native complex
            real, imag = msgpack.unpackb(data, raw=False)
            return complex(real, imag)
        return msgpack.ExtType(code, data)

    path = Path(path)
    try:
        with open(path, "rb") as fh:
            payload = _BytesOnly(fh).load()
    except (OSError, pickle.UnpicklingError, EOFError, ValueError) as exc:
        raise DataError(f"{path}: not a MagicLens checkpoint (a pickle of the model's bytes): {exc}") from None
    if not isinstance(payload, (bytes, bytearray)):
        raise DataError(f"{path}: not a MagicLens checkpoint (the pickle holds {type(payload).__name__}, not bytes)")
    try:
        tree = msgpack.unpackb(bytes(payload), ext_hook=ext_hook, raw=False, strict_map_key=False)
    except Exception as exc:
        raise DataError(f"{path}: its bytes are not flax's msgpack serialization ({type(exc).__name__}: {exc})") from None
    try:
        tree = _unchunk(tree)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise DataError(f"{path}: a chunked array of the file is malformed ({type(exc).__name__}: {exc}); flax "
                        "writes {'__msgpack_chunked_array__': True, 'shape': {...}, 'chunks': {...}}") from None
    if not isinstance(tree, dict) or not isinstance(tree.get("params"), dict):
        raise DataError(f"{path}: expected {{'params': {{clip, multimodal_encoder, contrastive_multimodal_pooler}}}}")
    _check_leaves(tree["params"], "params", path)
    return tree["params"]


def _check_leaves(tree, where: str, path: Path) -> None:
    """Every parameter of the released file is an array (flax writes each as msgpack's ext type 1)."""
    for key, value in tree.items():
        if isinstance(value, dict):
            _check_leaves(value, f"{where}/{key}", path)
        elif not isinstance(value, (np.ndarray, np.generic)) or np.asarray(value).dtype.kind not in "fiu":
            raise DataError(f"{path}: {where}/{key} is {type(value).__name__}, not an array of numbers (a MagicLens "
                            "checkpoint holds one array per parameter)")


def _get(tree: dict, dotted: str, path: Path):
    node = tree
    for part in dotted.split("/"):
        if not isinstance(node, dict) or part not in node:
            raise DataError(f"{path}: a MagicLens checkpoint holds params/{dotted}, and this one does not")
        node = node[part]
    return node


def _count(tree: dict, prefix: str) -> int:
    n = 0
    while f"{prefix}{n}" in tree:
        n += 1
    return n


# -- images ----------------------------------------------------------------------------------------------

def _resize_weights(n_in: int, n_out: int) -> np.ndarray:
    """n_out x n_in weights of jax.image.resize(method='bilinear', antialias=True) along one axis: a
    triangle kernel widened by the downscale factor, normalised, zero outside the input."""
    scale = n_out / n_in
    inv_scale = 1.0 / scale
    kernel_scale = max(inv_scale, 1.0)
    sample = (np.arange(n_out, dtype=np.float32) + 0.5) * np.float32(inv_scale) - 0.5
    x = np.abs(sample[None, :] - np.arange(n_in, dtype=np.float32)[:, None]) / np.float32(kernel_scale)
    weights = np.maximum(0.0, 1.0 - np.abs(x)).astype(np.float32)
    total = weights.sum(axis=0, keepdims=True)
    weights = np.where(np.abs(total) > 1000.0 * float(np.finfo(np.float32).eps),
                       weights / np.where(total != 0, total, 1), 0)
    inside = (sample >= -0.5) & (sample <= n_in - 0.5)
    return np.where(inside[None, :], weights, 0).T.astype(np.float32)


class MagicLensPixels:
    """An RGB PIL image -> the float tensor (3, size, size) MagicLens's code feeds its CLIP."""

    def __init__(self, size: int):
        self.size = int(size)
        self._weights: dict[tuple[int, int], np.ndarray] = {}

    def _w(self, n_in: int, n_out: int) -> np.ndarray:
        if (n_in, n_out) not in self._weights:
            self._weights[(n_in, n_out)] = _resize_weights(n_in, n_out)
        return self._weights[(n_in, n_out)]

    def resize(self, pixels: np.ndarray, size: int) -> np.ndarray:
        h, w = pixels.shape[:2]
        if (h, w) == (size, size):
            return pixels
        out = np.einsum("oh,hwc->owc", self._w(h, size), pixels)
        return np.einsum("pw,owc->opc", self._w(w, size), out).astype(np.float32)

    def __call__(self, image):
        import torch

        pixels = np.asarray(image.convert("RGB"), dtype=np.uint8)
        pixels = pixels.astype(np.float32) / np.float32(float(pixels.max()) + 1e-12)
        pixels = self.resize(pixels, PROCESS_SIZE)  # data_utils.process_img
        h, w = pixels.shape[:2]  # model._preprocess_images: largest square crop (a no-op here), resize
        side = min(h, w)
        pixels = pixels[(h - side) // 2:(h - side) // 2 + side, (w - side) // 2:(w - side) // 2 + side]
        pixels = self.resize(pixels, self.size)
        pixels = (pixels - np.asarray(CLIP_MEAN, dtype=np.float32)) / np.asarray(CLIP_STD, dtype=np.float32)
        return torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1), dtype=np.float32))

    def __repr__(self):
        return f"MagicLensPixels(rgb, /max, jax bilinear antialias -> {PROCESS_SIZE} -> {self.size}, clip mean/std)"


# -- the model -------------------------------------------------------------------------------------------

def _modules(params: dict, path: Path):
    """The PyTorch modules of MagicLens with the checkpoint's parameters."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    def t(array) -> torch.Tensor:
        return torch.from_numpy(np.array(array, dtype=np.float32))

    def quick_gelu(x):
        return x * torch.sigmoid(1.702 * x)

    class Tensors(nn.Module):
        """Named float32 parameters (non-trainable), one attribute per checkpoint array."""

        def __init__(self, arrays: dict):
            super().__init__()
            for name, array in arrays.items():
                self.register_buffer(name, t(array), persistent=False)

    class ScenicBlock(Tensors):
        """scenic ResidualAttentionBlock: x + attn(ln_1(x)); x + mlp(ln_2(x)); flax DenseGeneral heads."""

        def __init__(self, p):
            a, m = p["attn"], p["mlp"]
            super().__init__({
                "ln1_s": p["ln_1"]["scale"], "ln1_b": p["ln_1"]["bias"], "ln2_s": p["ln_2"]["scale"],
                "ln2_b": p["ln_2"]["bias"],
                **{f"{n}_w": a[n]["kernel"] for n in ("query", "key", "value")},  # D x H x hd
                **{f"{n}_b": a[n]["bias"] for n in ("query", "key", "value")},  # H x hd
                "out_w": a["out"]["kernel"], "out_b": a["out"]["bias"],  # H x hd x D, D
                "fc_w": m["c_fc"]["kernel"], "fc_b": m["c_fc"]["bias"], "proj_w": m["c_proj"]["kernel"],
                "proj_b": m["c_proj"]["bias"]})

        def forward(self, x, bias=None):
            """``bias``: an additive attention mask (0 where a query may attend, the dtype's minimum where
            not; a row masked throughout stays finite, as flax's masking keeps it)."""
            xn = F.layer_norm(x, (x.shape[-1],), self.ln1_s, self.ln1_b, eps=1e-5)
            heads = self.query_w.shape[1]
            # flax DenseGeneral kernels D x H x hd as one D x (H hd) matrix: q, k, v as B x H x T x hd
            qkv = [(xn @ w.flatten(1) + b.flatten()).unflatten(-1, (heads, -1)).transpose(1, 2)
                   for w, b in ((self.query_w, self.query_b), (self.key_w, self.key_b), (self.value_w, self.value_b))]
            out = F.scaled_dot_product_attention(*qkv, attn_mask=bias)  # scale 1/sqrt(hd), as flax
            x = x + out.transpose(1, 2).flatten(2) @ self.out_w.flatten(0, 1) + self.out_b
            xn = F.layer_norm(x, (x.shape[-1],), self.ln2_s, self.ln2_b, eps=1e-5)
            return x + quick_gelu(xn @ self.fc_w + self.fc_b) @ self.proj_w + self.proj_b

    def ml_norm(x, p, eps=1e-6):
        """MagicLens's LayerNorm: (x - mean) / sqrt(var + eps) * (1 + scale) + bias."""
        mean = x.mean(dim=-1, keepdim=True)
        var = ((x - mean) ** 2).mean(dim=-1, keepdim=True)
        return (x - mean) * torch.rsqrt(var + eps) * (1 + p[0]) + p[1]

    def capped_attention(q, k, v, post_w, post_b):
        logits = torch.einsum("btnh,bsnh->bnts", q, k)
        logits = 50.0 * torch.tanh(logits / 50.0)
        probs = torch.softmax(logits, dim=-1)
        encoded = torch.einsum("bnts,bsnh->btnh", probs, v)
        return torch.einsum("btnh,dnh->btd", encoded, post_w) + post_b

    class MagicLensTorch(nn.Module):
        def __init__(self):
            super().__init__()
            clip = _get(params, "clip", path)
            vis, txt = clip["visual"], clip["text"]
            self.vis = Tensors({"conv": np.transpose(vis["conv1"]["kernel"], (3, 2, 0, 1)),
                                "cls": vis["class_embedding"], "pos": vis["positional_embedding"],
                                "pre_s": vis["ln_pre"]["scale"], "pre_b": vis["ln_pre"]["bias"],
                                "post_s": vis["ln_post"]["scale"], "post_b": vis["ln_post"]["bias"],
                                "proj": vis["proj"]["kernel"]})
            self.vis_blocks = nn.ModuleList([ScenicBlock(vis["transformer"][f"resblocks_{i}"])
                                             for i in range(_count(vis["transformer"], "resblocks_"))])
            self.txt = Tensors({"tok": txt["token_embedding"]["embedding"], "pos": txt["positional_embedding"],
                                "fin_s": txt["ln_final"]["scale"], "fin_b": txt["ln_final"]["bias"],
                                "proj": txt["text_projection"]["kernel"]})
            self.txt_blocks = nn.ModuleList([ScenicBlock(txt["transformer"][f"resblocks_{i}"])
                                             for i in range(_count(txt["transformer"], "resblocks_"))])
            mm = _get(params, "multimodal_encoder", path)
            self.mm = nn.ModuleList()
            for i in range(_count(mm, "x_layers_")):
                layer = mm[f"x_layers_{i}"]
                sa, ff = layer["self_attention"], layer["ff_layer"]
                self.mm.append(Tensors({
                    "ln_s": layer["layer_norm"]["scale"], "ln_b": layer["layer_norm"]["bias"],
                    **{f"{n}_w": sa[n]["w"] for n in ("query", "key", "value", "post")},
                    **{f"{n}_b": sa[n]["b"] for n in ("query", "key", "value", "post")},
                    "ff_ln_s": ff["layer_norm"]["scale"], "ff_ln_b": ff["layer_norm"]["bias"],
                    "ff1_w": ff["ffn_layer1"]["linear"]["w"], "ff1_b": ff["ffn_layer1"]["bias"]["b"],
                    "ff2_w": ff["ffn_layer2"]["linear"]["w"], "ff2_b": ff["ffn_layer2"]["bias"]["b"]}))
            pool = _get(params, "contrastive_multimodal_pooler", path)
            pa = pool["pool_attn"]
            self.pool = Tensors({**{f"{n}_w": pa[n]["w"] for n in ("query", "key", "value", "post")},
                                 **{f"{n}_b": pa[n]["b"] for n in ("query", "key", "value", "post")},
                                 "scale": pa["per_dim_scale"]["per_dim_scale"], "query": pool["pooling_attn_query"],
                                 "ln_s": pool["pool_attn_ln"]["scale"], "ln_b": pool["pool_attn_ln"]["bias"]})

        def encode_image(self, pixels):
            v = self.vis
            x = F.conv2d(pixels, v.conv, stride=v.conv.shape[-1])  # B x W x g x g
            x = x.flatten(2).transpose(1, 2)  # row-major over the grid, as flax's reshape of NHWC
            x = torch.cat([v.cls[None, None].expand(x.shape[0], 1, -1), x], dim=1) + v.pos[None]
            x = F.layer_norm(x, (x.shape[-1],), v.pre_s, v.pre_b, eps=1e-5)
            for block in self.vis_blocks:
                x = block(x)
            x = F.layer_norm(x[:, 0], (x.shape[-1],), v.post_s, v.post_b, eps=1e-5)
            return x @ v.proj

        def encode_text(self, ids):
            s = self.txt
            valid = ids > 0  # token id 0 is masked like padding (scenic: text > 0)
            n = ids.shape[1]
            causal = torch.tril(torch.ones(n, n, dtype=torch.bool, device=ids.device))
            mask = valid[:, :, None] & valid[:, None, :] & causal[None]
            x = s.tok[ids] + s.pos[None, :n]
            bias = torch.zeros(mask.shape, dtype=x.dtype, device=x.device)
            bias = bias.masked_fill(~mask, torch.finfo(x.dtype).min)[:, None]
            for block in self.txt_blocks:
                x = block(x, bias)
            x = F.layer_norm(x, (x.shape[-1],), s.fin_s, s.fin_b, eps=1e-5)
            x = x[torch.arange(x.shape[0], device=ids.device), ids.argmax(dim=-1)]
            return x @ s.proj

        def fuse(self, image, text):
            x = torch.stack([image, text], dim=1)  # B x 2 x D
            for L in self.mm:
                xn = ml_norm(x, (L.ln_s, L.ln_b))
                q = torch.einsum("btd,dnh->btnh", xn, L.query_w) + L.query_b
                k = torch.einsum("btd,dnh->btnh", xn, L.key_w) + L.key_b
                v = torch.einsum("btd,dnh->btnh", xn, L.value_w) + L.value_b
                q = q * (q.shape[-1] ** -0.5)  # hidden_dim // num_heads
                x = capped_attention(q, k, v, L.post_w, L.post_b) + x
                h = ml_norm(x, (L.ff_ln_s, L.ff_ln_b))
                h = torch.relu(h @ L.ff1_w + L.ff1_b) @ L.ff2_w + L.ff2_b
                x = h + x
            P = self.pool
            query = P.query[None].expand(x.shape[0], -1, -1)
            q = torch.einsum("btd,dnh->btnh", query, P.query_w) + P.query_b
            k = torch.einsum("btd,dnh->btnh", x, P.key_w) + P.key_b
            v = torch.einsum("btd,dnh->btnh", x, P.value_w) + P.value_b
            dim = q.shape[-1]
            q = q * (1.442695041 / math.sqrt(dim)) * F.softplus(P.scale)  # PerDimScale
            pooled = ml_norm(capped_attention(q, k, v, P.post_w, P.post_b), (P.ln_s, P.ln_b))[:, 0]
            return pooled / torch.sqrt((pooled * pooled).sum(dim=-1, keepdim=True) + 1e-12)

    return MagicLensTorch()


def sizes(params: dict, path: Path) -> dict:
    """Every size of a MagicLens checkpoint, read from its parameter shapes."""
    vis = _get(params, "clip/visual", path)
    txt = _get(params, "clip/text", path)
    conv = np.asarray(vis["conv1"]["kernel"])
    n_pos = np.asarray(vis["positional_embedding"]).shape[0]
    grid = int(round(math.sqrt(n_pos - 1)))
    if grid * grid != n_pos - 1:
        raise DataError(f"{path}: {n_pos - 1} vision patches do not form a square grid")
    mm = _get(params, "multimodal_encoder", path)
    pool_q = np.asarray(_get(params, "contrastive_multimodal_pooler/pool_attn/query/w", path))
    return {"vision_width": int(conv.shape[3]), "patch": int(conv.shape[0]), "resolution": grid * int(conv.shape[0]),
            "vision_layers": _count(vis["transformer"], "resblocks_"),
            "vision_heads": int(np.asarray(vis["transformer"]["resblocks_0"]["attn"]["query"]["kernel"]).shape[1]),
            "embed_dim": int(np.asarray(vis["proj"]["kernel"]).shape[1]),
            "vocab": int(np.asarray(txt["token_embedding"]["embedding"]).shape[0]),
            "text_width": int(np.asarray(txt["token_embedding"]["embedding"]).shape[1]),
            "context_length": int(np.asarray(txt["positional_embedding"]).shape[0]),
            "text_layers": _count(txt["transformer"], "resblocks_"),
            "fusion_layers": _count(mm, "x_layers_"),
            "fusion_heads": int(np.asarray(mm["x_layers_0"]["self_attention"]["query"]["w"]).shape[1]),
            "fusion_ffn": int(np.asarray(mm["x_layers_0"]["ff_layer"]["ffn_layer1"]["linear"]["w"]).shape[1]),
            "pool_heads": int(pool_q.shape[1]), "pool_head_dim": int(pool_q.shape[2])}


def released_name(s: dict) -> str:
    """magiclens-base (CLIP ViT-B/16) or magiclens-large (ViT-L/14), else the sizes."""
    if (s["vision_width"], s["patch"], s["embed_dim"]) == (768, 16, 512):
        return "magiclens-base"
    if (s["vision_width"], s["patch"], s["embed_dim"]) == (1024, 14, 768):
        return "magiclens-large"
    return f"magiclens ({s['vision_width']}-wide vision, patch {s['patch']}, {s['embed_dim']}-d)"


class MagicLensEncoder(Encoder):
    def __init__(self, model, identity: dict, device: str, precision: str):
        import open_clip
        import torch
        from torchvision import transforms as T

        from cirbench.protocol.transforms import ToRGB

        self.model = model.eval().requires_grad_(False).to(device)
        self.identity = identity
        self.device, self.precision = device, precision
        self.dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]
        s = identity["sizes"]
        self.embed_dim, self.token_width = s["embed_dim"], s["text_width"]
        self.context_length = s["context_length"]
        self.tokenizer = open_clip.tokenizer.SimpleTokenizer(context_length=self.context_length)
        self.preprocess = T.Compose([ToRGB(), MagicLensPixels(s["resolution"])])
        self.identity["preprocess"] = repr(self.preprocess).replace("\n", " ")
        self.identity["decode"] = "RGB before the transform"

    @property
    def label(self) -> str:
        return f"{self.identity['model_name']} ({Path(self.identity['weights_file']).name})"

    @property
    def squash_preprocess(self):
        return self.preprocess  # MagicLens squashes every image to its square anyway

    def with_transform(self, transform: str) -> "MagicLensEncoder":
        if transform == self.transform:
            return self
        raise UsageError(f"encoder {self.label!r} has MagicLens's own image processing only (not {transform!r})")

    def tokenize(self, texts: list[str]):
        """scenic's CLIP tokenization: [SOT] + BPE + [EOT], zero-padded to the context; a longer text is
        refused (the official tokenizer raises rather than cut it)."""
        import torch

        tok = self.tokenizer
        sot, eot = tok.encoder["<start_of_text>"], tok.encoder["<end_of_text>"]
        out = torch.zeros(len(texts), self.context_length, dtype=torch.long)
        for i, text in enumerate(texts):
            ids = [sot, *tok.encode(text), eot]
            if len(ids) > self.context_length:
                raise UsageError(f"text {short(text)} is longer than MagicLens's {self.context_length} tokens "
                                 "(its code refuses it too)")
            out[i, :len(ids)] = torch.tensor(ids)
        return out.to(self.device)

    def encode_images(self, pixels):
        with self._autocast():
            return self.model.encode_image(pixels.to(self.device, non_blocking=True)).float()

    def encode_texts(self, texts: list[str]):
        with self._autocast():
            return self.model.encode_text(self.tokenize(texts)).float()

    def fuse(self, image_embeddings, text_embeddings):
        """The normalised multimodal embeddings of (image, text) embedding pairs (B x E each)."""
        import torch

        with torch.no_grad():
            return self.model.fuse(image_embeddings.float().to(self.device), text_embeddings.float().to(self.device))

    def encode_texts_with_pseudo(self, prompts, embeddings, token="*", prefixes=None, every_occurrence=False):
        raise UsageError(f"encoder {self.label!r} (MagicLens) does not inject pseudo-words")


@register_encoder("magiclens")
def build_magiclens(rest: str, *, spec: str, device: str, precision: str, transform: str, cache_dir=None,
                    progress=None):
    """MagicLens from a released checkpoint file (magic_lens_clip_base.pkl, magic_lens_clip_large.pkl)."""
    path = Path(rest).expanduser()
    if not rest or not path.is_file():
        raise DataError(f"encoder {spec!r}: no MagicLens checkpoint at {path} (download magic_lens_clip_base.pkl or "
                        "magic_lens_clip_large.pkl; see docs/methods.md)")
    if transform not in ("clip", None):
        raise UsageError(f"encoder {spec!r} has MagicLens's own image processing only (not {transform!r})")
    params = read_params(path)
    try:  # a tree of the right shape with a missing entry or an odd array is named, not an internal error
        found = sizes(params, path)
        model = _modules(params, path)
    except (KeyError, IndexError, TypeError, ValueError, AttributeError, RuntimeError) as exc:
        raise DataError(f"{path}: not a MagicLens checkpoint ({type(exc).__name__}: {exc})") from None
    identity = {"kind": "magiclens", "spec": spec, "weights_file": str(path.resolve()),
                "weights_sha256": sha256_file(path), "precision": precision, "transform": "clip", "sizes": found,
                "model_name": released_name(found), "random_weights": False,
                "text_mask": "token id 0 masked (scenic)", "decode": "RGB before the transform"}
    return MagicLensEncoder(model, identity, device, precision)


__all__ = ["read_params", "sizes", "MagicLensPixels", "MagicLensEncoder", "build_magiclens"]
