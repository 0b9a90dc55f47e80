"""The in-place Adafactor kernel (`flan_jax.kernels.adafactor`) in the train step and its
errors. Its arithmetic against optax is in test_optimizers.py; building and the fallback
are in test_kernel_build.py."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flan_jax import kernels
from flan_jax.kernels import adafactor as cpu_adafactor
from flan_jax.models import t5
from flan_jax.training.optimizers import make_optimizer
from flan_jax.training.step import init_train_state, make_train_step

# Every matrix of this model is factored (both sides >= 128) except the relative-position
# tables; its vectors are not.
ENV = "FLAN_JAX_CPU_ADAFACTOR"
CONFIG = t5.get_config("tiny", vocab_size=256, d_model=128, d_ff=256, num_heads=2, d_kv=64)


def test_builds_and_is_used_on_this_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    assert cpu_adafactor.unavailable_reason() is None
    assert kernels.enabled("adafactor")
    monkeypatch.setenv(ENV, "0")
    assert not kernels.enabled("adafactor")


def _batch() -> dict[str, jax.Array]:
    rng = np.random.default_rng(0)
    tokens = jnp.asarray(rng.integers(2, CONFIG.vocab_size, (4, 12)), jnp.int32)
    return {"encoder_input_tokens": tokens, "decoder_target_tokens": tokens,
            "decoder_input_tokens": jnp.pad(tokens[:, :-1], ((0, 0), (1, 0))),
            "decoder_loss_weights": jnp.ones_like(tokens)}


def _train(kernel: str, monkeypatch: pytest.MonkeyPatch
           ) -> tuple[list[tuple[float, float]], dict, str]:
    """Three steps of the donated, jitted train step; (loss, gradient norm) of each,
    parameters, compiled HLO. Most rows of the embedding's gradient are zero."""
    monkeypatch.setenv(ENV, kernel)
    optimizer = make_optimizer(learning_rate=1e-2)
    state = init_train_state(CONFIG, optimizer, jax.random.key(0))
    step = jax.jit(make_train_step(CONFIG, optimizer), donate_argnums=0)
    compiled = step.lower(state, _batch(), jax.random.key(1)).compile()
    losses = []
    for _ in range(3):
        state, metrics = compiled(state, _batch(), jax.random.key(1))
        losses.append((float(metrics["loss"]), float(metrics["grad_norm"])))
    return losses, state.params, compiled.as_text()


def _copied_param_shapes(hlo: str) -> list[tuple[int, ...]]:
    """Shapes of the donated parameters that the compiled step copies before using them."""
    found = re.findall(r"= f32\[([\d,]*)\]\S* copy\(%state_params", hlo)
    return [tuple(int(d) for d in dims.split(",") if d) for dims in found]


def test_train_step_updates_the_parameters_in_place(monkeypatch: pytest.MonkeyPatch) -> None:
    losses, params, hlo = _train("1", monkeypatch)
    xla_losses, xla_params, xla_hlo = _train("0", monkeypatch)
    assert "flan_jax_adafactor" in hlo and "flan_jax_adafactor" not in xla_hlo
    np.testing.assert_allclose(losses, xla_losses, rtol=1e-6)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
                 params, xla_params)
    # XLA's update copies every donated matrix first (it cannot order its in-place write
    # after the backward pass's other reads); the kernel's comes after all of them.
    factored = lambda shape: len(shape) == 2 and min(shape) >= 128  # noqa: E731
    assert any(factored(s) for s in _copied_param_shapes(xla_hlo))
    assert not any(factored(s) for s in _copied_param_shapes(hlo))


def test_mismatched_statistics_are_named() -> None:
    grad = param = jnp.ones((128, 256), jnp.float32)
    with pytest.raises(Exception, match="adafactor: matrix 0: shapes of the gradient, "
                                        "parameter and statistics disagree"):
        cpu_adafactor.apply_factored([grad], [param], [jnp.ones(128)], [jnp.ones(255)], [0],
                                     jnp.float32(0.5), jnp.float32(1e-2),
                                     clipping_threshold=1.0, multiply_by_parameter_scale=True)
