"""Learning-rate schedules (flan_jax.training.optimizers.learning_rate_schedule) by value."""

from __future__ import annotations

import numpy as np
import pytest

from flan_jax.training.optimizers import learning_rate_schedule


def test_constant_cooldown_holds_then_falls_linearly_to_zero():
    schedule = learning_rate_schedule("constant_cooldown", 0.02, total_steps=10,
                                      cooldown_fraction=0.4)
    # the cooldown starts at step 6 (60% of 10) and falls by 0.02 / 4 a step to 0 at 10
    want = [0.02] * 7 + [0.015, 0.01, 0.005, 0.0]
    np.testing.assert_allclose([float(schedule(i)) for i in range(11)], want, atol=1e-9)


@pytest.mark.parametrize("settings", [dict(total_steps=0), dict(total_steps=5,
                                                                cooldown_fraction=0.0)])
def test_constant_cooldown_needs_a_length_and_a_fraction(settings):
    with pytest.raises(ValueError, match="constant_cooldown needs"):
        learning_rate_schedule("constant_cooldown", 0.01, **settings)
