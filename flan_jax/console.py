"""What the command lines share: a quiet start-up, undone by `--verbose`.

TensorFlow (which seqio reads data with) writes notes from C++ straight to file descriptor
2 while it is imported and when it first looks for GPUs: that absl logging is not
initialised yet, that oneDNN is on, that no CUDA driver was found. They are not errors,
and TF_CPP_MIN_LOG_LEVEL no longer silences them (they come before TensorFlow reads it).
`start` therefore imports TensorFlow with descriptor 2 captured and passes on every line
but those notes; it also sets TF_CPP_MIN_LOG_LEVEL=2 (unless it is set) for TensorFlow's
later INFO and WARNING logs, and drops seqio's warning that packing leaves out the
features it does not pack (the metadata every flan_jax task carries: always so). Only the
entry points call it, before anything imports TensorFlow; `--verbose` leaves all of it
alone.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import tempfile
from collections.abc import Iterator

VERBOSE_FLAG = "--verbose"
VERBOSE_HELP = "also print TensorFlow's start-up notes (quiet by default)"

# Start-up notes: absl's line about its own initialisation, INFO/WARNING lines in absl's and
# TensorFlow's C++ formats, the continuation of TensorFlow's CPU-instructions note, and
# the errors of looking for a GPU on a machine without one (or registering CUDA libraries
# twice).
NOISE = re.compile(
    r"^WARNING: All log messages before absl::InitializeLog\(\) is called"
    r"|^[IW]\d{4} [\d:.]+ +\d+ [\w./-]+:\d+\] "
    r"|^\d{4}-\d\d-\d\d [\d:.]+: [IW] [\w./-]+:\d+\] "
    r"|^To enable the following instructions: .* rebuild TensorFlow"
    r"|^(E\d{4} [\d:.]+ +\d+ |\d{4}-\d\d-\d\d [\d:.]+: E )[\w./-]+:\d+\] "
    r"(failed call to cuInit|Unable to register cu\w+ factory)")

# seqio's Python warnings (logger 'absl') that say nothing about a flan_jax run.
SEQIO_NOTES = ("Features not in `features_length` will be removed during packing",)

_started = False


def without_noise(text: str) -> str:
    """`text` less the lines that are start-up notes (see NOISE)."""
    return "".join(line for line in text.splitlines(keepends=True) if not NOISE.match(line))


@contextlib.contextmanager
def filtered_stderr() -> Iterator[None]:
    """Captures file descriptor 2 (C++ writes included) and writes what it received, less
    the start-up notes, to sys.stderr at the end."""
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no descriptor 2 to capture
        yield
        return
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = without_noise(captured.read().decode("utf-8", errors="replace"))
            if kept:
                sys.stderr.write(kept)
                sys.stderr.flush()


def _not_a_seqio_note(record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith(SEQIO_NOTES)


def start(verbose: bool = False) -> None:
    """Imports TensorFlow quietly (see the module docstring); once per process."""
    global _started
    if _started or verbose:
        return
    _started = True
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with filtered_stderr():
        import tensorflow as tf

        tf.config.list_physical_devices("GPU")  # its search for a CUDA driver reports here
    from absl import logging as absl_logging

    absl_logging.get_absl_logger().addFilter(_not_a_seqio_note)
