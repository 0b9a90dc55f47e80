"""CPU specialisations written in JAX: products and reductions in the forms XLA:CPU runs
fastest. `flan_jax.kernels.ops` uses them where `flan_jax.kernels.enabled(...)`."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

Array = jax.Array


def _dot_f32(a: Array, b: Array, contracting: tuple[int, int]) -> Array:
    """2-D `dot_general` over one axis of each operand, accumulated in float32."""
    dims = (((contracting[0],), (contracting[1],)), ((), ()))
    return jax.lax.dot_general(a, b, dims, preferred_element_type=jnp.float32)


@jax.custom_vjp
def low_precision_matmul(x: Array, kernel: Array) -> Array:
    """`x` [tokens, in] @ `kernel` [in, out] in `x`'s dtype (bf16), accumulated in float32.

    Forward and both gradients are bf16 products with float32 accumulation, and the
    kernel's gradient comes back in the kernel's own dtype (float32 for t5x-style mixed
    precision) without a bf16 rounding. Autodiff of a bf16 `jnp.dot` gives XLA:CPU
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
    # XLA:CPU folds a plain `x.T` into the product, which then contracts a major axis and
    # runs in float32 (3x slower at flan-t5-small sizes); the barrier keeps the transpose a
    # row-major copy.
    x_t = jax.lax.optimization_barrier(x.T[None])[0]
    dkernel = _dot_f32(x_t, g, (1, 0))
    return dx, dkernel.astype(kernel.dtype)


low_precision_matmul.defvjp(_low_precision_matmul_fwd, _low_precision_matmul_bwd)


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
