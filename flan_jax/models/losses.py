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

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

Array = jax.Array
SPECIAL_FACTORS = ("NUM_REAL_TARGET_TOKENS", "NUM_TOTAL_TARGET_TOKENS", "AVERAGE_PER_SEQUENCE")


class Loss(NamedTuple):
    """Scalar loss (z-loss included), its z-loss part, the sum of the token weights, the
    weighted sum of the targets' negative log-likelihoods (no smoothing, no z-loss, not
    normalised), and the weighted count of tokens whose target has the largest logit."""

    loss: Array
    z_loss: Array
    weight_sum: Array
    nll_sum: Array
    correct: Array


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


class TokenLosses(NamedTuple):
    """Per-token training cross-entropy (against the label-smoothed target), z-loss, the
    plain negative log-likelihood of the target, and whether the target has the largest
    logit (the token accuracy; it carries no gradient)."""

    cross_entropy: Array
    z_loss: Array
    nll: Array
    correct: Array


def _smoothing_constants(vocab: int, label_smoothing: float) -> tuple[float, float, float]:
    """(target mass, mass of each other token, entropy of that soft target)."""
    confidence = 1.0 - label_smoothing
    other = label_smoothing / (vocab - 1)
    entropy = -(confidence * math.log(confidence)
                + (label_smoothing * math.log(other) if label_smoothing else 0.0))
    return confidence, other, entropy


def _token_losses_fwd(logits: Array, targets: Array, z_loss: float,
                      label_smoothing: float) -> tuple[TokenLosses, tuple[Array, ...]]:
    given = logits
    logits = logits.astype(jnp.float32)
    max_logit = jnp.max(logits, axis=-1)
    log_z = max_logit + jnp.log(jnp.sum(jnp.exp(logits - max_logit[..., None]), axis=-1))
    target_logit = jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
    confidence, other, entropy = _smoothing_constants(logits.shape[-1], label_smoothing)
    nll = log_z - target_logit
    cross_entropy = nll
    if label_smoothing:
        # -sum_j q_j log p_j with q = `other` everywhere but `confidence` at the target.
        others = logits.shape[-1] * log_z - jnp.sum(logits, axis=-1) - nll
        cross_entropy = confidence * nll + other * others - entropy
    losses = TokenLosses(cross_entropy, z_loss * jnp.square(log_z), nll,
                         (target_logit >= max_logit).astype(jnp.float32))
    return losses, (given, targets, log_z)


def _token_losses_bwd(z_loss: float, label_smoothing: float, residuals: tuple[Array, ...],
                      cotangents: TokenLosses) -> tuple[Array, None]:
    given, targets, log_z = residuals
    logits = given.astype(jnp.float32)
    ct_ce, ct_z, ct_nll = (c[..., None] for c in cotangents[:3])
    confidence, other, _ = _smoothing_constants(logits.shape[-1], label_smoothing)
    probs = jnp.exp(logits - log_z[..., None])
    is_target = jax.lax.broadcasted_iota(targets.dtype, logits.shape, 2) == targets[..., None]
    # d ce / d logits = p - q (q the soft target); d nll = p - onehot; d z log_z^2 = 2 z log_z p.
    grad = (probs * (ct_ce + ct_nll + ct_z * (2.0 * z_loss) * log_z[..., None])
            - jnp.where(is_target, ct_ce * confidence + ct_nll, ct_ce * other))
    return grad.astype(given.dtype), None


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def token_losses(logits: Array, targets: Array, z_loss: float = 0.0,
                 label_smoothing: float = 0.0) -> TokenLosses:
    """Per-token losses of `logits` [batch, len, vocab] (any float dtype) against `targets`.

    One pass over the logits forward and one backward (a custom VJP: p - q plus the
    z-loss term, computed elementwise), where autodiff of log-softmax would keep and
    re-read several [batch, len, vocab] intermediates; this layer is the costliest
    elementwise work of a T5 step.
    """
    return _token_losses_fwd(logits, targets, z_loss, label_smoothing)[0]


token_losses.defvjp(_token_losses_fwd, _token_losses_bwd)


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
    per_token = token_losses(logits, targets, float(z_loss), float(label_smoothing))
    total = jnp.sum((per_token.cross_entropy + per_token.z_loss) * weights)
    total_z = jnp.sum(per_token.z_loss * weights)
    unnormalized = jnp.sum(per_token.nll * weights)
    correct = jnp.sum(per_token.correct * weights)
    if factor is not None:
        total, total_z = total / factor, total_z / factor
    return Loss(total, total_z, jnp.sum(weights), unnormalized, correct)
