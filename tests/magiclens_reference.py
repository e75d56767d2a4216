"""A small MagicLens in Flax, written for the tests from the official code's structure
(google-deepmind/magiclens model.py and layers.py; scenic's CLIP layers), with the official parameter
names, so that a checkpoint can be written exactly as the released files are -- a pickle of
``flax.serialization.to_bytes({'params': ...})`` -- and the PyTorch implementation compared with a JAX
forward pass of the same parameters on the official preprocessing (process_img, _preprocess_images).

Sizes are arguments (the released models use scenic's 64-dim vision heads; the tests use tiny ones).
"""

from __future__ import annotations

import pickle
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

MEAN = jnp.array([0.48145466, 0.4578275, 0.40821073])
STD = jnp.array([0.26862954, 0.26130258, 0.27577711])


def quick_gelu(x):
    return x * jax.nn.sigmoid(1.702 * x)


class Block(nn.Module):  # scenic ResidualAttentionBlock
    heads: int

    @nn.compact
    def __call__(self, x, mask=None):
        h = nn.LayerNorm(epsilon=1e-5, name="ln_1")(x)
        x = x + nn.MultiHeadDotProductAttention(self.heads, name="attn", deterministic=True)(h, mask=mask)
        h = nn.LayerNorm(epsilon=1e-5, name="ln_2")(x)
        width = x.shape[-1]

        class MLP(nn.Module):
            @nn.compact
            def __call__(self, y):
                return nn.Dense(width, name="c_proj")(quick_gelu(nn.Dense(4 * width, name="c_fc")(y)))

        return x + MLP(name="mlp")(h)


class Tower(nn.Module):
    layers: int
    heads: int

    @nn.compact
    def __call__(self, x, mask=None):
        for i in range(self.layers):
            x = Block(self.heads, name=f"resblocks_{i}")(x, mask)
        return x


class Visual(nn.Module):
    patch: int
    width: int
    layers: int
    heads: int
    out: int

    @nn.compact
    def __call__(self, x):
        x = nn.Conv(self.width, (self.patch, self.patch), strides=(self.patch, self.patch), use_bias=False,
                    name="conv1")(x)
        x = x.reshape(x.shape[0], -1, x.shape[-1])
        cls = self.param("class_embedding", nn.initializers.normal(0.1), (self.width,))
        x = jnp.concatenate([jnp.tile(cls[None, None], (x.shape[0], 1, 1)), x], axis=1)
        x = x + self.param("positional_embedding", nn.initializers.normal(0.1), (x.shape[1], self.width))[None]
        x = nn.LayerNorm(epsilon=1e-5, name="ln_pre")(x)
        x = Tower(self.layers, self.heads, name="transformer")(x)
        x = nn.LayerNorm(epsilon=1e-5, name="ln_post")(x[:, 0])
        return nn.Dense(self.out, use_bias=False, name="proj")(x)


class Text(nn.Module):
    vocab: int
    width: int
    layers: int
    heads: int
    out: int

    @nn.compact
    def __call__(self, ids):
        pos = self.param("positional_embedding", nn.initializers.normal(0.1), (ids.shape[1], self.width))
        mask = nn.combine_masks(nn.make_attention_mask(ids > 0, ids > 0), nn.make_causal_mask(ids))
        x = nn.Embed(self.vocab, self.width, name="token_embedding")(ids) + pos[None]
        x = Tower(self.layers, self.heads, name="transformer")(x, mask)
        x = nn.LayerNorm(epsilon=1e-5, name="ln_final")(x)
        x = x[jnp.arange(x.shape[0]), ids.argmax(-1)]
        return nn.Dense(self.out, use_bias=False, name="text_projection")(x)


class CLIP(nn.Module):
    vocab: int
    embed: int
    text_width: int
    text_layers: int
    text_heads: int
    vision_width: int
    vision_layers: int
    vision_heads: int
    patch: int

    def setup(self):
        self.visual = Visual(self.patch, self.vision_width, self.vision_layers, self.vision_heads, self.embed)
        self.text = Text(self.vocab, self.text_width, self.text_layers, self.text_heads, self.embed)
        self.logit_scale = self.param("logit_scale", nn.initializers.zeros, ())

    def __call__(self, images, ids):
        return self.visual(images), self.text(ids)


def ml_norm(x, scale, bias, eps=1e-6):
    mean = jnp.mean(x, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(x - mean), axis=-1, keepdims=True)
    return (x - mean) * jax.lax.rsqrt(var + eps) * (1 + scale) + bias


class LN(nn.Module):  # layers.LayerNorm: (1 + scale), eps 1e-6
    dim: int

    @nn.compact
    def __call__(self, x):
        return ml_norm(x, self.param("scale", nn.initializers.ones, (self.dim,)),
                       self.param("bias", nn.initializers.zeros, (self.dim,)))


class Proj(nn.Module):  # layers.AttentionProjection
    dim: int
    heads: int
    head_dim: int
    output: bool = False

    @nn.compact
    def __call__(self, x):
        w = self.param("w", nn.initializers.normal(0.1), (self.dim, self.heads, self.head_dim))
        if self.output:
            return jnp.einsum("...nh,dnh->...d", x, w) + self.param("b", nn.initializers.zeros, (self.dim,))
        return jnp.einsum("...d,dnh->...nh", x, w) + self.param("b", nn.initializers.zeros, (self.heads, self.head_dim))


class Attention(nn.Module):  # layers.DotProductAttention
    dim: int
    hidden: int
    heads: int
    per_dim_scale: bool

    @nn.compact
    def __call__(self, q, k, v):
        hd = self.hidden // self.heads
        q = Proj(self.dim, self.heads, hd, name="query")(q)
        k = Proj(self.dim, self.heads, hd, name="key")(k)
        v = Proj(self.dim, self.heads, hd, name="value")(v)
        if self.per_dim_scale:
            class PerDimScale(nn.Module):
                @nn.compact
                def __call__(self, x):
                    s = self.param("per_dim_scale", nn.initializers.ones, (hd,))
                    return x * (jnp.float32(1.442695041 / np.sqrt(hd)) * jax.nn.softplus(s))

            q = PerDimScale(name="per_dim_scale")(q)
        else:
            q = q * hd ** -0.5
        logits = jnp.einsum("BTNH,BSNH->BNTS", q, k)
        logits = 50.0 * jnp.tanh(logits / 50.0)
        out = jnp.einsum("BNTS,BSNH->BTNH", jax.nn.softmax(logits, axis=-1), v)
        return Proj(self.dim, self.heads, hd, output=True, name="post")(out)


class FFN(nn.Module):  # layers.FFN: a Weight module "linear" and a Bias module "bias"
    din: int
    dout: int
    relu: bool

    @nn.compact
    def __call__(self, x):
        class Weight(nn.Module):
            @nn.compact
            def __call__(self, y):
                return y @ self.param("w", nn.initializers.normal(0.1), (y.shape[-1], dout))

        class Bias(nn.Module):
            @nn.compact
            def __call__(self, y):
                return y + self.param("b", nn.initializers.zeros, (dout,))

        dout = self.dout
        x = Bias(name="bias")(Weight(name="linear")(x))
        return jax.nn.relu(x) if self.relu else x


class FusionLayer(nn.Module):  # layers.Transformer
    dim: int
    heads: int
    ffn: int

    @nn.compact
    def __call__(self, x):
        h = LN(self.dim, name="layer_norm")(x)
        x = Attention(self.dim, self.dim, self.heads, False, name="self_attention")(h, h, h) + x

        class TransformerFFN(nn.Module):
            @nn.compact
            def __call__(self, y):
                z = LN(dim, name="layer_norm")(y)
                z = FFN(dim, ffn, True, name="ffn_layer1")(z)
                z = FFN(ffn, dim, False, name="ffn_layer2")(z)
                return z + y

        dim, ffn = self.dim, self.ffn
        return TransformerFFN(name="ff_layer")(x)


class Fusion(nn.Module):
    dim: int
    heads: int
    ffn: int
    layers: int

    @nn.compact
    def __call__(self, x):
        for i in range(self.layers):
            x = FusionLayer(self.dim, self.heads, self.ffn, name=f"x_layers_{i}")(x)
        return x


class Pooler(nn.Module):  # layers.AttenTokenPoolingLayer
    dim: int
    heads: int

    @nn.compact
    def __call__(self, x):
        query = self.param("pooling_attn_query", nn.initializers.normal(0.1), (1, self.dim))
        query = jnp.tile(query[None], [x.shape[0], 1, 1])
        out = Attention(self.dim, 4 * self.dim, self.heads, True, name="pool_attn")(query, x, x)
        return LN(self.dim, name="pool_attn_ln")(out)


class MagicLensFlax(nn.Module):
    clip_sizes: dict
    heads: int = 2
    layers: int = 4

    def setup(self):
        e = self.clip_sizes["embed"]
        self.clip = CLIP(**self.clip_sizes)
        self.multimodal_encoder = Fusion(e, self.heads, 4 * e, self.layers)
        self.contrastive_multimodal_pooler = Pooler(e, self.heads)

    def __call__(self, images, ids):
        """images: already preprocessed (B, R, R, 3); ids (B, T). The normalised multimodal embedding."""
        img, txt = self.clip(images, ids)
        x = jnp.concatenate([img[:, None], txt[:, None]], axis=1)
        x = self.multimodal_encoder(x)
        x = self.contrastive_multimodal_pooler(x)[:, 0]
        return x / jnp.sqrt(jnp.sum(x * x, axis=-1, keepdims=True) + 1e-12)

    def fuse(self, img, txt):
        """The multimodal embedding of given CLIP embeddings (the fusion and the pooler only)."""
        x = self.multimodal_encoder(jnp.concatenate([img[:, None], txt[:, None]], axis=1))
        x = self.contrastive_multimodal_pooler(x)[:, 0]
        return x / jnp.sqrt(jnp.sum(x * x, axis=-1, keepdims=True) + 1e-12)

    def clip_embeddings(self, images, ids):
        return self.clip(images, ids)


TINY = dict(vocab=49408, embed=24, text_width=32, text_layers=2, text_heads=2, vision_width=32, vision_layers=2,
            vision_heads=4, patch=8)


def build(seed: int = 0, resolution: int = 32, context: int = 77, sizes: dict | None = None):
    """(module, params) with every parameter random (biases, scales and per-dimension scales too)."""
    module = MagicLensFlax(dict(sizes or TINY))
    shapes = jax.eval_shape(module.init, jax.random.PRNGKey(seed), jnp.zeros((1, resolution, resolution, 3)),
                            jnp.ones((1, context), dtype=jnp.int32))
    leaves, tree = jax.tree_util.tree_flatten(shapes)
    rng = np.random.default_rng(seed)
    leaves = [jnp.asarray(0.2 * rng.standard_normal(leaf.shape), dtype=leaf.dtype) for leaf in leaves]
    return module, jax.tree_util.tree_unflatten(tree, leaves)


def write_checkpoint(path: Path, variables) -> Path:
    """The released format: a pickle of flax.serialization.to_bytes({'params': ...})."""
    from flax import serialization

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        pickle.dump(serialization.to_bytes(variables), fh)
    return path


def official_pixels(path: Path, resolution: int):
    """data_utils.process_img (224 x 224) then model._preprocess_images (crop, resize, CLIP normalise)."""
    from PIL import Image

    img = jnp.array(Image.open(path).convert("RGB"))[jnp.newaxis, ...]
    img = img / (img.max() + 1e-12)
    img = jax.image.resize(img, (1, 224, 224, 3), method="bilinear")
    img = jax.image.resize(img, (1, resolution, resolution, 3), method="bilinear", antialias=True)
    return (img - MEAN) / STD


def official_tokens(texts: list[str], context: int = 77):
    """scenic's CLIP tokenizer: [SOT] + BPE + [EOT], zero padded (open_clip's BPE is the same)."""
    import open_clip

    tok = open_clip.tokenizer.SimpleTokenizer()
    sot, eot = tok.encoder["<start_of_text>"], tok.encoder["<end_of_text>"]
    out = np.zeros((len(texts), context), dtype=np.int32)
    for i, text in enumerate(texts):
        ids = [sot, *tok.encode(text), eot]
        assert len(ids) <= context
        out[i, :len(ids)] = ids
    return jnp.array(out)
