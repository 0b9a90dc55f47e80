"""C++ kernels for XLA:CPU as XLA FFI custom calls: compiled on first use, cached, loaded.

The sources live in this folder: `matmul.cc` (float32 products through MKL, used by
`flan_jax.kernels.matmul`) and `adafactor.cc` (the in-place Adafactor update, used by
`flan_jax.kernels.adafactor`), with `parallel_for.h` shared between them. `build()` compiles
one source with a C++17 compiler (`CXX`, default g++) against jaxlib's FFI headers and the
libraries its user names, into a per-user cache (`FLAN_JAX_KERNEL_CACHE`, default
`~/.cache/flan_jax`), once per source, headers, jaxlib version, compiler and libraries;
`register()` loads the result and registers its handlers. Each user catches `Unavailable`
and keeps its XLA path, logging why once.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import jax
import jaxlib

SOURCES = Path(__file__).parent
CACHE_ENV = "FLAN_JAX_KERNEL_CACHE"
_log = logging.getLogger(__name__)


class Unavailable(RuntimeError):
    """A kernel cannot be built or loaded here; the message says why."""


def _cache_dir() -> Path:
    root = os.environ.get(CACHE_ENV) or Path(
        os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "flan_jax"
    return Path(root)


def build(source: Path, libraries: Sequence[Path] = (), cache_dir: Path | None = None,
          compiler: str | None = None) -> Path:
    """Compiles `source` (linked against `libraries`) once and returns the shared library's
    path in the cache; raises `Unavailable` with the reason."""
    compiler = compiler or os.environ.get("CXX", "g++")
    cxx = shutil.which(compiler)
    if cxx is None:
        raise Unavailable(f"no C++ compiler {compiler!r} on PATH (install g++ or set CXX)")
    headers = sorted(SOURCES.glob("*.h"))
    key = hashlib.sha256(b"\0".join(
        [source.read_bytes(), *(h.read_bytes() for h in headers), jaxlib.__version__.encode(),
         cxx.encode(), *(str(p).encode() for p in libraries)])).hexdigest()[:16]
    target = (cache_dir or _cache_dir()) / f"{source.stem}-{key}.so"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    _log.info("flan_jax: compiling %s into %s (once per machine and jaxlib)", source.name, target)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        built = Path(tmp) / target.name
        command = [cxx, "-O3", "-std=c++17", "-shared", "-fPIC", "-w",
                   f"-I{jax.ffi.include_dir()}", f"-I{SOURCES}", str(source), "-o", str(built),
                   *map(str, libraries)]
        if libraries:
            command.append(f"-Wl,-rpath,{Path(libraries[0]).parent}")
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            errors = [line for line in result.stderr.splitlines() if "error" in line]
            raise Unavailable(f"compiling {source} failed ({' '.join(command)}):\n"
                              + "\n".join(errors[:5] or result.stderr.splitlines()[-5:]))
        os.replace(built, target)  # atomic: concurrent builders each install a whole file
    return target


def register(library: Path, targets: Mapping[str, str]) -> None:
    """Loads `library` and registers each symbol of `targets` (FFI target name -> symbol)
    as a CPU custom-call target; raises `Unavailable` if it cannot be loaded."""
    try:
        handle = ctypes.CDLL(str(library))
    except OSError as e:
        raise Unavailable(f"loading {library} failed: {e}") from None
    for name, symbol in targets.items():
        jax.ffi.register_ffi_target(name, jax.ffi.pycapsule(getattr(handle, symbol)),
                                    platform="cpu")

