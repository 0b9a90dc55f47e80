"""Answer extraction and normalisation, and the self-consistency majority vote.

A prediction is scored by extracting its answer (after "So the answer is" / "The answer
is" for chain of thought, the whole text for direct answers), normalising it to the
canonical form of its target kind, and comparing with the normalised target.
"""

from __future__ import annotations

import collections
import re
import string
from collections.abc import Sequence

from flan_jax.data.metrics import ANSWER_IS, extract_cot_answer

_CHOICE = re.compile(r"\(([A-Za-z])\)")
_LEADING_LETTER = re.compile(r"^\s*([A-Z])(?:[.):\s]|$)")
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")
_BRACKETS = set(")]}>([{<")


def extract_choice(text: str, num_options: int = 26) -> str:
    """A multiple-choice letter: "(B)", "B", "B.", "B) ...", "the answer is (b)" -> "B"."""
    allowed = string.ascii_uppercase[:num_options]
    for match in _CHOICE.finditer(text):
        letter = match.group(1).upper()
        if letter in allowed:
            return letter
    match = _LEADING_LETTER.match(text.strip())
    if match and match.group(1) in allowed:
        return match.group(1)
    return ""


def normalize_number(text: str, last: bool = False) -> str:
    """The first (or last) number in `text`, thousands commas removed: "1,234." -> "1234",
    "-7" -> "-7", "2.50" -> "2.5"; "" when there is none."""
    found = _NUMBER.findall(text)
    if not found:
        return ""
    raw = (found[-1] if last else found[0]).replace(",", "")
    try:
        value = float(raw)
    except ValueError:
        return ""
    return str(int(value)) if value == int(value) else repr(value)


def _first_word(text: str) -> str:
    words = re.findall(r"[A-Za-z]+", text)
    return words[0].lower() if words else ""


def normalize_bbh(kind: str, text: str) -> str:
    """Canonical form of a BBH answer of the given target kind.

    choice: "(C)"; true_false: "True"/"False"; yes_no: "yes"/"no"; valid_invalid:
    "valid"/"invalid"; number: an integer string; words: lower-case words joined by one
    space; dyck: the bracket characters joined by one space.
    """
    text = text.strip()
    if kind == "choice":
        letter = extract_choice(text)
        return f"({letter})" if letter else ""
    if kind == "true_false":
        word = _first_word(text)
        return {"true": "True", "false": "False"}.get(word, "")
    if kind == "yes_no":
        word = _first_word(text)
        return word if word in ("yes", "no") else ""
    if kind == "valid_invalid":
        word = _first_word(text)
        return word if word in ("valid", "invalid") else ""
    if kind == "number":
        return normalize_number(text)
    if kind == "words":
        words = re.findall(r"[\w'&-]+", text.lower())
        return " ".join(words)
    if kind == "dyck":
        return " ".join(ch for ch in text if ch in _BRACKETS)
    raise ValueError(f"unknown BBH target kind {kind!r}")


def bbh_gold(kind: str, target: str) -> tuple[str, str]:
    """(the normalised gold answer, the form it is scored in) of a BBH target.

    A target not in its task's form is scored as text: three upstream targets are movie
    titles where an option letter belongs (movie_recommendation #163 "Monsters, Inc",
    ruin_names #99 and #144). BBH's own evaluation compares answer strings exactly, so
    there only an answer that spells the title out counts; so it does here, rather than
    marking the example wrong whatever the model says.
    """
    gold = normalize_bbh(kind, target)
    if gold or not target.strip():
        return gold, kind
    return normalize_bbh("words", target), "words"


def bbh_answer(kind: str, prediction: str, cot: bool) -> str:
    """The normalised answer of a BBH prediction (CoT: after "So the answer is")."""
    return normalize_bbh(kind, extract_cot_answer(prediction) if cot else prediction)


def mmlu_answer(prediction: str, cot: bool) -> str:
    """The option letter A-D of an MMLU prediction."""
    return extract_choice(extract_cot_answer(prediction) if cot else prediction, 4)


def mgsm_answer(prediction: str, cot: bool) -> str:
    """The number of an MGSM prediction: after "The answer is" when present, else (CoT)
    the last number of the text or (direct) the first."""
    if ANSWER_IS.search(prediction):
        return normalize_number(extract_cot_answer(prediction))
    return normalize_number(prediction, last=cot)


def majority_vote(answers: Sequence[str]) -> tuple[str, float]:
    """The most frequent non-empty answer (ties: the first to appear) and the agreement
    rate, the fraction of all samples that gave it."""
    counts = collections.Counter(a for a in answers if a)
    if not counts:
        return "", 0.0
    best = max(counts.values())
    winner = next(a for a in answers if a and counts[a] == best)
    return winner, best / len(answers)


def infer_bbh_kind(target: str) -> str:
    """The target form of a BBH target string (for metrics that see no task name)."""
    text = target.strip()
    if re.fullmatch(r"\([A-Z]\)", text):
        return "choice"
    lowered = text.lower()
    for kind, words in (("true_false", ("true", "false")), ("yes_no", ("yes", "no")),
                        ("valid_invalid", ("valid", "invalid"))):
        if lowered in words:
            return kind
    if re.fullmatch(r"-?\d+", text):
        return "number"
    if text and all(ch in _BRACKETS or ch.isspace() for ch in text):
        return "dyck"
    return "words"
