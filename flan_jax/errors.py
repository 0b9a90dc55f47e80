"""Error types that carry a user-facing message naming the thing that is wrong."""

from __future__ import annotations


class FlanJaxError(Exception):
    """Base class: the message is meant for the user, no traceback needed."""


class CatalogError(FlanJaxError):
    """A task or mixture definition is invalid.

    The message names the file, the field (a dotted path) and what is wrong.
    """

    def __init__(self, file: str, field: str, problem: str):
        self.file, self.field, self.problem = file, field, problem
        where = f"{file}: {field}" if field else file
        super().__init__(f"{where}: {problem}")


class MissingDataError(FlanJaxError):
    """One or more tasks cannot read their data; lists each task and why."""

    def __init__(self, missing: dict[str, str], hint: str = ""):
        self.missing = dict(missing)
        lines = [f"{len(missing)} task(s) cannot load their data:"]
        lines += [f"  - {name}: {reason}" for name, reason in sorted(missing.items())]
        if hint:
            lines.append(hint)
        super().__init__("\n".join(lines))


class DataFormatError(FlanJaxError):
    """A data file has a malformed row; names the file and the line."""


class EmptyFieldError(DataFormatError):
    """A row whose input or target text is empty: filtered out (as FLAN does), not
    malformed."""


class RunStopped(FlanJaxError):
    """A run that had started stopped on a fault (a failed save, a non-finite loss).

    What was saved before the fault is kept; the CLI exits with status 1 (configuration
    errors found before any work exit with 2).
    """
