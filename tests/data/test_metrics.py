"""Metric functions against small cases worked out by hand (or with scipy)."""

import math

import pytest
import scipy.stats

from flan_jax.data import metrics


def test_every_catalog_metric_name_is_registered():
    for name in ("accuracy", "squad", "f1_binary", "mcc", "pearson_spearman", "multiclass_f1",
                 "rouge", "bleu", "edit_distance"):
        assert metrics.get_metric(name) is metrics.METRICS[name]
    with pytest.raises(KeyError):
        metrics.get_metric("nope")


def test_accuracy_and_squad_unchanged():
    assert metrics.accuracy(["a", "b"], [" a", "c"]) == {"accuracy": 50.0}
    out = metrics.squad(["The cat sat"], ["cat sat down"])
    # normalized: "cat sat" vs "cat sat down": p = 2/3, r = 1, f1 = 0.8
    assert out["em"] == 0.0 and out["f1"] == pytest.approx(80.0)


def test_f1_binary_by_hand():
    targets = ["yes", "yes", "no", "no", "yes"]
    preds = ["yes", "no", "yes", "no", "yes"]
    # positive "yes": tp = 2, fp = 1, fn = 1 -> f1 = 4 / 6; accuracy 3/5
    out = metrics.f1_binary(targets, preds)
    assert out["accuracy"] == pytest.approx(60.0)
    assert out["f1"] == pytest.approx(100 * 4 / 6)
    # explicit positive class "no": tp = 1, fp = 1, fn = 1 -> 0.5
    assert metrics.f1_binary(targets, preds, positive="no")["f1"] == pytest.approx(50.0)
    assert metrics.f1_binary(["no", "no"], ["no", "no"], positive="yes")["f1"] == 0.0
    assert metrics.f1_binary(["no", "no"], ["no", "yes"])["f1"] == 0.0  # "yes" found in preds


def test_mcc_binary_by_hand():
    targets = ["acceptable"] * 4 + ["unacceptable"] * 4
    preds = ["acceptable", "acceptable", "acceptable", "unacceptable",
             "unacceptable", "unacceptable", "acceptable", "unacceptable"]
    tp, tn, fp, fn = 3, 3, 1, 1
    expected = (tp * tn - fp * fn) / math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    assert metrics.mcc(targets, preds)["mcc"] == pytest.approx(100 * expected)
    assert metrics.mcc(["a", "b"], ["a", "a"])["mcc"] == 0.0  # constant prediction
    assert metrics.mcc(["a", "b", "a"], ["a", "b", "a"])["mcc"] == pytest.approx(100.0)


def test_pearson_spearman_against_scipy():
    targets = ["0.0", "1.2", "3.4", "5.0", "2.6"]
    preds = ["0", "1", "three", "4.8", "about 2.4"]  # "three" is unparsable -> 0
    t = [0.0, 1.2, 3.4, 5.0, 2.6]
    p = [0.0, 1.0, 0.0, 4.8, 2.4]
    out = metrics.pearson_spearman(targets, preds)
    assert out["pearson"] == pytest.approx(100 * scipy.stats.pearsonr(t, p)[0])
    assert out["spearman"] == pytest.approx(100 * scipy.stats.spearmanr(t, p)[0])
    assert metrics.parse_number("score: -1.5e1!") == -15.0
    assert metrics.parse_number("none", default=0.0) == 0.0


def test_multiclass_f1_by_hand():
    targets = ["yes", "no", "maybe", "yes", "no", "yes"]
    preds = ["yes", "no", "yes", "no", "no", "maybe"]
    # yes: tp 1, fp 1, fn 2 -> 2/5; no: tp 2, fp 1, fn 0 -> 4/5; maybe: tp 0 -> 0
    out = metrics.multiclass_f1(targets, preds)
    assert out["accuracy"] == pytest.approx(50.0)
    assert out["macro_f1"] == pytest.approx(100 * (0.4 + 0.8 + 0.0) / 3)


def test_rouge_by_hand_and_best_of_references():
    out = metrics.rouge(["the cat sat on the mat"], ["the cat sat"])
    # unigrams: 3 of 3 predicted match, 3 of 6 reference -> p=1, r=.5, f=2/3
    assert out["rouge1"] == pytest.approx(100 * 2 / 3)
    # bigrams: "the cat", "cat sat" match: p = 2/2, r = 2/5 -> f = 4/7
    assert out["rouge2"] == pytest.approx(100 * 4 / 7)
    assert out["rougeL"] == pytest.approx(100 * 2 / 3)
    best = metrics.rouge([["a dog ran", "the cat sat"]], ["the cat sat"])
    assert best["rouge1"] == pytest.approx(100.0) and best["rougeLsum"] == pytest.approx(100.0)
    assert metrics.rouge(["x y"], ["z"])["rouge1"] == 0.0


def test_bleu():
    assert metrics.bleu(["the quick brown fox jumps"], ["the quick brown fox jumps"])["bleu"] == \
        pytest.approx(100.0)
    assert metrics.bleu(["alpha beta gamma delta"], ["epsilon"])["bleu"] < 1.0
    # best of two references: the second matches exactly
    two = metrics.bleu([["nothing alike here at all", "the quick brown fox jumps"]],
                       ["the quick brown fox jumps"])
    assert two["bleu"] == pytest.approx(100.0)


def test_edit_distance_by_hand():
    assert metrics.levenshtein("kitten", "sitting") == 3
    assert metrics.levenshtein("", "abc") == 3
    out = metrics.edit_distance(["kitten", "abc"], ["sitting", "abc"])
    assert out["edit_distance"] == pytest.approx(100 * (3 / 7 + 0) / 2)
    assert out["exact_match"] == pytest.approx(50.0)
    assert metrics.edit_distance([["zzz", "abd"]], ["abc"])["edit_distance"] == \
        pytest.approx(100 / 3)
