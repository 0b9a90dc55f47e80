"""Inference evaluation during training: greedy decoding + each task's seqio metrics.

Examples are read once from a split of each seqio task (`inputs` token ids and the
`targets_pretokenized` text), decoded with `flan_jax.decoding.greedy_decode`, passed
through the task's postprocessor and scored with its `metric_fns`. Alongside, a
majority-class baseline (always answering the split's most frequent target) tells how
far above chance a score is.
"""

from __future__ import annotations

import collections
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import seqio

from flan_jax.decoding import EOS_ID, greedy_decode
from flan_jax.models.config import T5Config
from flan_jax.templates import OPTION_HEADERS


@dataclass
class EvalSet:
    """Tokenised inputs and reference answers of one task's split."""

    task: seqio.Task
    inputs: np.ndarray            # [n, input_length] int32, 0-padded
    targets: list[Any]            # postprocessed reference answers
    examples: list[dict]
    majority: float               # accuracy (%) of always answering the commonest target
    chance: float | None          # expected accuracy (%) of a uniform guess among the
                                  # options listed in the prompt (None: no options)


_MARKER = re.compile(r"(?:^|\s)(?:[-*+]|\([A-Za-z0-9]+\)|[A-Za-z0-9]+[.)]|\[[0-9]+\])\s")


def count_options(prompt: str) -> int | None:
    """Number of answer options listed in a zero-shot prompt (flan_jax.templates layout:
    a header such as 'OPTIONS:' then one marked item per option), or None."""
    for header in OPTION_HEADERS:
        at = prompt.rfind(header)
        if at >= 0:
            block = prompt[at + len(header):].split("\n\n")[0] + " "
            n = len(_MARKER.findall(block if block.startswith(("\n", " ")) else " " + block))
            return n or None
    return None


def load_eval_set(task_name: str, split: str, input_length: int,
                  num_examples: int) -> EvalSet:
    task = seqio.get_mixture_or_task(task_name)
    if not isinstance(task, seqio.Task):
        raise ValueError(f"inference eval takes tasks, not mixtures: {task_name}")
    ds = task.get_dataset({"inputs": input_length, "targets": 1}, split=split,
                          shuffle=False, num_epochs=1).take(num_examples)
    rows, targets, examples = [], [], []
    for ex in ds.as_numpy_iterator():
        tokens = np.zeros((input_length,), np.int32)
        ids = ex["inputs"][:input_length]
        tokens[:len(ids)] = ids
        rows.append(tokens)
        text = ex["targets_pretokenized"].decode()
        targets.append(task.postprocess_fn(text, example=ex, is_target=True))
        examples.append(ex)
    counts = collections.Counter(str(t) for t in targets)
    majority = 100.0 * counts.most_common(1)[0][1] / len(targets) if targets else 0.0
    options = [count_options(ex["inputs_pretokenized"].decode()) for ex in examples]
    chance = (100.0 * float(np.mean([1.0 / k for k in options]))
              if options and all(options) else None)
    return EvalSet(task, np.stack(rows), targets, examples, majority, chance)


def evaluate(params: Any, config: T5Config, eval_sets: Mapping[str, EvalSet],
             max_decode_length: int, batch_size: int = 64) -> dict[str, dict[str, float]]:
    """{task: {metric: value}} from greedy decoding of every eval set."""
    results = {}
    for name, es in eval_sets.items():
        vocab = es.task.output_features["targets"].vocabulary
        predictions = []
        for start in range(0, len(es.inputs), batch_size):
            chunk = es.inputs[start:start + batch_size]
            pad = batch_size - len(chunk)  # one compiled shape for every batch
            padded = np.concatenate([chunk, np.zeros((pad, chunk.shape[1]), np.int32)])
            out = np.asarray(greedy_decode(params, padded, config=config,
                                           max_decode_length=max_decode_length).tokens)
            for row, ex in zip(out[:len(chunk)], es.examples[start:start + batch_size]):
                ids = [int(t) for t in row]
                ids = ids[:ids.index(EOS_ID)] if EOS_ID in ids else ids
                text = vocab.decode([t for t in ids if t > 0])
                predictions.append(es.task.postprocess_fn(text, example=ex, is_target=False))
        scores: dict[str, float] = {}
        for fn in es.task.metric_fns:
            scores.update({k: float(v) for k, v in fn(es.targets, predictions).items()})
        results[name] = scores
    return results


def format_table(tasks: Sequence[str], eval_sets: Mapping[str, EvalSet],
                 before: Mapping[str, Mapping[str, float]],
                 after: Mapping[str, Mapping[str, float]], metric: str = "accuracy") -> str:
    """A text table: task, examples, chance and majority baselines, untrained and trained
    scores, and the means over the tasks."""
    header = (f"{'task':<30} {'n':>4} {'chance':>7} {'majority':>9} {'untrained':>10} "
              f"{'trained':>8}")
    lines = [header, "-" * len(header)]
    nan = float("nan")
    rows = []
    for name in tasks:
        es = eval_sets[name]
        row = (es.chance if es.chance is not None else nan, es.majority,
               before.get(name, {}).get(metric, nan), after.get(name, {}).get(metric, nan))
        rows.append(row)
        lines.append(f"{name:<30} {len(es.targets):>4} {row[0]:>6.1f}% {row[1]:>8.1f}% "
                     f"{row[2]:>9.1f}% {row[3]:>7.1f}%")
    means = np.nanmean(np.array(rows, dtype=float), axis=0) if rows else [nan] * 4
    lines.append("-" * len(header))
    lines.append(f"{'mean':<30} {'':>4} {means[0]:>6.1f}% {means[1]:>8.1f}% "
                 f"{means[2]:>9.1f}% {means[3]:>7.1f}%")
    return "\n".join(lines)
