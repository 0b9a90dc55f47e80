"""Metric functions for seqio tasks, looked up by the names used in task YAML."""

from __future__ import annotations

import collections
import re
import string
from collections.abc import Callable, Sequence

MetricFn = Callable[[Sequence[str], Sequence[str]], dict[str, float]]


def _normalize_answer(text: str) -> str:
    """SQuAD-style normalization: lowercase, drop punctuation, articles and extra spaces."""
    text = "".join(ch for ch in text.lower() if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def accuracy(targets: Sequence[str], predictions: Sequence[str]) -> dict[str, float]:
    """Percent of predictions equal to the target after stripping whitespace."""
    hits = [str(t).strip() == str(p).strip() for t, p in zip(targets, predictions, strict=True)]
    return {"accuracy": 100.0 * sum(hits) / max(len(hits), 1)}


def _f1(target: str, prediction: str) -> float:
    t, p = _normalize_answer(target).split(), _normalize_answer(prediction).split()
    common = sum((collections.Counter(t) & collections.Counter(p)).values())
    if not t or not p:
        return float(t == p)
    if common == 0:
        return 0.0
    precision, recall = common / len(p), common / len(t)
    return 2 * precision * recall / (precision + recall)


def squad(targets: Sequence[str], predictions: Sequence[str]) -> dict[str, float]:
    """SQuAD exact match and token F1 (percent) on normalized answers."""
    pairs = list(zip(targets, predictions, strict=True))
    em = [_normalize_answer(t) == _normalize_answer(p) for t, p in pairs]
    f1 = [_f1(t, p) for t, p in pairs]
    n = max(len(pairs), 1)
    return {"em": 100.0 * sum(em) / n, "f1": 100.0 * sum(f1) / n}


METRICS: dict[str, MetricFn] = {"accuracy": accuracy, "squad": squad}


def get_metric(name: str) -> MetricFn:
    if name not in METRICS:
        raise KeyError(f"unknown metric {name!r}; known: {', '.join(sorted(METRICS))}")
    return METRICS[name]
