"""Mixing rates: examples-proportional with caps, nested sub-mixtures with weights.

A leaf mixture gives each task the rate min(cap, examples); a nested mixture
splits its mass over its members by weight. Example counts come from the task
definition (`num_examples`), the source's metadata, or are measured once by
reading the data and cached on disk. Missing data is reported for every task
by name; dropping those tasks is an explicit choice that renormalises.
"""

from __future__ import annotations

import collections
import json
import logging
import os
from collections.abc import Callable, Collection, Mapping
from pathlib import Path

import seqio

from flan_jax.data.schema import Catalog
from flan_jax.errors import CatalogError, MissingDataError

DROP_MISSING_ENV = "FLAN_JAX_DROP_MISSING_TASKS"
CACHE_ENV = "FLAN_JAX_CACHE_DIR"
RATE_SPLIT = "train"

CountFn = Callable[[str], int]


def leaf_members(catalog: Catalog, name: str) -> list[str]:
    """Task names of a leaf mixture: catalog selections plus literal names of other
    registered seqio tasks (a user's own Python tasks)."""
    spec = catalog.mixtures[name]
    known = catalog.task_styles()
    extra = [t for t in spec.tasks if t not in known and not any(c in t for c in "*?[")]
    return catalog.members(name) + extra


def all_members(catalog: Catalog, name: str) -> list[str]:
    """Every task reachable from a mixture, each once, in a stable order."""
    spec = catalog.mixtures[name]
    if not spec.is_nested:
        return leaf_members(catalog, name)
    return list(dict.fromkeys(t for m in spec.mixtures for t in all_members(catalog, m)))


def shares(catalog: Catalog, name: str, count: CountFn,
           exclude: Collection[str] = ()) -> dict[str, float]:
    """Each task's share of the mixture (they sum to 1), leaving out `exclude`.

    A member mixture left without tasks gives its weight up to its siblings.
    """
    spec = catalog.mixtures[name]
    if spec.is_nested:
        parts = {m: shares(catalog, m, count, exclude) for m in spec.mixtures}
        parts = {m: s for m, s in parts.items() if s}
        total_weight = sum(spec.mixtures[m] for m in parts)
        out: dict[str, float] = collections.defaultdict(float)
        for member, member_shares in parts.items():
            for task, share in member_shares.items():
                out[task] += spec.mixtures[member] / total_weight * share
        return dict(out)
    rates = {}
    for task in leaf_members(catalog, name):
        if task not in exclude:
            n = count(task)
            rates[task] = float(min(n, spec.cap) if spec.cap else n)
    total = sum(rates.values())
    return {t: r / total for t, r in rates.items() if r > 0} if total else {}


def drop_missing() -> bool:
    """Whether $FLAN_JAX_DROP_MISSING_TASKS asks to drop tasks whose data is missing."""
    return os.environ.get(DROP_MISSING_ENV, "") in ("1", "true", "True")


def cache_file() -> Path:
    return Path(os.environ.get(CACHE_ENV, "~/.cache/flan_jax")).expanduser() / "counts.json"


def _fingerprint(task: seqio.Task, split: str) -> str:
    source = task.source.data.source
    parts = [source.describe()]
    if hasattr(source, "paths"):
        for path in source.paths(split):
            stat = os.stat(path)
            parts.append(f"{path}:{stat.st_size}:{stat.st_mtime_ns}")
    return "|".join(parts)


def _measured_count(task: seqio.Task, split: str) -> int:
    """Counts by reading the source once; remembered in $FLAN_JAX_CACHE_DIR/counts.json."""
    reason = task.source.data.source.check(split)
    if reason:
        raise MissingDataError({task.name: reason}, hint=(
            "Its size is neither declared (num_examples in its YAML) nor known from metadata, "
            "so counting it needs the data."))
    path = cache_file()
    key = f"{task.source.data.spec.name}|{split}|{_fingerprint(task, split)}"
    cache = json.loads(path.read_text()) if path.exists() else {}
    if key not in cache:
        logging.info("Counting examples of %s:%s (cached afterwards)", task.name, split)
        cache[key] = sum(1 for _ in task.source.data.source.iter_split(split))
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(cache, indent=0, sort_keys=True))
        tmp.replace(path)
    return cache[key]


def counted(task_name: str, split: str = RATE_SPLIT) -> tuple[int, str]:
    """(examples in a registered task's split, where that number comes from): 'declared'
    (the task's YAML, or a plain seqio task's num_input_examples), the source's metadata
    (e.g. 'TFDS metadata'), or 'measured' (read once, then cached)."""
    task = seqio.get_mixture_or_task(task_name)
    data = getattr(task.source, "data", None)
    if data is None:
        n = task.num_input_examples(split)
        if n is None:
            raise CatalogError(task_name, "", "a plain seqio task in a mixture must declare "
                                              "num_input_examples for its source")
        return n, "declared"
    if split in data.spec.num_examples:
        return data.spec.num_examples[split], "declared"
    n = data.source.count(split)
    if n is not None:
        return n, data.source.count_origin
    return _measured_count(task, split), "measured"


def example_count(task_name: str, split: str = RATE_SPLIT) -> int:
    """Examples in a registered task's split: declared, from metadata, or measured."""
    return counted(task_name, split)[0]


def find_missing(tasks: list[seqio.Task], split: str) -> dict[str, str]:
    """Task name -> why its data cannot be read, for tasks that have `split`."""
    missing, checked = {}, {}
    for task in tasks:
        data = getattr(task.source, "data", None)
        if data is None or split not in task.splits:
            continue
        key = id(data)
        if key not in checked:
            checked[key] = data.source.check(split)
        if checked[key]:
            missing[task.name] = checked[key]
    return missing


class FlanMixture(seqio.Mixture):
    """A seqio Mixture over the flattened tasks of a catalog mixture.

    `get_dataset` first checks every task's data and fails listing all that are
    missing, or, with $FLAN_JAX_DROP_MISSING_TASKS=1 (or `without_missing`),
    drops them with a log line and renormalises the rates.
    """

    def __init__(self, catalog: Catalog, name: str, exclude: Collection[str] = (),
                 count: CountFn = example_count):
        self.catalog, self.exclude, self._count = catalog, frozenset(exclude), count
        self._shares: dict[str, float] | None = None
        members = [t for t in all_members(catalog, name) if t not in self.exclude]
        try:
            super().__init__(name, [(t, self._rate) for t in members])
        except ValueError as e:
            raise CatalogError(catalog.mixtures[name].file, f"mixture {name}", str(e)) from None

    def shares(self) -> Mapping[str, float]:
        if self._shares is None:
            self._shares = shares(self.catalog, self.name, self._count, self.exclude)
        return self._shares

    def _rate(self, task: seqio.Task) -> float:
        return self.shares().get(task.name, 0.0)

    def without_missing(self, split: str = RATE_SPLIT) -> FlanMixture:
        """This mixture minus the tasks whose data is missing (logged by name)."""
        missing = find_missing(self.tasks, split)
        if not missing:
            return self
        for task, reason in sorted(missing.items()):
            logging.warning("Dropping task %s from mixture %s: %s", task, self.name, reason)
        return FlanMixture(self.catalog, self.name, self.exclude | set(missing), self._count)

    def get_dataset(self, sequence_length=None, split: str = "train", use_cached: bool = False,
                    *args, **kwargs):
        # A task read from seqio's cache (use_cached) does not need its raw data.
        missing = find_missing([t for t in self.tasks if not (use_cached and t.cache_dir)],
                               split)
        if missing:
            if not drop_missing():
                raise MissingDataError(missing, hint=(
                    f"Provide the data, or set {DROP_MISSING_ENV}=1 to drop these tasks "
                    "from the mixture and renormalise its rates."))
            return self.without_missing(split).get_dataset(sequence_length, split, use_cached,
                                                           *args, **kwargs)
        return super().get_dataset(sequence_length, split, use_cached, *args, **kwargs)
