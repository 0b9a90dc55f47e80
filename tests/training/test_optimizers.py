"""The fused Adafactor update, and its `apply` (XLA or the CPU kernel), against
optax.adafactor's own."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from flan_jax.training.optimizers import apply_gradients, learning_rate_schedule, make_optimizer

# Every kind of leaf Adafactor distinguishes: factored matrices in both orientations and
# with equal sides, a factored 3-D array, matrices too small to factor, vectors, a scalar.
SHAPES = {"tall": (300, 140), "wide": (140, 300), "square": (128, 128), "cube": (3, 130, 150),
          "small": (6, 32), "vector": (200,), "scalar": ()}


def _tree(seed: int, scale: float) -> dict:
    rng = np.random.default_rng(seed)
    return {name: jnp.asarray(rng.normal(size=shape) * scale, jnp.float32)
            for name, shape in SHAPES.items()}


SETTINGS = [
    dict(learning_rate=learning_rate_schedule("warmup_rsqrt", 1e-2, warmup_steps=2)),
    dict(learning_rate=3e-3, clipping_threshold=None, multiply_by_parameter_scale=False),
    dict(learning_rate=1e-2, factored=False),
]
SETTINGS_IDS = ["schedule-clipped-scaled", "float-rate-plain", "unfactored"]


def _grads(step: int) -> dict:
    """Large early gradients make the block-RMS clipping bite."""
    return _tree(step + 1, 10.0 if step < 2 else 0.01)


@pytest.mark.parametrize("settings", SETTINGS, ids=SETTINGS_IDS)
def test_fused_update_equals_optax(settings: dict) -> None:
    fused = make_optimizer(**settings)
    plain = make_optimizer(**settings, fused_update=False)
    params_f = params_p = _tree(0, 1.0)
    state_f, state_p = fused.init(params_f), plain.init(params_p)
    assert jax.tree_util.tree_structure(state_f) == jax.tree_util.tree_structure(state_p)
    fused_update, plain_update = jax.jit(fused.update), jax.jit(plain.update)
    for step in range(4):
        grads = _grads(step)
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


@pytest.mark.parametrize("kernel", ["1", "0"], ids=["cpu-kernel", "xla"])
@pytest.mark.parametrize("settings", SETTINGS, ids=SETTINGS_IDS)
def test_apply_equals_optax_update_then_apply_updates(settings: dict, kernel: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLAN_JAX_CPU_ADAFACTOR", kernel)
    fused = make_optimizer(**settings)
    plain = make_optimizer(**settings, fused_update=False)
    params_f, params_p = _tree(0, 1.0), _tree(0, 1.0)  # apart: params_f is donated
    state_f, state_p = fused.init(params_f), plain.init(params_p)
    # Donated like the train step's state, so the kernel writes in place.
    apply_f = jax.jit(lambda g, s, p: apply_gradients(fused, g, s, p), donate_argnums=(1, 2))
    apply_p = jax.jit(lambda g, s, p: apply_gradients(plain, g, s, p))
    hlo = apply_f.lower(_grads(0), state_f, params_f).as_text()
    factored = settings.get("factored", True)
    assert ("flan_jax_adafactor" in hlo) == (kernel == "1" and factored)
    for step, scale in enumerate([1.0, 1.0, 10.0, 1.0]):  # the jump to 10 is clipped
        grads = _tree(step + 1, scale)
        # Rows without gradient, like an embedding's rows of tokens not in the batch.
        grads["tall"] = grads["tall"].at[step::3].set(0.0)
        before = params_p
        params_f, state_f, norm_f = apply_f(grads, state_f, params_f)
        params_p, state_p, norm_p = apply_p(grads, state_p, params_p)
        assert float(norm_f) == pytest.approx(float(optax.global_norm(grads)), rel=1e-6)
        assert float(norm_p) == pytest.approx(float(optax.global_norm(grads)), rel=1e-6)
        for name in SHAPES:
            # Steps of ~1e-3 or more, parameters of ~1 equal to about one float32 ulp:
            # the steps agree to ~1e-4 of their size.
            assert float(jnp.max(jnp.abs(params_p[name] - before[name]))) > 1e-3
            np.testing.assert_allclose(params_f[name], params_p[name], rtol=2.5e-7, atol=1e-7,
                                       err_msg=f"{name} at step {step}")
        for got, want in zip(jax.tree_util.tree_leaves(state_f),
                             jax.tree_util.tree_leaves(state_p)):
            np.testing.assert_allclose(got, want, rtol=2e-5)


def test_apply_gradients_of_any_optax_optimizer() -> None:
    params, grads = _tree(0, 1.0), _tree(1, 1.0)
    sgd = optax.sgd(0.5)
    new, _, norm = apply_gradients(sgd, grads, sgd.init(params), params)
    assert float(norm) == pytest.approx(
        float(np.sqrt(sum(np.sum(np.square(g)) for g in grads.values()))), rel=1e-6)
    for name in SHAPES:
        np.testing.assert_allclose(new[name], params[name] - 0.5 * grads[name], rtol=1e-6)


def test_clipping_threshold_must_be_positive() -> None:
    with pytest.raises(ValueError, match="clipping_threshold must be > 0 or None, got 0"):
        make_optimizer(learning_rate=1e-2, clipping_threshold=0)


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
