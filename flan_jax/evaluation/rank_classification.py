"""Rank classification: score every listed answer option as the target, pick the likeliest.

The Flan 2021 paper scores classification tasks this way (as seqio's `rank_classification`
preprocessor and score metrics do): the model's log-likelihood of each option (its tokens
and EOS, teacher forced after the prompt) ranks the options, and the example counts as
right when the correct option ranks first. Unlike decoded exact match it cannot fail on
formatting, so it shows what a model knows before it has learnt to write the answer.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import seqio

from flan_jax.errors import FlanJaxError

# (encoder input tokens [rows, input length], target tokens [rows, target length], both
# 0-padded) -> log-likelihood of each row's target tokens [rows].
ScoreFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass
class RankSet:
    """The first examples of one task's split, tokenized once: prompts and options."""

    task: str
    inputs: np.ndarray                # [examples, input length]: EOS-terminated, 0-padded
    options: list[list[list[int]]]    # per example, per option: token ids ending in EOS
    answers: list[int]                # index of the correct option of each example


def _tokens(vocabulary: seqio.Vocabulary, text: str, length: int | None = None) -> list[int]:
    """`text` encoded, trimmed to leave room for EOS, then EOS (seqio's
    `append_eos_after_trim`)."""
    ids = list(vocabulary.encode(text))
    return (ids if length is None else ids[:length - 1]) + [vocabulary.eos_id]


def load_rank_set(task_name: str, split: str, input_length: int, num_examples: int) -> RankSet:
    """Renders the first `num_examples` of a catalog task's split (the examples a
    `seqio.Evaluator` of that split reads) with their answer options."""
    task = seqio.get_mixture_or_task(task_name)
    rendered = getattr(task.source, "rendered", None)
    if rendered is None:
        raise FlanJaxError(f"rank classification of {task_name}: only catalog tasks (YAML) "
                           "know their answer options")
    vocabulary = task.output_features["inputs"].vocabulary
    inputs = np.zeros((num_examples, input_length), np.int32)
    options, answers = [], []
    for i, ex in enumerate(itertools.islice(rendered(split), num_examples)):
        choices = [str(o) for o in ex.get("options") or ()]
        target = ex["targets"].strip()
        if target not in choices:
            raise FlanJaxError(f"rank classification of {task_name}: {split} example "
                               f"{ex['_example_index']} has no option equal to its target "
                               f"{target!r} (options: {choices}); rank only tasks whose "
                               "answer is one of the options it lists")
        row = _tokens(vocabulary, ex["inputs"], input_length)
        inputs[i, :len(row)] = row
        options.append([_tokens(vocabulary, c) for c in choices])
        answers.append(choices.index(target))
    return RankSet(task_name, inputs[:len(answers)], options, answers)


def rank_classify(score_fn: ScoreFn, inputs: np.ndarray, options: Sequence[Sequence[list[int]]],
                  batch_size: int = 64) -> list[int]:
    """Index of the most likely option of each example (the first one on a tie).

    Every (example, option) pair is one row; rows go to `score_fn` in batches of
    `batch_size` (the last padded with empty rows), targets padded to a multiple of 16
    tokens, so a few compiled shapes serve every set.
    """
    pairs = [(i, option) for i, choices in enumerate(options) for option in choices]
    if not pairs:
        return []
    length = -(-max(len(option) for _, option in pairs) // 16) * 16  # few distinct shapes
    scores = np.empty(len(pairs), np.float64)
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start:start + batch_size]
        rows = np.zeros((batch_size, inputs.shape[1]), np.int32)
        targets = np.zeros((batch_size, length), np.int32)
        for r, (i, option) in enumerate(chunk):
            rows[r] = inputs[i]
            targets[r, :len(option)] = option
        scores[start:start + len(chunk)] = np.asarray(score_fn(rows, targets))[:len(chunk)]
    best, at = [], 0
    for choices in options:
        best.append(int(np.argmax(scores[at:at + len(choices)])))
        at += len(choices)
    return best


def model_score_fn(params: Any, config: Any) -> ScoreFn:
    """The model's log-likelihoods (`flan_jax.models.decoding.score_targets`) as a `ScoreFn`."""
    from flan_jax.models.decoding import score_targets

    def score(inputs: np.ndarray, targets: np.ndarray) -> np.ndarray:
        return np.asarray(score_targets(params, inputs, targets, config=config))

    return score


def rank_accuracy(score_fn: ScoreFn, rank_set: RankSet, batch_size: int = 64) -> float:
    """Percent of the set's examples whose correct option ranks first."""
    picks = rank_classify(score_fn, rank_set.inputs, rank_set.options, batch_size)
    hits = [p == a for p, a in zip(picks, rank_set.answers, strict=True)]
    return 100.0 * sum(hits) / max(len(hits), 1)
