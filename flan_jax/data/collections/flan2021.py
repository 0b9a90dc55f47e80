"""Parsers of the Flan 2021 (Muffin) NLU and classification tasks.

Each function maps one raw TFDS example (plain Python values) to the fields its
task's templates use; the declarative `rename`/`options`/`label` parser covers the
rest of the collection. A label outside the option range (the -1 of an unlabeled
split, or synthetic test data) is wrapped into range rather than dropping the
example, because templating never drops examples; only labeled splits are mapped.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from flan_jax.data.sources import Example, raw_field
from flan_jax.errors import DataFormatError

PLACEHOLDER = "@placeholder"
BLANK = "_____"
STSB_OPTIONS = ("0", "1", "2", "3", "4", "5")
NLI3_OPTIONS = ("yes", "it is not possible to tell", "no")


def _pick(options: Sequence[Any], label: Any, field: str = "label") -> Any:
    if not options:
        raise DataFormatError(f"no answer options to index with {field!r}")
    if isinstance(label, bool) or not isinstance(label, int):
        raise DataFormatError(f"field {field!r} should be an integer label, got {label!r}")
    if not 0 <= label < len(options):
        raise DataFormatError(f"label {label} in {field!r} is outside the {len(options)} options "
                              "(is this an unlabelled split?)")
    return options[label]


def stsb(raw: Example) -> Example:
    """GLUE STS-B: the 0-5 similarity rounded to the nearest whole point, as an option."""
    score = float(raw_field(raw, "label"))
    answer = str(min(5, max(0, int(score + 0.5))))
    return {"sentence1": raw_field(raw, "sentence1"), "sentence2": raw_field(raw, "sentence2"),
            "options": list(STSB_OPTIONS), "answer": answer, "score": f"{score:.1f}"}


def copa(raw: Example) -> Example:
    """SuperGLUE COPA: the premise and its asked relation ("cause" or "effect"), worded
    as a question and as a connective for the two-choice templates."""
    relation = raw_field(raw, "question")
    if relation not in ("cause", "effect"):
        raise DataFormatError(f"COPA question should be 'cause' or 'effect', got {relation!r}")
    premise = str(raw_field(raw, "premise")).strip()
    options = [str(raw_field(raw, "choice1")), str(raw_field(raw, "choice2"))]
    is_cause = relation == "cause"
    return {
        "premise": premise,
        "premise_clause": premise.rstrip(".!?"),
        "relation": relation,
        "question": "What was the cause of this?" if is_cause else "What happened as a result?",
        "connector": "because" if is_cause else "so",
        "options": options,
        "answer": _pick(options, raw_field(raw, "label")),
    }


def _clean_highlights(passage: str) -> str:
    """ReCoRD passages end with '@highlight' lines; show them as a bulleted list."""
    body, *highlights = passage.split("@highlight")
    bullets = [f"- {h.strip()}" for h in highlights if h.strip()]
    return "\n\n".join(part for part in (body.strip(), "\n".join(bullets)) if part)


def record(raw: Example) -> Example:
    """SuperGLUE ReCoRD: the passage, the query with a blank for @placeholder, the entity
    options, the (first) answer and the query with that answer filled in."""
    passage = _clean_highlights(str(raw_field(raw, "passage")))
    query = str(raw_field(raw, "query"))
    entities = [str(e) for e in raw_field(raw, "entities")]
    answers = [str(a) for a in raw_field(raw, "answers")]
    answer = answers[0] if answers else (entities[0] if entities else "")
    options = list(dict.fromkeys(entities))
    if answer not in options:
        options.append(answer)
    filled = query.replace(PLACEHOLDER, answer) if PLACEHOLDER in query else f"{query} {answer}"
    blanked = query.replace(PLACEHOLDER, BLANK) if PLACEHOLDER in query else f"{query} {BLANK}"
    return {"passage": passage, "query": blanked, "filled_query": filled,
            "options": options, "answer": answer}


_MULTIRC_SENT = re.compile(r"<b>\s*Sent\s*\d+:\s*</b>", re.IGNORECASE)
_TAG = re.compile(r"<br\s*/?>|</?b>", re.IGNORECASE)


def multirc(raw: Example) -> Example:
    """SuperGLUE MultiRC: paragraph (sentence markup removed), question, one candidate
    answer, and whether that answer is correct (options no / yes)."""
    paragraph = _TAG.sub(" ", _MULTIRC_SENT.sub(" ", str(raw_field(raw, "paragraph"))))
    options = ["no", "yes"]
    return {"paragraph": " ".join(paragraph.split()), "question": raw_field(raw, "question"),
            "response": raw_field(raw, "answer"), "options": options,
            "answer": _pick(options, raw_field(raw, "label"))}


def snli(raw: Example) -> Example:
    """SNLI: premise/hypothesis with entailment/neutral/contradiction as yes / it is not
    possible to tell / no. Pairs without a gold label (-1) count as not possible to tell."""
    label = raw_field(raw, "label")
    options = list(NLI3_OPTIONS)
    answer = options[1] if label == -1 else _pick(options, label)
    return {"premise": raw_field(raw, "premise"), "hypothesis": raw_field(raw, "hypothesis"),
            "options": options, "answer": answer}


def hellaswag(raw: Example) -> Example:
    """HellaSwag: context and its four candidate endings."""
    options = [str(e).strip() for e in raw_field(raw, "endings")][:4]
    return {"context": str(raw_field(raw, "context")).strip(),
            "activity": str(raw_field(raw, "activity_label")).strip(),
            "options": options, "answer": _pick(options, raw_field(raw, "label"))}


def story_cloze(raw: Example) -> Example:
    """Story Cloze 2016: a four-sentence story and two endings; the label is 1-based."""
    options = [str(e).strip() for e in raw_field(raw, "endings")][:2]
    label = raw_field(raw, "label")
    if label not in (1, 2):
        raise DataFormatError(f"Story Cloze label should be 1 or 2, got {label!r}")
    return {"context": str(raw_field(raw, "context")).strip(), "options": options,
            "answer": options[label - 1]}


def sentiment140(raw: Example) -> Example:
    """Sentiment140: polarity 0 negative, 4 positive; the few 2s (neutral, test split only)
    get a three-way option list with "neutral"."""
    polarity = raw_field(raw, "polarity")
    if polarity not in (0, 2, 4):
        raise DataFormatError(f"Sentiment140 polarity should be 0, 2 or 4, got {polarity!r}")
    if polarity == 2:
        options, answer = ["negative", "neutral", "positive"], "neutral"
    else:
        options = ["negative", "positive"]
        answer = options[0] if polarity < 2 else options[1]
    return {"text": raw_field(raw, "text"), "options": options, "answer": answer}


def winogrande(raw: Example) -> Example:
    """WinoGrande: the sentence with its blank shown as "_", the two fillers and the
    sentence completed with the right one."""
    sentence = str(raw_field(raw, "sentence"))
    options = [str(raw_field(raw, "option1")), str(raw_field(raw, "option2"))]
    answer = _pick(options, raw_field(raw, "label"))
    filled = sentence.replace("_", answer, 1) if "_" in sentence else f"{sentence} {answer}"
    return {"sentence": sentence, "options": options, "answer": answer, "filled": filled}


def definite_pronoun_resolution(raw: Example) -> Example:
    """Definite pronoun resolution: sentence, pronoun and the two candidate referents."""
    options = [str(c) for c in raw_field(raw, "candidates")]
    return {"sentence": raw_field(raw, "sentence"), "pronoun": raw_field(raw, "pronoun"),
            "options": options, "answer": _pick(options, raw_field(raw, "label"))}


def piqa(raw: Example) -> Example:
    """PIQA: a goal and the two candidate solutions."""
    options = [str(raw_field(raw, "sol1")), str(raw_field(raw, "sol2"))]
    return {"goal": raw_field(raw, "goal"), "options": options,
            "answer": _pick(options, raw_field(raw, "label"))}
