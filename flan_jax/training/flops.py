"""Model FLOPs of a training step and the matmul peak of this device, for MFU.

Kept apart from the reports (which write TensorBoard summaries through TensorFlow) so that
benchmarks on a machine without the data stack can measure with the trainer's own peak.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from flan_jax import kernels
from flan_jax.interop.common import flatten
from flan_jax.kernels import matmul
from flan_jax.models.config import T5Config
from flan_jax.models.t5 import abstract_params


def matmul_rates(dtype: jnp.dtype = jnp.float32, n: int = 1024, repeats: int = 5,
                 remat_policy: str = "none") -> dict[str, float]:
    """Best FLOP/s of a [n, n] @ [n, n] matmul in `dtype` (float32 accumulation) on the
    default device through each product the model computes with: XLA's dot (`jnp.dot`) and,
    where a model in `dtype` under `remat_policy` uses it, the MKL product (`mkl`)."""
    products = {"jnp.dot": lambda x, y: jnp.dot(x, y, preferred_element_type=jnp.float32)}
    if kernels.enabled("matmul", dtype, remat_policy):
        products["mkl"] = matmul.matmul
    a = jax.random.normal(jax.random.key(0), (n, n)).astype(dtype)
    b = jax.random.normal(jax.random.key(1), (n, n)).astype(dtype)
    rates = {}
    for name, product in products.items():
        f = jax.jit(product)
        f(a, b).block_until_ready()
        best = math.inf
        for _ in range(repeats):
            t = time.perf_counter()
            f(a, b).block_until_ready()
            best = min(best, time.perf_counter() - t)
        rates[name] = 2 * n ** 3 / best
    return rates


def measure_peak_flops(dtype: jnp.dtype = jnp.float32, n: int = 1024, repeats: int = 5,
                       remat_policy: str = "none") -> float:
    """The matmul peak of the precision and kernels the model computes with (`matmul_rates`)."""
    return max(matmul_rates(dtype, n, repeats, remat_policy).values())


def flops_per_step(config: T5Config, batch_size: int, lengths: Mapping[str, int]) -> float:
    """Training FLOPs of one step: 6 × (encoder params × input positions + decoder and
    logits params × target positions); embeddings lookups and attention scores left out."""
    enc = dec = 0
    for path, leaf in flatten(abstract_params(config)).items():
        size = int(np.prod(leaf.shape))
        if path.startswith("encoder/"):
            enc += size
        elif not path.startswith("token_embedder/"):
            dec += size
    return 6.0 * batch_size * (enc * lengths["inputs"] + dec * lengths["targets"])
