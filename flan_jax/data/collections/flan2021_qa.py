"""Parsers of the Flan 2021 (Muffin) question answering, reading comprehension,
commonsense-choice and summarization tasks (tasks/flan2021/qa_*.yaml,
completion_*.yaml and summarization_*.yaml).

Each function takes one raw TFDS example as `flan_jax.data.sources.to_python` gives it
(bytes decoded to str; a `Sequence` of dicts as a dict of lists) and returns the
fields its YAML task declares. The simple datasets are parsed declaratively in
the YAML; these are the ones YAML cannot express.
"""

from __future__ import annotations

import re
from typing import Any

from flan_jax.data.sources import Example, raw_field
from flan_jax.errors import DataFormatError

UNANSWERABLE = "unanswerable"
QUAC_NO_ANSWER = "CANNOTANSWER"
MULTI_NEWS_SEPARATOR = "|||||"
LETTERS = "ABCDEFGH"


def _text(raw: Example, key: str) -> str:
    value = raw_field(raw, key)
    if not isinstance(value, str):
        raise DataFormatError(f"field {key!r} should be text, got {type(value).__name__}")
    return value.strip()


def _list(value: Any, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise DataFormatError(f"{what} should be a list, got {type(value).__name__}")
    return value


# --- Closed-book and extractive QA -------------------------------------------------------

def trivia_qa(raw: Example) -> Example:
    """trivia_qa/rc: the answer's canonical `value` (else its first alias); `aliases` lists
    every accepted spelling, separated by ' | '."""
    answer = raw.get("answer")
    if not isinstance(answer, dict):
        raise DataFormatError("trivia_qa example has no 'answer' dict")
    aliases = [a.strip() for a in _list(answer.get("aliases", []), "answer.aliases") if a.strip()]
    value = str(answer.get("value", "")).strip() or (aliases[0] if aliases else "")
    if not value:
        raise DataFormatError("trivia_qa example has an empty answer (the test split has none)")
    if value not in aliases:
        aliases.insert(0, value)
    return {"question": _text(raw, "question"), "answer": value, "aliases": " | ".join(aliases)}


def squad_v2(raw: Example) -> Example:
    """squad/v2.0: the first gold answer, or 'unanswerable' for an impossible question."""
    answers = _list(raw.get("answers", {}).get("text"), "answers.text")
    impossible = bool(raw.get("is_impossible")) or not answers
    return {"title": _text(raw, "title"), "context": _text(raw, "context"),
            "question": _text(raw, "question"),
            "answer": UNANSWERABLE if impossible else answers[0]}


def drop(raw: Example) -> Example:
    """drop: the answer (a number, a date 'Y-M-D' or the first span, as TFDS gives it); when
    it is empty, the first non-empty validated answer."""
    answer = _text(raw, "answer")
    if not answer:
        validated = [str(a).strip() for a in _list(raw.get("validated_answers", []),
                                                    "validated_answers")]
        answer = next((a for a in validated if a), "")
    if not answer:
        raise DataFormatError(f"drop question {raw.get('query_id', '')!r} has no answer")
    return {"passage": _text(raw, "passage"), "question": _text(raw, "question"),
            "answer": answer}


# --- Conversational QA ---------------------------------------------------------------------

def quac(raw: Example) -> Example:
    """quac: one question about a Wikipedia section. TFDS stores each question as its own
    example (no dialog history). The context loses QuAC's trailing 'CANNOTANSWER' marker and
    an unanswerable question gets the answer 'unanswerable'."""
    context = _text(raw, "context")
    if context.endswith(QUAC_NO_ANSWER):
        context = context[: -len(QUAC_NO_ANSWER)].rstrip()
    orig = raw.get("orig_answer")
    if not isinstance(orig, dict):
        raise DataFormatError("quac example has no 'orig_answer' dict")
    answer = str(orig.get("text", "")).strip()
    if not answer or answer == QUAC_NO_ANSWER:
        answer = UNANSWERABLE
    return {"title": _text(raw, "title"), "section_title": _text(raw, "section_title"),
            "background": _text(raw, "background"), "context": context,
            "question": _text(raw, "question"), "answer": answer}


def coqa(raw: Example) -> Example:
    """coqa: one story with a conversation of questions and free-form answers.

    `questions` / `answers` number the whole conversation ("1. ...", one turn a line);
    `history` holds every turn but the last as "Q: ...\\nA: ..." lines, and
    `last_question` / `last_answer` the final turn."""
    questions = [str(q).strip() for q in _list(raw.get("questions"), "questions")]
    answers = [str(a).strip() for a in _list(raw.get("answers", {}).get("input_text"),
                                              "answers.input_text")]
    if not questions or len(questions) != len(answers):
        raise DataFormatError(f"coqa example has {len(questions)} questions and "
                              f"{len(answers)} answers; expected the same number, at least 1")
    history = "\n".join(f"Q: {q}\nA: {a}" for q, a in zip(questions[:-1], answers[:-1]))
    return {"story": _text(raw, "story"),
            "questions": "\n".join(f"{i}. {q}" for i, q in enumerate(questions, 1)),
            "answers": "\n".join(f"{i}. {a}" for i, a in enumerate(answers, 1)),
            "history": history, "last_question": questions[-1], "last_answer": answers[-1]}


# --- Multiple choice -----------------------------------------------------------------------

def _choose(options: list[str], label: Any, what: str) -> str:
    if not isinstance(label, int) or not 0 <= label < len(options):
        raise DataFormatError(f"{what} {label!r} is not an index into the {len(options)} options")
    return options[label]


def arc(raw: Example) -> Example:
    """ai2_arc: options are `choices.text`; the answer is the choice whose `choices.label`
    equals `answerKey` (both ClassLabels over A-E; TFDS already maps '1'-'5' to A-E)."""
    choices = raw.get("choices")
    if not isinstance(choices, dict):
        raise DataFormatError("ai2_arc example has no 'choices'")
    options = [str(t).strip() for t in _list(choices.get("text"), "choices.text")]
    labels = _list(choices.get("label"), "choices.label")
    key = raw.get("answerKey")
    index = labels.index(key) if key in labels else key  # labels are A, B, C... in order
    return {"question": _text(raw, "question"), "options": options,
            "answer": _choose(options, index, "answerKey")}


def cosmos_qa(raw: Example) -> Example:
    """cosmos_qa: the four candidate answers `answer0`-`answer3`; `label` picks one."""
    options = [_text(raw, f"answer{i}") for i in range(4)]
    return {"context": _text(raw, "context"), "question": _text(raw, "question"),
            "options": options, "answer": _choose(options, raw.get("label"), "label")}


def openbookqa(raw: Example) -> Example:
    """openbookqa: `question.stem` with `choice_A`-`choice_D`; `answerKey` (0-3) picks one.
    `fact` is the science fact from the open book that the question tests."""
    question = raw.get("question")
    if not isinstance(question, dict):
        raise DataFormatError("openbookqa example has no 'question' dict")
    options = [_text(question, f"choice_{c}") for c in "ABCD"]
    return {"question": _text(question, "stem"), "fact": _text(raw, "fact1"),
            "options": options, "answer": _choose(options, raw.get("answerKey"), "answerKey")}


def _option_marks(text: str) -> list[re.Match]:
    """The markers (A), (B), ... in order, each searched after the previous one, so a stray
    parenthesized letter inside an option or out of sequence is not taken for a marker."""
    marks, pos = [], 0
    for letter in LETTERS:
        match = re.compile(rf"\(({letter})\)\s*", re.IGNORECASE).search(text, pos)
        if match is None:
            break
        marks.append(match)
        pos = match.end()
    return marks


def ai2_science(raw: Example) -> Example:
    """unified_qa/ai2_science_*: `input` is 'question \\n (A) opt (B) opt ...' (the line
    break sometimes a literal backslash-n); `output` is the text of the correct option."""
    text = _text(raw, "input").replace("\\n", "\n")
    marks = _option_marks(text)
    if len(marks) < 2:
        raise DataFormatError(f"ai2_science input has no (A) (B) ... options: {text[:120]!r}")
    question = text[: marks[0].start()].strip()
    ends = [m.start() for m in marks[1:]] + [len(text)]
    options = [text[m.end():end].strip() for m, end in zip(marks, ends)]
    answer = _text(raw, "output")
    if answer not in options:
        match = [o for o in options if o.lower() == answer.lower()]
        if not match:
            raise DataFormatError(f"ai2_science answer {answer!r} is not one of the options "
                                  f"{options}")
        answer = match[0]
    return {"question": question, "options": options, "answer": answer}


# --- Language modelling -----------------------------------------------------------------

def lambada(raw: Example) -> Example:
    """lambada: `context` is the passage without its last word, `answer` that word."""
    passage = _text(raw, "passage")
    context, _, answer = passage.rpartition(" ")
    if not context or not answer:
        raise DataFormatError(f"lambada passage has fewer than two words: {passage[:80]!r}")
    return {"context": context.rstrip(), "answer": answer}


# --- Summarization -------------------------------------------------------------------------

def multi_news(raw: Example) -> Example:
    """multi_news: the source articles, separated by '|||||' in the data, each on its own
    paragraph; the articles are also counted in `num_articles`."""
    articles = [a.strip() for a in _text(raw, "document").split(MULTI_NEWS_SEPARATOR)]
    articles = [a for a in articles if a]
    if not articles:
        raise DataFormatError("multi_news example has an empty document")
    return {"document": "\n\n".join(articles), "num_articles": str(len(articles)),
            "summary": _text(raw, "summary")}


def _ordered_values(pairs: Any, what: str) -> list[str]:
    """A TFDS Sequence({key, value}) as values in key order (numeric keys numerically)."""
    if not isinstance(pairs, dict):
        raise DataFormatError(f"{what} should be a sequence of key/value pairs")
    keys = _list(pairs.get("key"), f"{what}.key")
    values = _list(pairs.get("value"), f"{what}.value")
    if len(keys) != len(values):
        raise DataFormatError(f"{what} has {len(keys)} keys but {len(values)} values")

    def order(item):
        key = str(item[0])
        return (0, int(key), "") if key.isdigit() else (1, 0, key)

    return [str(v).strip() for _, v in sorted(zip(keys, values), key=order) if str(v).strip()]


def rotten_tomatoes(raw: Example) -> Example:
    """opinion_abstracts/rotten_tomatoes: the critics' reviews of a movie (one a line)
    and the critic consensus that summarizes them."""
    critics = _ordered_values(raw.get("_critics"), "_critics")
    if not critics:
        raise DataFormatError("rotten_tomatoes example has no critic reviews")
    return {"movie": _text(raw, "_movie_name"), "reviews": "\n".join(f"- {c}" for c in critics),
            "consensus": _text(raw, "_critic_consensus")}


def idebate(raw: Example) -> Example:
    """opinion_abstracts/idebate: the sentences of one argument (in order, as a paragraph),
    the debate it belongs to, and the claim that summarizes the argument."""
    sentences = _ordered_values(raw.get("_argument_sentences"), "_argument_sentences")
    if not sentences:
        raise DataFormatError("idebate example has no argument sentences")
    return {"debate": _text(raw, "_debate_name"), "argument": " ".join(sentences),
            "claim": _text(raw, "_claim")}
