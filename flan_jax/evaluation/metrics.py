"""seqio metric functions (targets, predictions) -> {name: percent} for the eval tasks.

They extract the answer the way `flan_jax.eval` does, so training-time evaluation of the
`tasks/eval` tasks scores CoT outputs by their final answer. A prediction is read as chain
of thought when it contains "the answer is". To use them from task YAML, `flan_jax.data.metrics.
METRICS` needs entries for them (an engine change; see docs/evaluation.md).
"""

from __future__ import annotations

from collections.abc import Sequence

from flan_jax.evaluation import answers


def _percent(hits: list[bool]) -> float:
    return 100.0 * sum(hits) / max(len(hits), 1)


def _is_cot(prediction: str) -> bool:
    return answers.ANSWER_IS.search(prediction) is not None


def bbh_accuracy(targets: Sequence[str], predictions: Sequence[str]) -> dict[str, float]:
    hits = []
    for target, prediction in zip(targets, predictions, strict=True):
        kind = answers.infer_bbh_kind(str(target))
        gold = answers.normalize_bbh(kind, str(target))
        hits.append(bool(gold) and answers.bbh_answer(kind, prediction, _is_cot(prediction)) == gold)
    return {"accuracy": _percent(hits)}


def mmlu_accuracy(targets: Sequence[str], predictions: Sequence[str]) -> dict[str, float]:
    hits = [answers.extract_choice(str(t), 4) == answers.mmlu_answer(p, _is_cot(p)) != ""
            for t, p in zip(targets, predictions, strict=True)]
    return {"accuracy": _percent(hits)}


def mgsm_accuracy(targets: Sequence[str], predictions: Sequence[str]) -> dict[str, float]:
    hits = [answers.normalize_number(str(t)) == answers.mgsm_answer(p, True) != ""
            for t, p in zip(targets, predictions, strict=True)]
    return {"accuracy": _percent(hits)}
