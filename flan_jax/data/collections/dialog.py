"""Parsers of the Dialog collection of Flan 2022: WikiDialog and QReCC (tasks/dialog/*.yaml).

A dialog becomes a list of turns, each spoken by the "User" (who asks) or the
"Assistant" (who answers). The task is to write the next turn: an assistant turn
that replies to a user turn. Fields of one such next turn:

  history          the turns before it, one a line: "User: ..." / "Assistant: ..."
  next_speaker     who speaks it ("Assistant", the label used in `history`)
  next_turn        the turn itself (the target of next-turn templates)
  question         the user turn it replies to (the last line of `history`; the target of
                   input-inversion templates)
  earlier_history  the turns before `question`, or "(start of the conversation)"

WikiDialog examples are whole dialogs, so every assistant turn that follows a user turn
is a candidate: the parser returns one field set per candidate under `_variants`, and
the renderer picks one per example with the example's seeded generator, a function of
(seed, task, example index, epoch) -- the same everywhere, and a new turn each epoch.
QReCC examples are single turns (TFDS already gives every turn of a conversation as its
own example, with the turns before it in `context`), so the next turn is the example's
own answer and nothing is chosen at random.

Each function takes one raw TFDS example as `flan_jax.data.sources.to_python` gives it
(bytes decoded to str, sequences as lists).
"""

from __future__ import annotations

import collections
from typing import Any

from flan_jax.data.schema import VARIANTS
from flan_jax.data.sources import Example, raw_field
from flan_jax.errors import DataFormatError

USER, ASSISTANT = "User", "Assistant"
START = "(start of the conversation)"
# QReCC's reply when the annotators found no answer (an empty `answer` field).
NO_ANSWER = "Sorry, I could not find an answer to that."


def _clean(text: Any, what: str) -> str:
    """A turn's text on one line: surrounding space stripped, inner runs of space collapsed."""
    if not isinstance(text, str):
        raise DataFormatError(f"{what} should be text, got {type(text).__name__}")
    return " ".join(text.split())


def _field(raw: Example, key: str, kind: type = str) -> Any:
    value = raw_field(raw, key)
    if not isinstance(value, kind):
        raise DataFormatError(f"field {key!r} should be a {kind.__name__}, "
                              f"got {type(value).__name__}")
    return value


def render_turns(turns: list[tuple[str, str]]) -> str:
    """Turns as 'Speaker: text' lines."""
    return "\n".join(f"{speaker}: {text}" for speaker, text in turns)


def next_turn_fields(turns: list[tuple[str, str]], t: int) -> Example:
    """The fields of predicting turn `t` (an assistant turn after a user turn)."""
    return {"history": render_turns(turns[:t]), "next_speaker": turns[t][0],
            "next_turn": turns[t][1], "question": turns[t - 1][1],
            "earlier_history": render_turns(turns[: t - 1]) or START}


def _writer(utterances: list[str], authors: list[int], sentences: list[str]) -> int:
    """The author number of WikiDialog's writer, whose turns are sentences of the passage:
    the author of most utterances that are passage sentences, else of the last utterance
    (an inpainted dialog ends with the passage's last sentence)."""
    known = set(sentences)
    matched = collections.Counter(a for u, a in zip(utterances, authors) if u in known)
    return matched.most_common(1)[0][0] if matched else authors[-1]


def wiki_dialog(raw: Example) -> Example:
    """wiki_dialog/OQ: a reader (User) asks about a Wikipedia passage and the writer
    (Assistant) answers with the passage's sentences. `title` and `passage` are shared by
    all candidate turns; the passage holds every assistant turn, so next-turn templates
    must not show it (inversion templates may)."""
    what = f"wiki_dialog passage {raw.get('pid', '')!r}"
    utterances = [_clean(u, "an utterance") for u in _field(raw, "utterances", list)]
    authors = _field(raw, "author_num", list)
    if not utterances:
        raise DataFormatError(f"{what} has an empty dialog (no utterances)")
    if len(authors) != len(utterances):
        raise DataFormatError(f"{what} has {len(utterances)} utterances but {len(authors)} "
                              "author numbers; expected one author number per utterance")
    empty = [i for i, u in enumerate(utterances) if not u]
    if empty:
        raise DataFormatError(f"{what} has an empty utterance (turn {empty[0]})")
    sentences = [_clean(s, "a sentence") for s in _field(raw, "sentences", list)]
    writer = _writer(utterances, authors, sentences)
    turns = [(ASSISTANT if a == writer else USER, u) for a, u in zip(authors, utterances)]
    candidates = [next_turn_fields(turns, t) for t in range(1, len(turns))
                  if turns[t][0] == ASSISTANT and turns[t - 1][0] == USER]
    if not candidates:
        raise DataFormatError(f"{what} has no answer that follows a question "
                              f"({len(turns)} turns, all by author {writer})")
    return {"title": _clean(_field(raw, "title"), "title"),
            "passage": _field(raw, "passage").strip(), VARIANTS: candidates}


def qrecc(raw: Example) -> Example:
    """q_re_cc: one question of a conversation, with the conversation before it in `context`
    (user and assistant turns alternating, ending with the assistant's last reply) and its
    answer. `rewrite` is the question rewritten to stand on its own (QReCC's
    `question_rewrite`; the question itself when empty). An empty answer (none found by
    the annotators) becomes the reply NO_ANSWER."""
    what = (f"qrecc conversation {raw.get('conversation_id', '?')}, "
            f"turn {raw.get('turn_id', '?')}")
    context = [_clean(c, "a context turn") for c in _field(raw, "context", list)]
    question = _clean(_field(raw, "question"), "question")
    if not question:
        raise DataFormatError(f"{what} has an empty question"
                              + ("" if context else " and no context: an empty dialog"))
    empty = [i for i, c in enumerate(context) if not c]
    if empty:
        raise DataFormatError(f"{what} has an empty context turn ({empty[0]})")
    # Speakers counted back from the question, so the turn before it is always a reply.
    n = len(context)
    turns = [(USER if (n - i) % 2 == 0 else ASSISTANT, c) for i, c in enumerate(context)]
    turns += [(USER, question),
              (ASSISTANT, _clean(_field(raw, "answer"), "answer") or NO_ANSWER)]
    rewrite = _clean(raw.get("question_rewrite", ""), "question_rewrite") or question
    return {**next_turn_fields(turns, len(turns) - 1), "rewrite": rewrite}
