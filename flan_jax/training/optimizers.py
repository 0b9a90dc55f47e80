"""Adafactor with the t5x / Flan-T5 settings, and learning-rate schedules.

`make_optimizer()` (gin: `flan_jax.training.optimizers.make_optimizer`) returns an optax
GradientTransformation: `optax.adafactor` with decay_rate 0.8, update clipping 1.0,
factored second moments and parameter-scale multiply (the Flan-T5 recipe), no momentum;
its update is computed by `fused_adafactor` (optax's state and arithmetic, fewer passes
over memory; `fused_update=False` runs optax's own). `apply_gradients` is the step's
`update` + `apply_updates`; for the fused Adafactor on a CPU, a C++ kernel that writes the
parameters in place (`flan_jax.kernels.adafactor`, chosen by `flan_jax.kernels`).

Scanned models (`T5Config.scan_layers`) stack each stack's layers on a leading axis; the
fused Adafactor keeps per-layer statistics for those leaves (t5x treats that axis as a
batch axis too): its state is the per-layer state, stacked, and its updates equal the
per-layer model's.
Schedules (`learning_rate_schedule`):

    'constant'       base_learning_rate at every step (Flan-T5 finetuning: 5e-4)
    'warmup_rsqrt'   linear warm-up to base over `warmup_steps`, then
                     base * sqrt(warmup_steps / step) (T5 pre-training style)
    'constant_cooldown'  base, then linearly down to 0 over the last `cooldown_fraction`
                     of `total_steps` (short runs from scratch, e.g. the demo)

Gradient accumulation is done by the train step (`num_microbatches`, t5x's name): the
batch is split into microbatches whose gradients are summed before one optimizer update,
so the step count, the schedule and the optimizer state are those of the full batch.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import gin
import jax
import jax.numpy as jnp
import numpy as np
import optax

from flan_jax import kernels
from flan_jax.kernels import adafactor as adafactor_kernel
from flan_jax.models import layout

Schedule = Callable[[int], float]
SCHEDULES = ("constant", "warmup_rsqrt", "constant_cooldown")


@gin.configurable(module="flan_jax.training.optimizers")
def learning_rate_schedule(name: str = "constant", base_learning_rate: float = 5e-4,
                           warmup_steps: int = 10_000, total_steps: int = 0,
                           cooldown_fraction: float = 0.3) -> Schedule:
    """The learning rate as a function of the step (see the module docstring)."""
    if name == "constant":
        return optax.constant_schedule(base_learning_rate)
    if name == "constant_cooldown":
        if total_steps < 1 or not 0.0 < cooldown_fraction <= 1.0:
            raise ValueError("constant_cooldown needs total_steps >= 1 and cooldown_fraction "
                             f"in (0, 1], got {total_steps} and {cooldown_fraction}")
        start = round(total_steps * (1.0 - cooldown_fraction))
        return optax.join_schedules([
            optax.constant_schedule(base_learning_rate),
            optax.linear_schedule(base_learning_rate, 0.0, total_steps - start)], [start])
    if name == "warmup_rsqrt":
        if warmup_steps < 1:
            raise ValueError(f"warmup_steps must be >= 1, got {warmup_steps}")

        def schedule(step):
            step = jnp.asarray(step, jnp.float32) + 1.0
            warm = base_learning_rate * step / warmup_steps
            decay = base_learning_rate * jnp.sqrt(warmup_steps / jnp.maximum(step, warmup_steps))
            return jnp.where(step < warmup_steps, warm, decay)

        return schedule
    raise ValueError(f"unknown learning-rate schedule {name!r}; use one of {SCHEDULES}")


@gin.configurable(module="flan_jax.training.optimizers")
def make_optimizer(learning_rate: float | Schedule | None = None, decay_rate: float = 0.8,
                   clipping_threshold: float | None = 1.0, factored: bool = True,
                   multiply_by_parameter_scale: bool = True, min_dim_size_to_factor: int = 128,
                   momentum: float | None = None, weight_decay_rate: float | None = None,
                   fused_update: bool = True
                   ) -> optax.GradientTransformation | FusedAdafactor:
    """optax Adafactor with t5x defaults; `learning_rate` defaults to the configured
    `learning_rate_schedule()`.

    With `fused_update` (and no momentum or weight decay, the Flan-T5 recipe) the update
    is `fused_adafactor`'s: optax's state and arithmetic in fewer passes over memory.
    """
    if learning_rate is None:
        learning_rate = learning_rate_schedule()
    settings = dict(learning_rate=learning_rate, decay_rate=decay_rate,
                    clipping_threshold=clipping_threshold, factored=factored,
                    multiply_by_parameter_scale=multiply_by_parameter_scale,
                    min_dim_size_to_factor=min_dim_size_to_factor)
    if fused_update and momentum is None and weight_decay_rate is None:
        return fused_adafactor(**settings)
    return optax.adafactor(**settings, momentum=momentum, weight_decay_rate=weight_decay_rate)


_EPSILON = 1e-30      # optax.adafactor's eps: added to squared gradients
_MIN_PARAM_RMS = 1e-3  # optax.scale_by_param_block_rms's min_scale
_WIDE = 8192  # columns from which `_axis_sum` multiplies instead of reducing


def _axis_sum(x: jax.Array, axis: int) -> jax.Array:
    """Sum over `axis`. The short major axis of a wide matrix (the [512, 32128] logits
    kernel) is summed as a matrix-vector product: XLA:CPU's reduction takes 6x longer
    there (90 ms against 15). Everywhere else the reduction is 3x faster than the product."""
    if x.ndim != 2 or axis != 0 or x.shape[1] < _WIDE:
        return jnp.sum(x, axis=axis)
    return jnp.tensordot(x, jnp.ones((x.shape[axis],), x.dtype), axes=([axis], [0]))


def _factored_axes(shape: tuple[int, ...], factored: bool, min_dim: int) -> tuple[int, int] | None:
    """(second largest, largest) axis when the second moment is factored (optax's rule)."""
    if not factored or len(shape) < 2:
        return None
    order = np.argsort(shape)
    if shape[order[-2]] < min_dim:
        return None
    return int(order[-2]), int(order[-1])


def _leaf_update(grad, v_row, v_col, v, param, decay, learning_rate, *, clipping_threshold,
                 factored, multiply_by_parameter_scale, min_dim_size_to_factor):
    """One parameter's Adafactor update and new second-moment statistics."""
    grad_sq = grad * grad
    axes = _factored_axes(grad.shape, factored, min_dim_size_to_factor)
    if axes is not None:
        small, large = axes
        v_row = (decay * v_row + (1.0 - decay) * (_axis_sum(grad_sq, large) / grad.shape[large]
                                                  + _EPSILON)).astype(param.dtype)
        v_col = (decay * v_col + (1.0 - decay) * (_axis_sum(grad_sq, small) / grad.shape[small]
                                                  + _EPSILON)).astype(param.dtype)
        reduced_small = small - 1 if small > large else small
        row_factor = (v_row / jnp.mean(v_row, axis=reduced_small, keepdims=True)) ** -0.5
        col_factor = v_col ** -0.5
        scale = jnp.expand_dims(row_factor, large) * jnp.expand_dims(col_factor, small)
        if grad.ndim == 2:
            # mean((grad * scale)^2) from row sums; 45 ms an update faster than the
            # generic mean below, which materialises grad * scale
            weighted = _axis_sum(grad_sq * jnp.expand_dims(col_factor * col_factor, small), large)
            mean_sq = jnp.dot(row_factor * row_factor, weighted) / grad.size
        else:
            mean_sq = jnp.mean(grad_sq * scale * scale)
    else:
        v = (decay * v + (1.0 - decay) * (grad_sq + _EPSILON)).astype(param.dtype)
        scale = v ** -0.5
        mean_sq = jnp.mean(grad_sq * scale * scale)
    step = learning_rate
    if clipping_threshold is not None:
        step = step / jnp.maximum(1.0, jnp.sqrt(mean_sq) / clipping_threshold)
    if multiply_by_parameter_scale:
        step = step * jnp.maximum(jnp.sqrt(jnp.mean(param * param)), _MIN_PARAM_RMS)
    return -step * scale * grad, v_row, v_col, v


class FusedAdafactor(NamedTuple):
    """`optax.adafactor`'s (init, update), usable wherever an optax GradientTransformation is,
    plus `apply(grads, state, params) -> (params, state, grad_norm)`, which adds the update
    to the parameters in the same pass (see `apply_gradients`)."""

    init: Callable[[Any], Any]
    update: Callable[..., tuple[Any, Any]]
    apply: Callable[[Any, Any, Any], tuple[Any, Any, jax.Array]]


def apply_gradients(optimizer: optax.GradientTransformation | FusedAdafactor, grads: Any,
                    state: Any, params: Any) -> tuple[Any, Any, jax.Array]:
    """(new parameters, new optimizer state, global gradient norm) after one step:
    `optimizer.update`, `optax.apply_updates` and `optax.global_norm`, or the fused
    Adafactor's `apply`, which on a CPU writes the factored matrices in place with
    `flan_jax.kernels.adafactor`'s kernel and has the norm from it."""
    if isinstance(optimizer, FusedAdafactor):
        return optimizer.apply(grads, state, params)
    updates, state = optimizer.update(grads, state, params)
    return optax.apply_updates(params, updates), state, optax.global_norm(grads)


def fused_adafactor(learning_rate: float | Schedule, *, decay_rate: float,
                    clipping_threshold: float | None, factored: bool,
                    multiply_by_parameter_scale: bool,
                    min_dim_size_to_factor: int) -> FusedAdafactor:
    """`optax.adafactor` (no momentum, no weight decay) with these settings, its update
    computed in fewer passes.

    optax chains five transformations (factored RMS scaling, block-RMS clipping, the
    learning rate, parameter scale, sign), each a pass over every parameter, and reduces
    a wide matrix along its major axis, which XLA:CPU does slowly; this computes each
    parameter's statistics first (row and column sums, the update's RMS from them) and
    then its update in one elementwise pass. `apply` adds the update to the parameters,
    with `flan_jax.kernels.adafactor`'s kernel where it is enabled. The state is optax's
    own (its `init`, per layer for stacked layers), so checkpoints move between the two;
    tests hold the updates equal.
    """
    if clipping_threshold is not None and clipping_threshold <= 0:
        raise ValueError(f"clipping_threshold must be > 0 or None, got {clipping_threshold}")
    reference = optax.adafactor(
        learning_rate=learning_rate, decay_rate=decay_rate,
        clipping_threshold=clipping_threshold, factored=factored,
        multiply_by_parameter_scale=multiply_by_parameter_scale,
        min_dim_size_to_factor=min_dim_size_to_factor)

    def step(grads, state, params, apply: bool, use_kernel: bool = False):
        """(updates, state, None), or with `apply` (new parameters, state, sum of grad^2)."""
        moments = state[0]
        decay = 1.0 - jnp.asarray(moments.count + 1, jnp.float32) ** -decay_rate
        state = list(state)
        rate = learning_rate
        if callable(learning_rate):
            index = next(i for i, s in enumerate(state)
                         if isinstance(s, optax.ScaleByScheduleState))
            rate = learning_rate(state[index].count)
            state[index] = optax.ScaleByScheduleState(optax.safe_increment(state[index].count))
        leaf = functools.partial(
            _leaf_update, decay=decay, learning_rate=rate, clipping_threshold=clipping_threshold,
            factored=factored, multiply_by_parameter_scale=multiply_by_parameter_scale,
            min_dim_size_to_factor=min_dim_size_to_factor)
        paths, treedef = jax.tree_util.tree_flatten_with_path(grads)
        columns = [treedef.flatten_up_to(tree)
                   for tree in (grads, moments.v_row, moments.v_col, moments.v, params)]
        results, on_kernel, small_axes, grad_squares = [], [], [], []
        for i, (grad, v_row, v_col, v, param) in enumerate(zip(*columns)):
            axes = _factored_axes(param.shape, factored, min_dim_size_to_factor)
            if use_kernel and axes is not None and adafactor_kernel.supports(param):
                on_kernel.append(i)
                small_axes.append(axes[0])
                results.append((param, v_row, v_col, v))  # replaced below
                continue
            update_leaf = jax.vmap(leaf) if layout.is_stacked_path(paths[i][0]) else leaf
            update, v_row, v_col, v = update_leaf(grad, v_row, v_col, v, param)
            results.append((optax.apply_updates(param, update) if apply else update,
                            v_row, v_col, v))
            if apply:
                grad_squares.append(jnp.sum(jnp.square(grad)))
        if on_kernel:
            *new, kernel_squares = adafactor_kernel.apply_factored(
                *([column[i] for i in on_kernel] for column in
                  (columns[0], columns[4], columns[1], columns[2])),
                small_axes, decay, rate, clipping_threshold=clipping_threshold,
                multiply_by_parameter_scale=multiply_by_parameter_scale)
            for i, param, v_row, v_col in zip(on_kernel, *new):
                results[i] = (param, v_row, v_col, results[i][3])
            grad_squares.append(kernel_squares)
        updates, v_row, v_col, v = (treedef.unflatten(column) for column in zip(*results))
        state[0] = moments._replace(count=optax.safe_increment(moments.count), v_row=v_row,
                                    v_col=v_col, v=v)
        return updates, tuple(state), sum(grad_squares) if apply else None

    def init(params):
        state = reference.init(layout.to_per_layer(params))
        return layout.to_scanned(state) if layout.is_scanned(params) else state

    def update(grads, state, params=None):
        if params is None:
            raise ValueError("Adafactor needs the parameters (update(grads, state, params))")
        updates, state, _ = step(grads, state, params, apply=False)
        return updates, state

    def apply(grads, state, params):
        params, state, grad_squares = kernels.select(
            kernels.enabled("adafactor"), functools.partial(step, apply=True),
            functools.partial(step, apply=True, use_kernel=True), grads, state, params)
        return params, state, jnp.sqrt(grad_squares)

    return FusedAdafactor(init, update, apply)
