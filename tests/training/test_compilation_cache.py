"""The persistent compilation cache the entry points turn on (`training.compilation_cache`)."""

from __future__ import annotations

import os
import subprocess
import sys

from flan_jax.training import compilation_cache

SCRIPT = """
import jax, jax.numpy as jnp
from flan_jax.training import compilation_cache
print(compilation_cache.enable())
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
print(jax.jit(lambda x: jnp.sin(x) @ x.T)(jnp.ones((64, 64))).sum())
"""


def _run(env: dict[str, str]) -> str:
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                            env={**os.environ, **env}, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.splitlines()[0]


def test_executables_land_in_the_cache_directory(tmp_path) -> None:
    where = tmp_path / "xla"
    assert _run({compilation_cache.ENV: str(where)}) == str(where)
    assert any(where.iterdir())  # the jitted function's executable
    assert _run({compilation_cache.ENV: "", "XDG_CACHE_HOME": str(tmp_path / "x")}) == "None"
    assert not (tmp_path / "x").exists()


def test_default_is_the_user_cache_directory(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv(compilation_cache.ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert compilation_cache.default_dir() == tmp_path / "flan_jax" / "xla"
