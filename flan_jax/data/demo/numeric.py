"""Number families: arithmetic, sorting, comparison, unit conversion, parity, min/max, sequences."""

from __future__ import annotations

import random
from collections.abc import Iterator

from flan_jax.data.demo._base import (
    FRUITS,
    MONTHS,
    NAMES,
    NOUNS,
    THINGS,
    Example,
    generate,
    join_items,
    number_options,
    plural,
    with_options,
)

WORDS = tuple(dict.fromkeys(NOUNS + FRUITS))  # one pool, no word twice

# ---------------------------------------------------------------------------- arithmetic
# Each problem kind returns (question, rationale, answer, likely wrong answers).
Problem = tuple[str, str, int, list[int]]


def _buy_and_give(rng: random.Random) -> Problem:
    a, b = rng.sample(NAMES, 2)
    thing = rng.choice(THINGS)
    start, bought = rng.randint(5, 40), rng.randint(2, 30)
    total = start + bought
    given = rng.randint(1, total - 1)
    answer = total - given
    question = (
        f"{a} has {start} {thing}. {a} buys {bought} more and then gives {given} to {b}. "
        f"How many {thing} does {a} have now?"
    )
    rationale = (
        f"{a} starts with {start} {thing}. After buying {bought} more, {a} has "
        f"{start} + {bought} = {total}. After giving {given} to {b}, {a} has "
        f"{total} - {given} = {answer}."
    )
    return question, rationale, answer, [total, start - given, total + given]


def _bags(rng: random.Random) -> Problem:
    a = rng.choice(NAMES)
    thing = rng.choice(THINGS)
    bags, each = rng.randint(2, 9), rng.randint(2, 12)
    total = bags * each
    lost = rng.randint(1, total - 1)
    answer = total - lost
    question = (
        f"{a} has {bags} bags with {each} {thing} in each bag. {a} loses {lost} {thing}. "
        f"How many {thing} are left?"
    )
    rationale = (
        f"The bags hold {bags} * {each} = {total} {thing}. After losing {lost}, "
        f"there are {total} - {lost} = {answer} left."
    )
    return question, rationale, answer, [total, bags + each - lost, total + lost]


def _share(rng: random.Random) -> Problem:
    a, b = rng.sample(NAMES, 2)
    thing = rng.choice(THINGS)
    friends, answer = rng.randint(2, 6), rng.randint(2, 12)
    total = friends * answer
    first = rng.randint(1, total - 1)
    second = total - first
    question = (
        f"{a} has {first} {thing} and {b} has {second}. They put them together and share "
        f"them equally among {friends} friends. How many {thing} does each friend get?"
    )
    rationale = (
        f"Together they have {first} + {second} = {total} {thing}. Shared equally among "
        f"{friends} friends, each gets {total} / {friends} = {answer}."
    )
    return question, rationale, answer, [total, answer + 1, max(first, second) // friends]


def _change(rng: random.Random) -> Problem:
    a = rng.choice(NAMES)
    item, items = rng.choice(
        [("pencil", "pencils"), ("notebook", "notebooks"), ("ticket", "tickets"), ("cup", "cups")]
    )
    price, count = rng.randint(2, 9), rng.randint(2, 6)
    cost = price * count
    bill = rng.choice([b for b in (20, 50, 100) if b > cost])
    answer = bill - cost
    question = (
        f"A {item} costs {price} dollars. {a} buys {count} {items} and pays with a "
        f"{bill} dollar bill. How many dollars of change does {a} get?"
    )
    rationale = (
        f"{count} {items} cost {count} * {price} = {cost} dollars. The change is "
        f"{bill} - {cost} = {answer} dollars."
    )
    return question, rationale, answer, [cost, bill - price, answer + price]


def _savings(rng: random.Random) -> Problem:
    a = rng.choice(NAMES)
    weekly, weeks = rng.randint(2, 20), rng.randint(2, 8)
    saved = weekly * weeks
    spent = rng.randint(1, saved - 1)
    answer = saved - spent
    question = (
        f"{a} saves {weekly} dollars each week for {weeks} weeks and then spends {spent} "
        f"dollars. How many dollars does {a} have left?"
    )
    rationale = (
        f"In {weeks} weeks {a} saves {weeks} * {weekly} = {saved} dollars. After spending "
        f"{spent}, {a} has {saved} - {spent} = {answer} dollars left."
    )
    return question, rationale, answer, [saved, weekly + weeks - spent, saved + spent]


def _twice(rng: random.Random) -> Problem:
    a, b, c = rng.sample(NAMES, 3)
    thing = rng.choice(THINGS)
    first, more = rng.randint(2, 30), rng.randint(1, 20)
    middle = first + more
    answer = 2 * middle
    question = (
        f"{a} has {first} {thing}. {b} has {more} more than {a}. {c} has twice as many as "
        f"{b}. How many {thing} does {c} have?"
    )
    rationale = f"{b} has {first} + {more} = {middle} {thing}. {c} has 2 * {middle} = {answer}."
    return question, rationale, answer, [middle, 2 * first + more, 2 * first]


def _two_pickers(rng: random.Random) -> Problem:
    a, b = rng.sample(NAMES, 2)
    thing = rng.choice(THINGS)
    morning, afternoon = rng.randint(2, 25), rng.randint(2, 25)
    first = morning + afternoon
    fewer = rng.randint(1, first - 1)
    second = first - fewer
    answer = first + second
    question = (
        f"{a} collects {morning} {thing} in the morning and {afternoon} in the afternoon. "
        f"{b} collects {fewer} fewer than {a}. How many {thing} do they collect in total?"
    )
    rationale = (
        f"{a} collects {morning} + {afternoon} = {first}. {b} collects {first} - {fewer} = "
        f"{second}. Together they collect {first} + {second} = {answer}."
    )
    return question, rationale, answer, [first, second, first + first + fewer]


_PROBLEMS = (_buy_and_give, _bags, _share, _change, _savings, _twice, _two_pickers)


def _make_arithmetic(rng: random.Random) -> Example:
    question, rationale, answer, likely = rng.choice(_PROBLEMS)(rng)
    return {
        "question": question,
        "answer": str(answer),
        "options": number_options(rng, answer, likely),
        "rationale": rationale,
    }


def arithmetic(split: str, num_examples: int, seed: int) -> Iterator[Example]:
    """Two- and three-step word problems with small whole numbers and worked rationales."""
    return generate("arithmetic", split, num_examples, seed, _make_arithmetic)


# ---------------------------------------------------------------------------- sorting

_NUMBER_ORDERS = {"from smallest to largest": False, "from largest to smallest": True}
_WORD_ORDERS = {"in alphabetical order": False, "in reverse alphabetical order": True}


def _make_sorting(rng: random.Random) -> Example:
    n = rng.randint(4, 6)
    if rng.random() < 0.5:
        values: list = rng.sample(range(1, 100), n)
        order = rng.choice(list(_NUMBER_ORDERS))
        reverse = _NUMBER_ORDERS[order]
    else:
        values = rng.sample(FRUITS + NOUNS[:16], n)  # disjoint pools
        order = rng.choice(list(_WORD_ORDERS))
        reverse = _WORD_ORDERS[order]
    gold = sorted(values, reverse=reverse)
    wrong = [values, gold[::-1]]
    while len({join_items(w) for w in wrong} - {join_items(gold)}) < 3:
        i = rng.randrange(n - 1)
        swapped = list(gold)
        swapped[i], swapped[i + 1] = swapped[i + 1], swapped[i]
        wrong.append(swapped)
    answer = join_items(gold)
    items = join_items(values)
    return {
        "question": f"Sort {items} {order}.",
        "answer": answer,
        "options": with_options(rng, answer, [join_items(w) for w in wrong], 4),
        "items": items,
        "order": order,
    }


def sorting(split: str, num_examples: int, seed: int) -> Iterator[Example]:
    """Sort 4-6 numbers (ascending or descending) or words (alphabetical or reverse)."""
    return generate("sorting", split, num_examples, seed, _make_sorting)


# ---------------------------------------------------------------------------- comparison


def _make_comparison(rng: random.Random) -> Example:
    kind = rng.randrange(4)
    if kind == 0:
        x, y = rng.sample(range(1, 1000), 2)
        word = rng.choice(["larger", "smaller"])
        question = f"Which number is {word}, {x} or {y}?"
        answer = max(x, y) if word == "larger" else min(x, y)
    elif kind == 1:
        x, y = rng.sample(NOUNS, 2)
        while len(x) == len(y):
            y = rng.choice(NOUNS)
        word = rng.choice(["longer", "shorter"])
        question = f'Which word is {word}, "{x}" or "{y}"?'
        answer = max(x, y, key=len) if word == "longer" else min(x, y, key=len)
    elif kind == 2:
        x, y = rng.sample(WORDS, 2)
        word = rng.choice(["first", "last"])
        question = f'Which word comes {word} in alphabetical order, "{x}" or "{y}"?'
        answer = min(x, y) if word == "first" else max(x, y)
    else:
        x, y = rng.sample(MONTHS, 2)
        word = rng.choice(["earlier", "later"])
        question = f"Which month comes {word} in the year, {x} or {y}?"
        earlier = x if MONTHS.index(x) < MONTHS.index(y) else y
        answer = earlier if word == "earlier" else (y if earlier == x else x)
    answer = str(answer)
    other = str(y) if answer == str(x) else str(x)
    return {
        "question": question,
        "answer": answer,
        "options": with_options(rng, answer, [other], 2),
    }


def comparison(split: str, num_examples: int, seed: int) -> Iterator[Example]:
    """Pick one of two: larger/smaller number, longer/shorter word, alphabet or month order."""
    return generate("comparison", split, num_examples, seed, _make_comparison)


# ---------------------------------------------------------------------------- unit conversion
# (large unit, its plural, small unit, its plural, how many small units make one large unit)
UNITS = (
    ("meter", "meters", "centimeter", "centimeters", 100),
    ("centimeter", "centimeters", "millimeter", "millimeters", 10),
    ("kilometer", "kilometers", "meter", "meters", 1000),
    ("kilogram", "kilograms", "gram", "grams", 1000),
    ("tonne", "tonnes", "kilogram", "kilograms", 1000),
    ("liter", "liters", "milliliter", "milliliters", 1000),
    ("hour", "hours", "minute", "minutes", 60),
    ("minute", "minutes", "second", "seconds", 60),
    ("day", "days", "hour", "hours", 24),
    ("week", "weeks", "day", "days", 7),
    ("year", "years", "month", "months", 12),
    ("decade", "decades", "year", "years", 10),
    ("century", "centuries", "year", "years", 100),
    ("foot", "feet", "inch", "inches", 12),
    ("yard", "yards", "foot", "feet", 3),
    ("gallon", "gallons", "quart", "quarts", 4),
    ("pound", "pounds", "ounce", "ounces", 16),
)


def _make_unit_conversion(rng: random.Random) -> Example:
    big, bigs, small, smalls, factor = rng.choice(UNITS)
    count = rng.randint(2, 40)
    many = count * factor
    head = f"One {big} is {factor} {smalls}, so"
    wrong_factors = {u[4] for u in UNITS} - {factor}
    kind = rng.random()
    if kind < 0.4:  # large to small
        question = f"How many {smalls} are in {count} {bigs}?"
        rationale = f"{head} {count} {bigs} are {count} * {factor} = {many} {smalls}."
        answer = many
        likely = [count * f for f in wrong_factors] + [many + factor, many - factor]
    elif kind < 0.7:  # small to large
        question = f"How many {bigs} are in {many} {smalls}?"
        rationale = f"{head} {many} {smalls} are {many} / {factor} = {count} {bigs}."
        answer = count
        likely = [many // f for f in wrong_factors if many % f == 0] + [count * 10, many]
    else:  # a mixed amount to the small unit
        count = rng.randint(2, 20)
        many = count * factor
        rest = rng.randint(1, factor - 1) if factor <= 100 else 50 * rng.randint(1, 19)
        answer = many + rest
        question = f"How many {smalls} are in {count} {bigs} and {plural(rest, small, smalls)}?"
        rationale = (
            f"{head} {count} {bigs} are {count} * {factor} = {many} {smalls}. Adding the other "
            f"{rest} gives {many} + {rest} = {answer} {smalls}."
        )
        likely = [many, count + rest, many - rest, answer + factor]
    return {
        "question": question,
        "answer": str(answer),
        "options": number_options(rng, answer, likely, low=1),
        "rationale": rationale,
    }


def unit_conversion(split: str, num_examples: int, seed: int) -> Iterator[Example]:
    """Convert whole amounts between a large and a small unit of length, mass, volume or time."""
    return generate("unit_conversion", split, num_examples, seed, _make_unit_conversion)


# ---------------------------------------------------------------------------- parity (held out)


def _parity_word(n: int) -> str:
    return "even" if n % 2 == 0 else "odd"


def _make_parity(rng: random.Random) -> Example:
    kind = rng.randrange(3)
    if kind == 0:
        value = rng.randint(0, 9999)
        question = f"Is {value} odd or even?"
        steps = ""
    elif kind == 1:
        x, y = rng.randint(1, 99), rng.randint(1, 99)
        value = x + y
        question = f"Is the sum of {x} and {y} odd or even?"
        steps = f"{x} + {y} = {value}. "
    else:
        x, y = rng.randint(2, 12), rng.randint(2, 12)
        value = x * y
        question = f"Is the product of {x} and {y} odd or even?"
        steps = f"{x} * {y} = {value}. "
    last = value % 10
    answer = _parity_word(value)
    rationale = f"{steps}The last digit of {value} is {last}, and {last} is {answer}."
    return {
        "question": question,
        "answer": answer,
        "options": with_options(rng, answer, ["odd", "even"], 2),
        "rationale": rationale,
    }


def parity(split: str, num_examples: int, seed: int) -> Iterator[Example]:
    """Odd or even: a number, a sum or a product (held out)."""
    return generate("parity", split, num_examples, seed, _make_parity)


# ---------------------------------------------------------------------------- min/max (held out)


def _make_min_max(rng: random.Random) -> Example:
    n = rng.randint(4, 6)
    if rng.random() < 0.6:
        values = rng.sample(range(1, 100), n)
        word = rng.choice(["largest", "smallest"])
        question = f"What is the {word} number in the list {join_items(values)}?"
        answer = str(max(values) if word == "largest" else min(values))
        options = [str(v) for v in values]
    else:
        while True:
            words = rng.sample(WORDS, n)
            word = rng.choice(["longest", "shortest"])
            pick = max if word == "longest" else min
            best = len(pick(words, key=len))
            if sum(len(w) == best for w in words) == 1:
                break
        question = f"Which word in the list {join_items(words)} is the {word}?"
        answer = pick(words, key=len)
        options = words
    return {
        "question": question,
        "answer": answer,
        "options": with_options(rng, answer, options, 4),
    }


def min_max(split: str, num_examples: int, seed: int) -> Iterator[Example]:
    """The largest/smallest number or the longest/shortest word of a list (held out)."""
    return generate("min_max", split, num_examples, seed, _make_min_max)


# ---------------------------------------------------------------------------- sequences (held out)


def _make_sequence(rng: random.Random) -> Example:
    length = rng.randint(4, 5)
    kind = rng.randrange(5)
    if kind < 2:  # counting up
        step, start = rng.randint(2, 20), rng.randint(1, 99)
        terms = [start + i * step for i in range(length + 1)]
    elif kind < 4:  # counting down, staying positive
        step = rng.randint(2, 20)
        start = rng.randint(step * length + 1, step * length + 99)
        terms = [start - i * step for i in range(length + 1)]
    else:  # doubling or tripling, kept short so the numbers stay small
        length = 4
        step, start = rng.choice([2, 3]), rng.randint(1, 12)
        terms = [start * step**i for i in range(length + 1)]
    *shown, answer = terms
    last = shown[-1]
    pairs = list(zip(shown, shown[1:], strict=False))
    if kind < 2:
        checks = ", ".join(f"{b} - {a} = {step}" for a, b in pairs)
        rationale = (
            f"Each number is {step} more than the one before: {checks}. "
            f"The next number is {last} + {step} = {answer}."
        )
        likely = [answer + 1, answer - 1, last + 2 * step, last]
    elif kind < 4:
        checks = ", ".join(f"{a} - {b} = {step}" for a, b in pairs)
        rationale = (
            f"Each number is {step} less than the one before: {checks}. "
            f"The next number is {last} - {step} = {answer}."
        )
        likely = [answer + 1, answer - 1, last - 2 * step, last]
    else:
        checks = ", ".join(f"{a} * {step} = {b}" for a, b in pairs)
        rationale = (
            f"Each number is {step} times the one before: {checks}. "
            f"The next number is {last} * {step} = {answer}."
        )
        likely = [last + (last - shown[-2]), answer + step, answer * step]
    return {
        "question": f"What number comes next in the sequence {join_items(shown)}?",
        "answer": str(answer),
        "options": number_options(rng, answer, likely, low=1),
        "rationale": rationale,
    }


def sequence(split: str, num_examples: int, seed: int) -> Iterator[Example]:
    """Continue a sequence that counts up, counts down, doubles or triples (held out)."""
    return generate("sequence", split, num_examples, seed, _make_sequence)
