"""T5 v1.1 building blocks in Flax linen, with t5x parameter names and logical axis names.

Every parameter carries t5x logical axis names (`embed`, `mlp`, `joined_kv`, `heads`,
`vocab`, `relpos_buckets`) through `nn.with_logical_partitioning`, and activations are
constrained with `nn.with_logical_constraint` (`batch`, `length`, `embed`, `heads`, `kv`,
`mlp`); both are no-ops until logical axis rules and a mesh are in scope.
"""

from __future__ import annotations

import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from flan_jax.kernels import ops
from flan_jax.models.config import T5Config

Array = jax.Array
NEG_INF = -1e10  # additive attention bias of a masked (query, key) pair, as in t5x

_attention_init = nn.initializers.variance_scaling(1.0, "fan_in", "normal")
_mlp_init = nn.initializers.variance_scaling(1.0, "fan_in", "truncated_normal")
_embedding_init = nn.initializers.normal(stddev=1.0)
_relpos_init = nn.initializers.variance_scaling(1.0, "fan_avg", "uniform")


def constrain(x: Array, *axes: str) -> Array:
    """Sharding constraint in logical axis names (no-op without axis rules)."""
    return nn.with_logical_constraint(x, axes)


class Dense(nn.Module):
    """Bias-free projection `x @ kernel` with a 2-D [in, out] kernel, as t5x stores it."""

    features: int
    axes: tuple[str, str]
    config: T5Config
    kernel_init: nn.initializers.Initializer = _mlp_init

    @nn.compact
    def __call__(self, x: Array) -> Array:
        kernel = self.param("kernel", nn.with_logical_partitioning(self.kernel_init, self.axes),
                            (x.shape[-1], self.features), self.config.parameter_dtype)
        # A 2-D [tokens, in] @ [in, out] product: XLA:CPU differentiates a batched
        # [..., in] dot into transposing fusions that cost 2.5x the matmuls themselves.
        flat = x.reshape(-1, x.shape[-1]).astype(self.config.activation_dtype)
        y = ops.dense(flat, kernel, self.config.remat_policy)
        return y.reshape(x.shape[:-1] + (self.features,))


class RMSNorm(nn.Module):
    """T5 layer norm: scale-only RMS normalisation, statistics in float32."""

    config: T5Config

    @nn.compact
    def __call__(self, x: Array) -> Array:
        scale = self.param("scale", nn.with_logical_partitioning(nn.initializers.ones, ("embed",)),
                           (x.shape[-1],), self.config.parameter_dtype)
        x32 = x.astype(jnp.float32)
        variance = jnp.mean(jnp.square(x32), axis=-1, keepdims=True)
        y = x32 * jax.lax.rsqrt(variance + self.config.layer_norm_epsilon)
        # Scaled in float32: the scale's gradient is then a float32 sum over every token
        # (in the activation dtype it would be a bf16 sum, rounded at each addition).
        return (y * scale.astype(jnp.float32)).astype(self.config.activation_dtype)


class Embed(nn.Module):
    """Token embedding table [vocab, d_model] shared by encoder and decoder inputs."""

    config: T5Config

    @nn.compact
    def __call__(self, tokens: Array) -> Array:
        cfg = self.config
        table = self.param("embedding",
                           nn.with_logical_partitioning(_embedding_init, ("vocab", "embed")),
                           (cfg.vocab_size, cfg.d_model), cfg.parameter_dtype)
        return ops.embed(table, tokens, cfg.activation_dtype)


def relative_position_bucket(relative_position: Array, *, bidirectional: bool, num_buckets: int,
                             max_distance: int) -> Array:
    """Maps `key_position - query_position` to one of `num_buckets` buckets (T5 scheme).

    Half the buckets (per direction when bidirectional) hold exact small distances, the
    rest grow logarithmically up to `max_distance`; a causal (unidirectional) bias only
    distinguishes keys at or before the query.
    """
    n = relative_position
    bucket = jnp.zeros_like(n)
    if bidirectional:
        num_buckets //= 2
        bucket = (n > 0).astype(n.dtype) * num_buckets
        n = jnp.abs(n)
    else:
        n = jnp.maximum(-n, 0)
    max_exact = num_buckets // 2
    scaled = (jnp.log(jnp.maximum(n, 1).astype(jnp.float32) / max_exact)
              / math.log(max_distance / max_exact) * (num_buckets - max_exact))
    large = jnp.minimum(max_exact + scaled.astype(n.dtype), num_buckets - 1)
    return bucket + jnp.where(n < max_exact, n, large)


class RelativePositionBias(nn.Module):
    """Per-head learned bias indexed by relative-position bucket; one table per stack."""

    config: T5Config
    bidirectional: bool

    @nn.compact
    def __call__(self, query_length: int, key_length: int) -> Array:
        """The bias [1, heads, query_length, key_length] of key position - query position.

        In a packed row a query only attends keys of its own example, whose positions
        differ by the same amount as their indices, so the row's indices serve every
        example of it (as in t5x).
        """
        cfg = self.config
        table = self.param("rel_embedding",
                           nn.with_logical_partitioning(_relpos_init, ("heads", "relpos_buckets")),
                           (cfg.num_heads, cfg.relative_attention_num_buckets),
                           cfg.parameter_dtype)
        buckets = relative_position_bucket(
            jnp.arange(key_length)[None, :] - jnp.arange(query_length)[:, None],
            bidirectional=self.bidirectional,
            num_buckets=cfg.relative_attention_num_buckets,
            max_distance=cfg.relative_attention_max_distance)
        return ops.position_bias(table.astype(cfg.activation_dtype), buckets)[None]


def attention_bias(query_valid: Array, key_valid: Array, *, causal: bool = False,
                   query_segment_ids: Array | None = None,
                   key_segment_ids: Array | None = None) -> Array:
    """Additive float32 mask bias [b, 1, q, k]: 0 where a query may attend a key, else NEG_INF.

    Query and key must both be valid (not padding); with `causal`, the key must not come
    after the query; with segment ids, both must belong to the same packed example.
    """
    mask = query_valid[:, None, :, None] & key_valid[:, None, None, :]
    if causal:
        mask = mask & jnp.tril(jnp.ones(mask.shape[-2:], bool))
    if query_segment_ids is not None and key_segment_ids is not None:
        mask = mask & (query_segment_ids[:, None, :, None] == key_segment_ids[:, None, None, :])
    return jnp.where(mask, 0.0, NEG_INF).astype(jnp.float32)


class MultiHeadAttention(nn.Module):
    """T5 attention: no 1/sqrt(d_kv) logit scaling (t5x folds it into the query init).

    With `decode=True` a 'cache' collection holds keys and values. The first decode call
    (cache absent) creates it from full-length inputs: zeros for self-attention, the
    projected encoder outputs for cross-attention. Later calls are single-token steps:
    self-attention writes this step's key/value at `decode_index`, cross-attention reuses
    the cached projections.
    """

    config: T5Config
    cross: bool = False

    @nn.compact
    def __call__(self, inputs_q: Array, inputs_kv: Array, bias: Array, deterministic: bool,
                 decode: bool = False, decode_index: Array | None = None) -> Array:
        cfg = self.config
        heads = (cfg.num_heads, cfg.d_kv)
        joined_size = cfg.num_heads * cfg.d_kv
        project = functools.partial(Dense, joined_size, ("embed", "joined_kv"), cfg,
                                    kernel_init=_attention_init)

        def split(x: Array) -> Array:
            # [b, len, h*d] -> [b, h, len, d]: the decode cache's layout, which the per-step
            # attention products read without transposes.
            x = jnp.swapaxes(x.reshape(x.shape[:-1] + heads), 1, 2)
            return constrain(x, "batch", "heads", "length", "kv")

        def joined(x: Array) -> Array:
            return constrain(x, "batch", "length", "joined_kv")

        query = joined(project(name="query", kernel_init=_scaled_query_init(cfg.d_kv))(inputs_q))
        if decode:
            query = split(query)
            is_step = self.has_variable("cache", "cached_key")
            if is_step and self.cross:
                key = self.get_variable("cache", "cached_key")
                value = self.get_variable("cache", "cached_value")
            else:
                key = split(project(name="key")(inputs_kv))
                value = split(project(name="value")(inputs_kv))
                key, value = self._cache(key, value, decode_index if is_step else None)
            logits = jnp.einsum("bhqd,bhkd->bhqk", query, key)
        else:
            key = joined(project(name="key")(inputs_kv))
            value = joined(project(name="value")(inputs_kv))
            logits = ops.attention_logits(query, key, cfg.num_heads, cfg.remat_policy)
        weights = jax.nn.softmax(logits.astype(jnp.float32) + bias, axis=-1)
        weights = nn.Dropout(cfg.dropout_rate, broadcast_dims=(-2,))(
            weights.astype(cfg.activation_dtype), deterministic=deterministic)
        if decode:
            out = jnp.einsum("bhqk,bhkd->bqhd", weights, value)
            out = out.reshape(out.shape[:2] + (joined_size,))
        else:
            out = ops.attention_values(weights, value, cfg.remat_policy)
        return Dense(cfg.d_model, ("joined_kv", "embed"), cfg, kernel_init=_attention_init,
                     name="out")(joined(out))

    def _cache(self, key: Array, value: Array, decode_index: Array | None) -> tuple[Array, Array]:
        """Creates the cache (index None) or writes one step at `decode_index`; returns k, v."""
        fill = (lambda x: x) if self.cross else jnp.zeros_like
        cached_key = self.variable("cache", "cached_key", fill, key)
        cached_value = self.variable("cache", "cached_value", fill, value)
        if decode_index is None:
            return key, value
        if key.shape[2] != 1:
            raise ValueError(f"a decode step takes one token per sequence, got {key.shape[2]}")
        start = (0, 0, decode_index, 0)
        cached_key.value = jax.lax.dynamic_update_slice(cached_key.value, key, start)
        cached_value.value = jax.lax.dynamic_update_slice(cached_value.value, value, start)
        return cached_key.value, cached_value.value


def _scaled_query_init(d_kv: int) -> nn.initializers.Initializer:
    """Query kernel init divided by sqrt(d_kv): the attention scaling folded into the weights."""

    def init(key: Array, shape: tuple[int, ...], dtype: jnp.dtype = jnp.float32) -> Array:
        return _attention_init(key, shape, dtype) / jnp.sqrt(d_kv).astype(dtype)

    return init


class MlpBlock(nn.Module):
    """Gated-GELU feed-forward: wo(gelu_tanh(x wi_0) * (x wi_1))."""

    config: T5Config

    @nn.compact
    def __call__(self, x: Array, deterministic: bool) -> Array:
        cfg = self.config
        wi = functools.partial(Dense, cfg.d_ff, ("embed", "mlp"), cfg)
        h = nn.gelu(wi(name="wi_0")(x), approximate=True) * wi(name="wi_1")(x)
        h = nn.Dropout(cfg.dropout_rate, broadcast_dims=(-2,))(h, deterministic=deterministic)
        h = constrain(h, "batch", "length", "mlp")
        return Dense(cfg.d_model, ("mlp", "embed"), cfg, name="wo")(h)
