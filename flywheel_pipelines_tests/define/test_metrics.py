"""Step 4: the unbiased pass@k estimator matches its closed form."""

from math import comb

import pytest

from flywheel_pipelines.define.evaluate.metrics import mean_pass_at_k, pass_at_k, rate


@pytest.mark.parametrize(("n", "c", "k"), [(10, 3, 1), (10, 3, 5), (20, 0, 3), (5, 5, 2), (200, 17, 10)])
def test_pass_at_k_is_one_minus_the_chance_that_k_draws_all_fail(n, c, k):
    expected = 1 - comb(n - c, k) / comb(n, k)
    assert pass_at_k(n, c, k) == pytest.approx(expected)


def test_pass_at_1_is_the_share_of_passing_samples_and_needs_enough_samples():
    assert mean_pass_at_k([(1, 1), (1, 0), (1, 1), (1, 0)], 1) == 0.5
    assert pass_at_k(4, 1, 1) == pytest.approx(0.25)
    with pytest.raises(ValueError, match="at least 5"):
        pass_at_k(3, 1, 5)
    assert rate([]) == 0.0 and rate([True, False, True, True]) == 0.75
