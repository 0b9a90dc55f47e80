"""`make demo`, i.e. `python -m flan_jax.demo [--gin.NAME=VALUE ...]`: the demo run.

Trains with `python -m flan_jax.train` in the demo configuration for the hardware JAX
sees: gin/runs/demo.gin on a CPU, gin/runs/demo_accelerator.gin (a larger model, longer)
on a GPU or TPU. A `--gin_file=` argument replaces that choice; other arguments are
passed on to the trainer (`--verbose` too).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence


def demo_gin_file(backend: str) -> str:
    """The demo configuration for a JAX backend (a path searched in gin/)."""
    return "runs/demo.gin" if backend == "cpu" else "runs/demo_accelerator.gin"


def main(argv: Sequence[str] | None = None) -> int:
    start = time.perf_counter()
    from flan_jax.kernels.host_memory import keep_freed_memory

    keep_freed_memory()  # before JAX starts its threads (see flan_jax.kernels.host_memory)
    from flan_jax import console

    argv = list(sys.argv[1:] if argv is None else argv)
    console.start(console.VERBOSE_FLAG in argv)
    import jax

    from flan_jax import train

    if not any(a.startswith("--gin_file=") for a in argv):
        backend = jax.default_backend()
        gin_file = demo_gin_file(backend)
        print(f"flan_jax demo: JAX backend {backend!r}, configuration gin/{gin_file}",
              flush=True)
        argv = [f"--gin_file={gin_file}", *argv]
    status = train.main(argv)
    minutes, seconds = divmod(round(time.perf_counter() - start), 60)
    print(f"flan_jax demo: finished in {minutes} min {seconds:02d} s (exit status {status})")
    return status


if __name__ == "__main__":
    sys.exit(main())
