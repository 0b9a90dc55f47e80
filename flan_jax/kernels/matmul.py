"""float32 products on XLA:CPU through MKL (XLA FFI custom calls): `kernels.ops` runs `Dense`
and the attention score and value products, forward and backward, through these where
`flan_jax.kernels.enabled('matmul', ...)`.

On Intel CPUs at flan-t5-small sizes XLA:CPU's float32 GEMM runs at about 75% of MKL's
rate and its batched attention products at about a third, which sets the speed of a CPU
training step; through MKL's sequential SGEMM on XLA's own intra-op threads the step is
about 1.2x faster (`benchmarks/train_step.py`), with the same results up to float32
rounding.

The library is compiled on first use (`flan_jax.kernels.build`: a C++17 compiler,
jaxlib's FFI headers and the `mkl` wheel, all installed by `make install`) into a per-user
cache, once per source and jaxlib version. Where any of them is missing, the model keeps
XLA's dots and logs why once.
"""

from __future__ import annotations

import functools
import importlib.metadata
import logging
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from flan_jax.kernels import build as kernel_build
from flan_jax.kernels.build import Unavailable

Array = jax.Array
SOURCE = kernel_build.SOURCES / "matmul.cc"
_MATMUL, _BATCHED = "flan_jax_matmul", "flan_jax_batched_matmul"
_MKL_LIBS = ("libmkl_intel_lp64.so", "libmkl_sequential.so", "libmkl_core.so")
_log = logging.getLogger(__name__)


def _mkl_libraries() -> list[Path]:
    """The LP64 interface, sequential threading and core libraries of the `mkl` wheel."""
    try:
        files = importlib.metadata.files("mkl") or []
    except importlib.metadata.PackageNotFoundError:
        raise Unavailable("the `mkl` package is not installed (pip install mkl)") from None
    found = {}
    for f in files:
        base = f.name.split(".so")[0] + ".so"
        if base in _MKL_LIBS and ".so." in f.name:
            found[base] = Path(f.locate()).resolve()
    missing = [name for name in _MKL_LIBS if name not in found]
    if missing:
        raise Unavailable(f"the `mkl` package has no {', '.join(missing)}")
    return [found[name] for name in _MKL_LIBS]


def build(cache_dir: Path | None = None, compiler: str | None = None) -> Path:
    """Compiles `matmul.cc` against MKL (once per source, jaxlib, MKL and compiler) and
    returns the shared library's path; raises `Unavailable` with the reason."""
    return kernel_build.build(SOURCE, _mkl_libraries(), cache_dir, compiler)


@functools.cache
def _load() -> str | None:
    """Builds, loads and registers the custom calls; None on success, else the reason."""
    try:
        kernel_build.register(build(), {_MATMUL: "FlanJaxMatmul", _BATCHED: "FlanJaxBatchedMatmul"})
    except Unavailable as e:
        _log.warning("flan_jax: float32 matmuls stay on XLA:CPU's own kernels: %s", e)
        return str(e)
    return None


def unavailable_reason() -> str | None:
    """Why the MKL custom calls cannot be used on this machine (None if they can)."""
    return _load()


def _product(a: Array, b: Array, trans_a: bool = False, trans_b: bool = False) -> Array:
    m = a.shape[1] if trans_a else a.shape[0]
    n = b.shape[0] if trans_b else b.shape[1]
    out = jax.ShapeDtypeStruct((m, n), jnp.float32)
    return jax.ffi.ffi_call(_MATMUL, out, vmap_method="sequential")(
        a, b, trans_a=trans_a, trans_b=trans_b)


@jax.custom_vjp
def matmul(x: Array, kernel: Array) -> Array:
    """`x` [tokens, in] @ `kernel` [in, out] in float32."""
    return _product(x, kernel)


def _matmul_fwd(x: Array, kernel: Array) -> tuple[Array, tuple[Array, Array]]:
    return _product(x, kernel), (x, kernel)


def _matmul_bwd(residuals: tuple[Array, Array], g: Array) -> tuple[Array, Array]:
    x, kernel = residuals
    return _product(g, kernel, trans_b=True), _product(x, g, trans_a=True)


matmul.defvjp(_matmul_fwd, _matmul_bwd)

# The batched products read per-head [length, d] slices in place. A [batch, length,
# heads * d] activation's slice (b, h) starts at b * length * heads * d + h * d with row
# stride heads * d; a [batch, heads, q, k] score tensor's starts at (b * heads + h) * q * k
# with row stride k. A view is (row stride, batch stride, head stride).


def _tokens_view(shape: tuple[int, ...], heads: int) -> tuple[int, int, int]:
    _, length, joined = shape
    return joined, length * joined, joined // heads


def _scores_view(shape: tuple[int, ...]) -> tuple[int, int, int]:
    _, heads, q, k = shape
    return k, heads * q * k, q * k


def _batched(a: Array, b: Array, out_shape: tuple[int, ...], heads: int,
             views: tuple[tuple[int, int, int], ...], m: int, n: int, k: int, trans_a: bool,
             trans_b: bool) -> Array:
    """op(a_bh) @ op(b_bh) [m, n] for every (batch, head) slice; `views` of a, b, output."""
    attrs = {"batch": a.shape[0], "heads": heads, "m": m, "n": n, "k": k}
    for name, (ld, batch_stride, head_stride) in zip("abc", views):
        attrs |= {f"{name}_ld": ld, f"{name}_batch_stride": batch_stride,
                  f"{name}_head_stride": head_stride}
    attrs = {name: np.int64(value) for name, value in attrs.items()}
    out = jax.ShapeDtypeStruct(out_shape, jnp.float32)
    return jax.ffi.ffi_call(_BATCHED, out, vmap_method="sequential")(
        a, b, trans_a=trans_a, trans_b=trans_b, **attrs)


def _scores(x: Array, y: Array, heads: int) -> Array:
    """[b, h, lx, ly] = x_bh @ y_bhᵀ for x [b, lx, h*d], y [b, ly, h*d]."""
    (batch, lx, joined), ly = x.shape, y.shape[1]
    shape = (batch, heads, lx, ly)
    views = (_tokens_view(x.shape, heads), _tokens_view(y.shape, heads), _scores_view(shape))
    return _batched(x, y, shape, heads, views, lx, ly, joined // heads, False, True)


def _weighted(s: Array, y: Array, transpose: bool) -> Array:
    """[b, l, h*d] = s_bh @ y_bh (or s_bhᵀ @ y_bh) for s [b, h, q, k], y [b, k (or q), h*d]."""
    batch, heads, q, k = s.shape
    rows, joined = (k if transpose else q), y.shape[2]
    shape = (batch, rows, joined)
    views = (_scores_view(s.shape), _tokens_view(y.shape, heads), _tokens_view(shape, heads))
    return _batched(s, y, shape, heads, views, rows, joined // heads, q if transpose else k,
                    transpose, False)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def attention_logits(query: Array, key: Array, heads: int) -> Array:
    """Attention logits [b, heads, q, k] of query [b, q, heads*d] and key [b, k, heads*d]."""
    return _scores(query, key, heads)


def _logits_fwd(query: Array, key: Array, heads: int) -> tuple[Array, tuple[Array, Array]]:
    return _scores(query, key, heads), (query, key)


def _logits_bwd(heads: int, residuals: tuple[Array, Array], g: Array) -> tuple[Array, Array]:
    query, key = residuals
    return _weighted(g, key, transpose=False), _weighted(g, query, transpose=True)


attention_logits.defvjp(_logits_fwd, _logits_bwd)


@jax.custom_vjp
def attention_values(weights: Array, value: Array) -> Array:
    """Weighted values [b, q, heads*d] of weights [b, heads, q, k] and value [b, k, heads*d]."""
    return _weighted(weights, value, transpose=False)


def _values_fwd(weights: Array, value: Array) -> tuple[Array, tuple[Array, Array]]:
    return _weighted(weights, value, transpose=False), (weights, value)


def _values_bwd(residuals: tuple[Array, Array], g: Array) -> tuple[Array, Array]:
    weights, value = residuals
    return _scores(g, value, weights.shape[1]), _weighted(weights, g, transpose=True)


attention_values.defvjp(_values_fwd, _values_bwd)
