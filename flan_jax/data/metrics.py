"""Metric functions for seqio tasks, looked up by the names used in task YAML."""

from __future__ import annotations

import collections
import math
import re
import string
from collections.abc import Callable, Sequence
from typing import Any

MetricFn = Callable[[Sequence[str], Sequence[str]], dict[str, float]]

# Where a chain-of-thought answer starts: "So the answer is" (the templates' phrase), "The
# answer is", "the final answer is:".
ANSWER_IS = re.compile(r"(?:so\s+)?the\s+(?:final\s+)?answer\s+is\s*:?\s*", re.IGNORECASE)


def extract_cot_answer(text: str) -> str:
    """The text after the last "So the answer is" / "The answer is", without the final
    full stop; the whole (stripped) text when the phrase is absent."""
    matches = list(ANSWER_IS.finditer(text))
    answer = text[matches[-1].end():] if matches else text
    answer = answer.strip()
    first_line = answer.split("\n", 1)[0].strip()
    if first_line.endswith("."):
        first_line = first_line[:-1]
    return first_line.strip()


def _normalize_answer(text: str) -> str:
    """SQuAD-style normalization: lowercase, drop punctuation, articles and extra spaces."""
    text = "".join(ch for ch in text.lower() if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def accuracy(targets: Sequence[str], predictions: Sequence[str]) -> dict[str, float]:
    """Percent of predictions equal to the target after stripping whitespace."""
    hits = [str(t).strip() == str(p).strip() for t, p in zip(targets, predictions, strict=True)]
    return {"accuracy": 100.0 * sum(hits) / max(len(hits), 1)}


def answer_accuracy(targets: Sequence[str], predictions: Sequence[str]) -> dict[str, float]:
    """Accuracy of the final answers: the text after the last "So the answer is" / "The
    answer is" (chain of thought; its final full stop dropped), else the whole text."""
    return accuracy([extract_cot_answer(str(t)) for t in targets],
                    [extract_cot_answer(str(p)) for p in predictions])


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


def _pairs(targets: Sequence[Any], predictions: Sequence[str]) -> list[tuple[Any, str]]:
    return list(zip(targets, predictions, strict=True))


def _references(target: Any) -> list[str]:
    """A target is one reference string or a list of references (best-of is taken)."""
    if isinstance(target, (list, tuple)):
        refs = [str(t) for t in target]
        return refs or [""]
    return [str(target)]


def _binary_f1(gold: Sequence[bool], pred: Sequence[bool]) -> float:
    tp = sum(g and p for g, p in zip(gold, pred, strict=True))
    fp = sum(p and not g for g, p in zip(gold, pred, strict=True))
    fn = sum(g and not p for g, p in zip(gold, pred, strict=True))
    return 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)


def f1_binary(targets: Sequence[str], predictions: Sequence[str],
              positive: str | None = None) -> dict[str, float]:
    """Accuracy and F1 of the positive class (percent), GLUE MRPC/QQP style.

    The positive class is `positive`, or else the first of "yes"/"true"/... seen among the
    targets and predictions, or else the alphabetically last class (a fixed choice).
    """
    pairs = [(str(t).strip(), str(p).strip()) for t, p in _pairs(targets, predictions)]
    if positive is None:
        classes = {t for t, _ in pairs} | {p for _, p in pairs}
        known = [c for c in classes if c.lower() in _POSITIVE_WORDS]
        positive = sorted(known)[0] if known else (max(classes) if classes else "")
    gold = [t == positive for t, _ in pairs]
    pred = [p == positive for _, p in pairs]
    out = accuracy([t for t, _ in pairs], [p for _, p in pairs])
    out["f1"] = 100.0 * _binary_f1(gold, pred)
    return out


_POSITIVE_WORDS = frozenset({"yes", "true", "1", "positive", "duplicate", "equivalent",
                             "paraphrase", "acceptable", "entailment"})


def mcc(targets: Sequence[str], predictions: Sequence[str]) -> dict[str, float]:
    """Matthews correlation (x100) over classes compared as strings (CoLA); multiclass
    predictions outside the target classes count as wrong."""
    pairs = [(str(t).strip(), str(p).strip()) for t, p in _pairs(targets, predictions)]
    if not pairs:
        return {"mcc": 0.0}
    classes = sorted({t for t, _ in pairs} | {p for _, p in pairs})
    n = len(pairs)
    correct = sum(t == p for t, p in pairs)
    t_count = collections.Counter(t for t, _ in pairs)
    p_count = collections.Counter(p for _, p in pairs)
    cov_tp = correct * n - sum(t_count[c] * p_count[c] for c in classes)
    cov_pp = n * n - sum(p_count[c] ** 2 for c in classes)
    cov_tt = n * n - sum(t_count[c] ** 2 for c in classes)
    denom = math.sqrt(cov_pp * cov_tt)
    return {"mcc": 0.0 if denom == 0 else 100.0 * cov_tp / denom}


_NUMBER_RE = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def parse_number(text: str, default: float = 0.0) -> float:
    """The first number in `text`, or `default` when there is none."""
    match = _NUMBER_RE.search(str(text))
    if not match:
        return default
    try:
        value = float(match.group())
    except ValueError:
        return default
    return value if math.isfinite(value) else default


def pearson_spearman(targets: Sequence[str], predictions: Sequence[str]) -> dict[str, float]:
    """Pearson and Spearman correlation (x100) of numbers read from the texts (STS-B);
    an unparsable prediction counts as 0."""
    import scipy.stats

    pairs = _pairs(targets, predictions)
    t = [parse_number(x) for x, _ in pairs]
    p = [parse_number(x) for _, x in pairs]
    if len(pairs) < 2 or len(set(t)) < 2 or len(set(p)) < 2:
        return {"pearson": 0.0, "spearman": 0.0}
    return {"pearson": 100.0 * float(scipy.stats.pearsonr(t, p)[0]),
            "spearman": 100.0 * float(scipy.stats.spearmanr(t, p)[0])}


def multiclass_f1(targets: Sequence[str], predictions: Sequence[str]) -> dict[str, float]:
    """Accuracy and macro-averaged F1 over the target classes (percent), as for CB."""
    pairs = [(str(t).strip(), str(p).strip()) for t, p in _pairs(targets, predictions)]
    classes = sorted({t for t, _ in pairs})
    f1s = [_binary_f1([t == c for t, _ in pairs], [p == c for _, p in pairs]) for c in classes]
    out = accuracy([t for t, _ in pairs], [p for _, p in pairs])
    out["macro_f1"] = 100.0 * sum(f1s) / max(len(f1s), 1)
    return out


def rouge(targets: Sequence[Any], predictions: Sequence[str]) -> dict[str, float]:
    """ROUGE-1/2/L/Lsum F-measure (percent, stemmed), each the best over the references
    when a target is a list of references."""
    from rouge_score import rouge_scorer

    keys = ("rouge1", "rouge2", "rougeL", "rougeLsum")
    scorer = rouge_scorer.RougeScorer(list(keys), use_stemmer=True)

    def lsum_text(text: str) -> str:  # rougeLsum splits summaries on newlines
        return "\n".join(line for line in str(text).split("\n") if line.strip())

    totals = dict.fromkeys(keys, 0.0)
    pairs = _pairs(targets, predictions)
    for target, prediction in pairs:
        best = dict.fromkeys(keys, 0.0)
        for ref in _references(target):
            scores = scorer.score(lsum_text(ref), lsum_text(prediction))
            for key in keys:
                best[key] = max(best[key], scores[key].fmeasure)
        for key in keys:
            totals[key] += best[key]
    n = max(len(pairs), 1)
    return {key: 100.0 * totals[key] / n for key in keys}


def bleu(targets: Sequence[Any], predictions: Sequence[str]) -> dict[str, float]:
    """Corpus BLEU (sacrebleu, 13a tokenization, exp smoothing); a target may be a list of
    references (shorter lists are padded with their last reference)."""
    import sacrebleu

    pairs = _pairs(targets, predictions)
    if not pairs:
        return {"bleu": 0.0}
    refs = [_references(t) for t, _ in pairs]
    width = max(len(r) for r in refs)
    streams = [[r[min(i, len(r) - 1)] for r in refs] for i in range(width)]
    score = sacrebleu.corpus_bleu([str(p) for _, p in pairs], streams,
                                  smooth_method="exp", tokenize="13a")
    return {"bleu": float(score.score)}


def levenshtein(a: Sequence[Any], b: Sequence[Any]) -> int:
    """Edit distance (insertions, deletions, substitutions each cost 1)."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        current = [i]
        for j, y in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1,
                               previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]


def edit_distance(targets: Sequence[Any], predictions: Sequence[str]) -> dict[str, float]:
    """Mean character Levenshtein distance normalized by the longer string (percent, lower is
    better; the best reference counts), and the percent of exact matches."""
    pairs = _pairs(targets, predictions)
    dists, exact = [], []
    for target, prediction in pairs:
        prediction = str(prediction)
        best = min(levenshtein(ref, prediction) / max(len(ref), len(prediction), 1)
                    for ref in _references(target))
        dists.append(best)
        exact.append(prediction in _references(target))
    n = max(len(pairs), 1)
    return {"edit_distance": 100.0 * sum(dists) / n, "exact_match": 100.0 * sum(exact) / n}


METRICS: dict[str, MetricFn] = {
    "accuracy": accuracy, "answer_accuracy": answer_accuracy, "squad": squad, "f1_binary": f1_binary, "mcc": mcc,
    "pearson_spearman": pearson_spearman, "multiclass_f1": multiclass_f1, "rouge": rouge,
    "bleu": bleu, "edit_distance": edit_distance,
}


def get_metric(name: str) -> MetricFn:
    """A metric by its short name, or any `module:function` with seqio's metric signature."""
    if ":" in name:
        from flan_jax.data.sources import import_function

        return import_function(name)
    if name not in METRICS:
        raise KeyError(f"unknown metric {name!r}; known: {', '.join(sorted(METRICS))}")
    return METRICS[name]
