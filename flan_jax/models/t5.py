"""Encoder-decoder T5 v1.1 (Flan-T5) in Flax linen with exactly the t5x parameter tree.

`Transformer(config)` follows t5x's EncoderDecoder: `encode`, `decode` and `__call__`
(teacher-forced logits). `model.init(rng, ...)['params']` is the t5x tree (what t5x saves
under `target`), each leaf boxed with its logical axis names; use `init_params` for plain
arrays and `param_axes` for the logical PartitionSpecs.

Packing: with `*_segment_ids`, attention never crosses examples (encoder self-attention,
causal decoder self-attention and cross-attention all stay within a segment), so a packed
example gets the logits it gets alone. `*_positions` are accepted as t5x passes them; the
relative-position bias does not need them (see `RelativePositionBias`).
Padding is token id 0; the decoder input starts from id 0.

Layers: with `config.scan_layers` each stack runs its layers as one `nn.scan` (t5x's
`scan_layers`), their parameters stacked on a leading 'layers' axis under
`encoder/layers/...` and `decoder/layers/...`, so that compile time does not grow with
depth. `flan_jax.models.layout` converts between that and the per-layer tree
(`layers_{i}`) in which checkpoints of every format are stored; cached decoding runs the
per-layer form.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from flax import linen as nn

from flan_jax.kernels.ops import add_biases
from flan_jax.models.config import SIZES, T5Config, get_config
from flan_jax.models.layers import (
    Array,
    Dense,
    Embed,
    MlpBlock,
    MultiHeadAttention,
    RelativePositionBias,
    RMSNorm,
    attention_bias,
    constrain,
)

__all__ = ["SIZES", "T5Config", "Transformer", "abstract_params", "get_config", "init_params",
           "param_axes"]

_REMAT_POLICIES = {
    "full": jax.checkpoint_policies.nothing_saveable,
    "minimal": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
    "dots": jax.checkpoint_policies.dots_saveable,
}


def _layer_class(cls: type[nn.Module], config: T5Config, static_argnums: tuple[int, ...],
                 decode: bool) -> type[nn.Module]:
    """`cls`, rematerialised per `config.remat_policy` (never while decoding with a cache)."""
    if config.remat_policy == "none" or decode:
        return cls
    # Under scan, the loop already keeps XLA from merging recomputation into the forward.
    return nn.remat(cls, policy=_REMAT_POLICIES[config.remat_policy],
                    static_argnums=static_argnums, prevent_cse=not config.scan_layers)


def _run_layers(layer: type[nn.Module], config: T5Config, count: int, x: Array,
                *args: object) -> Array:
    """`count` layers of class `layer` applied to `x` (each takes `x, *args` and returns
    `(x, None)`): one `nn.scan` named 'layers' with `config.scan_layers`, else modules
    `layers_0` ... `layers_{count-1}`."""
    if config.scan_layers:
        stack = nn.scan(layer, variable_axes={"params": 0},
                        split_rngs={"params": True, "dropout": True},
                        in_axes=(nn.broadcast,) * len(args), length=count,
                        metadata_params={nn.PARTITION_NAME: "layers"})
        return stack(config, name="layers")(x, *args)[0]
    for i in range(count):
        x, _ = layer(config, name=f"layers_{i}")(x, *args)
    return x


def _dropout(config: T5Config, x: Array, deterministic: bool) -> Array:
    """t5x-style dropout: the same features dropped at every position of a sequence."""
    return nn.Dropout(config.dropout_rate, broadcast_dims=(-2,))(x, deterministic=deterministic)


class EncoderLayer(nn.Module):
    """Pre-norm self-attention block then pre-norm gated-GELU MLP block; returns (x, None),
    the form `nn.scan` takes."""

    config: T5Config

    @nn.compact
    def __call__(self, x: Array, bias: Array, deterministic: bool) -> tuple[Array, None]:
        cfg = self.config
        h = RMSNorm(cfg, name="pre_attention_layer_norm")(x)
        h = MultiHeadAttention(cfg, name="attention")(h, h, bias, deterministic)
        x = x + _dropout(cfg, h, deterministic)
        h = RMSNorm(cfg, name="pre_mlp_layer_norm")(x)
        h = MlpBlock(cfg, name="mlp")(h, deterministic)
        return constrain(x + _dropout(cfg, h, deterministic), "batch", "length", "embed"), None


class DecoderLayer(nn.Module):
    """Causal self-attention, cross-attention to the encoder, then the MLP (all pre-norm)."""

    config: T5Config

    @nn.compact
    def __call__(self, x: Array, encoded: Array, self_bias: Array, cross_bias: Array,
                 deterministic: bool, decode: bool, decode_index: Array | None
                 ) -> tuple[Array, None]:
        cfg = self.config
        h = RMSNorm(cfg, name="pre_self_attention_layer_norm")(x)
        h = MultiHeadAttention(cfg, name="self_attention")(
            h, h, self_bias, deterministic, decode, decode_index)
        x = x + _dropout(cfg, h, deterministic)
        h = RMSNorm(cfg, name="pre_cross_attention_layer_norm")(x)
        h = MultiHeadAttention(cfg, cross=True, name="encoder_decoder_attention")(
            h, encoded, cross_bias, deterministic, decode)
        x = x + _dropout(cfg, h, deterministic)
        h = RMSNorm(cfg, name="pre_mlp_layer_norm")(x)
        h = MlpBlock(cfg, name="mlp")(h, deterministic)
        return constrain(x + _dropout(cfg, h, deterministic), "batch", "length", "embed"), None


class Encoder(nn.Module):
    """Token embedding -> layers -> encoder_norm; one relative-position table."""

    config: T5Config
    shared_embedding: nn.Module

    @nn.compact
    def __call__(self, tokens: Array, segment_ids: Array | None, deterministic: bool) -> Array:
        cfg = self.config
        valid = tokens > 0
        bias = attention_bias(valid, valid, query_segment_ids=segment_ids,
                              key_segment_ids=segment_ids)
        length = tokens.shape[1]
        bias = add_biases(bias, RelativePositionBias(cfg, bidirectional=True,
                                                     name="relpos_bias")(length, length))
        x = _dropout(cfg, self.shared_embedding(tokens), deterministic)
        x = constrain(x, "batch", "length", "embed")
        layer = _layer_class(EncoderLayer, cfg, static_argnums=(3,), decode=False)
        x = _run_layers(layer, cfg, cfg.num_layers, x, bias, deterministic)
        x = RMSNorm(cfg, name="encoder_norm")(x)
        return _dropout(cfg, x, deterministic)


class Decoder(nn.Module):
    """Decoder stack and untied `logits_dense`; owns the decode-time position cache."""

    config: T5Config
    shared_embedding: nn.Module

    @nn.compact
    def __call__(self, encoded: Array, encoder_input_tokens: Array, decoder_input_tokens: Array,
                 decoder_target_tokens: Array | None, encoder_segment_ids: Array | None,
                 decoder_segment_ids: Array | None, deterministic: bool, decode: bool) -> Array:
        cfg = self.config
        relpos = RelativePositionBias(cfg, bidirectional=False, name="relpos_bias")
        if decoder_target_tokens is None:
            query_valid = jnp.ones(decoder_input_tokens.shape, bool)
        else:
            query_valid = decoder_target_tokens > 0
        cross_bias = attention_bias(query_valid, encoder_input_tokens > 0,
                                    query_segment_ids=decoder_segment_ids,
                                    key_segment_ids=encoder_segment_ids)
        decode_index = None
        if decode and self.has_variable("cache", "index"):
            # One step: the bias row of the current position from the cached [L, L] bias.
            index = self.variable("cache", "index", jnp.zeros, (), jnp.int32)
            decode_index = index.value
            full_bias = self.get_variable("cache", "self_bias")
            self_bias = jax.lax.dynamic_slice_in_dim(full_bias, decode_index, 1, axis=2)
            index.value = decode_index + 1
        else:
            length = decoder_input_tokens.shape[1]
            self_bias = add_biases(attention_bias(query_valid, query_valid, causal=True,
                                                  query_segment_ids=decoder_segment_ids,
                                                  key_segment_ids=decoder_segment_ids),
                                   relpos(length, length))
            if decode:
                self.variable("cache", "index", jnp.zeros, (), jnp.int32)
                # Rows differ only by padding/segments, which decoding does not use.
                self.variable("cache", "self_bias", lambda: self_bias[:1])

        x = _dropout(cfg, self.shared_embedding(decoder_input_tokens), deterministic)
        x = constrain(x, "batch", "length", "embed")
        layer = _layer_class(DecoderLayer, cfg, static_argnums=(5, 6), decode=decode)
        x = _run_layers(layer, cfg, cfg.num_decoder_layers, x, encoded, self_bias, cross_bias,
                        deterministic, decode, decode_index)
        x = RMSNorm(cfg, name="decoder_norm")(x)
        x = _dropout(cfg, x, deterministic)
        logits = Dense(cfg.vocab_size, ("embed", "vocab"), cfg, name="logits_dense")(x)
        return constrain(logits, "batch", "length", "vocab")


def _check_tokens(name: str, tokens: Array, *same_shape: tuple[str, Array | None]) -> None:
    """Raises ValueError unless `tokens` is [batch, length] integers and companions match it."""
    if tokens.ndim != 2 or not jnp.issubdtype(tokens.dtype, jnp.integer):
        raise ValueError(f"{name} must be an integer array [batch, length], "
                         f"got {tokens.dtype}{list(tokens.shape)}")
    for other_name, other in same_shape:
        if other is not None and other.shape != tokens.shape:
            raise ValueError(f"{other_name} has shape {list(other.shape)} but {name} has "
                             f"{list(tokens.shape)}")


class Transformer(nn.Module):
    """T5 v1.1 encoder-decoder (t5x `EncoderDecoder` names and signatures)."""

    config: T5Config

    def setup(self) -> None:
        self.token_embedder = Embed(self.config)
        self.encoder = Encoder(self.config, self.token_embedder)
        self.decoder = Decoder(self.config, self.token_embedder)

    def encode(self, encoder_input_tokens: Array, encoder_segment_ids: Array | None = None,
               encoder_positions: Array | None = None, enable_dropout: bool = False) -> Array:
        """Encoder outputs [batch, length, d_model]."""
        _check_tokens("encoder_input_tokens", encoder_input_tokens,
                      ("encoder_segment_ids", encoder_segment_ids),
                      ("encoder_positions", encoder_positions))
        return self.encoder(encoder_input_tokens, encoder_segment_ids, not enable_dropout)

    def decode(self, encoded: Array, encoder_input_tokens: Array, decoder_input_tokens: Array,
               decoder_target_tokens: Array | None = None,
               encoder_segment_ids: Array | None = None,
               decoder_segment_ids: Array | None = None,
               decoder_positions: Array | None = None, enable_dropout: bool = False,
               decode: bool = False) -> Array:
        """Decoder logits [batch, length, vocab].

        `decoder_target_tokens` (optional) marks decoder padding. With `decode=True` the
        'cache' collection must be mutable: the first call, with full-length
        `decoder_input_tokens` [batch, max_decode_length], creates the cache; each later
        call takes one token per sequence [batch, 1] and advances the position by one.
        Segment ids and positions are for packed teacher-forced batches, not for decoding.
        """
        _check_tokens("decoder_input_tokens", decoder_input_tokens,
                      ("decoder_target_tokens", decoder_target_tokens),
                      ("decoder_segment_ids", decoder_segment_ids),
                      ("decoder_positions", decoder_positions))
        _check_tokens("encoder_input_tokens", encoder_input_tokens,
                      ("encoder_segment_ids", encoder_segment_ids))
        if decode and any(x is not None for x in (decoder_target_tokens, encoder_segment_ids,
                                                  decoder_segment_ids, decoder_positions)):
            raise ValueError("decode=True (cached decoding) takes no targets, segment ids or "
                             "positions")
        if (encoder_segment_ids is None) != (decoder_segment_ids is None):
            raise ValueError("packed batches need both encoder_segment_ids and "
                             "decoder_segment_ids (or neither)")
        if encoded.shape[:2] != encoder_input_tokens.shape:
            raise ValueError(f"encoded has shape {list(encoded.shape)}, which does not match "
                             f"encoder_input_tokens {list(encoder_input_tokens.shape)}")
        if decode and self.config.scan_layers:
            raise ValueError("decode=True (cached decoding) runs the per-layer model: decode "
                             "with flan_jax.models.decoding, which converts scanned parameters")
        return self.decoder(encoded, encoder_input_tokens, decoder_input_tokens,
                            decoder_target_tokens, encoder_segment_ids, decoder_segment_ids,
                            not enable_dropout, decode)

    def __call__(self, encoder_input_tokens: Array, decoder_input_tokens: Array,
                 decoder_target_tokens: Array | None = None,
                 encoder_segment_ids: Array | None = None,
                 decoder_segment_ids: Array | None = None,
                 encoder_positions: Array | None = None,
                 decoder_positions: Array | None = None,
                 enable_dropout: bool = False) -> Array:
        """Teacher-forced logits [batch, decoder length, vocab]."""
        encoded = self.encode(encoder_input_tokens, encoder_segment_ids, encoder_positions,
                              enable_dropout)
        return self.decode(encoded, encoder_input_tokens, decoder_input_tokens,
                           decoder_target_tokens, encoder_segment_ids, decoder_segment_ids,
                           decoder_positions, enable_dropout)


def _boxed_init(config: T5Config, rng: Array) -> dict:
    """`model.init(...)['params']` on one-token inputs (shapes do not depend on length)."""
    tokens = jnp.ones((1, 1), jnp.int32)
    return Transformer(config).init(rng, tokens, tokens)["params"]


def init_params(config: T5Config, rng: Array) -> dict:
    """Freshly initialised parameters as plain arrays (the t5x tree, no 'target' level)."""
    return nn.meta.unbox(_boxed_init(config, rng))


def abstract_params(config: T5Config) -> dict:
    """The parameter tree as `jax.ShapeDtypeStruct`s, computed without allocating memory."""
    return nn.meta.unbox(jax.eval_shape(functools.partial(_boxed_init, config),
                                        jax.random.key(0)))


def param_axes(config: T5Config) -> dict:
    """The parameter tree of `PartitionSpec`s in t5x logical axis names (e.g. 'embed', 'mlp')."""
    return nn.get_partition_spec(jax.eval_shape(functools.partial(_boxed_init, config),
                                                jax.random.key(0)))
