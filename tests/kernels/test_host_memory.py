"""keep_freed_memory: a freed large buffer is reused without page faults (glibc only)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

# A worker thread allocates, touches, frees and reallocates 256 MB (as XLA's step buffer
# is), then prints the minor page faults of the second round.
PROBE = """
import ctypes, ctypes.util, resource, threading
from flan_jax.kernels.host_memory import keep_freed_memory
print("applied", keep_freed_memory())
libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
size, out = 256 << 20, {}
def round_trip():
    buffer = libc.malloc(size); ctypes.memset(buffer, 1, size); libc.free(buffer)
def work():
    round_trip()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    round_trip()
    out["faults"] = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
t = threading.Thread(target=work); t.start(); t.join()
print("faults", out["faults"])
"""


def _probe(keep: bool) -> tuple[bool, int]:
    env = {**os.environ, "FLAN_JAX_KEEP_FREED_MEMORY": "1" if keep else "0"}
    lines = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True,
                           text=True, check=True).stdout.split("\n")
    applied = lines[0].split()[1] == "True"
    return applied, int(lines[1].split()[1])


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                    reason="glibc malloc only")
def test_freed_buffers_are_reused_without_page_faults() -> None:
    applied, faults = _probe(keep=True)
    off, faults_off = _probe(keep=False)
    assert applied and not off
    pages = (256 << 20) // 4096
    assert faults_off > pages // 2  # glibc unmapped it: every page faults in again
    assert faults < pages // 20
