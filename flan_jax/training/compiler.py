"""XLA compiler options for the jitted train and eval steps, chosen per backend.

On a GPU every GEMM goes to cuBLAS instead of XLA's Triton GEMM emitter
(`xla_gpu_enable_triton_gemm=False`). On an H200 this measured 3.5% (base) and 3.2%
(large) more tokens/s and half the compile time (docs/benchmarks.md). Other backends get
no options. A user who sets the flag in `XLA_FLAGS` keeps their own setting.
"""

from __future__ import annotations

import os
import re

import jax

GPU_OPTIONS: dict[str, bool] = {"xla_gpu_enable_triton_gemm": False}


def compiler_options(backend: str | None = None) -> dict[str, bool]:
    """`jax.jit(..., compiler_options=...)` for `backend` (default: JAX's default backend)."""
    if (backend or jax.default_backend()) != "gpu":
        return {}
    user_flags = os.environ.get("XLA_FLAGS", "")
    return {name: value for name, value in GPU_OPTIONS.items()
            if not re.search(rf"--{name}(=|\s|$)", user_flags)}
