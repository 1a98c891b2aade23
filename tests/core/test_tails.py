"""lrsweep.core.tails: the generalized Pareto shape of a sample's upper tail (Zhang & Stephens 2009, as in
PSIS) against distributions whose tail index is known, and the verdict on a Monte Carlo mean."""
import math

import numpy as np
import pytest
from scipy import stats

from lrsweep.core import tails


@pytest.mark.parametrize("k", [-0.2, 0.0, 0.3, 0.6, 0.9])
def test_gpd_shape_recovers_the_shape_of_generalized_pareto_samples(k):
    """20,000 exceedances of a GPD with shape k: the estimate within 0.03 (its standard error is ~0.01;
    the prior's pull towards 0.5 is 10/20010 of the way)."""
    x = stats.genpareto(k).rvs(20000, random_state=np.random.default_rng(1))
    assert tails.gpd_shape(x) == pytest.approx(k, abs=0.03)


@pytest.mark.parametrize("alpha", [1.5, 3.0])
def test_tail_of_a_pareto_sample_has_index_one_over_k(alpha):
    """Lomax samples with tail P(X > x) ~ x^-alpha have k = 1/alpha; with 10,000 samples the fit of the
    top M = 300 is within 0.15 (its standard error is ~0.06 at k = 0.67)."""
    x = np.random.default_rng(0).pareto(alpha, 10000)
    out = tails.tail(x)
    assert out["tail_size"] == 300 and out["k"] == pytest.approx(1 / alpha, abs=0.15)


def test_verdicts_follow_the_psis_sample_size_rule():
    """A light tail with enough samples is reliable; a tail with k between 0.5 and 0.7 asks for
    10^(1/(1-k)) samples; k >= 0.7 is hopeless; an overflowed sample is hopeless outright."""
    rng = np.random.default_rng(3)
    light = tails.tail(rng.exponential(size=256))
    assert light["reliable"] and not light["hopeless"] and light["needed"] <= 256
    heavy = tails.tail(rng.pareto(0.8, 4096))
    assert heavy["k"] > 1 and heavy["hopeless"] and math.isinf(heavy["needed"])
    mid = tails.tail(rng.pareto(1.7, 4096))                    # k ~ 0.6: ~300 samples
    assert 0.5 < mid["k"] < 0.7 and mid["needed"] == pytest.approx(10 ** (1 / (1 - mid["k"])))
    assert mid["reliable"] == (4096 >= mid["needed"])
    few = tails.tail(rng.pareto(1.7, 64))
    assert not few["reliable"] or few["k"] < 1 - 1 / math.log10(64)
    over = tails.tail(np.append(rng.exponential(size=63), np.inf))
    assert over["hopeless"] and not over["reliable"]


def test_bad_samples_name_the_argument():
    with pytest.raises(ValueError, match="^samples:"):
        tails.tail([1.0, 2.0])
    with pytest.raises(ValueError, match="^exceedances:"):
        tails.gpd_shape([1.0, -1.0, 2.0])


def test_the_fewest_samples_hold_two_exceedances():
    """A tail fit needs two exceedances over the threshold: 6 samples give them (tail_size 2), 5 give
    one, and are refused by name rather than failing inside the fit."""
    assert tails.tail_size(6) == 2 and tails.tail_size(5) == 1
    assert tails.tail(np.array([1.0, 2.0, 3.0, 4.0, 5.0, 7.0]))["tail_size"] == 2
    with pytest.raises(ValueError, match="at least 6 values"):
        tails.tail(np.array([1.0, 2.0, 3.0, 4.0, 5.0]))
