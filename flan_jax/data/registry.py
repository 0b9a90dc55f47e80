"""Load and validate the YAML catalog, and register it as seqio Tasks and Mixtures.

Loading reads only YAML (no data); registering builds one `seqio.Task` per task
and style and one `FlanMixture` per mixture. Catalog directories: the repo's
`tasks/`, plus any listed in $FLAN_JAX_TASK_PATHS (os.pathsep-separated), or
the paths given explicitly.

A `tasks:` item `{expand: "module:function", ...}` stands for the task definitions the
function returns (a list of mappings, e.g. one per data file found in a directory); the
item's other keys and the file's `defaults` fill in what each definition leaves out.
The function runs when the catalog is loaded, so it must be cheap and read no data.
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import functools
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import yaml

from flan_jax.data import metrics, vocab
from flan_jax.data.schema import UNSEEN_SUFFIX, Catalog, TaskSpec, read_mixture, read_task
from flan_jax.data.sources import import_function
from flan_jax.errors import CatalogError, FlanJaxError

CATALOG_DIR = Path(__file__).resolve().parents[2] / "tasks"
PATHS_ENV = "FLAN_JAX_TASK_PATHS"
# A cap on every task's few-shot token budget: a prompt longer than the model's input
# length would be truncated from the end, losing the query (the trainer sets it).
BUDGET_ENV = "FLAN_JAX_FEW_SHOT_BUDGET"
_TOP_LEVEL = ("defaults", "tasks", "mixtures")
EXPAND = "expand"
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def default_paths() -> list[Path]:
    extra = [Path(p) for p in os.environ.get(PATHS_ENV, "").split(os.pathsep) if p]
    return [CATALOG_DIR, *extra]


def yaml_files(paths: Iterable[str | Path]) -> list[Path]:
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_file():
            files.append(path)
        elif path.is_dir():
            files.extend(sorted(path.rglob("*.yaml")))
        else:
            raise CatalogError(str(path), "", "catalog path does not exist")
    return files


def _read_file(path: Path, catalog: Catalog, origin: dict[str, str]) -> None:
    file = str(path)
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else ""
        raise CatalogError(file, where, f"invalid YAML: {getattr(e, 'problem', e)}") from None
    if data is None:
        return
    if not isinstance(data, dict):
        raise CatalogError(file, "", "expected a mapping with 'tasks' and/or 'mixtures'")
    for key in data:
        if key not in _TOP_LEVEL:
            raise CatalogError(file, str(key), f"unknown top-level field; use {', '.join(_TOP_LEVEL)}")
    defaults = data.get("defaults") or {}
    if not isinstance(defaults, dict):
        raise CatalogError(file, "defaults", "expected a mapping")
    memo: dict = {}  # validated templates shared by this file's tasks
    for kind, reader, table in (("tasks", functools.partial(read_task, memo=memo), catalog.tasks),
                                ("mixtures", read_mixture, catalog.mixtures)):
        items = data.get(kind) or []
        if not isinstance(items, list):
            raise CatalogError(file, kind, "expected a list")
        for where, item in _entries(file, kind, items, defaults):
            spec = reader(file, where, item)
            if spec.name in origin:
                raise CatalogError(file, f"{where}.name",
                                   f"duplicate name {spec.name!r} (also defined in {origin[spec.name]})")
            origin[spec.name] = file
            table[spec.name] = spec


def _entries(file: str, kind: str, items: list, defaults: dict) -> Iterable[tuple[str, object]]:
    """(field path, definition) of each item, task items merged over `defaults` and
    `expand` items replaced by the definitions their function returns."""
    for i, item in enumerate(items):
        where = f"{kind}[{i}]"
        if kind != "tasks" or not isinstance(item, dict):
            yield where, item
        elif EXPAND not in item:
            yield where, {**defaults, **item}
        else:
            extra = {k: v for k, v in item.items() if k != EXPAND}
            for j, task in enumerate(_expand(file, f"{where}.{EXPAND}", item[EXPAND])):
                yield f"{where}.{EXPAND}[{j}]", {**defaults, **extra, **task}


def _expand(file: str, where: str, ref: object) -> list[dict]:
    if not isinstance(ref, str) or ":" not in ref:
        raise CatalogError(file, where, f"expected 'module:function', got {ref!r}")
    try:
        tasks = import_function(ref)()
    except FlanJaxError as e:
        raise CatalogError(file, where, str(e)) from None
    if not isinstance(tasks, list) or not all(isinstance(t, dict) for t in tasks):
        raise CatalogError(file, where, f"{ref} must return a list of task definitions (mappings)")
    return tasks


def _check_task(spec: TaskSpec) -> None:
    for i, name in enumerate(spec.metrics):
        if name not in metrics.METRICS and ":" not in name:
            raise CatalogError(spec.file, f"task {spec.name}: metrics[{i}]",
                               f"unknown metric {name!r}; use one of "
                               f"{', '.join(sorted(metrics.METRICS))} or 'module:function'")


def _check_mixtures(catalog: Catalog) -> None:
    styles = catalog.task_styles()
    for spec in catalog.mixtures.values():
        where = f"mixture {spec.name}"
        if spec.name in styles:
            raise CatalogError(spec.file, where, "a mixture may not share a task's name")
        for member in spec.mixtures:
            if member not in catalog.mixtures:
                raise CatalogError(spec.file, f"{where}: mixtures.{member}", "no such mixture")
        for pattern in spec.tasks:
            is_literal = not any(c in pattern for c in "*?[")
            if not is_literal and not any(fnmatch.fnmatchcase(n, pattern) for n in styles):
                raise CatalogError(spec.file, f"{where}: tasks",
                                   f"{pattern!r} matches no task (tasks are named NAME_STYLE, "
                                   "e.g. demo_arithmetic_zs_opt)")
        if not spec.is_nested and not catalog.members(spec.name) and not spec.tasks:
            raise CatalogError(spec.file, where, "the selection matches no task")
    mixture_order(catalog)


def mixture_order(catalog: Catalog) -> list[str]:
    """Mixture names, each after the mixtures it contains; a cycle is an error."""
    order: list[str] = []

    def visit(name: str, stack: list[str]) -> None:
        if name in stack:
            cycle = " -> ".join([*stack[stack.index(name):], name])
            spec = catalog.mixtures[name]
            raise CatalogError(spec.file, f"mixture {name}", f"cycle in nested mixtures: {cycle}")
        if name in order:
            return
        for member in catalog.mixtures[name].mixtures:
            visit(member, [*stack, name])
        order.append(name)

    for name in catalog.mixtures:
        visit(name, [])
    return order


def load_catalog(paths: Sequence[str | Path] | None = None) -> Catalog:
    """Reads and validates every YAML file under `paths` (default: `default_paths()`)."""
    catalog, origin = Catalog(), {}
    for path in yaml_files(default_paths() if paths is None else paths):
        _read_file(path, catalog, origin)
    for spec in catalog.tasks.values():
        _check_task(spec)
    _check_mixtures(catalog)
    return catalog


_REGISTERED: Catalog | None = None


def budget_cap() -> int | None:
    """The few-shot budget cap of $FLAN_JAX_FEW_SHOT_BUDGET (None: unset)."""
    value = os.environ.get(BUDGET_ENV, "")
    if not value:
        return None
    if not value.isdigit() or int(value) < 1:
        raise CatalogError(BUDGET_ENV, "", f"expected a positive number of tokens, got {value!r}")
    return int(value)


def register_catalog(catalog: Catalog | None = None) -> Catalog:
    """Registers every task style and mixture with seqio (idempotent per name), each
    few-shot budget capped at $FLAN_JAX_FEW_SHOT_BUDGET tokens when that is set.

    Imports seqio/TensorFlow here rather than at module import, so `load_catalog`
    and the YAML checks stay cheap.
    """
    global _REGISTERED
    import seqio

    from flan_jax.data.datasource import TaskData, make_task
    from flan_jax.data.mixing import FlanMixture

    catalog = load_catalog() if catalog is None else catalog
    cap = budget_cap()
    for spec in catalog.tasks.values():
        if spec.few_shot is not None and cap and spec.few_shot.budget > cap:
            spec = dataclasses.replace(
                spec, few_shot=dataclasses.replace(spec.few_shot, budget=cap))
        data = TaskData(spec)
        vocabulary = vocab.resolve(spec.vocabulary)
        metric_fns = [metrics.get_metric(m) for m in spec.metrics]
        variants = [(s, False) for s in spec.styles] + [(s, True) for s in spec.unseen_styles()]
        for style, unseen in variants:
            name = spec.task_name(style, unseen)
            if name in seqio.TaskRegistry.names():
                seqio.TaskRegistry.remove(name)
            seqio.TaskRegistry.add_provider(
                name, make_task(data, style, vocabulary, metric_fns, unseen=unseen))
    for name in mixture_order(catalog):
        if name in seqio.MixtureRegistry.names():
            seqio.MixtureRegistry.remove(name)
        seqio.MixtureRegistry.add_provider(name, FlanMixture(catalog, name))
    _REGISTERED = catalog if _REGISTERED is None else Catalog(
        {**_REGISTERED.tasks, **catalog.tasks}, {**_REGISTERED.mixtures, **catalog.mixtures})
    return catalog


def registered_catalog() -> Catalog:
    """What `register_catalog` has registered so far (registering the default if nothing)."""
    return _REGISTERED if _REGISTERED is not None else register_catalog()


def task_families(names: Iterable[str], catalog: Catalog | None = None) -> dict[str, str]:
    """Each seqio task name -> the task definition (family) it renders, whatever its style
    or template split (`x_zs_opt`, `x_fs_noopt_unseen` -> `x`), in `catalog` (default: the
    registered one); a task from outside the catalog is its own family."""
    styles = (catalog or registered_catalog()).task_styles()

    def family(name: str) -> str:
        base = name.removesuffix(UNSEEN_SUFFIX)
        found = styles.get(name) or styles.get(base)
        return found[0].name if found else name

    return {name: family(name) for name in names}


def unknown_name(name: str, known: Iterable[str], what: str = "task or mixture") -> FlanJaxError:
    """The error for an unknown name: how many names exist and the closest of them."""
    known = sorted(set(known))
    close = difflib.get_close_matches(name, known, n=5, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return FlanJaxError(f"unknown {what} {name!r} ({len(known):,} registered; "
                        f"`python -m flan_jax.tasks list` lists them){hint}")


def get_mixture_or_task(name: str):
    """seqio's Task or Mixture `name`, or a FlanJaxError naming the closest registered ones
    (seqio itself raises a ValueError with no hint)."""
    import seqio

    try:
        return seqio.get_mixture_or_task(name)
    except ValueError:
        raise unknown_name(name, [*seqio.TaskRegistry.names(),
                                  *seqio.MixtureRegistry.names()]) from None
