"""The band criterion mu - k*sigma <= s <= mu + k*sigma, its lower-bound-only variant, and L1 filter norms."""

import numpy as np
import pytest

from tff_prune.models import get_model
from tff_prune.config import ExperimentConfig
from tff_prune.federated.steps.structured import make_plan
from tff_prune.pruning import (CRITERION_NAMES, band, band_keep_mask, band_low, criterion_from_name, filter_l1, plan,
                               ratio)


def test_both_tails_are_removed():
    s = np.array([0.1] + [5.0] * 20 + [12.0])
    mu, sigma = s.mean(), s.std()
    assert s[0] < mu - 2.2 * sigma and s[-1] > mu + 2.2 * sigma
    keep = band_keep_mask(s, 2.2)
    assert keep.tolist() == [False] + [True] * 20 + [False]


def test_low_tail_only_keeps_the_strong_outlier():
    s = np.array([0.1] + [5.0] * 20 + [12.0])
    assert band_keep_mask(s, 2.2, tails="low").tolist() == [False] + [True] * 21
    assert band_low(2.2).keep_mask(s).tolist() == [False] + [True] * 21
    assert str(band_low(2.2)) == "band_low(2.2)"
    with pytest.raises(ValueError, match="tails must be 'both' or 'low'"):
        band_keep_mask(s, 2.2, tails="high")
    with pytest.raises(ValueError, match=r"band_low\(k\) needs a finite k > 0"):
        band_low(0.0)


def test_band_low_on_a_model_removes_only_filters_below_the_band():
    # Same model, same k: band_low removes exactly the filters band removes below mu - k*sigma, none above.
    model = get_model("cnn", "femnist", seed=5)
    w = model.get_layer("conv2").kernel.numpy()
    w[..., 3] *= 4.0  # a filter far above the band
    w[..., 9] *= 0.01  # and one far below
    model.get_layer("conv2").kernel.assign(w)
    both = plan(model, band(2.0))
    low = plan(model, band_low(2.0))
    kept_both, kept_low = ({int(i) for g in p.groups if "conv2" in g.producers for i in g.kept_filters("conv2")}
                           for p in (both, low))
    assert 3 not in kept_both and 9 not in kept_both
    assert 3 in kept_low and 9 not in kept_low
    norms = filter_l1(model.get_layer("conv2"))
    assert kept_low == set(np.flatnonzero(norms >= norms.mean() - 2.0 * norms.std()).tolist())
    assert low.params_after > both.params_after
    cfg = ExperimentConfig(criterion="band_low", k=2.0)
    assert make_plan(model, cfg).widths_after == low.widths_after


def test_uses_population_std_not_sample_std():
    # One value sits between the population-sigma bound and the (wider) sample-sigma bound.
    s = np.array([1.0, 1.0, 1.0, 1.0, 3.0])
    k = 1.95
    pop_hi = s.mean() + k * s.std(ddof=0)
    samp_hi = s.mean() + k * s.std(ddof=1)
    assert pop_hi < 3.0 < samp_hi
    assert band_keep_mask(s, k).tolist() == [True, True, True, True, False]


def test_bounds_are_inclusive_and_equal_norms_all_kept():
    assert band_keep_mask(np.full(7, 0.3), 2.0).all()
    s = np.array([0.0, 2.0])  # mu=1, sigma=1: with k=1 both sit exactly on the bounds
    assert band_keep_mask(s, 1.0).tolist() == [True, True]


def test_at_least_one_filter_kept_nearest_mean():
    s = np.array([0.0, 4.0, 10.0])  # mu=4.67, sigma=4.11: band [4.26, 5.08] is empty for k=0.1
    keep = band_keep_mask(s, 0.1)
    assert keep.tolist() == [False, True, False]


@pytest.mark.parametrize("k", [0.0, -1.0])
def test_rejects_non_positive_k(k):
    with pytest.raises(ValueError, match="k must be > 0"):
        band_keep_mask(np.ones(3), k)


def test_rejects_nan_and_empty():
    with pytest.raises(ValueError, match="NaN"):
        band_keep_mask(np.array([1.0, np.nan]), 2.0)
    with pytest.raises(ValueError, match="non-empty 1-D"):
        band_keep_mask(np.array([]), 2.0)


def test_l1_norms_of_the_femnist_cnn():
    model = get_model("cnn", "femnist", seed=3)
    norms = {name: filter_l1(model.get_layer(name)) for name in ("conv1", "conv2")}
    assert norms["conv1"].shape == (32,) and norms["conv2"].shape == (64,)
    k2 = model.get_layer("conv2").kernel.numpy()
    np.testing.assert_allclose(norms["conv2"][7], np.abs(k2[:, :, :, 7]).sum(), rtol=1e-6)
    p = plan(model, band(2.2))
    sel = {name: g.kept_filters(name) for g in p.groups for name in g.producers if name in norms}
    assert sorted(sel) == ["conv1", "conv2"]
    for name, s in norms.items():
        np.testing.assert_array_equal(sel[name], np.flatnonzero(band_keep_mask(s, 2.2)))


def test_criteria_by_name_are_the_configs_choices():
    from tff_prune.config import CRITERIA

    assert CRITERIA == CRITERION_NAMES  # config stays TF-free, so it lists the names again
    assert criterion_from_name("band", k=2.5) == band(2.5)
    assert criterion_from_name("band_low", k=1.0) == band_low(1.0)
    assert criterion_from_name("ratio", prune_ratio=0.3) == ratio(0.3)
    with pytest.raises(ValueError, match="unknown criterion 'l2'; choose one of band, band_low, ratio"):
        criterion_from_name("l2")
    with pytest.raises(ValueError, match="ratio"):
        criterion_from_name("ratio", prune_ratio=1.5)
