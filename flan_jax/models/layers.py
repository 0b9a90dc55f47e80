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

from flan_jax.models import cpu_matmul
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
        dtype = self.config.activation_dtype
        # A 2-D [tokens, in] @ [in, out] product: XLA:CPU differentiates a batched
        # [..., in] dot into transposing fusions that cost 2.5x the matmuls themselves.
        flat = x.reshape(-1, x.shape[-1]).astype(dtype)
        if dtype.itemsize < 4:
            y = low_precision_matmul(flat, kernel)
        elif cpu_matmul.enabled(dtype, self.config.remat_policy):
            y = cpu_matmul.matmul(flat, kernel.astype(dtype))
        else:
            y = jnp.dot(flat, kernel.astype(dtype))
        return y.reshape(x.shape[:-1] + (self.features,))


def _dot_f32(a: Array, b: Array, contracting: tuple[int, int]) -> Array:
    """2-D `dot_general` over one axis of each operand, accumulated in float32."""
    dims = (((contracting[0],), (contracting[1],)), ((), ()))
    return jax.lax.dot_general(a, b, dims, preferred_element_type=jnp.float32)


@jax.custom_vjp
def low_precision_matmul(x: Array, kernel: Array) -> Array:
    """`x` [tokens, in] @ `kernel` [in, out] in `x`'s dtype (bf16), accumulated in float32.

    Forward and both gradients are bf16 products with float32 accumulation, and the
    kernel's gradient comes back in the kernel's own dtype (float32 for t5x-style mixed
    precision) without a bf16 rounding. Autodiff of a bf16 `jnp.dot` would give XLA:CPU
    bf16-output and transposed-operand products, which it runs in float32 instead; in this
    form it runs them on the bf16 matrix units (AMX), 3-5x faster.
    """
    return _dot_f32(x, kernel.astype(x.dtype), (1, 0)).astype(x.dtype)


def _low_precision_matmul_fwd(x: Array, kernel: Array) -> tuple[Array, tuple[Array, Array]]:
    return low_precision_matmul(x, kernel), (x, kernel)


def _low_precision_matmul_bwd(residuals: tuple[Array, Array], g: Array) -> tuple[Array, Array]:
    x, kernel = residuals
    g = g.astype(x.dtype)
    dx = _dot_f32(g, kernel.astype(x.dtype), (1, 1)).astype(x.dtype)
    if jax.default_backend() == "cpu":
        # XLA:CPU folds a plain `x.T` into the product, which then contracts a major axis and
        # runs in float32 (3x slower at flan-t5-small sizes); the barrier keeps the
        # transpose a row-major copy.
        x_t = jax.lax.optimization_barrier(x.T[None])[0]
        dkernel = _dot_f32(x_t, g, (1, 0))
    else:
        dkernel = _dot_f32(x, g, (0, 0))
    return dx, dkernel.astype(kernel.dtype)


low_precision_matmul.defvjp(_low_precision_matmul_fwd, _low_precision_matmul_bwd)


class RMSNorm(nn.Module):
    """T5 layer norm: scale-only RMS normalisation, statistics in float32."""

    config: T5Config

    @nn.compact
    def __call__(self, x: Array) -> Array:
        scale = self.param("scale", nn.with_logical_partitioning(nn.initializers.ones, ("embed",)),
                           (x.shape[-1],), self.config.parameter_dtype)
        x32 = x.astype(jnp.float32)
        variance = jnp.mean(jnp.square(x32), axis=-1, keepdims=True)
        y = (x32 * jax.lax.rsqrt(variance + self.config.layer_norm_epsilon))
        dtype = self.config.activation_dtype
        return y.astype(dtype) * scale.astype(dtype)


class Embed(nn.Module):
    """Token embedding table [vocab, d_model] shared by encoder and decoder inputs."""

    config: T5Config

    @nn.compact
    def __call__(self, tokens: Array) -> Array:
        cfg = self.config
        table = self.param("embedding",
                           nn.with_logical_partitioning(_embedding_init, ("vocab", "embed")),
                           (cfg.vocab_size, cfg.d_model), cfg.parameter_dtype)
        return jnp.take(table, tokens, axis=0).astype(cfg.activation_dtype)


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
    def __call__(self, query_positions: Array, key_positions: Array) -> Array:
        """Positions [b or 1, q] and [b or 1, k] -> bias [b or 1, heads, q, k]."""
        cfg = self.config
        table = self.param("rel_embedding",
                           nn.with_logical_partitioning(_relpos_init, ("heads", "relpos_buckets")),
                           (cfg.num_heads, cfg.relative_attention_num_buckets),
                           cfg.parameter_dtype)
        buckets = relative_position_bucket(
            key_positions[:, None, :] - query_positions[:, :, None],
            bidirectional=self.bidirectional,
            num_buckets=cfg.relative_attention_num_buckets,
            max_distance=cfg.relative_attention_max_distance)
        bias = jnp.take(table.astype(cfg.activation_dtype), buckets, axis=1)
        return jnp.moveaxis(bias, 0, 1)


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


def add_biases(mask_bias: Array, position_bias: Array) -> Array:
    """`mask_bias` [b, 1, q, k] + `position_bias` [b or 1, heads, q, k], broadcast.

    The same sum as `+`; its gradient sums over the batch as a matrix-vector product,
    which XLA:CPU runs 60x faster than the reduction autodiff emits for the short batch
    axis (1 ms against 67 ms per flan-t5-small step with 256 input tokens).
    """
    operands = tuple((x.shape, x.dtype) for x in (mask_bias, position_bias))
    return _add_biases(operands, mask_bias, position_bias)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _add_biases(operands: tuple, mask_bias: Array, position_bias: Array) -> Array:
    del operands
    return mask_bias + position_bias


def _add_biases_fwd(operands: tuple, mask_bias: Array, position_bias: Array
                    ) -> tuple[Array, None]:
    return _add_biases(operands, mask_bias, position_bias), None


def _sum_to_shape(g: Array, shape: tuple[int, ...]) -> Array:
    """`g` summed over the axes that an operand of `shape` was broadcast along."""
    if shape[0] == 1 and g.shape[0] > 1:
        g = jnp.tensordot(jnp.ones(g.shape[0], g.dtype), g, axes=(0, 0))[None]
    axes = tuple(i for i in range(1, g.ndim) if shape[i] == 1 and g.shape[i] > 1)
    return jnp.sum(g, axis=axes, keepdims=True) if axes else g


def _add_biases_bwd(operands: tuple, _: None, g: Array) -> tuple[Array, Array]:
    """Operands' (shape, dtype) -> their cotangents."""
    return tuple(_sum_to_shape(g, shape).astype(dtype) for shape, dtype in operands)


_add_biases.defvjp(_add_biases_fwd, _add_biases_bwd)


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
        joined = cfg.num_heads * cfg.d_kv
        project = functools.partial(Dense, joined, ("embed", "joined_kv"), cfg,
                                    kernel_init=_attention_init)

        def split(x: Array) -> Array:
            # [b, len, h*d] -> [b, h, len, d]: heads lead, so the cached keys/values are
            # already in the layout the attention matmuls read (no per-step transposes).
            x = jnp.swapaxes(x.reshape(x.shape[:-1] + heads), 1, 2)
            return constrain(x, "batch", "heads", "length", "kv")

        query = project(name="query", kernel_init=_scaled_query_init(cfg.d_kv))(inputs_q)
        # The MKL products read heads in place from [b, len, h*d]; XLA's read [b, h, len, d].
        in_place = not decode and cpu_matmul.enabled(cfg.activation_dtype, cfg.remat_policy)
        if in_place:
            key, value = project(name="key")(inputs_kv), project(name="value")(inputs_kv)
            logits = cpu_matmul.attention_logits(query, key, cfg.num_heads)
        else:
            query = split(query)
            is_step = decode and self.has_variable("cache", "cached_key")
            if is_step and self.cross:
                key = self.get_variable("cache", "cached_key")
                value = self.get_variable("cache", "cached_value")
            else:
                key = split(project(name="key")(inputs_kv))
                value = split(project(name="value")(inputs_kv))
                if decode:
                    key, value = self._cache(key, value, decode_index if is_step else None)
            logits = jnp.einsum("bhqd,bhkd->bhqk", query, key)
        weights = jax.nn.softmax(logits.astype(jnp.float32) + bias, axis=-1)
        weights = nn.Dropout(cfg.dropout_rate, broadcast_dims=(-2,))(
            weights.astype(cfg.activation_dtype), deterministic=deterministic)
        if in_place:
            out = cpu_matmul.attention_values(weights, value)
        else:
            out = jnp.einsum("bhqk,bhkd->bqhd", weights, value)
            out = out.reshape(out.shape[:2] + (joined,))
        return Dense(cfg.d_model, ("joined_kv", "embed"), cfg, kernel_init=_attention_init,
                     name="out")(out)

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
