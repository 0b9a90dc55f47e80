"""CPU specialisations behind one seam: which one runs, on which CPU, and never elsewhere.

The model and the optimizer compute through `flan_jax.kernels.ops`, whose functions have
one generic formulation, the one XLA's GPU and TPU compilers handle best (bf16
`dot_general`s, einsums, broadcasting adds, one-hot contractions instead of scatters).
Where a computation runs on a CPU, an op may run a specialisation instead:

    name          what                                              on
    matmul        float32 products through MKL (matmul.cc)          Intel x86-64
    bf16_matmul   bf16 products in the form XLA:CPU runs on its     CPUs with AMX or
                  bf16 matrix instructions (ops.py)                 AVX512-BF16
    bias_sum      the attention-bias gradient as a matrix-vector    Intel x86-64
                  product instead of a reduction (ops.py)
    adafactor     the in-place Adafactor update (adafactor.cc)      x86-64

The choice is made per CPU from its vendor and features (`cpu_features`); on AMD EPYC
(Zen 4) the MKL products and the bias sum measured no faster than XLA's own at
flan-t5-small sizes (0.97-1.00x, docs/benchmarks.md run K), so they stay on Intel. Each
is also off on multi-device meshes (no sharding rules) and where its C++ library cannot
be built (logged once), and `FLAN_JAX_CPU_<NAME>=0` (e.g. `FLAN_JAX_CPU_MATMUL=0`) turns
one off for A/B measurements.

`select` wraps the two formulations in `jax.lax.platform_dependent`, so the choice is
made when the computation is lowered, for the platform it is lowered for: a train step
exported for 'cuda' or 'tpu' (`jax.export`) holds no CPU custom call, barrier or CPU-only
VJP, whatever host it was traced on, and a GPU or TPU process never traces them at all.
"""

from __future__ import annotations

import functools
import os
import platform
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple, TypeVar

import jax
import jax.numpy as jnp

T = TypeVar("T")
NAMES = ("matmul", "bf16_matmul", "bias_sum", "adafactor")


class CpuFeatures(NamedTuple):
    """What the choice depends on: the machine, vendor, model name and feature flags."""

    machine: str
    vendor: str
    model: str
    flags: frozenset[str]

    @property
    def summary(self) -> str:
        """One line for benchmark and training logs."""
        bf16 = [f for f in ("amx_bf16", "avx512_bf16") if f in self.flags]
        return f"{self.model or self.machine} ({self.vendor or 'unknown vendor'}" + (
            f", {' '.join(bf16)})" if bf16 else ")")


@functools.cache
def cpu_features(cpuinfo: Path = Path("/proc/cpuinfo")) -> CpuFeatures:
    """This machine's CPU as Linux describes its first processor (bare facts elsewhere)."""
    fields: dict[str, str] = {}
    try:
        for line in cpuinfo.read_text().splitlines():
            if not line.strip():
                break
            key, _, value = line.partition(":")
            fields[key.strip()] = value.strip()
    except OSError:
        pass
    return CpuFeatures(platform.machine(), fields.get("vendor_id", ""),
                       fields.get("model name", ""), frozenset(fields.get("flags", "").split()))


def suits_cpu(name: str, cpu: CpuFeatures) -> bool:
    """Whether specialisation `name` is chosen for CPU `cpu` (by vendor and features)."""
    x86 = cpu.machine in ("x86_64", "AMD64")
    if name in ("matmul", "bias_sum"):
        return x86 and cpu.vendor == "GenuineIntel"
    if name == "bf16_matmul":
        return bool({"amx_bf16", "avx512_bf16"} & cpu.flags)
    if name == "adafactor":
        return x86
    return True


def _library_loads(name: str) -> bool:
    if name == "matmul":
        from flan_jax.kernels import matmul
        return matmul.unavailable_reason() is None
    if name == "adafactor":
        from flan_jax.kernels import adafactor
        return adafactor.unavailable_reason() is None
    return True


def enabled(name: str, dtype: jnp.dtype | None = None, remat_policy: str = "none") -> bool:
    """Whether CPU specialisation `name` runs where computations of this process run on
    the CPU (read at trace time). `dtype` is the activation dtype of a product; the MKL
    products are custom calls, which `jax.checkpoint`'s dot-saving policies do not see,
    so they stay off under those (`remat_policy` 'minimal' or 'dots')."""
    if name not in NAMES:
        raise ValueError(f"unknown CPU specialisation {name!r}; known: {', '.join(NAMES)}")
    if os.environ.get(f"FLAN_JAX_CPU_{name.upper()}", "1") == "0":
        return False
    if jax.default_backend() != "cpu" or jax.device_count() != 1:
        return False
    if name == "matmul" and (jnp.dtype(dtype) != jnp.float32
                             or remat_policy not in ("none", "full")):
        return False
    if name == "bf16_matmul" and jnp.dtype(dtype).itemsize >= 4:
        return False
    return suits_cpu(name, cpu_features()) and _library_loads(name)


def select(specialised: bool, generic: Callable[..., T], on_cpu: Callable[..., T],
           *args: object) -> T:
    """`generic(*args)`, or, when `specialised` (an `enabled(...)` answer), whichever of
    `on_cpu(*args)` and `generic(*args)` suits the platform the computation is lowered for."""
    if not specialised:
        return generic(*args)
    return jax.lax.platform_dependent(*args, cpu=on_cpu, default=generic)
