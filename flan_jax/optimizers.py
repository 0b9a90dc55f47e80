"""Adafactor with the t5x / Flan-T5 settings, and learning-rate schedules.

`make_optimizer()` (gin: `flan_jax.optimizers.make_optimizer`) returns an optax
GradientTransformation: `optax.adafactor` with decay_rate 0.8, update clipping 1.0,
factored second moments and parameter-scale multiply (the Flan-T5 recipe), no momentum.
Schedules (`learning_rate_schedule`):

    'constant'       base_learning_rate at every step (Flan-T5 finetuning: 5e-4)
    'warmup_rsqrt'   linear warm-up to base over `warmup_steps`, then
                     base * sqrt(warmup_steps / step) (T5 pre-training style)

Gradient accumulation is done by the train step (`num_microbatches`, t5x's name): the
batch is split into microbatches whose gradients are summed before one optimizer update,
so the step count, the schedule and the optimizer state are those of the full batch.
"""

from __future__ import annotations

from collections.abc import Callable

import gin
import jax.numpy as jnp
import optax

Schedule = Callable[[int], float]
SCHEDULES = ("constant", "warmup_rsqrt")


@gin.configurable(module="flan_jax.optimizers")
def learning_rate_schedule(name: str = "constant", base_learning_rate: float = 5e-4,
                           warmup_steps: int = 10_000) -> Schedule:
    """The learning rate as a function of the step (see the module docstring)."""
    if name == "constant":
        return optax.constant_schedule(base_learning_rate)
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


@gin.configurable(module="flan_jax.optimizers")
def make_optimizer(learning_rate: float | Schedule | None = None, decay_rate: float = 0.8,
                   clipping_threshold: float | None = 1.0, factored: bool = True,
                   multiply_by_parameter_scale: bool = True, min_dim_size_to_factor: int = 128,
                   momentum: float | None = None,
                   weight_decay_rate: float | None = None) -> optax.GradientTransformation:
    """optax Adafactor with t5x defaults; `learning_rate` defaults to the configured
    `learning_rate_schedule()`."""
    if learning_rate is None:
        learning_rate = learning_rate_schedule()
    return optax.adafactor(
        learning_rate=learning_rate, min_dim_size_to_factor=min_dim_size_to_factor,
        decay_rate=decay_rate, multiply_by_parameter_scale=multiply_by_parameter_scale,
        clipping_threshold=clipping_threshold, momentum=momentum, factored=factored,
        weight_decay_rate=weight_decay_rate)
