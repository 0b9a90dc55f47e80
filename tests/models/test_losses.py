"""The fused token losses (custom VJP) against autodiff of the textbook formulas."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flan_jax.models.losses import cross_entropy_loss


def _textbook_loss(logits, targets, weights, smoothing, z_loss, factor):
    """Label-smoothed cross-entropy + z-loss from log_softmax, differentiated by JAX."""
    vocab = logits.shape[-1]
    log_probs = jax.nn.log_softmax(logits)
    onehot = jax.nn.one_hot(targets, vocab)
    soft = onehot * (1 - smoothing) + (1 - onehot) * smoothing / (vocab - 1)
    entropy = -((1 - smoothing) * np.log(1 - smoothing)
                + (smoothing * np.log(smoothing / (vocab - 1)) if smoothing else 0.0))
    log_z = jax.nn.logsumexp(logits, -1)
    token = -(soft * log_probs).sum(-1) - entropy + z_loss * log_z ** 2
    nll = -jnp.take_along_axis(log_probs, targets[..., None], -1)[..., 0]
    return jnp.sum(token * weights) / factor, jnp.sum(nll * weights)


@pytest.mark.parametrize("smoothing,z_loss", [(0.0, 0.0), (0.0, 1e-4), (0.1, 1e-2)])
def test_token_loss_gradients_match_autodiff(smoothing: float, z_loss: float) -> None:
    rng = np.random.default_rng(0)
    logits = jnp.asarray(rng.normal(size=(3, 5, 17)) * 4, jnp.float32)
    targets = jnp.asarray(rng.integers(1, 17, (3, 5)))
    weights = jnp.asarray(rng.random((3, 5)) * (rng.random((3, 5)) > 0.2), jnp.float32)

    def ours(x):
        loss = cross_entropy_loss(x, targets, weights, z_loss=z_loss, label_smoothing=smoothing,
                                  loss_normalizing_factor=7.0)
        return loss.loss + 0.3 * loss.nll_sum  # both outputs carry gradient

    def textbook(x):
        loss, nll = _textbook_loss(x, targets, weights, smoothing, z_loss, 7.0)
        return loss + 0.3 * nll

    assert float(ours(logits)) == pytest.approx(float(textbook(logits)), rel=1e-6)
    np.testing.assert_allclose(jax.grad(ours)(logits), jax.grad(textbook)(logits), atol=1e-6)


def test_token_accuracy_counts_argmax_hits() -> None:
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(2, 6, 9)).astype(np.float32)
    targets = rng.integers(1, 9, (2, 6))
    targets[0, :3] = logits[0, :3].argmax(-1)  # at least three hits
    weights = np.ones((2, 6), np.float32)
    weights[1, 4:] = 0
    loss = cross_entropy_loss(jnp.asarray(logits), jnp.asarray(targets), jnp.asarray(weights))
    expected = ((logits.argmax(-1) == targets) * weights).sum()
    assert expected >= 3
    assert float(loss.correct) == expected
