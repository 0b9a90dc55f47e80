"""The fused Adafactor update against optax.adafactor's own."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from flan_jax.optimizers import learning_rate_schedule, make_optimizer

# Every kind of leaf Adafactor distinguishes: factored matrices in both orientations and
# with equal sides, a factored 3-D array, matrices too small to factor, vectors, a scalar.
SHAPES = {"tall": (300, 140), "wide": (140, 300), "square": (128, 128), "cube": (3, 130, 150),
          "small": (6, 32), "vector": (200,), "scalar": ()}


def _tree(seed: int, scale: float) -> dict:
    rng = np.random.default_rng(seed)
    return {name: jnp.asarray(rng.normal(size=shape) * scale, jnp.float32)
            for name, shape in SHAPES.items()}


@pytest.mark.parametrize("settings", [
    dict(learning_rate=learning_rate_schedule("warmup_rsqrt", 1e-2, warmup_steps=2)),
    dict(learning_rate=3e-3, clipping_threshold=None, multiply_by_parameter_scale=False),
    dict(learning_rate=1e-2, factored=False),
], ids=["schedule-clipped-scaled", "float-rate-plain", "unfactored"])
def test_fused_update_equals_optax(settings: dict) -> None:
    fused = make_optimizer(**settings)
    plain = make_optimizer(**settings, fused_update=False)
    params_f = params_p = _tree(0, 1.0)
    state_f, state_p = fused.init(params_f), plain.init(params_p)
    assert jax.tree_util.tree_structure(state_f) == jax.tree_util.tree_structure(state_p)
    fused_update, plain_update = jax.jit(fused.update), jax.jit(plain.update)
    for step in range(4):
        # Large early gradients make the block-RMS clipping bite.
        grads = _tree(step + 1, 10.0 if step < 2 else 0.01)
        updates_f, state_f = fused_update(grads, state_f, params_f)
        updates_p, state_p = plain_update(grads, state_p, params_p)
        for name in SHAPES:
            np.testing.assert_allclose(updates_f[name], updates_p[name], rtol=2e-5,
                                       atol=1e-9, err_msg=f"{name} at step {step}")
        for got, want in zip(jax.tree_util.tree_leaves(state_f),
                             jax.tree_util.tree_leaves(state_p)):
            np.testing.assert_allclose(got, want, rtol=2e-5)
        params_f = optax.apply_updates(params_f, updates_f)
        params_p = optax.apply_updates(params_p, updates_p)


def test_momentum_falls_back_to_optax() -> None:
    params = _tree(0, 1.0)
    opt = make_optimizer(learning_rate=1e-2, momentum=0.9)
    reference = optax.adafactor(learning_rate=1e-2, momentum=0.9, decay_rate=0.8,
                                clipping_threshold=1.0)
    grads = _tree(1, 1.0)
    got, _ = opt.update(grads, opt.init(params), params)
    want, _ = reference.update(grads, reference.init(params), params)
    for name in SHAPES:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-6)
