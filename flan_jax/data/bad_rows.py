"""What happens to a row that cannot be used: skipped and counted, failing only past a limit.

Real collections hold bad rows (an NIv2 instance whose output is [""], a TSV line with a
column missing, an integer where text belongs). Every source gets the same policy:

- a row whose input or target is empty is filtered out, as FLAN's own pipeline does;
- a malformed row (unreadable line, missing or mistyped field) is skipped;
- both are counted per task definition and split, with the first few problems by location;
- the task fails only when malformed rows exceed a fraction of the rows read (the source's
  `max_malformed` in the task YAML, else $FLAN_JAX_MAX_MALFORMED, else 5%), judged once
  1,000 rows were read and at the end of each pass over the split, or when a pass yields
  no usable row at all.

The counts of this process are in `reports()`: `python -m flan_jax.tasks check` prints
them per task, and the trainer prints them once its first batch is read and keeps them in
MODEL_DIR/data_report.json.
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading
from pathlib import Path

from flan_jax.errors import CatalogError, DataFormatError

MAX_MALFORMED_ENV = "FLAN_JAX_MAX_MALFORMED"
DEFAULT_MAX_MALFORMED = 0.05
JUDGE_AFTER_ROWS = 1000  # before this many rows, only the end of a pass is judged
KEEP_PROBLEMS = 3


class MalformedRowsError(DataFormatError):
    """Too many malformed rows, or none usable: names the task, rows, fields and limit."""


def max_malformed(declared: float | None) -> float:
    """The limit for a source: its declared `max_malformed`, else the environment's."""
    if declared is not None:
        return declared
    value = os.environ.get(MAX_MALFORMED_ENV, "")
    if not value:
        return DEFAULT_MAX_MALFORMED
    try:
        limit = float(value)
    except ValueError:
        limit = -1.0
    if not 0.0 <= limit <= 1.0:
        raise CatalogError(MAX_MALFORMED_ENV, "", f"expected a fraction of rows between 0 and 1 "
                                                  f"(0.05 = 5%), got {value!r}")
    return limit


@dataclasses.dataclass
class SplitReport:
    """Rows of one task's split read by this process: the largest pass's counts."""

    task: str
    split: str
    source: str
    rows: int = 0
    malformed: int = 0
    empty: int = 0
    problems: list[str] = dataclasses.field(default_factory=list)

    @property
    def skipped(self) -> int:
        return self.malformed + self.empty

    def summary(self) -> str:
        """One line: rows read, skipped by kind, and the first problem."""
        kinds = ", ".join(f"{n} {what}" for n, what in ((self.malformed, "malformed"),
                                                        (self.empty, "empty")) if n)
        text = f"{self.rows:,} rows read, {self.skipped:,} skipped"
        text += f" ({kinds}): {self.problems[0]}" if self.skipped else ""
        return text


_LOCK = threading.Lock()
_REPORTS: dict[tuple[str, str], SplitReport] = {}


class RowCounter:
    """Counts one pass over a split (one iteration of a task's rows) and applies the limit.

    Several passes may run at once (one per template style, one per epoch); each publishes
    its counts to the task's `SplitReport`, which keeps the largest.
    """

    def __init__(self, task: str, split: str, source: str, limit: float):
        self.task, self.split, self.source, self.limit = task, split, source, limit
        self.rows = self.malformed = self.empty = 0
        self.problems: list[str] = []
        with _LOCK:
            self.report = _REPORTS.setdefault((task, split), SplitReport(task, split, source))

    def row(self) -> None:
        self.rows += 1
        if self.rows > self.report.rows:
            self.report.rows = self.rows

    def skip_malformed(self, where: str, problem: str) -> None:
        self.malformed += 1
        self._note(f"{where}: {problem}")
        if self.rows >= JUDGE_AFTER_ROWS:
            self._judge()

    def skip_empty(self, where: str, problem: str) -> None:
        self.empty += 1
        self._note(f"{where}: {problem}")

    def finish(self) -> None:
        """End of the pass (or of a sample of it): judge what was read."""
        self._judge()
        if self.rows and self.malformed + self.empty == self.rows:
            raise MalformedRowsError(
                f"task {self.task!r} ({self.source}), split {self.split!r}: none of the "
                f"{self.rows:,} rows read is usable ({self.malformed:,} malformed, "
                f"{self.empty:,} with an empty input or target); first problems: "
                f"{'; '.join(self.problems)}")

    def _note(self, problem: str) -> None:
        if len(self.problems) < KEEP_PROBLEMS:
            self.problems.append(problem)
        with _LOCK:
            report = self.report
            report.malformed = max(report.malformed, self.malformed)
            report.empty = max(report.empty, self.empty)
            if len(report.problems) < KEEP_PROBLEMS and problem not in report.problems:
                report.problems.append(problem)

    def _judge(self) -> None:
        if self.malformed > self.limit * self.rows:
            raise MalformedRowsError(
                f"task {self.task!r} ({self.source}), split {self.split!r}: {self.malformed:,} "
                f"of the {self.rows:,} rows read are malformed, more than the limit of "
                f"{self.limit:.0%} (max_malformed in the task's source, or "
                f"${MAX_MALFORMED_ENV}); first problems: {'; '.join(self.problems)}. Fix the "
                "data, raise the limit, or leave the task out.")


def reports() -> list[SplitReport]:
    """Every task split read by this process so far, by task name."""
    with _LOCK:
        return [dataclasses.replace(r, problems=list(r.problems))
                for _, r in sorted(_REPORTS.items())]


def reset() -> None:
    """Forgets the counts (tests, and tools that check several things in one process)."""
    with _LOCK:
        _REPORTS.clear()


def write(path: str | Path) -> None:
    """Writes `reports()` as JSON (atomically): one entry per task split."""
    path = Path(path)
    entries = [{**dataclasses.asdict(r), "skipped": r.skipped} for r in reports()]
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(entries, indent=1) + "\n")
    tmp.replace(path)


def summary() -> list[str]:
    """One line per task split with skipped rows (what the trainer prints)."""
    return [f"{r.task} [{r.split}]: {r.summary()}" for r in reports() if r.skipped]
