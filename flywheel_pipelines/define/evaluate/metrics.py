"""Guide metrics: the unbiased pass@k estimator, and the rate of generated code that parses."""

from __future__ import annotations

import math
from collections.abc import Sequence


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples of which c pass (Chen et al. 2021):

        pass@k = 1 - C(n - c, k) / C(n, k)

    computed as a product to stay exact for large n.
    """
    if n < k:
        raise ValueError(f"pass@{k} needs at least {k} samples, got {n}")
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def mean_pass_at_k(per_problem: Sequence[tuple[int, int]], k: int) -> float:
    """Mean pass@k over problems, each given as (samples, passing samples)."""
    if not per_problem:
        return 0.0
    return sum(pass_at_k(n, c, k) for n, c in per_problem) / len(per_problem)


def rate(flags: Sequence[bool]) -> float:
    return sum(flags) / len(flags) if flags else 0.0
