"""The MKL float32 products (`flan_jax.kernels.matmul`) against XLA's own. Building
and the fallback are in test_kernel_build.py."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flan_jax import kernels
from flan_jax.kernels import matmul as cpu_matmul
from flan_jax.models import t5
from flan_jax.training.flops import matmul_rates

HIGHEST = jax.lax.Precision.HIGHEST


@pytest.fixture(autouse=True)
def _mkl_products_chosen(monkeypatch: pytest.MonkeyPatch) -> None:
    """The MKL products are chosen on Intel CPUs only (test_accelerator_lowering.py tests
    the choice); MKL runs on any x86-64, so these tests run them whatever the host."""
    suits = kernels.suits_cpu
    monkeypatch.setattr(kernels, "suits_cpu",
                        lambda name, cpu: name == "matmul" or suits(name, cpu))


def _close(actual: jax.Array, expected: jax.Array, rtol: float = 1e-5) -> None:
    """Agreement up to float32 summation order, relative to the largest entry."""
    scale = float(jnp.max(jnp.abs(expected)))
    np.testing.assert_allclose(actual, expected, rtol=0, atol=rtol * scale)


def test_builds_and_is_used_where_chosen() -> None:
    """`make install` provides g++, jaxlib's FFI headers and MKL, so the path is on here."""
    assert cpu_matmul.unavailable_reason() is None
    assert kernels.enabled("matmul", jnp.float32)
    assert not kernels.enabled("matmul", jnp.bfloat16)          # bf16 has its own AMX path
    assert not kernels.enabled("matmul", jnp.float32, "minimal")  # would defeat the dots policy
    assert kernels.enabled("matmul", jnp.float32, "full")


def test_mfu_peak_counts_the_mkl_product_only_where_the_model_uses_it() -> None:
    """The trainer's MFU peak is measured through the kernels the model computes with."""
    assert set(matmul_rates(jnp.float32, 64, 1)) == {"jnp.dot", "mkl"}
    assert set(matmul_rates(jnp.float32, 64, 1, remat_policy="minimal")) == {"jnp.dot"}
    assert set(matmul_rates(jnp.bfloat16, 64, 1)) == {"jnp.dot"}


@pytest.mark.parametrize("m,k,n", [(300, 70, 130), (8, 96, 1000), (1, 3, 2), (129, 64, 64)])
def test_matmul_and_gradients_match_xla(m: int, k: int, n: int) -> None:
    """Row-split (tall), column-split (wide) and single-block products, and both gradients."""
    rng = np.random.default_rng(m)
    x, w = (jnp.asarray(rng.standard_normal(s, np.float32)) for s in ((m, k), (k, n)))
    g = jnp.asarray(rng.standard_normal((m, n), np.float32))
    y, vjp = jax.vjp(jax.jit(cpu_matmul.matmul), x, w)
    y_ref, vjp_ref = jax.vjp(lambda a, b: jnp.dot(a, b, precision=HIGHEST), x, w)
    _close(y, y_ref)
    for grad, ref in zip(vjp(g), vjp_ref(g)):
        _close(grad, ref)


@pytest.mark.parametrize("q_len,k_len", [(7, 11), (16, 16), (1, 5)])
def test_attention_products_and_gradients_match_einsum(q_len: int, k_len: int) -> None:
    """Logits and weighted values read heads in place from [b, len, h*d]; cross-attention
    lengths differ, and a softmax between them makes every gradient path count."""
    batch, heads, d = 3, 5, 16
    rng = np.random.default_rng(q_len)
    q = jnp.asarray(rng.standard_normal((batch, q_len, heads * d), np.float32))
    k, v = (jnp.asarray(rng.standard_normal((batch, k_len, heads * d), np.float32))
            for _ in range(2))

    def split(x: jax.Array) -> jax.Array:
        return x.reshape(x.shape[:2] + (heads, d))

    def reference(q: jax.Array, k: jax.Array, v: jax.Array) -> jax.Array:
        logits = jnp.einsum("bqhd,bkhd->bhqk", split(q), split(k), precision=HIGHEST)
        weights = jax.nn.softmax(logits, axis=-1)
        out = jnp.einsum("bhqk,bkhd->bqhd", weights, split(v), precision=HIGHEST)
        return out.reshape(batch, q_len, heads * d)

    def fast(q: jax.Array, k: jax.Array, v: jax.Array) -> jax.Array:
        weights = jax.nn.softmax(cpu_matmul.attention_logits(q, k, heads), axis=-1)
        return cpu_matmul.attention_values(weights, v)

    _close(jax.jit(fast)(q, k, v), reference(q, k, v))
    loss = lambda f: lambda *a: jnp.sum(jnp.sin(f(*a)))  # noqa: E731
    grads = jax.jit(jax.grad(loss(fast), argnums=(0, 1, 2)))(q, k, v)
    for grad, ref in zip(grads, jax.grad(loss(reference), argnums=(0, 1, 2))(q, k, v)):
        _close(grad, ref, rtol=1e-4)


def _loss_grad_and_hlo(config: t5.T5Config, params: dict, inputs: jax.Array,
                       targets: jax.Array) -> tuple[jax.Array, dict, str]:
    def loss(p: dict) -> jax.Array:
        logits = t5.Transformer(config).apply({"params": p}, inputs, targets, targets)
        return jnp.mean(jax.nn.logsumexp(logits, -1))

    step = jax.jit(jax.value_and_grad(loss))  # a fresh trace: the switch is read while tracing
    value, grads = step(params)
    return value, grads, step.lower(params).as_text()


def test_model_uses_the_mkl_products_and_matches_xla(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tiny model's loss and every gradient agree with FLAN_JAX_CPU_MATMUL=0 (XLA's dots);
    the lowered step contains the custom calls only when the path is on."""
    config = t5.get_config("tiny", num_layers=2, num_decoder_layers=2)
    params = jax.jit(t5.init_params, static_argnums=0)(config, jax.random.key(0))
    rng = np.random.default_rng(0)
    inputs = jnp.asarray(rng.integers(2, config.vocab_size, (3, 9)), jnp.int32)
    targets = jnp.asarray(rng.integers(2, config.vocab_size, (3, 6)), jnp.int32)
    value, grads, hlo = _loss_grad_and_hlo(config, params, inputs, targets)
    monkeypatch.setenv("FLAN_JAX_CPU_MATMUL", "0")
    xla_value, xla_grads, xla_hlo = _loss_grad_and_hlo(config, params, inputs, targets)
    assert "flan_jax_matmul" in hlo and "flan_jax_batched_matmul" in hlo
    assert "flan_jax" not in xla_hlo
    assert float(value) == pytest.approx(float(xla_value), rel=1e-6)
    jax.tree.map(lambda a, b: _close(a, b, rtol=1e-5), grads, xla_grads)
