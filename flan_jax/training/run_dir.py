"""The run directory (MODEL_DIR) on disk: can it be written, how full is it, and files
that survive a crash (atomic rewrites; append-only JSONL whose torn last line is dropped).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from pathlib import Path

from flan_jax.errors import FlanJaxError


class RunDirError(FlanJaxError):
    """MODEL_DIR cannot be used: not writable, or a log in it is damaged."""

    def __init__(self, message: str, reason: str = ""):
        super().__init__(message)
        self.reason = reason or message


def os_error_text(e: OSError) -> str:
    """'No space left on device (ENOSPC)': the reason and its errno name."""
    name = errno.errorcode.get(e.errno or 0)
    reason = e.strerror or str(e) or type(e).__name__
    return f"{reason} ({name})" if name else reason


def free_bytes(path: Path) -> int:
    """Bytes free to this user on the filesystem holding `path` (or its nearest parent)."""
    path = Path(path)
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free


def human_bytes(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if abs(n) < 1000:
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def free_space(path: Path) -> str:
    """'1.2 GB free' on the filesystem of `path`, or why that is unknown."""
    try:
        return f"{human_bytes(free_bytes(path))} free"
    except OSError as e:
        return f"free space unknown ({os_error_text(e)})"


def ensure_writable(model_dir: Path) -> None:
    """Creates MODEL_DIR and checks that a file can be created in it (and removed again);
    RunDirError naming the directory and the reason otherwise."""
    try:
        model_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=model_dir, prefix=".write_check"):
            pass
    except OSError as e:
        # mkdir names the directory it could not create; the probe file's name says nothing.
        failed = Path(os.fsdecode(e.filename)) if e.filename else model_dir
        at = f" (creating {failed})" if failed != model_dir and failed.parent != model_dir else ""
        raise RunDirError(
            f"MODEL_DIR {model_dir} is not writable: {os_error_text(e)}{at}. Training "
            "writes its checkpoints, config.gin and metrics there; choose a writable directory "
            "(--gin.MODEL_DIR=\"'/path/to/run'\") or fix the permissions or the mount.",
            reason=os_error_text(e)) from None


def write_failure(e: OSError) -> str:
    """One sentence for a failed write: the file, the reason and the free space left."""
    if not e.filename:
        return f"a write failed: {os_error_text(e)}."
    where = Path(os.fsdecode(e.filename))
    return f"cannot write {where}: {os_error_text(e)}; {free_space(where.parent)} there."


def write_text_atomic(path: Path, text: str) -> None:
    """Replaces `path` with `text` at once: a crash leaves the old file or the new one."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def read_jsonl(path: Path) -> tuple[list[dict], str | None]:
    """The records of an append-only JSONL file and a note if its last line was torn.

    A crash or a full disk can cut the last line short; that line is dropped and the note
    says so. A bad line anywhere else was not written by an append: RunDirError.
    """
    lines = path.read_text().split("\n")
    records, note = [], None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as e:
            if number == len(lines):  # no newline after it: an interrupted append
                note = (f"{path}: dropped a partial last line ({len(line)} characters) left by "
                        "an interrupted write; the records before it are kept.")
            else:
                raise RunDirError(
                    f"{path}, line {number}: not a JSON record ({e.msg}). Only the last line "
                    "of this log can be cut short by a crash; fix or delete that line.") from None
    return records, note
