"""The task-count scaling summary (flan_jax.demo.scaling) from runs' results.json."""

from __future__ import annotations

import pytest

from flan_jax.demo import scaling


def _row(group: str, untrained: float, trained: float, unseen: float | None = None,
         rank: tuple[float, float] | None = None) -> dict:
    return {"group": group, "chance": 25.0, "majority": 30.0, "untrained": untrained,
            "trained": trained, "unseen": unseen,
            "rank_untrained": rank[0] if rank else None,
            "rank_trained": rank[1] if rank else None}


# Run with 1 family: family b and the held-out task are both not trained; with 3 families
# b is trained. Only tasks held out of the largest run count as held out.
RUNS = {
    1: {"tasks": {"a_zs_opt": _row("trained", 0, 80, unseen=60),
                  "b_zs_opt": _row("held out", 0, 20, rank=(25, 30)),
                  "h_zs_opt": _row("held out", 0, 10, rank=(20, 40))}},
    3: {"tasks": {"a_zs_opt": _row("trained", 0, 85, unseen=70),
                  "b_zs_opt": _row("trained", 0, 75, unseen=50),
                  "h_zs_opt": _row("held out", 0, 30, rank=(20, 50))}},
}


def test_points_per_family_count_from_the_untrained_model_on():
    points = scaling.summarize(RUNS)
    assert points == [
        {"families": 0, "held_out_decoded": 0.0, "held_out_rank": 20.0,
         "unseen_templates": None},
        {"families": 1, "held_out_decoded": 10.0, "held_out_rank": 40.0,
         "unseen_templates": 60.0},
        {"families": 3, "held_out_decoded": 30.0, "held_out_rank": 50.0,
         "unseen_templates": 60.0},
    ]
    table = scaling.markdown(points, 25.0)
    assert "| 0 (untrained) | 0.0% | 20.0% |  |" in table
    assert "| 3 | 30.0% | 50.0% | 60.0% |" in table
    assert "Chance on the held-out families: 25.0%." in table


def test_plot(tmp_path):
    scaling.plot(scaling.summarize(RUNS), 25.0, tmp_path / "scaling.png")
    assert (tmp_path / "scaling.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("mixture,families", [("demo_scaling_1_family", 1),
                                              ("demo_scaling_3_families", 3),
                                              ("demo_zs_submix", 9)])
def test_the_scaling_mixtures_draw_on_1_3_and_9_families(mixture, families):
    assert scaling.family_count(mixture) == families


def test_the_largest_run_is_the_demo_itself():
    """Same styles and budget for every point: the 9-family run trains what `make demo` does."""
    import re

    from conftest import REPO

    demo = re.search(r"^MIXTURE_OR_TASK_NAME = '(\w+)'", (REPO / "gin/runs/demo.gin").read_text(),
                     re.M).group(1)
    assert scaling.DEFAULT_MIXTURES[-1] == demo
    assert [scaling.family_count(m) for m in scaling.DEFAULT_MIXTURES] == [1, 3, 9]
