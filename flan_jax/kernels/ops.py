"""The model's compute primitives, each in the form XLA's accelerator compilers handle best,
with the CPU specialisations of `flan_jax.kernels` chosen where a computation runs on a CPU.

Activations are [batch, length, heads * d_kv] throughout ("joined" heads): the MKL
products read each head in place from that layout, and XLA's einsums need no transposes
either.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from flan_jax import kernels
from flan_jax.kernels import matmul, xla_cpu

Array = jax.Array


def dense(x: Array, kernel: Array, remat_policy: str = "none") -> Array:
    """`x` [tokens, in] @ `kernel` [in, out] in `x`'s dtype (the kernel cast to it), as t5x's
    DenseGeneral computes it; matmul units accumulate in float32."""
    dtype = x.dtype

    def generic(x: Array, kernel: Array) -> Array:
        return jnp.dot(x, kernel.astype(dtype))

    if kernels.enabled("bf16_matmul", dtype):
        return kernels.select(True, generic, xla_cpu.low_precision_matmul, x, kernel)
    return kernels.select(kernels.enabled("matmul", dtype, remat_policy), generic,
                          lambda x, kernel: matmul.matmul(x, kernel.astype(dtype)), x, kernel)


def _heads(x: Array, heads: int) -> Array:
    return x.reshape(x.shape[:-1] + (heads, x.shape[-1] // heads))


def attention_logits(query: Array, key: Array, heads: int, remat_policy: str = "none") -> Array:
    """Logits [b, heads, q, k] of query [b, q, heads*d] and key [b, k, heads*d]."""

    def generic(query: Array, key: Array) -> Array:
        return jnp.einsum("bqhd,bkhd->bhqk", _heads(query, heads), _heads(key, heads))

    return kernels.select(kernels.enabled("matmul", query.dtype, remat_policy), generic,
                          functools.partial(matmul.attention_logits, heads=heads), query, key)


def attention_values(weights: Array, value: Array, remat_policy: str = "none") -> Array:
    """Weighted values [b, q, heads*d] of weights [b, heads, q, k] and value [b, k, heads*d]."""

    def generic(weights: Array, value: Array) -> Array:
        out = jnp.einsum("bhqk,bkhd->bqhd", weights, _heads(value, weights.shape[1]))
        return out.reshape(out.shape[:2] + (value.shape[-1],))

    return kernels.select(kernels.enabled("matmul", value.dtype, remat_policy), generic,
                          matmul.attention_values, weights, value)


def add_biases(mask_bias: Array, position_bias: Array) -> Array:
    """`mask_bias` [b, 1, q, k] + `position_bias` [1, heads, q, k], broadcast."""
    return kernels.select(kernels.enabled("bias_sum"), jnp.add, xla_cpu.add_biases,
                          mask_bias, position_bias)


def position_bias(table: Array, buckets: Array) -> Array:
    """Per-head bias [heads, q, k] of relative-position `buckets` [q, k] from `table`
    [heads, num_buckets], as a one-hot contraction (as t5x computes it): its gradient is a
    product too, where a gather's is a scatter-add into the small table, which accelerators
    serialise on the few hot entries (and run slowly in bf16)."""
    one_hot = (buckets[..., None] == jnp.arange(table.shape[1])).astype(table.dtype)
    return jnp.einsum("hn,qkn->hqk", table, one_hot)


def embed(table: Array, tokens: Array, dtype: jnp.dtype) -> Array:
    """Rows `tokens` [b, len] of `table` [vocab, d], in `dtype`. On TPU as a one-hot product
    in `dtype` (t5x's choice there: TPUs gather and scatter slowly); elsewhere a gather,
    whose gradient scatters into the table in the table's own dtype (float32 in mixed
    precision, never a bf16 scatter)."""

    def one_hot(table: Array, tokens: Array) -> Array:
        return jnp.dot(jax.nn.one_hot(tokens, table.shape[0], dtype=dtype), table.astype(dtype))

    def gather(table: Array, tokens: Array) -> Array:
        return jnp.take(table, tokens, axis=0).astype(dtype)

    return jax.lax.platform_dependent(table, tokens, tpu=one_hot, default=gather)
