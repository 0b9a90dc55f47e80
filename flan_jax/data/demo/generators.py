"""The demo task families ("Flan in a box"): procedural, deterministic, no downloads.

Every family is one function ``family(split, num_examples, seed)`` that yields
``num_examples`` dicts of strings (``options`` alone is a list of strings). Task YAML
files under ``tasks/demo/`` name them as ``flan_jax.data.demo.generators:<family>``.

Training families: arithmetic, sorting, counting, comparison, string_transform,
unit_conversion, date_arithmetic, logic, list_lookup. Held-out families (related skills,
new formats): parity, min_max, sequence, clock. Which collection a family belongs to is
declared in its YAML file, not here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from flan_jax.data.demo._base import SPLITS, Example
from flan_jax.data.demo.numeric import (
    arithmetic,
    comparison,
    min_max,
    parity,
    sequence,
    sorting,
    unit_conversion,
)
from flan_jax.data.demo.text import counting, list_lookup, logic, string_transform
from flan_jax.data.demo.timekeeping import clock, date_arithmetic

Generator = Callable[[str, int, int], Iterator[Example]]

FAMILIES: dict[str, Generator] = {
    fn.__name__: fn
    for fn in (
        arithmetic,
        sorting,
        counting,
        comparison,
        string_transform,
        unit_conversion,
        date_arithmetic,
        logic,
        list_lookup,
        parity,
        min_max,
        sequence,
        clock,
    )
}

__all__ = ["FAMILIES", "SPLITS", *FAMILIES]
