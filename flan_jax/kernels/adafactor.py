"""Adafactor's factored update on XLA:CPU in one C++ custom call that writes the parameters
in place (`flan_jax/kernels/adafactor.cc`); `flan_jax.training.optimizers` uses it where
`flan_jax.kernels.enabled('adafactor')`.

Two things make the XLA version of the update slow on a CPU. Its arithmetic is about 16
small ops per matrix and five passes over memory. And a parameter's update, being an op
of its own, has no data dependency on the backward pass's other reads of that parameter
(the products that propagate gradients to earlier layers), so XLA cannot prove that the
in-place write of a donated parameter comes after them and copies every parameter first.
This kernel reads each gradient and parameter once for the statistics and once for the
update, and, being one op that depends on every gradient, comes after every read: no
copies. It also returns the sum of g² for the gradient norm. A flan-t5-small training
step is 1.11x (64/64) and 1.05x (256/64) faster (`benchmarks/train_step.py`).

It covers the matrices Adafactor factors (float32, 2-D); vectors and small matrices keep
the XLA update. `FLAN_JAX_CPU_ADAFACTOR=0` turns it off; it is also off on multi-device
meshes (a custom call has no sharding rule) and on every backend other than CPU. Where the
kernel cannot be built, the optimizer keeps the XLA update and logs why once.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from flan_jax.kernels import build as kernel_build

Array = jax.Array
SOURCE = kernel_build.SOURCES / "adafactor.cc"
_TARGET = "flan_jax_adafactor"
_log = logging.getLogger(__name__)


@functools.cache
def _load() -> str | None:
    """Builds, loads and registers the custom call; None on success, else the reason."""
    try:
        kernel_build.register(kernel_build.build(SOURCE), {_TARGET: "FlanJaxAdafactor"})
    except kernel_build.Unavailable as e:
        _log.warning("flan_jax: the Adafactor update stays in XLA: %s", e)
        return str(e)
    return None


def unavailable_reason() -> str | None:
    """Why the kernel cannot be used on this machine (None if it can)."""
    return _load()


def supports(param: Array) -> bool:
    """Whether the kernel can update `param` (if Adafactor factors it): a float32 matrix."""
    return param.ndim == 2 and param.dtype == jnp.float32


def apply_factored(grads: Sequence[Array], params: Sequence[Array], v_rows: Sequence[Array],
                   v_cols: Sequence[Array], small_axes: Sequence[int], decay: Array,
                   learning_rate: Array, *, clipping_threshold: float | None,
                   multiply_by_parameter_scale: bool
                   ) -> tuple[list[Array], list[Array], list[Array], Array]:
    """New parameters, v_row and v_col (optax's factored statistics: v_row over the smaller
    axis, v_col over the larger) of float32 matrices after one Adafactor step, in place,
    and the sum of the squared gradients over all of them.

    `small_axes[i]` is the axis of `params[i]` that v_row runs along (optax's `d1`).
    """
    operands, aliases = [], {}
    results = [jax.ShapeDtypeStruct((len(grads),), jnp.float32)]
    for i, (grad, param, v_row, v_col, small) in enumerate(
            zip(grads, params, v_rows, v_cols, small_axes, strict=True)):
        per_row, per_col = (v_row, v_col) if small == 0 else (v_col, v_row)
        for j, x in enumerate((param, per_row, per_col)):
            aliases[2 + 4 * i + 1 + j] = 1 + 3 * i + j
            results.append(jax.ShapeDtypeStruct(x.shape, x.dtype))
        operands += [grad, param, per_row, per_col]
    grad_squares, *out = jax.ffi.ffi_call(_TARGET, results, input_output_aliases=aliases)(
        jnp.asarray(decay, jnp.float32), jnp.asarray(learning_rate, jnp.float32), *operands,
        normalize_rows=np.asarray([small == 0 for small in small_axes], np.int64),
        clipping_threshold=np.float32(clipping_threshold or 0.0),
        scale_by_param=bool(multiply_by_parameter_scale))
    new_params, new_rows, new_cols = [], [], []
    for i, small in enumerate(small_axes):
        param, per_row, per_col = out[3 * i:3 * i + 3]
        new_params.append(param)
        new_rows.append(per_row if small == 0 else per_col)
        new_cols.append(per_col if small == 0 else per_row)
    return new_params, new_rows, new_cols, jnp.sum(grad_squares)
