"""Token cross-entropy with z-loss and label smoothing, normalised the way t5x does it.

`loss_normalizing_factor` (t5x semantics):
  None                         the weighted sum over tokens (no normalisation; t5x default)
  a float                      that sum divided by the constant
  'NUM_REAL_TARGET_TOKENS'     divided by the sum of the token weights (non-padding tokens)
  'NUM_TOTAL_TARGET_TOKENS'    divided by batch * length (padding included)
  'AVERAGE_PER_SEQUENCE'       each example's tokens weighted 1/its token count, then
                               divided by the number of examples: the mean per-example loss
Token weights default to `targets > 0` (the feature converter's `decoder_loss_weights`).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

Array = jax.Array
SPECIAL_FACTORS = ("NUM_REAL_TARGET_TOKENS", "NUM_TOTAL_TARGET_TOKENS", "AVERAGE_PER_SEQUENCE")


class Loss(NamedTuple):
    """Scalar loss (z-loss included), its z-loss part, and the sum of the token weights."""

    loss: Array
    z_loss: Array
    weight_sum: Array


def _per_sequence_weights(weights: Array, segment_ids: Array | None) -> tuple[Array, Array]:
    """Weights scaled by 1/(weight sum of their example), and the number of examples.

    With `segment_ids` (packed rows), each (row, segment) pair is one example.
    """
    if segment_ids is None:
        example_sums = jnp.sum(weights, axis=1, keepdims=True)
    else:
        same = segment_ids[:, :, None] == segment_ids[:, None, :]
        example_sums = jnp.einsum("bij,bj->bi", same.astype(weights.dtype), weights)
    safe = jnp.where(example_sums > 0, example_sums, 1.0)
    per_token = jnp.where(example_sums > 0, weights / safe, 0.0)
    return per_token, jnp.sum(per_token)


def normalizing_factor_and_weights(loss_normalizing_factor: float | str | None, targets: Array,
                                   weights: Array | None = None,
                                   segment_ids: Array | None = None
                                   ) -> tuple[Array | float | None, Array]:
    """Resolves a t5x `loss_normalizing_factor` into (divisor or None, token weights)."""
    if weights is None:
        weights = (targets > 0).astype(jnp.float32)
    weights = weights.astype(jnp.float32)
    if loss_normalizing_factor is None or not isinstance(loss_normalizing_factor, str):
        return loss_normalizing_factor, weights
    if loss_normalizing_factor == "NUM_REAL_TARGET_TOKENS":
        return jnp.sum(weights), weights
    if loss_normalizing_factor == "NUM_TOTAL_TARGET_TOKENS":
        return float(targets.size), weights
    if loss_normalizing_factor == "AVERAGE_PER_SEQUENCE":
        weights, examples = _per_sequence_weights(weights, segment_ids)
        return examples, weights
    raise ValueError(f"unknown loss_normalizing_factor {loss_normalizing_factor!r}; use None, a "
                     f"number or one of {SPECIAL_FACTORS}")


def cross_entropy_loss(logits: Array, targets: Array, weights: Array | None = None, *,
                       z_loss: float = 1e-4, label_smoothing: float = 0.0,
                       loss_normalizing_factor: float | str | None = None,
                       segment_ids: Array | None = None) -> Loss:
    """Weighted token cross-entropy of `logits` [batch, len, vocab] against `targets`.

    z-loss adds `z_loss * log(Z)**2` per token (Z the softmax normaliser) to keep logits
    from drifting; label smoothing moves `label_smoothing` of the target mass uniformly to
    the other tokens, minus its entropy so a perfect prediction still scores 0 (as t5x).
    `segment_ids` only matter for 'AVERAGE_PER_SEQUENCE' on packed rows.
    """
    if logits.shape[:-1] != targets.shape:
        raise ValueError(f"logits {list(logits.shape)} do not match targets "
                         f"{list(targets.shape)}")
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
    factor, weights = normalizing_factor_and_weights(loss_normalizing_factor, targets, weights,
                                                     segment_ids)
    logits = logits.astype(jnp.float32)
    vocab = logits.shape[-1]
    log_z = jax.nn.logsumexp(logits, axis=-1)
    log_probs = logits - log_z[..., None]
    target_log_prob = jnp.take_along_axis(log_probs, targets[..., None], axis=-1)[..., 0]
    confidence = 1.0 - label_smoothing
    if label_smoothing:
        other = label_smoothing / (vocab - 1)
        token_loss = -(confidence * target_log_prob
                       + other * (jnp.sum(log_probs, axis=-1) - target_log_prob))
        token_loss -= -(confidence * jnp.log(confidence)
                        + label_smoothing * jnp.log(other + 1e-20))
    else:
        token_loss = -target_log_prob
    token_z_loss = z_loss * jnp.square(log_z)
    total = jnp.sum((token_loss + token_z_loss) * weights)
    total_z = jnp.sum(token_z_loss * weights)
    if factor is not None:
        total, total_z = total / factor, total_z / factor
    return Loss(total, total_z, jnp.sum(weights))
