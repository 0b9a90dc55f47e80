"""The results table (flan_jax.training.summary): grouping, means, verdict and picture."""

from __future__ import annotations

import json
import warnings
from types import SimpleNamespace

import pytest

from flan_jax.training import summary as ts


def _set(n: int, chance: float | None, majority: float) -> SimpleNamespace:
    return SimpleNamespace(targets=["x"] * n, chance=chance, majority=majority)


EVAL_SETS = {
    "fam_a_zs_opt": _set(10, 50.0, 60.0),
    "fam_a_zs_opt_unseen": _set(10, 50.0, 60.0),
    "fam_b_zs_opt": _set(10, 25.0, 30.0),
    "fam_c_zs_cot_unseen": _set(10, None, 40.0),
    "fam_c_zs_noopt_unseen": _set(10, None, 40.0),
    "heldout_zs_opt": _set(10, 25.0, 20.0),
}
BEFORE = {t: {"accuracy": 0.0} for t in EVAL_SETS}
BEFORE["heldout_zs_opt"]["rank_accuracy"] = 20.0
AFTER = {"fam_a_zs_opt": {"accuracy": 90.0}, "fam_a_zs_opt_unseen": {"accuracy": 70.0},
         "fam_b_zs_opt": {"accuracy": 60.0}, "fam_c_zs_cot_unseen": {"accuracy": 55.0},
         "fam_c_zs_noopt_unseen": {"accuracy": 45.0},
         "heldout_zs_opt": {"accuracy": 10.0, "rank_accuracy": 35.0}}
TRAINED_ON = {"fam_a_zs_opt", "fam_b_zs_opt", "fam_c_zs_cot", "fam_c_zs_noopt"}


@pytest.fixture
def rows():
    return ts.build_rows(EVAL_SETS, BEFORE, AFTER, TRAINED_ON)


def test_rows_are_grouped_and_unseen_templates_fold_into_their_task(rows):
    assert [(r.task, r.group) for r in rows] == [
        ("fam_a_zs_opt", ts.TRAINED), ("fam_b_zs_opt", ts.TRAINED),
        ("fam_c_zs_cot_unseen", ts.COT), ("fam_c_zs_noopt_unseen", ts.COT),
        ("heldout_zs_opt", ts.HELD_OUT)]
    a = rows[0]
    assert (a.trained, a.unseen, a.untrained, a.chance, a.majority) == (90.0, 70.0, 0.0, 50, 60)
    assert rows[1].unseen is None
    held = rows[-1]
    assert (held.trained, held.rank_untrained, held.rank_trained) == (10.0, 20.0, 35.0)
    assert ts.direct_counterpart("x_fs_cot") == "x_fs_noopt"
    assert ts.direct_counterpart("x_zs_opt") is None


def test_means_table_and_verdict(rows):
    means = ts.group_means(rows, ts.TRAINED)
    assert means["trained"] == 75.0 and means["chance"] == 37.5 and means["unseen"] == 70.0
    assert means["rank_trained"] is None
    table = ts.markdown(rows)
    lines = table.splitlines()
    assert lines[0].startswith("| group | task | n | chance | majority | untrained | trained |")
    assert "| trained | fam_a_zs_opt | 10 | 50.0% | 60.0% | 0.0% | 90.0% | 70.0% |  |  |" in lines
    assert ("| **trained: mean** | 2 tasks | | **37.5%** | **45.0%** | **0.0%** | **75.0%** | "
            "**70.0%** |  |  |") in lines
    assert "| chain of thought | fam_c_zs_cot_unseen | 10 |  | 40.0% | 0.0% | 55.0% |" \
        in table
    # A single held-out row gets no mean row; every row has the same number of cells.
    assert not any("held out: mean" in line for line in lines)
    assert len({line.count("|") for line in lines}) == 1
    assert ts.verdict(rows) == ("trained mean 75% vs chance 38% (majority 45%, untrained 0%) "
                                "on 2 trained tasks; unseen templates 70%; 1 held-out tasks "
                                "10% decoded, 35% rank classification (chance 25%)")


def test_picture_is_written(rows, tmp_path):
    ts.plot(rows, tmp_path / "results.png")
    assert (tmp_path / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_family_trained_in_another_style_is_not_held_out():
    """Trained on x_zs_noopt: x_zs_opt (same examples, another style) and its unseen
    templates are trained rows; only the family never trained on is held out."""
    eval_sets = {"x_zs_opt": _set(10, 50.0, 60.0), "x_zs_opt_unseen": _set(10, 50.0, 60.0),
                 "y_zs_opt": _set(10, 50.0, 60.0)}
    after = {t: {"accuracy": 50.0} for t in eval_sets}
    families = {"x_zs_noopt": "x", "x_zs_opt": "x", "x_zs_opt_unseen": "x", "y_zs_opt": "y"}
    rows = ts.build_rows(eval_sets, {}, after, {"x_zs_noopt"}, families)
    assert [(r.task, r.group) for r in rows] == [("x_zs_opt", ts.TRAINED),
                                                 ("y_zs_opt", ts.HELD_OUT)]
    assert rows[0].unseen == 50.0
    # Without the families, the names alone cannot tell.
    assert ts.build_rows(eval_sets, {}, after, {"x_zs_noopt"})[0].group == ts.HELD_OUT


def test_missing_and_nan_scores_are_blank_without_warnings(tmp_path):
    """An empty split's NaN accuracy, a task without an accuracy metric, a group with no
    score at all: blank cells, no 'nan' anywhere, and no numpy warning."""
    eval_sets = {"a_zs_opt": _set(10, 50.0, 60.0), "b_zs_opt": _set(0, None, 0.0),
                 "h_zs_opt": _set(10, 25.0, 20.0), "g_zs_opt": _set(10, None, 20.0)}
    nan = float("nan")
    before = {"a_zs_opt": {"accuracy": nan}, "b_zs_opt": {"accuracy": nan},
              "h_zs_opt": {"accuracy": nan, "rank_accuracy": nan}, "g_zs_opt": {"bleu": 1.0}}
    after = {"a_zs_opt": {"accuracy": 80.0}, "b_zs_opt": {"accuracy": nan},
             "h_zs_opt": {"accuracy": nan, "rank_accuracy": nan}, "g_zs_opt": {"bleu": 2.0}}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rows = ts.build_rows(eval_sets, before, after, {"a_zs_opt", "b_zs_opt"})
        text = "\n".join([ts.markdown(rows), ts.verdict(rows),
                          ts.results_markdown(rows, 0, 6), json.dumps(ts.as_json(rows))])
        ts.plot(rows, tmp_path / "results.png")
    assert "nan" not in text.lower()
    assert "| trained | b_zs_opt | 0 |  | 0.0% |  |  |" in text
    assert ts.verdict(rows) == "trained mean 80% vs chance 50% (majority 30%) on 2 trained tasks"
