"""Shared machinery of the demo generators: seeding, split assignment, options, wording.

Every generator is a thin wrapper around :func:`generate`, which owns the three
promises the demo collection makes:

* Determinism: the candidate stream is driven by one ``random.Random`` seeded from a
  SHA-256 digest of ``(family, split, seed)``; Python's salted ``hash()`` is never used.
* Disjoint splits: every candidate is drawn from one space per family and belongs to
  exactly one split, chosen by a digest of its ``question`` alone (buckets 0-7 train,
  8 validation, 9 test). The seed does not enter that choice, so splits stay disjoint
  across seeds too. Candidates of other splits, and repeats, are skipped.
* Exact counts: ``num_examples`` examples, or a clear error when the space is too small.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Iterable, Iterator
from typing import Any

Example = dict[str, Any]
Maker = Callable[[random.Random], Example]

SPLITS = ("train", "validation", "test")
_NUM_BUCKETS = 10
_SPLIT_OF_BUCKET = ("train",) * 8 + ("validation", "test")


def stable_int(*parts: object) -> int:
    """A 64-bit integer digest of ``parts``, identical on every run, machine and Python."""
    text = "\x1f".join(str(part) for part in parts)
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")


def split_of(family: str, key: str) -> str:
    """The split an instance belongs to, from a digest of its family and content key."""
    return _SPLIT_OF_BUCKET[stable_int("split", family, key) % _NUM_BUCKETS]


def check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid splits are {', '.join(SPLITS)}")


def generate(
    family: str, split: str, num_examples: int, seed: int, make: Maker
) -> Iterator[Example]:
    """Yield ``num_examples`` distinct examples of ``split`` drawn with ``make``.

    ``make`` draws one candidate from the family's whole space using the random
    generator it is given; it must return a dict with a ``question`` string, the
    content key that decides the candidate's split. Arguments are checked here,
    eagerly, so a bad split fails at the call rather than at the first ``next()``.
    """
    check_split(split)
    if isinstance(num_examples, bool) or not isinstance(num_examples, int) or num_examples < 0:
        raise ValueError(f"num_examples must be a non-negative int, got {num_examples!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an int, got {seed!r}")
    return _stream(family, split, num_examples, seed, make)


def _stream(
    family: str, split: str, num_examples: int, seed: int, make: Maker
) -> Iterator[Example]:
    rng = random.Random(stable_int("rng", family, split, seed))
    seen: set[str] = set()
    budget = 10_000 + 200 * num_examples
    draws = 0
    while len(seen) < num_examples:
        draws += 1
        if draws > budget:
            raise RuntimeError(
                f"demo family {family!r}: found only {len(seen)} distinct {split} examples "
                f"in {budget} draws, fewer than the {num_examples} requested"
            )
        example = make(rng)
        key = example["question"]
        if key in seen or split_of(family, key) != split:
            continue
        seen.add(key)
        yield example


# ---------------------------------------------------------------------------- options


def with_options(rng: random.Random, answer: str, distractors: Iterable[str], k: int) -> list[str]:
    """``answer`` plus up to ``k - 1`` distinct distractors, in a seeded random order."""
    pool = [d for d in dict.fromkeys(distractors) if d != answer]
    chosen = rng.sample(pool, min(k - 1, len(pool))) + [answer]
    rng.shuffle(chosen)
    return chosen


def number_options(
    rng: random.Random, answer: int, likely: Iterable[int] = (), k: int = 4, low: int = 0
) -> list[str]:
    """Numeric options: plausible mistakes first (``likely``), then near misses."""
    likely = [n for n in dict.fromkeys(likely) if n != answer and n >= low]
    near = [answer + d for d in (1, -1, 2, -2, 10, -10, 3, -3) if answer + d >= low]
    near = [n for n in near if n not in likely and n != answer]
    picked = rng.sample(likely, min(len(likely), k - 2))
    picked += rng.sample(near, k - 1 - len(picked))
    return with_options(rng, str(answer), [str(n) for n in picked], k)


# ---------------------------------------------------------------------------- wording

NAMES = ("Ann", "Ben", "Cara", "Dan", "Eva", "Finn", "Gia", "Hal", "Ivy", "Jon", "Kim", "Leo")
THINGS = (
    "apples", "pens", "books", "cards", "eggs", "stamps",
    "shells", "coins", "marbles", "cookies", "stickers", "buttons",
)  # fmt: skip
ANIMALS = ("cat", "dog", "owl", "fox", "cow", "hen")
COLORS = ("red", "blue", "green", "pink", "gray", "gold", "black", "white")
FRUITS = ("apple", "pear", "plum", "fig", "lime", "kiwi", "grape", "mango")
NOUNS = (
    "table", "river", "garden", "window", "pencil", "rabbit", "letter", "banana",
    "summer", "cloud", "bottle", "coffee", "yellow", "butter", "kitten", "mirror",
    "sun", "tree", "book", "door", "apple", "paper", "water", "bread", "house", "music",
    "lemon", "tiger", "candle", "basket", "dinner", "pepper", "cotton", "hammer",
    "planet", "rocket", "stone", "field", "honey", "sheep", "moon", "cat", "map", "cup",
    "egg", "hill", "lamp", "road", "seed", "ship", "star", "bell", "bird", "fish",
    "salt", "snow", "wind", "rain", "leaf", "wall",
)  # fmt: skip
MONTHS = (
    "January", "February", "March", "April", "May", "June", "July",
    "August", "September", "October", "November", "December",
)  # fmt: skip
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def plural(n: int, singular: str, plural_form: str | None = None) -> str:
    """``'1 day'``, ``'3 days'``."""
    return f"{n} {singular if n == 1 else (plural_form or singular + 's')}"


def ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def join_items(items: Iterable[object]) -> str:
    return ", ".join(str(item) for item in items)


def spelled_count(units: list[str], counts: Callable[[str], bool]) -> str:
    """``'b, a (1), n, a (2)'``: each unit, with a running tally after the counted ones."""
    tally = 0
    marked = []
    for unit in units:
        if counts(unit):
            tally += 1
            marked.append(f"{unit} ({tally})")
        else:
            marked.append(unit)
    return ", ".join(marked)
