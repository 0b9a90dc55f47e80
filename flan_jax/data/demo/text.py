"""Word and symbol families: counting, string transformation, list lookup, syllogisms."""

from __future__ import annotations

import random
from collections.abc import Iterator

from flan_jax.data.demo._base import (
    ANIMALS,
    COLORS,
    FRUITS,
    NAMES,
    NOUNS,
    Example,
    generate,
    join_items,
    number_options,
    ordinal,
    spelled_count,
    with_options,
)

# ---------------------------------------------------------------------------- counting


def _make_counting(rng: random.Random) -> Example:
    kind = rng.randrange(3)
    if kind == 0:  # a letter in a word
        word = rng.choice(NOUNS)
        if rng.random() < 0.85:
            target = rng.choice(word)
        else:
            target = rng.choice([c for c in "aeilnorst" if c not in word])
        units = list(word)
        count = word.count(target)
        question = f'How many times does the letter "{target}" appear in "{word}"?'
        walk = f'Spell "{word}" letter by letter'
        label = one = f'"{target}"'
        is_counted = target.__eq__
    elif kind == 1:  # a word in a list
        units = [rng.choice(ANIMALS) for _ in range(rng.randint(5, 8))]
        target = rng.choice(ANIMALS)
        count = units.count(target)
        question = f'How many times does "{target}" appear in the list {join_items(units)}?'
        walk = "Go through the list"
        label = one = f'"{target}"'
        is_counted = target.__eq__
    else:  # members of a category in a mixed list
        units = [rng.choice(ANIMALS + FRUITS) for _ in range(rng.randint(5, 8))]
        category, label, one, members = rng.choice(
            [("animals", "animal", "an animal", ANIMALS), ("fruits", "fruit", "a fruit", FRUITS)]
        )
        count = sum(unit in members for unit in units)
        question = f"How many {category} are in the list {join_items(units)}?"
        walk = "Go through the list"
        is_counted = members.__contains__
    if count:
        rationale = f"{walk} and count each {label}: {spelled_count(units, is_counted)}."
    else:
        rationale = f"{walk}: {', '.join(units)}. None of them is {one}, so the count is 0."
    return {
        "question": question,
        "answer": str(count),
        "options": number_options(rng, count, [len(units), count + 1, count - 1]),
        "rationale": rationale,
    }


def counting(split: str, num_examples: int, seed: int) -> Iterator[Example]:
    """Count a letter in a word, a word in a list, or the animals/fruits in a list."""
    return generate("counting", split, num_examples, seed, _make_counting)


# ---------------------------------------------------------------------------- string transformation


def _make_string_transform(rng: random.Random) -> Example:
    kind = rng.randrange(4)
    if kind == 0:
        word = rng.choice(NOUNS)
        question = f'What is "{word}" spelled backwards?'
        answer = word[::-1]
    elif kind == 1:
        phrase = " ".join(rng.sample(COLORS + NOUNS, rng.randint(1, 3)))
        question = f'Write "{phrase}" in capital letters.'
        answer = phrase.upper()
    else:
        words = rng.sample(NOUNS, rng.randint(3, 5))
        which = "first" if kind == 2 else "last"
        question = f'What are the {which} letters of the words in "{" ".join(words)}"?'
        answer = "".join(w[0] if kind == 2 else w[-1] for w in words)
    return {"question": question, "answer": answer}


def string_transform(split: str, num_examples: int, seed: int) -> Iterator[Example]:
    """Reverse a word, capitalise a phrase, or join the first or last letters of words."""
    return generate("string_transform", split, num_examples, seed, _make_string_transform)


# ---------------------------------------------------------------------------- list lookup


def _make_list_lookup(rng: random.Random) -> Example:
    pool = rng.choice([COLORS, ANIMALS, FRUITS])
    items = rng.sample(pool, rng.randint(5, 6))
    listed = join_items(items)
    kind = rng.randrange(3)
    if kind == 0:
        k = rng.randint(1, len(items))
        question = f"What is the {ordinal(k)} item in the list {listed}?"
        answer = items[k - 1]
    elif kind == 1:
        i = rng.randrange(len(items) - 1)
        question = f"Which item comes right after {items[i]} in the list {listed}?"
        answer = items[i + 1]
    else:
        i = rng.randrange(1, len(items))
        question = f"Which item comes right before {items[i]} in the list {listed}?"
        answer = items[i - 1]
    return {
        "question": question,
        "answer": answer,
        "options": with_options(rng, answer, items, 4),
    }


def list_lookup(split: str, num_examples: int, seed: int) -> Iterator[Example]:
    """Find the k-th item of a list, or the item right after or before a given one."""
    return generate("list_lookup", split, num_examples, seed, _make_list_lookup)


# ---------------------------------------------------------------------------- logic
# Made-up kinds keep world knowledge out of the way; all start with a consonant ("a wug").
KINDS = (
    "wug", "fep", "blick", "tove", "zorp", "glim", "snib",
    "pell", "rint", "vop", "lorp", "tam", "bim", "nop",
)  # fmt: skip


def _syllogism(rng: random.Random) -> tuple[str, str, str, str]:
    """(premises, conclusion, answer, rationale) for one argument form."""
    a, b, c = rng.sample(KINDS, 3)
    x = rng.choice(NAMES)
    form = rng.randrange(10)
    if form == 0:
        return (
            f"All {a}s are {b}s. All {b}s are {c}s.",
            f"all {a}s are {c}s",
            "yes",
            f"Every {a} is a {b}, and every {b} is a {c}. That means every {a} is also a {c}.",
        )
    if form == 1:
        return (
            f"All {a}s are {b}s. All {a}s are {c}s.",
            f"all {b}s are {c}s",
            "no",
            f"Both statements only describe {a}s. A {b} that is not a {a} could fail to be a {c}.",
        )
    if form == 2:
        return (
            f"All {a}s are {b}s. No {b}s are {c}s.",
            f"no {a}s are {c}s",
            "yes",
            f"Every {a} is a {b}, and no {b} is a {c}. That means a {a} can never be a {c}.",
        )
    if form == 3:
        return (
            f"All {a}s are {b}s. No {c}s are {a}s.",
            f"no {c}s are {b}s",
            "no",
            f"No {c} is a {a}, but a {c} could still be a {b} without being a {a}.",
        )
    if form == 4:
        return (
            f"All {a}s are {b}s. {x} is a {a}.",
            f"{x} is a {b}",
            "yes",
            f"{x} is a {a}, and every {a} is a {b}. That makes {x} a {b}.",
        )
    if form == 5:
        return (
            f"All {a}s are {b}s. {x} is a {b}.",
            f"{x} is a {a}",
            "no",
            f"Every {a} is a {b}, but not every {b} has to be a {a}. {x} being a {b} "
            f"does not make {x} a {a}.",
        )
    if form == 6:
        return (
            f"All {a}s are {b}s. {x} is not a {b}.",
            f"{x} is not a {a}",
            "yes",
            f"If {x} were a {a}, {x} would also be a {b}. {x} is not a {b}, so {x} cannot "
            f"be a {a}.",
        )
    if form == 7:
        return (
            f"All {a}s are {b}s. {x} is not a {a}.",
            f"{x} is not a {b}",
            "no",
            f"The first statement only describes {a}s. {x} is not a {a}, so {x} may or may "
            f"not be a {b}.",
        )
    if form == 8:
        return (
            f"No {a}s are {b}s. {x} is a {a}.",
            f"{x} is not a {b}",
            "yes",
            f"{x} is a {a}, and no {a} is a {b}. That rules out {x} being a {b}.",
        )
    return (
        f"No {a}s are {b}s. {x} is not a {a}.",
        f"{x} is a {b}",
        "no",
        f"The first statement only says that {a}s are not {b}s. {x} is not a {a}, so "
        f"nothing tells us whether {x} is a {b}.",
    )


def _make_logic(rng: random.Random) -> Example:
    premises, conclusion, answer, rationale = _syllogism(rng)
    verdict = "follows" if answer == "yes" else "does not follow"
    rationale = f"{rationale} The conclusion {verdict}."
    return {
        "question": f"{premises} Does it follow that {conclusion}?",
        "answer": answer,
        "options": with_options(rng, answer, ["yes", "no"], 2),
        "rationale": rationale,
    }


def logic(split: str, num_examples: int, seed: int) -> Iterator[Example]:
    """Does a conclusion follow from two statements about made-up kinds? (yes/no)"""
    return generate("logic", split, num_examples, seed, _make_logic)
