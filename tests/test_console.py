"""flan_jax.console: the command lines' quiet start-up."""

from __future__ import annotations

import subprocess
import sys

from conftest import REPO

# What TensorFlow 2.21 wrote to stderr when imported on a machine without a GPU, and its
# notes in the older format, each followed by a line that must get through.
NOTES = (
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
    "I0000 00:00:1796423843.285094   19835 port.cc:153] oneDNN custom operations are on. You "
    "may see slightly different numerical results due to floating-point round-off errors.\n"
    "I0000 00:00:1796423843.286279   19835 cudart_stub.cc:31] Could not find cuda drivers on "
    "your machine, GPU will not be used.\n"
    "E0000 00:00:1796423846.709517   19835 cuda_platform.cc:52] failed call to cuInit: "
    "INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)\n"
    "2025-09-17 14:44:05.157831: I external/local_xla/xla/tsl/cuda/cudart_stub.cc:32] Could "
    "not find cuda drivers on your machine, GPU will not be used.\n"
)
KEPT = ("E0000 00:00:1796423846.709517   19835 some_op.cc:52] a real error\n"
        "Traceback (most recent call last): something Python said\n")


def test_filtered_stderr_drops_the_start_up_notes_and_passes_the_rest_on():
    code = ("import os, sys\nfrom flan_jax import console\n"
            "with console.filtered_stderr():\n"
            f"    os.write(2, {(NOTES + KEPT).encode()!r})\n"  # as C++ writes: to the descriptor
            "    print('from Python', file=sys.stderr)\n"
            "print('after', file=sys.stderr)\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                            text=True, timeout=60, check=True)
    assert result.stderr == KEPT + "from Python\nafter\n"


def test_entry_points_import_without_tensorflow():
    """`console.start` can only filter TensorFlow's import if no entry point module has
    imported TensorFlow before its `main` runs."""
    entry_points = ("train", "infer", "eval", "tasks", "demo.__main__", "demo.scaling",
                    "convert")
    code = (f"import sys\nfor m in {entry_points!r}: __import__('flan_jax.' + m)\n"
            "print(sorted(m for m in ('tensorflow', 'seqio') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                            text=True, timeout=300, check=True)
    assert result.stdout.strip() == "[]"
