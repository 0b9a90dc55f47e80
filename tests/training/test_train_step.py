"""The train step across layouts and precisions: a scanned model trains exactly as the
per-layer one (Adafactor's statistics per layer), and bf16 mixed precision tracks float32."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from flan_jax.models import layout, t5
from flan_jax.training.optimizers import make_optimizer
from flan_jax.training.step import init_train_state, make_train_step

# The demo model's shape (gin/runs/demo.gin): Adafactor factors its matrices.
DEMO = t5.get_config("tiny", vocab_size=384, d_model=128, d_ff=512, num_heads=4, d_kv=32)


def _batch(seed: int, batch: int = 8, inputs: int = 48, targets: int = 16) -> dict:
    rng = np.random.default_rng(seed)
    enc = rng.integers(3, 259, (batch, inputs)).astype(np.int32)
    dec = rng.integers(3, 259, (batch, targets)).astype(np.int32)
    enc[::2, inputs // 2:] = 0  # padding in half the rows
    return {"encoder_input_tokens": enc, "decoder_target_tokens": dec,
            "decoder_input_tokens": np.pad(dec, ((0, 0), (1, 0)))[:, :-1],
            "decoder_loss_weights": (dec > 0).astype(np.int32)}


def _train(config: t5.T5Config, steps: int, learning_rate: float = 1e-2) -> tuple[list, dict]:
    """Losses of `steps` steps from the same initial parameters, and the final parameters
    in the per-layer layout."""
    optimizer = make_optimizer(learning_rate=learning_rate)
    params = layout.for_config(t5.init_params(config.replace(scan_layers=False),
                                              jax.random.key(0)), config)
    state = init_train_state(config, optimizer, jax.random.key(0), params)
    step = jax.jit(make_train_step(config, optimizer), donate_argnums=0)
    losses = []
    for i in range(steps):
        state, metrics = step(state, _batch(i), jax.random.key(1))
        losses.append(float(metrics["loss"]))
    return losses, layout.to_per_layer(jax.tree.map(np.asarray, state.params))


def test_scanned_step_trains_as_the_per_layer_step() -> None:
    """Large first steps make Adafactor's update clipping bite: per layer, as unscanned."""
    losses, params = _train(DEMO, 3, learning_rate=0.5)
    scanned_losses, scanned_params = _train(DEMO.replace(scan_layers=True), 3,
                                            learning_rate=0.5)
    np.testing.assert_allclose(scanned_losses, losses, rtol=1e-5)
    # float32 summation order, amplified by three large steps (one stacked update instead
    # of per-layer statistics differs by 1e-2 and more)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=0,
                                                         atol=1e-4 * np.abs(b).max()),
                 scanned_params, params)


def test_bfloat16_losses_track_float32() -> None:
    """Mixed precision (bf16 activations, float32 parameters and optimizer) over a few
    steps of the demo model: every loss within 1% of float32's, and both fall."""
    losses, _ = _train(DEMO, 6)
    bf16_losses, _ = _train(DEMO.replace(dtype="bfloat16"), 6)
    np.testing.assert_allclose(bf16_losses, losses, rtol=0.01)
    assert losses[-1] < losses[0] and bf16_losses[-1] < bf16_losses[0]
    assert bf16_losses != pytest.approx(losses, rel=1e-6)  # it did compute in bf16
