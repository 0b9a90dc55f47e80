"""Pure train and eval step functions (no gin, no I/O): the stable API for trainers and
benchmarks.

    state = init_train_state(config, optimizer, rng)        # or TrainState(step, params, opt)
    train_step = make_train_step(config, optimizer, z_loss=1e-4, label_smoothing=0.0,
                                 loss_normalizing_factor=None, num_microbatches=1)
    state, metrics = train_step(state, batch, dropout_rng)   # jit it (train.py adds shardings)
    eval_step = make_eval_step(config, z_loss=1e-4, loss_normalizing_factor=None)
    metrics = eval_step(params, batch)

`batch` is a dict of int32 arrays [batch, length] as seqio's `EncDecFeatureConverter`
makes them (`encoder_input_tokens`, `decoder_input_tokens`, `decoder_target_tokens`,
`decoder_loss_weights`, and with packing `*_segment_ids` / `*_positions`).
The dropout key of a step is `fold_in(dropout_rng, state.step)`, so a resumed run draws
the same masks. Metrics are sums over the batch (`loss` is normalised as configured),
ready to be averaged by `weight_sum` or printed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from flan_jax.models.config import T5Config
from flan_jax.models.losses import cross_entropy_loss, normalizing_factor_and_weights
from flan_jax.models.t5 import Transformer, init_params
from flan_jax.training.optimizers import apply_gradients

Array = jax.Array
Batch = Mapping[str, Array]
Metrics = dict[str, Array]


class TrainState(NamedTuple):
    """What a training step updates: the step counter, parameters, optimizer state."""

    step: Array
    params: Any
    opt_state: Any


def init_train_state(config: T5Config, optimizer: optax.GradientTransformation, rng: Array,
                     params: Any = None) -> TrainState:
    """A fresh state (parameters initialised from `rng` unless given)."""
    if params is None:
        params = init_params(config, rng)
    return TrainState(jnp.zeros((), jnp.int32), params, optimizer.init(params))


def _model_inputs(batch: Batch) -> dict[str, Array]:
    keys = ("encoder_input_tokens", "decoder_input_tokens", "decoder_target_tokens",
            "encoder_segment_ids", "decoder_segment_ids", "encoder_positions",
            "decoder_positions")
    return {k: batch[k] for k in keys if k in batch}


def _loss_and_metrics(params: Any, batch: Batch, weights: Array, factor: Any, *,
                      config: T5Config, dropout_rng: Array | None, z_loss: float,
                      label_smoothing: float) -> tuple[Array, Metrics]:
    model = Transformer(config)
    rngs = {"dropout": dropout_rng} if dropout_rng is not None else None
    logits = model.apply({"params": params}, **_model_inputs(batch),
                         enable_dropout=dropout_rng is not None, rngs=rngs)
    targets = batch["decoder_target_tokens"]
    loss = cross_entropy_loss(logits, targets, weights, z_loss=z_loss,
                              label_smoothing=label_smoothing, loss_normalizing_factor=factor)
    metrics = {
        "loss": loss.loss,
        "z_loss": loss.z_loss,
        "correct": loss.correct,
        "weight_sum": loss.weight_sum,
        "target_tokens": jnp.sum(targets > 0).astype(jnp.float32),
        "input_tokens": jnp.sum(batch["encoder_input_tokens"] > 0).astype(jnp.float32),
        "unnormalized_loss": loss.nll_sum,
    }
    return loss.loss, metrics


def _weights_and_factor(batch: Batch, loss_normalizing_factor: Any) -> tuple[Array, Any]:
    """Token weights and the loss divisor, computed on the whole batch (so that
    microbatch losses add up to the full-batch loss)."""
    targets = batch["decoder_target_tokens"]
    weights = batch.get("decoder_loss_weights")
    factor, weights = normalizing_factor_and_weights(
        loss_normalizing_factor, targets, weights, batch.get("decoder_segment_ids"))
    return weights, factor


def make_train_step(config: T5Config, optimizer: optax.GradientTransformation, *,
                    z_loss: float = 1e-4, label_smoothing: float = 0.0,
                    loss_normalizing_factor: float | str | None = None,
                    num_microbatches: int = 1
                    ) -> Callable[[TrainState, Batch, Array], tuple[TrainState, Metrics]]:
    """`train_step(state, batch, dropout_rng) -> (state, metrics)`, pure and jittable.

    Dropout is on when `config.dropout_rate > 0`. With `num_microbatches > 1` the batch
    is split along its first axis and gradients are accumulated (gradient accumulation).
    Metrics add `grad_norm` and `learning_rate` is left to the caller's schedule.
    """
    if num_microbatches < 1:
        raise ValueError(f"num_microbatches must be >= 1, got {num_microbatches}")
    use_dropout = config.dropout_rate > 0

    def train_step(state: TrainState, batch: Batch,
                   dropout_rng: Array) -> tuple[TrainState, Metrics]:
        weights, factor = _weights_and_factor(batch, loss_normalizing_factor)
        rng = jax.random.fold_in(dropout_rng, state.step) if use_dropout else None

        def grads_of(micro: Batch, micro_weights: Array, micro_rng: Array | None):
            fn = jax.value_and_grad(_loss_and_metrics, has_aux=True)
            (_, metrics), grads = fn(state.params, micro, micro_weights, factor, config=config,
                                     dropout_rng=micro_rng, z_loss=z_loss,
                                     label_smoothing=label_smoothing)
            return grads, metrics

        if num_microbatches == 1:
            grads, metrics = grads_of(batch, weights, rng)
        else:
            split = lambda x: x.reshape((num_microbatches, -1) + x.shape[1:])  # noqa: E731
            micro_batches = jax.tree_util.tree_map(split, dict(batch))
            micro_weights = split(weights)

            def body(carry, xs):
                i, (micro, w) = xs
                micro_rng = jax.random.fold_in(rng, i) if rng is not None else None
                grads, metrics = grads_of(micro, w, micro_rng)
                return jax.tree_util.tree_map(jnp.add, carry, (grads, metrics)), None

            zeros = jax.tree_util.tree_map(
                jnp.zeros_like,
                jax.eval_shape(lambda: grads_of(jax.tree_util.tree_map(lambda x: x[0],
                                                                       micro_batches),
                                                micro_weights[0], rng)))
            (grads, metrics), _ = jax.lax.scan(
                body, zeros, (jnp.arange(num_microbatches), (micro_batches, micro_weights)))
        params, opt_state, metrics["grad_norm"] = apply_gradients(
            optimizer, grads, state.opt_state, state.params)
        return TrainState(state.step + 1, params, opt_state), metrics

    return train_step


def make_eval_step(config: T5Config, *, z_loss: float = 1e-4,
                   loss_normalizing_factor: float | str | None = None
                   ) -> Callable[[Any, Batch], Metrics]:
    """`eval_step(params, batch) -> metrics`: teacher-forced loss, no dropout."""

    def eval_step(params: Any, batch: Batch) -> Metrics:
        weights, factor = _weights_and_factor(batch, loss_normalizing_factor)
        _, metrics = _loss_and_metrics(params, batch, weights, factor, config=config,
                                       dropout_rng=None, z_loss=z_loss, label_smoothing=0.0)
        return metrics

    return eval_step
