"""Rank classification (flan_jax.evaluation.rank_classification): the option with the highest
log-likelihood wins. Checked on toy models whose log-likelihoods are known: a table of
per-token log-probabilities, and a T5 whose parameters are all zero (every token has
probability 1 / vocab size, so a target's log-likelihood is -(tokens) * log(vocab))."""

from __future__ import annotations

import math

import jax
import numpy as np
import pytest

from flan_jax.evaluation.rank_classification import model_score_fn, rank_accuracy, rank_classify


def table_score_fn(log_probs: dict[int, float], bonus_if_in_input: float = 0.0):
    """A toy model: log p(token) from a table, plus a bonus for tokens the input holds;
    padding (0) is not scored."""
    def score(inputs: np.ndarray, targets: np.ndarray) -> np.ndarray:
        out = np.zeros(len(targets))
        for r, (row_in, row_t) in enumerate(zip(inputs, targets)):
            present = set(row_in[row_in > 0].tolist())
            out[r] = sum(log_probs[t] + (bonus_if_in_input if t in present else 0.0)
                         for t in row_t.tolist() if t > 0)
        return out
    return score


def test_picks_the_option_with_the_highest_log_likelihood():
    # token: log-prob. Option log-likelihoods worked out by hand in the comments.
    score = table_score_fn({1: -0.1, 5: -1.0, 6: -2.0, 7: -0.5, 8: -3.0})
    inputs = np.array([[9, 1], [9, 1], [9, 1]], np.int32)
    options = [
        [[5, 1], [6, 1], [7, 1]],        # -1.1, -2.1, -0.6        -> 2
        [[7, 7, 7, 1], [8, 1]],          # -1.6, -3.1              -> 0
        [[6, 1], [5, 5, 1], [8, 1]],     # -2.1, -2.1, -3.1 (tie)  -> 0, the first
    ]
    # Batches of 2 rows: 8 pairs, the last batch padded, options of different lengths.
    assert rank_classify(score, inputs, options, batch_size=2) == [2, 0, 0]
    assert rank_classify(score, inputs, options, batch_size=64) == [2, 0, 0]


def test_scores_are_conditioned_on_each_examples_own_input():
    # Same options, different inputs: the option whose token the input holds gets +5.
    score = table_score_fn({1: 0.0, 5: -1.0, 6: -1.0}, bonus_if_in_input=5.0)
    inputs = np.array([[5, 1, 0], [6, 1, 0]], np.int32)
    options = [[[5, 1], [6, 1]], [[5, 1], [6, 1]]]
    assert rank_classify(score, inputs, options, batch_size=3) == [0, 1]


def test_zero_t5_prefers_the_shortest_option_with_known_scores():
    from flan_jax.models.config import get_config
    from flan_jax.models.t5 import init_params

    config = get_config("tiny", vocab_size=128)
    params = jax.tree_util.tree_map(np.zeros_like, init_params(config, jax.random.key(0)))
    score = model_score_fn(params, config)
    inputs = np.array([[7, 8, 9, 1]] * 2, np.int32)
    targets = np.array([[10, 11, 1, 0], [10, 1, 0, 0]], np.int32)
    np.testing.assert_allclose(score(inputs, targets), [-3 * math.log(128), -2 * math.log(128)],
                               rtol=1e-5)
    options = [[[10, 11, 12, 1], [10, 1], [10, 11, 1]], [[20, 21, 1], [30, 31, 32, 33, 1]]]
    assert rank_classify(score, inputs, options, batch_size=4) == [1, 0]


def test_rank_set_of_a_demo_task_and_its_accuracy():
    import seqio

    import flan_jax.catalog  # noqa: F401
    from flan_jax.errors import FlanJaxError
    from flan_jax.evaluation.rank_classification import load_rank_set

    task = "demo_parity_zs_opt"
    rank_set = load_rank_set(task, "test", 64, 6)
    examples = list(seqio.get_mixture_or_task(task).get_dataset(
        {"inputs": 64, "targets": 8}, split="test", shuffle=False, num_epochs=1
    ).take(6).as_numpy_iterator())
    vocab = seqio.get_mixture_or_task(task).output_features["targets"].vocabulary
    for i, ex in enumerate(examples):  # the Evaluator's examples, tokenized the same way
        assert rank_set.inputs[i, :len(ex["inputs"])].tolist() == ex["inputs"].tolist()
        assert not rank_set.inputs[i, len(ex["inputs"]):].any()
        gold = rank_set.options[i][rank_set.answers[i]]
        assert gold == ex["targets"].tolist()  # the target's tokens, EOS included
        assert sorted(vocab.decode(o) for o in rank_set.options[i]) == ["even", "odd"]

    def oracle(inputs, targets):  # knows the answers: gold options score 0, others -1
        gold = {tuple(ex["inputs"].tolist()): ex["targets"].tolist() for ex in examples}
        return np.array([0.0 if gold.get(tuple(i[i > 0].tolist())) == t[t > 0].tolist()
                         else -1.0 for i, t in zip(inputs, targets)])

    assert rank_accuracy(oracle, rank_set) == 100.0
    assert rank_accuracy(lambda i, t: -oracle(i, t), rank_set) == 0.0
    with pytest.raises(FlanJaxError, match="no option equal to its target"):
        load_rank_set("demo_string_transform_zs_noopt", "test", 64, 2)
