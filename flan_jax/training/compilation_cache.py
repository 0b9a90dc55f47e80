"""JAX's persistent compilation cache, on by default for the entry points.

The entry points (train, infer, eval) turn it on: a second run of the same configuration
(a resume, an eval of the same model, a rerun) loads its executables instead of compiling
them again, which saves minutes for the larger models on a GPU or TPU. The cache lives in `$FLAN_JAX_COMPILATION_CACHE` if set (empty: off), else in
the user cache directory (`$XDG_CACHE_HOME/flan_jax/xla` or `~/.cache/flan_jax/xla`),
shared by all runs; JAX keys every entry by the computation, the compiler flags and the
jax, jaxlib and backend versions, so a stale entry is never used.
"""

from __future__ import annotations

import os
from pathlib import Path

import jax

ENV = "FLAN_JAX_COMPILATION_CACHE"


def default_dir() -> Path | None:
    """Where the cache lives (None when `$FLAN_JAX_COMPILATION_CACHE` is set empty)."""
    if ENV in os.environ:
        return Path(os.environ[ENV]).expanduser() if os.environ[ENV] else None
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "flan_jax" / "xla"


def enable(directory: str | Path | None = None) -> Path | None:
    """Turns the cache on in `directory` (default `default_dir()`); returns where, or None
    if it is off or the directory cannot be created (compiling then works as without)."""
    path = Path(directory).expanduser() if directory else default_dir()
    if path is None:
        return None
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    jax.config.update("jax_compilation_cache_dir", str(path))
    return path
