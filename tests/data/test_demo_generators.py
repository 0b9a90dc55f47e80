"""The embedded demo collection: generators (determinism, splits, correctness) and YAML files.

Correctness is checked by re-solving every example from its question text with code that
shares nothing with the generators but word lists, so a wrong answer or a false step in a
rationale makes these tests fail.
"""

from __future__ import annotations

import datetime
import importlib
import inspect
import itertools
import json
import os
import re
import string
import subprocess
import sys

import pytest
import yaml

from flan_jax.data.demo import FAMILIES, SPLITS
from flan_jax.data.demo._base import ANIMALS, FRUITS

from conftest import REPO

TASKS_DIR = REPO / "tasks" / "demo"
REASONING = {"arithmetic", "counting", "unit_conversion", "date_arithmetic", "logic"}
N_CHECK = 400  # examples per family and split re-solved below

# ---------------------------------------------------------------------------- independent solvers


def _ints(text: str) -> list[int]:
    return [int(t) for t in re.findall(r"\d+", text)]


def solve_arithmetic(q: str) -> str:
    patterns = [
        (r"(\w+) has (\d+) \w+\. \1 buys (\d+) more and then gives (\d+) to \w+\.",
         lambda a, b, c: a + b - c),
        (r"has (\d+) bags with (\d+) \w+ in each bag\. \w+ loses (\d+) \w+\.",
         lambda n, k, c: n * k - c),
        (r"has (\d+) \w+ and \w+ has (\d+)\. .* equally among (\d+) friends\.",
         lambda a, b, k: (a + b) // k if (a + b) % k == 0 else None),
        (r"costs (\d+) dollars\. \w+ buys (\d+) \w+ and pays with a (\d+) dollar bill\.",
         lambda p, n, bill: bill - p * n),
        (r"saves (\d+) dollars each week for (\d+) weeks and then spends (\d+) dollars\.",
         lambda a, w, s: a * w - s),
        (r"has (\d+) \w+\. \w+ has (\d+) more than \w+\. \w+ has twice as many as",
         lambda a, b: 2 * (a + b)),
        (r"collects (\d+) \w+ in the morning and (\d+) in the afternoon\. \w+ collects (\d+) fewer",
         lambda a, b, c: 2 * (a + b) - c),
    ]  # fmt: skip
    for pattern, solve in patterns:
        match = re.search(pattern, q)
        if match:
            numbers = [int(g) for g in match.groups() if g.isdigit()]
            return str(solve(*numbers))
    raise AssertionError(f"unrecognised arithmetic problem: {q}")


def solve_sorting(ex: dict) -> str:
    items = ex["items"].split(", ")
    assert ex["question"] == f"Sort {ex['items']} {ex['order']}."
    descending = {
        "from smallest to largest": False,
        "from largest to smallest": True,
        "in alphabetical order": False,
        "in reverse alphabetical order": True,
    }[ex["order"]]
    numeric = ex["order"].startswith("from")
    assert numeric == all(i.isdigit() for i in items)
    key = int if numeric else str
    return ", ".join(sorted(items, key=key, reverse=descending))


def solve_counting(q: str) -> str:
    if m := re.fullmatch(r'How many times does the letter "(\w)" appear in "(\w+)"\?', q):
        return str(m[2].count(m[1]))
    if m := re.fullmatch(r'How many times does "(\w+)" appear in the list ([\w, ]+)\?', q):
        return str(m[2].split(", ").count(m[1]))
    if m := re.fullmatch(r"How many (animals|fruits) are in the list ([\w, ]+)\?", q):
        members = set(ANIMALS if m[1] == "animals" else FRUITS)
        return str(sum(item in members for item in m[2].split(", ")))
    raise AssertionError(f"unrecognised counting question: {q}")


_MONTH_NUMBER = {datetime.date(2000, m, 1).strftime("%B"): m for m in range(1, 13)}


def solve_comparison(q: str) -> str:
    if m := re.fullmatch(r"Which number is (larger|smaller), (\d+) or (\d+)\?", q):
        x, y = int(m[2]), int(m[3])
        assert x != y
        return str(max(x, y) if m[1] == "larger" else min(x, y))
    if m := re.fullmatch(r'Which word is (longer|shorter), "(\w+)" or "(\w+)"\?', q):
        x, y = m[2], m[3]
        assert len(x) != len(y)
        longer = x if len(x) > len(y) else y
        return longer if m[1] == "longer" else (y if longer == x else x)
    if m := re.fullmatch(
        r'Which word comes (first|last) in alphabetical order, "(\w+)" or "(\w+)"\?', q
    ):
        x, y = m[2], m[3]
        assert x != y
        return sorted([x, y])[0 if m[1] == "first" else 1]
    if m := re.fullmatch(r"Which month comes (earlier|later) in the year, (\w+) or (\w+)\?", q):
        x, y = m[2], m[3]
        ordered = sorted([x, y], key=_MONTH_NUMBER.__getitem__)
        return ordered[0 if m[1] == "earlier" else 1]
    raise AssertionError(f"unrecognised comparison: {q}")


def solve_string_transform(q: str) -> str:
    if m := re.fullmatch(r'What is "(\w+)" spelled backwards\?', q):
        return "".join(reversed(m[1]))
    if m := re.fullmatch(r'Write "([a-z ]+)" in capital letters\.', q):
        return m[1].upper()
    if m := re.fullmatch(r'What are the (first|last) letters of the words in "([a-z ]+)"\?', q):
        index = 0 if m[1] == "first" else -1
        return "".join(word[index] for word in m[2].split())
    raise AssertionError(f"unrecognised string task: {q}")


# How many of the small unit make one of the large unit, written out independently.
_FACTORS = {
    ("meters", "centimeters"): 100, ("centimeters", "millimeters"): 10,
    ("kilometers", "meters"): 1000, ("kilograms", "grams"): 1000,
    ("tonnes", "kilograms"): 1000, ("liters", "milliliters"): 1000,
    ("hours", "minutes"): 60, ("minutes", "seconds"): 60, ("days", "hours"): 24,
    ("weeks", "days"): 7, ("years", "months"): 12, ("decades", "years"): 10,
    ("centuries", "years"): 100, ("feet", "inches"): 12, ("yards", "feet"): 3,
    ("gallons", "quarts"): 4, ("pounds", "ounces"): 16,
}  # fmt: skip
_PLURAL_OF = {"inch": "inches", "foot": "feet", "year": "years"}


def _plural_unit(word: str) -> str:
    return _PLURAL_OF.get(word, word if word.endswith("s") else word + "s")


def solve_unit_conversion(q: str) -> str:
    m = re.fullmatch(r"How many (\w+) are in (\d+) (\w+)(?: and (\d+) (\w+))?\?", q)
    assert m, q
    asked, amount, unit = m[1], int(m[2]), m[3]
    if (unit, asked) in _FACTORS:  # large to small, maybe plus a remainder in the small unit
        total = amount * _FACTORS[unit, asked]
        if m[4]:
            assert m[5] == asked or _plural_unit(m[5]) == asked
            assert int(m[4]) < _FACTORS[unit, asked]
            total += int(m[4])
        return str(total)
    factor = _FACTORS[asked, unit]
    assert amount % factor == 0 and not m[4]
    return str(amount // factor)


_MONDAY = datetime.date(2024, 1, 1)  # a Monday


def solve_date_arithmetic(q: str) -> str:
    if m := re.fullmatch(r"Today is (\w+)\. What day of the week will it be in (\d+) days\?", q):
        start = next(_MONDAY + datetime.timedelta(d) for d in range(7)
                     if (_MONDAY + datetime.timedelta(d)).strftime("%A") == m[1])  # fmt: skip
        return (start + datetime.timedelta(days=int(m[2]))).strftime("%A")
    if m := re.fullmatch(r"Today is (\w+)\. What day of the week was it (\d+) days ago\?", q):
        start = next(_MONDAY + datetime.timedelta(d) for d in range(7)
                     if (_MONDAY + datetime.timedelta(d)).strftime("%A") == m[1])  # fmt: skip
        return (start - datetime.timedelta(days=int(m[2]))).strftime("%A")
    if m := re.fullmatch(r"What date is (\d+) days after (\w+ \d+, \d+)\?", q):
        day = datetime.datetime.strptime(m[2], "%B %d, %Y").date()
        end = day + datetime.timedelta(days=int(m[1]))
        return f"{end.strftime('%B')} {end.day}, {end.year}"
    raise AssertionError(f"unrecognised date question: {q}")


def _statement(text: str):
    """A statement as a test on (kinds present, the individual's kind); kinds are sets."""
    if m := re.fullmatch(r"[Aa]ll (\w+)s are (\w+)s", text):
        a, b = m[1], m[2]
        return lambda present, x: all(b in t for t in present if a in t)
    if m := re.fullmatch(r"[Nn]o (\w+)s are (\w+)s", text):
        a, b = m[1], m[2]
        return lambda present, x: not any(a in t and b in t for t in present)
    if m := re.fullmatch(r"[A-Z]\w+ is not a (\w+)", text):
        a = m[1]
        return lambda present, x: a not in x
    if m := re.fullmatch(r"[A-Z]\w+ is a (\w+)", text):
        a = m[1]
        return lambda present, x: a in x
    raise AssertionError(f"unrecognised statement: {text}")


def solve_logic(q: str) -> str:
    """Brute force: the conclusion follows iff it holds in every model of the premises."""
    m = re.fullmatch(r"(.+)\. (.+)\. Does it follow that (.+)\?", q)
    assert m, q
    pairs = re.findall(r"(?:[Aa]ll|[Nn]o) (\w+)s are (\w+)s", q)
    kinds = sorted({k for pair in pairs for k in pair} | set(re.findall(r"is (?:not )?a (\w+)", q)))
    assert len(kinds) in (2, 3), (q, kinds)
    premises = [_statement(m[1]), _statement(m[2])]
    conclusion = _statement(m[3])
    types = [frozenset(k for k, bit in zip(kinds, bits, strict=True) if bit)
             for bits in itertools.product([0, 1], repeat=len(kinds))]  # fmt: skip
    for mask in itertools.product([0, 1], repeat=len(types)):
        present = [t for t, keep in zip(types, mask, strict=True) if keep]
        for x in present:  # the named individual exists, so its kind is present
            if all(p(present, x) for p in premises) and not conclusion(present, x):
                return "no"
    return "yes"


def solve_list_lookup(q: str) -> str:
    if m := re.fullmatch(r"What is the (\d+)(?:st|nd|rd|th) item in the list ([\w, ]+)\?", q):
        return m[2].split(", ")[int(m[1]) - 1]
    if m := re.fullmatch(r"Which item comes right (after|before) (\w+) in the list ([\w, ]+)\?", q):
        items = m[3].split(", ")
        i = items.index(m[2])
        j = i + 1 if m[1] == "after" else i - 1
        assert 0 <= j < len(items)
        return items[j]
    raise AssertionError(f"unrecognised list question: {q}")


def solve_parity(q: str) -> str:
    if m := re.fullmatch(r"Is (\d+) odd or even\?", q):
        value = int(m[1])
    elif m := re.fullmatch(r"Is the sum of (\d+) and (\d+) odd or even\?", q):
        value = int(m[1]) + int(m[2])
    elif m := re.fullmatch(r"Is the product of (\d+) and (\d+) odd or even\?", q):
        value = int(m[1]) * int(m[2])
    else:
        raise AssertionError(f"unrecognised parity question: {q}")
    return "odd" if value & 1 else "even"


def solve_min_max(q: str) -> str:
    if m := re.fullmatch(r"What is the (largest|smallest) number in the list ([\d, ]+)\?", q):
        values = _ints(m[2])
        return str(max(values) if m[1] == "largest" else min(values))
    if m := re.fullmatch(r"Which word in the list ([a-z, ]+) is the (longest|shortest)\?", q):
        words = m[1].split(", ")
        ranked = sorted(words, key=len, reverse=m[2] == "longest")
        assert len(ranked[0]) != len(ranked[1]), "tie"
        return ranked[0]
    raise AssertionError(f"unrecognised min/max question: {q}")


def solve_sequence(q: str) -> str:
    m = re.fullmatch(r"What number comes next in the sequence ([\d, ]+)\?", q)
    assert m, q
    terms = _ints(m[1])
    gaps = {b - a for a, b in itertools.pairwise(terms)}
    if len(gaps) == 1:
        return str(terms[-1] + gaps.pop())
    ratios = {b / a for a, b in itertools.pairwise(terms)}
    assert len(ratios) == 1, f"no single rule: {terms}"
    return str(int(terms[-1] * ratios.pop()))


def solve_clock(q: str) -> str:
    m = re.fullmatch(
        r"It is (\d\d):(\d\d) now\. What time will it be in (\d+) hours?(?: and (\d+) minutes)?\?",
        q,
    )
    assert m, q
    start = datetime.datetime(2024, 1, 1, int(m[1]), int(m[2]))
    end = start + datetime.timedelta(hours=int(m[3]), minutes=int(m[4] or 0))
    return end.strftime("%H:%M")


SOLVERS = {
    "arithmetic": lambda ex: solve_arithmetic(ex["question"]),
    "sorting": solve_sorting,
    "counting": lambda ex: solve_counting(ex["question"]),
    "comparison": lambda ex: solve_comparison(ex["question"]),
    "string_transform": lambda ex: solve_string_transform(ex["question"]),
    "unit_conversion": lambda ex: solve_unit_conversion(ex["question"]),
    "date_arithmetic": lambda ex: solve_date_arithmetic(ex["question"]),
    "logic": lambda ex: solve_logic(ex["question"]),
    "list_lookup": lambda ex: solve_list_lookup(ex["question"]),
    "parity": lambda ex: solve_parity(ex["question"]),
    "min_max": lambda ex: solve_min_max(ex["question"]),
    "sequence": lambda ex: solve_sequence(ex["question"]),
    "clock": lambda ex: solve_clock(ex["question"]),
}

# ---------------------------------------------------------------------------- generator tests


@pytest.fixture(scope="module")
def samples() -> dict[tuple[str, str], list[dict]]:
    """N_CHECK examples of every family and split, seed 0 (generated once)."""
    return {
        (name, split): list(fn(split, N_CHECK, 0))
        for name, fn in FAMILIES.items()
        for split in SPLITS
    }


def test_every_family_has_a_solver() -> None:
    assert set(SOLVERS) == set(FAMILIES)
    assert len(FAMILIES) >= 12


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_deterministic(family: str) -> None:
    fn = FAMILIES[family]
    first = list(fn("train", 60, 3))
    assert first == list(fn("train", 60, 3))
    assert first != list(fn("train", 60, 4))
    assert list(fn("test", 20, 3)) != list(fn("validation", 20, 3))


def test_same_in_another_process() -> None:
    """Seeding never depends on the interpreter's hash randomisation or state."""
    code = ("import json, sys; from flan_jax.data.demo.generators import FAMILIES; "
            "json.dump({f: list(fn('train', 20, 0)) for f, fn in sorted(FAMILIES.items())}, "
            "sys.stdout)")
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env=env).stdout
    here = {f: list(fn("train", 20, 0)) for f, fn in sorted(FAMILIES.items())}
    assert json.loads(out) == here


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_exact_counts(family: str) -> None:
    fn = FAMILIES[family]
    for split, n in [("train", 37), ("validation", 11), ("test", 1), ("test", 0)]:
        assert len(list(fn(split, n, 0))) == n


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_unknown_split_fails_early(family: str) -> None:
    with pytest.raises(ValueError, match="train, validation, test"):
        FAMILIES[family]("dev", 3, 0)  # raises at the call, before any iteration
    with pytest.raises(ValueError):
        FAMILIES[family]("train", -1, 0)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_splits_disjoint(family: str, samples) -> None:
    fn = FAMILIES[family]
    questions = {}
    for split in SPLITS:
        other_seed = [ex["question"] for ex in fn(split, 100, 7)]
        seen = [ex["question"] for ex in samples[family, split]] + other_seed
        assert len(set(seen[:N_CHECK])) == N_CHECK, "repeats within a split"
        questions[split] = set(seen)
    for a, b in itertools.combinations(SPLITS, 2):
        assert not questions[a] & questions[b], f"{a} and {b} share instances"


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_fields_and_options(family: str, samples) -> None:
    keys = None
    for split in SPLITS:
        for ex in samples[family, split]:
            keys = keys or set(ex)
            assert set(ex) == keys, "every example has the same fields"
            assert {"question", "answer"} <= keys
            for field, value in ex.items():
                if field == "options":
                    assert isinstance(value, list) and all(isinstance(v, str) for v in value)
                else:
                    assert isinstance(value, str) and value.strip() == value and value, field
            assert len(ex["question"]) <= 200 and len(ex["answer"]) <= 60
            if "options" in ex:
                assert ex["options"].count(ex["answer"]) == 1
                assert len(set(ex["options"])) == len(ex["options"]) >= 2
            if "rationale" in ex:
                assert "the answer is" not in ex["rationale"].lower()
                assert ex["rationale"].endswith(".") and len(ex["rationale"]) <= 300
    # the gold answer is not always in the same slot
    if "options" in keys:
        slots = {ex["options"].index(ex["answer"]) for ex in samples[family, "train"]}
        assert len(slots) >= 2


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_answers_are_correct(family: str, samples) -> None:
    solve = SOLVERS[family]
    for split in SPLITS:
        for ex in samples[family, split]:
            assert solve(ex) == ex["answer"], ex


_EQUATION = re.compile(r"(\d+) ([-+*/]) (\d+) = (\d+)")
_OPS = {"+": int.__add__, "-": int.__sub__, "*": int.__mul__, "/": int.__floordiv__}


WITH_RATIONALE = sorted(f for f, fn in FAMILIES.items() if "rationale" in next(fn("train", 1, 0)))


def test_reasoning_families_have_rationales() -> None:
    assert REASONING <= set(WITH_RATIONALE)


@pytest.mark.parametrize("family", WITH_RATIONALE)
def test_rationale_steps_are_true(family: str, samples) -> None:
    """Every 'a op b = c' written in a rationale holds, and the answer is reached."""
    for ex in samples[family, "train"]:
        text = ex["rationale"]
        for a, op, b, c in _EQUATION.findall(text):
            a, b, c = int(a), int(b), int(c)
            assert _OPS[op](a, b) == c and (op != "/" or a % b == 0), (f"{a} {op} {b} = {c}", ex)
        if family == "logic":  # yes/no: the reasoning ends in a claim, not the word
            verdict = "follows." if ex["answer"] == "yes" else "does not follow."
            assert text.endswith(f"The conclusion {verdict}"), ex
        else:
            assert ex["answer"] in text, ex
        if family == "counting":
            tallies = re.findall(r"\((\d+)\)", text)
            assert (tallies[-1] if tallies else "0") == ex["answer"], ex
        if family in {"arithmetic", "unit_conversion", "sequence"}:
            assert _EQUATION.findall(text)[-1][3] == ex["answer"], ex


@pytest.mark.parametrize(
    "solve,question,answer",
    [
        (solve_logic, "All wugs are feps. All feps are toves. Does it follow that all wugs are toves?", "yes"),
        (solve_logic, "All wugs are feps. All wugs are toves. Does it follow that all feps are toves?", "no"),
        (solve_logic, "All wugs are feps. Ann is a fep. Does it follow that Ann is a wug?", "no"),
        (solve_logic, "All wugs are feps. Ann is not a fep. Does it follow that Ann is not a wug?", "yes"),
        (solve_logic, "No wugs are feps. Ann is not a wug. Does it follow that Ann is a fep?", "no"),
        (solve_date_arithmetic, "What date is 12 days after March 25, 2021?", "April 6, 2021"),
        (solve_date_arithmetic, "What date is 3 days after December 30, 2023?", "January 2, 2024"),
        (solve_date_arithmetic, "What date is 2 days after February 28, 2024?", "March 1, 2024"),
        (solve_date_arithmetic, "Today is Monday. What day of the week will it be in 10 days?", "Thursday"),
        (solve_date_arithmetic, "Today is Monday. What day of the week was it 2 days ago?", "Saturday"),
        (solve_clock, "It is 23:50 now. What time will it be in 1 hour and 20 minutes?", "01:10"),
        (solve_sequence, "What number comes next in the sequence 3, 6, 12, 24?", "48"),
        (solve_sequence, "What number comes next in the sequence 40, 33, 26, 19?", "12"),
        (solve_unit_conversion, "How many inches are in 3 feet and 1 inch?", "37"),
        (solve_unit_conversion, "How many feet are in 19 yards and 2 feet?", "59"),
        (solve_unit_conversion, "How many hours are in 120 minutes?", "2"),
        (solve_counting, 'How many times does the letter "s" appear in "glass"?', "2"),
        (solve_arithmetic, "Ann has 5 pens. Ann buys 3 more and then gives 2 to Ben. "
                           "How many pens does Ann have now?", "6"),
    ],
)  # fmt: skip
def test_solvers_on_known_cases(solve, question: str, answer: str) -> None:
    """The reference solvers themselves are right on hand-checked cases."""
    assert solve(question) == answer


def test_logic_is_balanced(samples) -> None:
    answers = [ex["answer"] for ex in samples["logic", "train"]]
    assert 0.35 < answers.count("yes") / len(answers) < 0.65


# ---------------------------------------------------------------------------- YAML files

TEMPLATE_STYLES = ("opt", "noopt", "cot", "inv")
PATTERN_KEYS = {"input_prefix", "target_prefix", "x_y_sep", "example_sep"}


def _load_yaml_tasks() -> list[tuple[str, dict]]:
    files = sorted(TASKS_DIR.glob("*.yaml"))
    assert files, f"no task files in {TASKS_DIR}"
    out = []
    for path in files:
        doc = yaml.safe_load(path.read_text())
        assert set(doc) <= {"defaults", "tasks"}, path
        defaults = doc.get("defaults") or {}
        for task in doc["tasks"]:
            out.append((path.stem, {**defaults, **task}))
    return out


YAML_TASKS = _load_yaml_tasks()


def _resolve(spec: str):
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


def _placeholders(template: str) -> list[str]:
    return [field for _, field, _, _ in string.Formatter().parse(template) if field is not None]


@pytest.mark.parametrize("stem,task", YAML_TASKS, ids=[stem for stem, _ in YAML_TASKS])
def test_yaml_task(stem: str, task: dict) -> None:
    assert re.fullmatch(r"[a-z0-9_]+", task["name"]) and task["name"] == f"demo_{stem}"
    assert task["collection"] in {"demo", "demo_heldout"}
    assert task["description"].strip()
    # A chain-of-thought output is scored on its final answer (after "So the answer is").
    assert task["metrics"] == (["answer_accuracy"] if task["templates"].get("cot")
                               else ["accuracy"])

    fn = _resolve(task["source"]["generated"])
    assert fn is FAMILIES[stem]
    signature = inspect.signature(fn, eval_str=True)
    assert [(p.name, p.annotation) for p in signature.parameters.values()] == [
        ("split", str), ("num_examples", int), ("seed", int)
    ]  # fmt: skip
    splits = task["source"]["splits"]
    assert set(splits) == set(SPLITS) and all(isinstance(n, int) and n > 0 for n in splits.values())

    fields = task["parser"]["fields"]
    assert len(set(fields)) == len(fields)
    examples = list(fn("validation", 25, 0))
    assert all(set(ex) == set(fields) for ex in examples)

    templates = task["templates"]
    assert set(templates) <= set(TEMPLATE_STYLES)
    counts = {style: len(templates.get(style) or []) for style in TEMPLATE_STYLES}
    if "options" in fields:
        assert counts["opt"] >= 5
    else:
        assert counts["opt"] == 0
    assert counts["noopt"] >= 5
    if "rationale" in fields or stem in REASONING:
        assert "rationale" in fields and counts["cot"] >= 5
    else:
        assert counts["cot"] == 0
    assert counts["inv"] == 0 or counts["inv"] >= 3

    for style in TEMPLATE_STYLES:
        entries = templates.get(style) or []
        assert len({t["input"] for t in entries}) == len(entries), f"repeated {style} input"
        held_out = [t for t in entries if t.get("held_out")]
        if entries and task["collection"] == "demo" and style != "inv":
            # One phrasing per group is kept from training, to score unseen instructions.
            assert len(held_out) == 1, (style, held_out)
        else:
            assert not held_out, style  # held-out families are unseen as a whole
        for template in entries:
            assert set(template) - {"held_out"} == {"input", "target"}
            assert template.get("held_out", True) is True
            used = _placeholders(template["input"]) + _placeholders(template["target"])
            assert all(f in fields or f == "options_" for f in used), (style, template)
            assert ("options_" in _placeholders(template["input"])) == (style == "opt"), template
            assert "options_" not in _placeholders(template["target"])
            assert "OPTIONS:" not in template["input"].upper()
            if style in ("opt", "noopt"):
                assert template["target"] == "{answer}"
            elif style == "cot":
                assert template["target"].startswith("{rationale} ")
                assert template["target"].endswith("the answer is {answer}.")
                assert "rationale" not in _placeholders(template["input"])
            else:
                assert "answer" not in _placeholders(template["target"])
            for ex in examples[:3]:  # renders without errors
                template["input"].format(**ex, options_="(options)")
                template["target"].format(**ex)

    few_shot = task["few_shot"]
    assert isinstance(few_shot["k"], int) and few_shot["k"] >= 1
    patterns = few_shot["patterns"]
    assert len(patterns) >= 3
    assert len({tuple(sorted(p.items())) for p in patterns}) == len(patterns)
    for pattern in patterns:
        assert set(pattern) == PATTERN_KEYS and all(isinstance(v, str) for v in pattern.values())


def test_yaml_collection_shape() -> None:
    names = [task["name"] for _, task in YAML_TASKS]
    assert len(names) == len(set(names))
    assert {stem for stem, _ in YAML_TASKS} == set(FAMILIES), "one YAML file per family"
    by_collection: dict[str, set[str]] = {}
    for stem, task in YAML_TASKS:
        by_collection.setdefault(task["collection"], set()).add(stem)
    assert len(by_collection["demo"]) >= 9
    assert 3 <= len(by_collection["demo_heldout"]) <= 4
    assert REASONING <= by_collection["demo"]
    with_options = [t for _, t in YAML_TASKS if "options" in t["parser"]["fields"]]
    with_inv = [t for _, t in YAML_TASKS if t["templates"].get("inv")]
    assert len(with_options) >= 8 and len(with_inv) >= 4


def test_declared_sizes_can_be_generated() -> None:
    for stem, task in YAML_TASKS:
        fn = _resolve(task["source"]["generated"])
        for split, n in task["source"]["splits"].items():
            assert sum(1 for _ in fn(split, n, 0)) == n, (stem, split)
