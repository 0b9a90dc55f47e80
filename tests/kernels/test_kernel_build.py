"""Building the C++ kernels (`flan_jax.kernels`), and the fallback of each user to XLA when
they cannot be built."""

from __future__ import annotations

import importlib.metadata
import logging
from collections.abc import Callable

import jax
import jax.numpy as jnp
import pytest

import flan_jax.kernels
from flan_jax.kernels import adafactor as cpu_adafactor
from flan_jax.kernels import build as kernels
from flan_jax.kernels import matmul as cpu_matmul
from flan_jax.models import layers, t5
from flan_jax.training.optimizers import make_optimizer


def test_build_caches_the_library(tmp_path) -> None:
    first = cpu_matmul.build(tmp_path)
    stamp = first.stat().st_mtime_ns
    assert cpu_matmul.build(tmp_path) == first and first.stat().st_mtime_ns == stamp
    second = kernels.build(cpu_adafactor.SOURCE, cache_dir=tmp_path)
    assert kernels.build(cpu_adafactor.SOURCE, cache_dir=tmp_path) == second != first
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([first.name, second.name])


def test_build_names_what_is_missing(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(kernels.Unavailable, match="no C\\+\\+ compiler 'no-such-c\\+\\+'"):
        kernels.build(cpu_adafactor.SOURCE, cache_dir=tmp_path, compiler="no-such-c++")
    broken = tmp_path / "broken.cc"
    broken.write_text("this is not C++\n")
    with pytest.raises(kernels.Unavailable, match="compiling .*broken.cc failed"):
        kernels.build(broken, cache_dir=tmp_path / "cache")

    def no_mkl(name: str) -> None:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "files", no_mkl)
    with pytest.raises(kernels.Unavailable, match="pip install mkl"):
        cpu_matmul.build(tmp_path / "cache")


def _dense_uses_mkl() -> bool:
    dense = layers.Dense(features=8, axes=("embed", "mlp"), config=t5.get_config("tiny"))
    x = jnp.ones((4, 16), jnp.float32)
    params = dense.init(jax.random.key(0), x)
    return "flan_jax_matmul" in jax.jit(dense.apply).lower(params, x).as_text()


def _adafactor_uses_kernel() -> bool:
    optimizer = make_optimizer(learning_rate=1e-2)
    params = {"w": jnp.ones((128, 256), jnp.float32)}
    lowered = jax.jit(optimizer.apply).lower(params, optimizer.init(params), params)
    return "flan_jax_adafactor" in lowered.as_text()


@pytest.mark.parametrize("module, uses_kernel, warning", [
    (cpu_matmul, _dense_uses_mkl, "float32 matmuls stay on XLA:CPU's own kernels"),
    (cpu_adafactor, _adafactor_uses_kernel, "the Adafactor update stays in XLA"),
], ids=["matmul", "adafactor"])
def test_unbuildable_kernel_falls_back_to_xla_with_one_warning(
        module, uses_kernel: Callable[[], bool], warning: str,
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    def fail(*args: object, **kwargs: object) -> None:
        raise kernels.Unavailable("no C++ compiler 'g++' on PATH")

    # Whatever CPU runs the tests: the fallback is what is tested, not the choice per CPU.
    monkeypatch.setattr(flan_jax.kernels, "suits_cpu", lambda name, cpu: True)
    assert uses_kernel()
    module._load.cache_clear()
    try:
        with pytest.MonkeyPatch.context() as unbuildable:
            unbuildable.setattr(kernels, "build", fail)
            with caplog.at_level(logging.WARNING, logger=module.__name__):
                assert not uses_kernel()
                assert not uses_kernel()
            assert module.unavailable_reason() == "no C++ compiler 'g++' on PATH"
            assert [r.getMessage() for r in caplog.records] == [
                f"flan_jax: {warning}: no C++ compiler 'g++' on PATH"]
    finally:
        module._load.cache_clear()
    assert uses_kernel()  # rebuilt from the cache and registered again
