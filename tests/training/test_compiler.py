"""Per-backend XLA compiler options of the train and eval steps."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest

from flan_jax.training import compiler


def test_gpu_gets_cublas_gemms_and_other_backends_nothing(monkeypatch) -> None:
    monkeypatch.delenv("XLA_FLAGS", raising=False)
    assert compiler.compiler_options("gpu") == {"xla_gpu_enable_triton_gemm": False}
    assert compiler.compiler_options("cpu") == {}
    assert compiler.compiler_options("tpu") == {}
    assert compiler.compiler_options() == {}  # the tests run on the CPU


def test_a_flag_the_user_set_in_xla_flags_is_left_to_them(monkeypatch) -> None:
    monkeypatch.setenv("XLA_FLAGS", "--xla_gpu_enable_triton_gemm=true")
    assert compiler.compiler_options("gpu") == {}
    monkeypatch.setenv("XLA_FLAGS", "--xla_gpu_enable_triton_gemm_any=true")  # another flag
    assert compiler.compiler_options("gpu") == {"xla_gpu_enable_triton_gemm": False}


@pytest.mark.parametrize("name", sorted(compiler.GPU_OPTIONS))
def test_every_option_is_one_xla_knows(name: str) -> None:
    """XLA refuses an unknown option at compile time ('No such compile option'); the GPU
    options are DebugOptions fields, which every backend's compiler parses."""
    f = jax.jit(lambda x: x @ x, compiler_options={name: compiler.GPU_OPTIONS[name]})
    assert float(f(jnp.eye(2)).sum()) == 2.0
    with pytest.raises(Exception, match="No such compile option"):
        jax.jit(lambda x: x @ x, compiler_options={name + "_typo": False})(jnp.eye(2))
