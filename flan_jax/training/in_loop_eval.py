"""Inference evaluation during training: greedy decoding scored by `seqio.Evaluator`.

One `seqio.Evaluator` per task, built before training, reads the first examples of a
split once and caches them (task features and `EncDecFeatureConverter` model features).
Each evaluation hands it a `predict_fn` that greedy-decodes the cached
`encoder_input_tokens` with the current parameters (`flan_jax.models.decoding.greedy_decode`);
seqio decodes the tokens with the task's vocabulary, applies its postprocessor and
scores them with its metrics. Alongside, a majority-class baseline (always answering the
split's most frequent target) and a chance baseline (a uniform guess among the options a
prompt lists) tell how far above chance a score is. `EvalSuite` is what the trainer holds:
those sets, and rank-classification sets (`flan_jax.evaluation.rank_classification`) for some tasks.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import seqio
import tensorflow as tf
from tqdm import tqdm

from flan_jax.data.datasource import as_numpy, pipeline_error
from flan_jax.data.metrics import extract_cot_answer
from flan_jax.data.registry import get_mixture_or_task
from flan_jax.data.templates import OPTION_HEADERS
from flan_jax.errors import FlanJaxError
from flan_jax.evaluation.rank_classification import (
    RankSet,
    load_rank_set,
    model_score_fn,
    rank_accuracy,
)
from flan_jax.models.config import T5Config
from flan_jax.models.decoding import greedy_decode

PredictFn = Callable[..., list[tuple[int, list[int]]]]


@dataclass
class EvalSet:
    """One task's seqio.Evaluator and the baselines of its cached examples."""

    evaluator: seqio.Evaluator
    targets: list[Any]            # postprocessed reference answers, in example order
    majority: float               # accuracy (%) of always giving the commonest answer
    chance: float | None          # expected accuracy (%) of a uniform guess among the
                                  # options listed in the prompt (None: no options)
    target_tokens: int = 0        # the longest target, in tokens with EOS

    @property
    def decode_length(self) -> int:
        """Tokens to decode: the longest target's, rounded up to a power of two (from 16)
        so that few decoding shapes are compiled. A prediction cut there is longer than
        every target, so it is wrong either way; decoding stops at EOS anyway."""
        return max(16, 1 << (max(self.target_tokens, 1) - 1).bit_length())

    @property
    def task(self) -> seqio.Task:
        return self.evaluator.eval_tasks[0]


_MARKER = re.compile(r"(?:^|\s)(?:[-*+]|\([A-Za-z0-9]+\)|[A-Za-z0-9]+[.)]|\[[0-9]+\])\s")


def count_options(prompt: str) -> int | None:
    """Number of answer options listed in a zero-shot prompt (flan_jax.data.templates layout:
    a header such as 'OPTIONS:' then one marked item per option), or None."""
    for header in OPTION_HEADERS:
        at = prompt.rfind(header)
        if at >= 0:
            block = prompt[at + len(header):].split("\n\n")[0] + " "
            n = len(_MARKER.findall(block if block.startswith(("\n", " ")) else " " + block))
            return n or None
    return None


@contextlib.contextmanager
def _without_evaluator_warnings():
    """Drops the warnings seqio.Evaluator logs while it caches examples: that no logger
    is set (none is wanted) and that the sequence lengths it measured, after trimming to
    the given ones, are shorter than or equal to them (always so)."""
    def keep(record: logging.LogRecord) -> bool:
        return not (record.levelno == logging.WARNING
                    and record.pathname == seqio.evaluation.__file__)
    absl_logger = logging.getLogger("absl")
    absl_logger.addFilter(keep)
    try:
        yield
    finally:
        absl_logger.removeFilter(keep)


def load_eval_set(task_name: str, split: str, sequence_length: Mapping[str, int],
                  num_examples: int) -> EvalSet:
    """Builds the task's Evaluator (reading and caching its first `num_examples`) and
    the baselines of those examples."""
    where = "train.infer_eval_tasks"
    try:
        task = get_mixture_or_task(task_name)
    except FlanJaxError as e:
        raise FlanJaxError(f"{where}: {e}") from None
    if not isinstance(task, seqio.Task):
        raise FlanJaxError(f"{where} takes tasks, not mixtures: {task_name}")
    if split not in task.splits:
        raise FlanJaxError(f"{where}: task {task_name} has no {split!r} split (it has "
                           f"{', '.join(task.splits)}); set train.infer_eval_split")
    if not task.metric_objs:
        raise FlanJaxError(f"{where}: task {task_name} has no metrics to evaluate")
    try:
        with _without_evaluator_warnings():
            evaluator = seqio.Evaluator(
                mixture_or_task_name=task_name,
                feature_converter=seqio.EncDecFeatureConverter(pack=False),
                eval_split=split, sequence_length=dict(sequence_length),
                num_examples=num_examples, use_memory_cache=True,
                async_compute_metrics=False, logger_cls=())
    except tf.errors.OpError as e:  # a data error while seqio caches the examples
        cause = pipeline_error(e)
        if cause is None:
            raise
        raise cause from None
    # The targets seqio's metrics see: `targets_pretokenized`, postprocessed.
    targets, options, target_tokens = [], [], 0
    for ex in as_numpy(evaluator.cached_task_datasets[task_name]):
        targets.append(task.postprocess_fn(ex["targets_pretokenized"].decode(), example=ex,
                                           is_target=True))
        options.append(count_options(ex["inputs_pretokenized"].decode()))
        target_tokens = max(target_tokens, len(ex["targets"]))
    chance = (100.0 * float(np.mean([1.0 / k for k in options]))
              if options and all(options) else None)
    return EvalSet(evaluator, targets, majority_baseline(task, targets), chance, target_tokens)


def majority_baseline(task: seqio.Task, targets: Sequence[Any]) -> float:
    """The best accuracy (%) of giving one answer to every example, by the task's own
    metrics: the candidates are the targets and their final answers (the text after "So
    the answer is"), so a chain-of-thought task's baseline is its commonest answer, not
    its commonest rationale."""
    if not targets:
        return 0.0
    counts = collections.Counter(str(t) for t in targets)
    best = 100.0 * counts.most_common(1)[0][1] / len(targets)
    candidates = {extract_cot_answer(str(t)) for t in targets} - set(counts)
    for answer in candidates:
        for fn in task.predict_metric_fns:
            best = max(best, fn(list(targets), [answer] * len(targets)).get("accuracy", 0.0))
    return best


def make_predict_fn(params: Any, config: T5Config, max_decode_length: int,
                    batch_size: int = 64) -> PredictFn:
    """A seqio `predict_fn`: greedy decoding of an enumerated (index, features) dataset.

    Returns [(index, tokens)] in dataset order, each `tokens` `max_decode_length` ids
    long: the generated ids through EOS, then 0s. seqio stacks them into one array (so
    they must be equally long) and `Vocabulary.decode` cuts each row after EOS and drops
    PAD/EOS ids. The last batch is
    padded with empty rows so one compiled shape serves every batch.
    """
    def predict_fn(dataset: tf.data.Dataset,
                   model_feature_shapes: Mapping[str, Any] | None = None
                   ) -> list[tuple[int, list[int]]]:
        del model_feature_shapes
        out: list[tuple[int, list[int]]] = []
        for indices, features in dataset.batch(batch_size).as_numpy_iterator():
            inputs = features["encoder_input_tokens"].astype(np.int32)
            pad = batch_size - len(inputs)
            inputs = np.pad(inputs, ((0, pad), (0, 0)))
            tokens = np.asarray(greedy_decode(params, inputs, config=config,
                                              max_decode_length=max_decode_length).tokens)
            out.extend((int(i), row.tolist()) for i, row in zip(indices, tokens))
        return out

    return predict_fn


def _scalar(value: Any) -> float | None:
    """A metric value as a float (seqio.metrics.Scalar unwrapped); None if not a scalar
    (text, histograms, ...)."""
    if isinstance(value, seqio.metrics.Scalar):
        value = value.value
    if isinstance(value, seqio.metrics.MetricValue):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def evaluate(params: Any, config: T5Config, eval_sets: Mapping[str, EvalSet],
             max_decode_length: int, batch_size: int = 64,
             step: int | None = None) -> dict[str, dict[str, float]]:
    """{task: {metric: value}}: every eval set's Evaluator run on greedy decoding of up to
    `max_decode_length` tokens (fewer where the set's targets are short)."""
    results = {}
    for name, es in eval_sets.items():
        predict_fn = make_predict_fn(params, config, min(max_decode_length, es.decode_length),
                                     batch_size)
        metrics, _ = es.evaluator.evaluate(compute_metrics=True, step=step,
                                           predict_fn=predict_fn)
        scores = {k: _scalar(v) for k, v in metrics.result()[name].items()}
        results[name] = {k: v for k, v in scores.items() if v is not None}
    return results


@dataclass
class EvalSuite:
    """What the trainer evaluates: decoded-answer sets (`decoded`) and, for some of the
    same tasks, rank-classification sets (`ranked`), each read once before training."""

    decoded: dict[str, EvalSet]
    ranked: dict[str, RankSet]

    @classmethod
    def load(cls, tasks: Sequence[str], rank_tasks: Sequence[str], split: str,
             sequence_length: Mapping[str, int], num_examples: int) -> EvalSuite:
        unknown = [t for t in rank_tasks if t not in tasks]
        if unknown:
            raise FlanJaxError(f"train.rank_eval_tasks: {', '.join(unknown)} not in "
                               "train.infer_eval_tasks (rank classification is reported "
                               "beside the decoded accuracy of the same task)")
        decoded = {t: load_eval_set(t, split, sequence_length, num_examples) for t in tasks}
        ranked = {t: load_rank_set(t, split, sequence_length["inputs"], num_examples)
                  for t in rank_tasks}
        return cls(decoded, ranked)

    def __bool__(self) -> bool:
        return bool(self.decoded)

    def run(self, params: Any, config: T5Config, max_decode_length: int,
            step: int | None = None, progress: bool = True) -> dict[str, dict[str, float]]:
        """{task: {metric: value}}: decoded metrics, plus `rank_accuracy` for ranked sets."""
        results: dict[str, dict[str, float]] = {}
        score_fn = model_score_fn(params, config)
        for name in tqdm(self.decoded, desc=f"evaluating (step {step})", unit="task",
                         leave=False, disable=not progress):
            results.update(evaluate(params, config, {name: self.decoded[name]},
                                    max_decode_length, step=step))
            if name in self.ranked:
                results[name]["rank_accuracy"] = rank_accuracy(score_fn, self.ranked[name])
        return results

