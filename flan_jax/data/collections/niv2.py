"""The Super-Natural Instructions v2 (NIv2) collection of Flan 2022.

Data: a local copy of allenai/natural-instructions named by $FLAN_JAX_NIV2_DIR,

    $FLAN_JAX_NIV2_DIR/tasks/taskNNN_name.json   one task per file
    $FLAN_JAX_NIV2_DIR/splits/...                optional task lists ($FLAN_JAX_NIV2_TASKS)

where each file holds "Definition" (a list of strings), "Positive Examples" and "Negative
Examples" ({input, output, explanation}), "Instances" ({id, input, output: [strings]}) and
metadata ("Categories", "Input_language", "Source", ...).

Discovery (`discover`, the `expand:` function of tasks/niv2/niv2.yaml) lists `tasks/` (file
names only: nothing is opened) and gives one task definition per file, named
`niv2_taskNNN_name`. The 57 MMLU-derived tasks (ids 664-667 and 685-737) are left out, as
in Flan 2022. $FLAN_JAX_NIV2_TASKS may name a task list (one task name per line, like
`splits/default/train_tasks.txt`; relative paths are taken from $FLAN_JAX_NIV2_DIR) to
register only those tasks. When no task file is found (the variable unset, empty or
wrong) a single placeholder task `niv2_unavailable` stands in, so the catalog and its
mixtures still load; building a mixture that holds it fails with one message naming the
variable and the layout (or drops it, with $FLAN_JAX_DROP_MISSING_TASKS=1).

Reading (`NIv2Source`): split `train` is the file's Instances, split `exemplars` its
Positive Examples (the few-shot pool; the query's own text is never its exemplar).
`parse` gives the fields `definition` (the Definition strings joined by line breaks),
`input`, `answer` and `options`. The answer is the instance's first output (skipping
empty strings): NIv2 lists several acceptable outputs for some instances, Flan trains on
one target, and the first is the dataset's canonical reference. A number where text
belongs (a few tasks store integer outputs) is read as its decimal text. An instance whose
input or outputs are all empty (`"input": " "`, `"output": [""]`) is filtered out, as
FLAN filters empty inputs and targets; any other unusable instance is malformed. Both are
skipped and counted (`flan_jax.data.bad_rows`), so one bad instance never stops a task. `options` is the task's
closed answer set when it has one (see `closed_set`), else empty: 'opt' templates then
list the options for classification-like tasks and show none for open-ended ones.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterator
from typing import Any

from flan_jax.data.sources import Example, Row, Source, shard
from flan_jax.errors import DataFormatError, EmptyFieldError, FlanJaxError

ENV = "FLAN_JAX_NIV2_DIR"
TASK_LIST_ENV = "FLAN_JAX_NIV2_TASKS"
NAME_PREFIX = "niv2_"
PLACEHOLDER = "niv2_unavailable"
READER = "flan_jax.data.collections.niv2:NIv2Source"
# Tasks derived from MMLU (held out: Flan evaluates on MMLU).
MMLU_TASK_IDS = frozenset([*range(664, 668), *range(685, 738)])
TASK_FILE_RE = re.compile(r"^task(\d+)_.+\.json$")
# Our split -> the list of examples it reads from a task file.
SPLITS = {"train": "Instances", "exemplars": "Positive Examples"}
MAX_OPTIONS = 10
LAYOUT = (f"expected a copy of allenai/natural-instructions, one JSON file per task at "
          f"${ENV}/tasks/taskNNN_name.json (a splits/ folder beside tasks/ is optional); set "
          f"${ENV} before importing flan_jax.catalog, which discovers the tasks")


def data_dir() -> str | None:
    """The NIv2 directory named by $FLAN_JAX_NIV2_DIR, or None when unset or empty."""
    root = os.environ.get(ENV, "").strip()
    return os.path.expanduser(root) if root else None


def task_name(stem: str) -> str:
    """`task001_quoref_question_generation` -> `niv2_task001_quoref_question_generation`."""
    return NAME_PREFIX + re.sub(r"[^a-z0-9_]+", "_", stem.lower())


def _task_list_path(root: str) -> str | None:
    value = os.environ.get(TASK_LIST_ENV, "").strip()
    return os.path.join(root, os.path.expanduser(value)) if value else None


def _selected(root: str) -> set[str] | None:
    """Task names of the $FLAN_JAX_NIV2_TASKS list (None: no list, every task)."""
    path = _task_list_path(root)
    if path is None:
        return None
    try:
        with open(path, encoding="utf-8") as f:
            return {line.strip().removesuffix(".json") for line in f if line.strip()}
    except OSError:
        return set()  # nothing registered; the placeholder says why


def task_files(root: str | None = None) -> list[str]:
    """File names under `root`/tasks to register, by task id, MMLU-derived ones left out."""
    root = root or data_dir()
    if not root:
        return []
    try:
        names = os.listdir(os.path.join(root, "tasks"))
    except OSError:
        return []
    selected = _selected(root)
    found = []
    for file_name in names:
        match = TASK_FILE_RE.match(file_name)
        if not match or int(match.group(1)) in MMLU_TASK_IDS:
            continue
        if selected is None or file_name.removesuffix(".json") in selected:
            found.append((int(match.group(1)), file_name))
    return [file_name for _, file_name in sorted(found)]


def _source(file: str) -> dict[str, Any]:
    return {"reader": READER, "name": file, "data_dir_env": ENV, "splits": dict(SPLITS)}


def discover() -> list[dict[str, Any]]:
    """One task definition per NIv2 task file (the placeholder when there is none).

    Lists the directory only; the YAML file's defaults add parser, templates and styles.
    """
    definitions, seen = [], set()
    for file_name in task_files():
        stem = file_name.removesuffix(".json")
        name = task_name(stem)
        if name in seen:
            logging.warning("NIv2: skipping %s, whose task name %s is already taken", file_name, name)
            continue
        seen.add(name)
        definitions.append({"name": name, "description": f"Super-Natural Instructions {stem}",
                            "source": _source(f"tasks/{file_name}")})
    if definitions:
        return definitions
    return [{"name": PLACEHOLDER, "source": _source(""),
             "description": "Stands in for the NIv2 tasks: no task files were found "
                            f"(${ENV}); its data is always missing"}]


def unavailable_reason() -> str:
    """Why no NIv2 task was registered (the placeholder's missing-data message)."""
    root = data_dir()
    if root is None:
        return f"${ENV} is not set; {LAYOUT}"
    tasks_dir = os.path.join(root, "tasks")
    if not os.path.isdir(tasks_dir):
        return f"{tasks_dir} is not a directory (${ENV}={root}); {LAYOUT}"
    task_list = _task_list_path(root)
    if task_list and not os.path.isfile(task_list):
        return f"the task list {task_list} (${TASK_LIST_ENV}) is not a file"
    if not task_files(root):
        chosen = f" listed in {task_list}" if task_list else ""
        return f"no task files{chosen} in {tasks_dir}; {LAYOUT}"
    return f"the task files in {tasks_dir} were not there when the catalog was loaded; {LAYOUT}"


def _text(value: Any) -> str | None:
    """A string, or a number as its decimal text (bools are not numbers here); None else."""
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return None


def _first_output(output: Any) -> str | None:
    """The first non-empty output (a list of strings or numbers, or one), stripped."""
    outputs = output if isinstance(output, list) else [output]
    for item in outputs:
        text = _text(item)
        if text is not None and text.strip():
            return text.strip()
    return None


def closed_set(outputs: list[str], num_instances: int) -> list[str]:
    """The answer options of a classification-like task, sorted; [] for open-ended tasks.

    A task is closed-set when its examples have 2 to MAX_OPTIONS distinct answers and
    each answer occurs twice on average (so a tiny generation task is not mistaken for
    one).
    """
    distinct = sorted(set(outputs))
    if 2 <= len(distinct) <= MAX_OPTIONS and 2 * len(distinct) <= num_instances:
        return distinct
    return []


def _definition(path: str, value: Any) -> str:
    parts = [value] if isinstance(value, str) else value
    if not isinstance(parts, list) or not all(isinstance(p, str) for p in parts):
        raise DataFormatError(f"{path}: 'Definition' should be a list of strings")
    text = "\n".join(p.strip() for p in parts if p.strip())
    if not text:
        raise DataFormatError(f"{path}: the task has no 'Definition'")
    return text


def read_task_file(path: str) -> dict[str, Any]:
    """A task file, checked: its definition, options and example lists (by JSON key)."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise DataFormatError(f"{path}:{e.lineno}: malformed JSON: {e.msg}") from None
    except UnicodeDecodeError as e:
        raise DataFormatError(f"{path}: not UTF-8 text ({e.reason})") from None
    except OSError as e:
        raise DataFormatError(f"{path}: cannot be read ({e.strerror})") from None
    if not isinstance(data, dict):
        raise DataFormatError(f"{path}: expected a JSON object with 'Definition' and 'Instances'")
    out: dict[str, Any] = {"definition": _definition(path, data.get("Definition"))}
    for key in SPLITS.values():
        items = data.get(key, [])
        if not isinstance(items, list) or not all(isinstance(x, dict) for x in items):
            raise DataFormatError(f"{path}: {key!r} should be a list of "
                                  "{input, output} objects")
        out[key] = items
    if not out["Instances"]:
        raise DataFormatError(f"{path}: the task has no 'Instances' (a non-empty list of "
                              "{id, input, output} objects is required)")
    answers = [_first_output(x.get("output")) for x in out["Instances"] + out["Positive Examples"]]
    out["options"] = closed_set([a for a in answers if a is not None], len(out["Instances"]))
    return out


class NIv2Source(Source):
    """One NIv2 task file: split `train` reads its Instances, `exemplars` its Positive
    Examples (`SPLITS`); `spec.name` is the file's path under $FLAN_JAX_NIV2_DIR."""

    def root(self) -> str | None:
        root = os.environ.get(self.spec.data_dir_env or ENV, "").strip() or self.spec.data_dir
        return os.path.expanduser(root) if root else None

    def path(self) -> str | None:
        root = self.root()
        return os.path.join(root, self.spec.name) if root and self.spec.name else None

    def paths(self, split: str) -> list[str]:
        """The file a split reads, if it exists (the example-count cache's fingerprint)."""
        path = self.path()
        return [path] if path and os.path.isfile(path) else []

    def check(self, split: str) -> str | None:
        if self.spec.splits.get(split) not in SPLITS.values():
            return (f"split {split!r} reads {self.spec.splits.get(split)!r}; an NIv2 split "
                    f"reads one of {', '.join(SPLITS.values())}")
        if not self.spec.name or self.root() is None:
            return unavailable_reason()
        path = self.path()
        if not os.path.isfile(path):
            return f"data file not found: {path}; {LAYOUT}"
        return None

    def _iter(self, split: str, shard_index: int,
              num_shards: int) -> Iterator[tuple[int, Example]]:
        reason = self.check(split)
        if reason:
            raise FlanJaxError(f"task {self.task_name!r}: {reason}")
        task = read_task_file(self.path())
        shared = {"definition": task["definition"], "options": task["options"]}
        key = self.spec.splits[split]
        records = (Row({**item, **shared}, f"{key}[{i}]" + (
            f" (id {item['id']!r})" if "id" in item else ""))
            for i, item in enumerate(task[key]))
        return shard(records, shard_index, num_shards)

    def describe(self) -> str:
        where = self.path() or f"${self.spec.data_dir_env or ENV}/{self.spec.name or 'tasks/'}"
        return f"NIv2 task file {where}"


def parse(raw: Example) -> Example:
    """definition / input / answer (the first output) / options of one NIv2 example."""
    text = _text(raw.get("input"))
    if text is None:
        raise DataFormatError(f"field 'input' should be text, got {raw.get('input')!r}")
    if not text.strip():
        raise EmptyFieldError(f"field 'input' is empty ({raw.get('input')!r})")
    output = raw.get("output")
    answer = _first_output(output)
    if answer is None:
        outputs = output if isinstance(output, list) else [output]
        if outputs and all(isinstance(x, str) for x in outputs):
            raise EmptyFieldError(f"field 'output' has no non-empty answer ({output!r})")
        raise DataFormatError(f"field 'output' should be a non-empty list of strings, "
                              f"got {output!r}")
    return {"definition": str(raw.get("definition", "")), "input": text.strip(),
            "answer": answer, "options": list(raw.get("options", []))}
