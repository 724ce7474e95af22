import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import softmax
from scipy.stats import chi2

from calibkeras.calibration import PriorShiftTest as ExportedPriorShiftTest
from calibkeras.calibration import prior_shift_test as exported_prior_shift_test
from calibkeras.priors import (
    DEFAULT_DIRICHLET,
    MIN_PRIOR,
    PriorEstimate,
    PriorShiftTest,
    class_counts,
    estimate_prior,
    prior_from_counts,
    prior_shift_test,
)


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 8).flatmap(lambda k: st.tuples(st.just(k), st.lists(st.integers(0, k - 1)))))
def test_class_counts_match_pandas_value_counts(case):
    num_classes, labels = case
    counts = class_counts(labels, num_classes)
    reference = (
        pd.Series(labels, dtype=int).value_counts().reindex(range(num_classes), fill_value=0)
    )
    np.testing.assert_array_equal(counts, reference.to_numpy())
    assert counts.dtype == np.int64


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(0, 1000), min_size=1).filter(lambda c: sum(c) > 0))
def test_prior_sums_to_one_and_is_proportional(counts):
    prior = prior_from_counts(counts)
    assert prior.dtype == np.float64
    assert prior.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(prior * sum(counts), counts, rtol=1e-9, atol=1e-9)


def test_class_counts_rejects_out_of_range_and_bad_num_classes():
    with pytest.raises(ValueError, match=r"`labels` must lie in \[0, 3\).*got 3"):
        class_counts([0, 3], 3)
    with pytest.raises(ValueError, match="`num_classes` must be a positive integer, got 0"):
        class_counts([0], 0)
    with pytest.raises(ValueError, match="`labels` must be 1-D"):
        class_counts([[0]], 2)


def test_prior_from_counts_rejects_bad_counts():
    with pytest.raises(ValueError, match="must not all be zero"):
        prior_from_counts([0, 0])
    with pytest.raises(ValueError, match="non-negative"):
        prior_from_counts([1, -1])
    with pytest.raises(ValueError, match="non-empty 1-D"):
        prior_from_counts([])


# --- EM prior estimation: MAP under a Dirichlet prior, bootstrap interval, shift test ---

MEANS = np.array([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0]])
TRAIN_PRIOR = np.array([0.5, 0.3, 0.2])


def gaussian_posteriors(rng, prior, size, train_prior=TRAIN_PRIOR, means=MEANS):
    """Labels drawn from ``prior``, features from unit Gaussians around ``means``, and
    the exact posteriors under ``train_prior``: calibrated by construction."""
    labels = rng.choice(len(prior), size=size, p=prior)
    x = means[labels] + rng.normal(size=(size, means.shape[1]))
    log_lik = -0.5 * ((x[:, None, :] - means[None]) ** 2).sum(-1)
    return softmax(log_lik + np.log(train_prior), axis=1), labels


def em_loop(probs, train_prior, alpha=1.0, tol=1e-15, max_iter=200_000):
    """Reference: Saerens et al.'s EM with explicit per-sample re-weighting and the MAP
    M-step (sum_n w_nk + alpha - 1) / (N + K (alpha - 1)); alpha = 1 is plain EM."""
    num_samples, num_classes = probs.shape
    prior = np.array(train_prior, dtype=np.float64)
    for _ in range(max_iter):
        weighted = probs * (prior / train_prior)  # every sample moved to the current prior
        weighted /= weighted.sum(axis=1, keepdims=True)
        new = (weighted.sum(axis=0) + alpha - 1) / (num_samples + num_classes * (alpha - 1))
        if np.max(np.abs(new - prior)) < tol:
            return new
        prior = new
    raise AssertionError("the reference loop did not converge")


@pytest.mark.parametrize("accelerate", [True, False])
@pytest.mark.parametrize("alpha", [1.0, 1.1, 2.5])
def test_em_matches_the_plain_loop_ml_and_map(alpha, accelerate):
    rng = np.random.default_rng(3)
    probs, _ = gaussian_posteriors(rng, [0.15, 0.25, 0.6], 400)
    expected = em_loop(probs, TRAIN_PRIOR, alpha)
    estimate = estimate_prior(probs, TRAIN_PRIOR, tol=1e-14, max_iter=100_000,
                              dirichlet=alpha, accelerate=accelerate)
    assert estimate.converged
    np.testing.assert_allclose(estimate.prior, expected, rtol=0, atol=1e-10)
    reweighted = probs * estimate.prior / TRAIN_PRIOR
    np.testing.assert_allclose(estimate.probs, reweighted / reweighted.sum(1, keepdims=True))
    assert estimate.log_likelihood == pytest.approx(
        np.log(probs @ (estimate.prior / TRAIN_PRIOR)).sum(), rel=1e-12)


def test_default_dirichlet_is_the_measured_one():
    rng = np.random.default_rng(4)
    probs, _ = gaussian_posteriors(rng, [0.15, 0.25, 0.6], 300)
    np.testing.assert_allclose(
        estimate_prior(probs, TRAIN_PRIOR, tol=1e-14, max_iter=100_000).prior,
        em_loop(probs, TRAIN_PRIOR, DEFAULT_DIRICHLET), atol=1e-10)
    assert DEFAULT_DIRICHLET == 1.1


@settings(max_examples=30, deadline=None)
@given(
    st.integers(0, 2**32 - 1),
    st.integers(2, 12),
    st.integers(1, 60),
    st.sampled_from([1.001, 1.1, 1.5, 3.0]),
)
def test_map_estimate_never_falls_below_its_bound(seed, num_classes, num_samples, alpha):
    rng = np.random.default_rng(seed)
    # Sharp posteriors on a few classes: the others get (almost) no evidence at all.
    logits = rng.normal(scale=6.0, size=(num_samples, num_classes))
    logits[:, num_classes // 2:] -= 30.0
    probs = softmax(logits, axis=1)
    train_prior = rng.dirichlet(np.full(num_classes, 5.0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # some draws need more than max_iter steps
        estimate = estimate_prior(probs, train_prior, dirichlet=alpha, max_iter=300)
    bound = (alpha - 1) / (num_samples + num_classes * (alpha - 1))
    assert bound > MIN_PRIOR  # so the final floor at MIN_PRIOR cannot hide a violation
    assert np.all(estimate.prior >= bound * (1 - 1e-12))
    assert estimate.prior.sum() == pytest.approx(1.0)


def test_map_keeps_unseen_classes_at_the_bound_while_ml_collapses_them():
    probs = np.eye(4)[[0, 0, 0, 1, 1, 2]]  # class 3 never seen
    ml = estimate_prior(probs, np.full(4, 0.25), dirichlet=1.0, max_iter=5000)
    assert ml.prior[3] < 1e-5
    alpha = 2.0
    bound = (alpha - 1) / (6 + 4 * (alpha - 1))
    estimate = estimate_prior(probs, np.full(4, 0.25), dirichlet=alpha)
    assert estimate.prior[3] == pytest.approx(bound, rel=1e-9)
    np.testing.assert_allclose(estimate.prior, (np.array([3, 2, 1, 0]) + 1) / 10, rtol=1e-9)


def test_squarem_needs_fewer_steps_and_reaches_the_same_optimum():
    rng = np.random.default_rng(5)
    probs = rng.dirichlet(np.ones(200), size=200)  # flat likelihood, sparse ML: slow EM
    train_prior = np.full(200, 1 / 200)
    plain = estimate_prior(probs, train_prior, dirichlet=1.0, max_iter=20_000,
                           accelerate=False)
    fast = estimate_prior(probs, train_prior, dirichlet=1.0, max_iter=20_000)
    assert plain.converged and fast.converged
    assert fast.n_iter * 4 < plain.n_iter
    assert fast.log_likelihood >= plain.log_likelihood - 1e-6
    assert np.abs(fast.prior - plain.prior).sum() < 1e-3


def test_prior_estimate_keeps_its_four_field_constructor():
    estimate = PriorEstimate(np.array([0.5, 0.5]), np.full((1, 2), 0.5), 3, True)
    assert estimate.lower is None and estimate.upper is None
    assert estimate.log_likelihood is None
    assert estimate.n_iter == 3 and estimate.converged


def test_interval_is_seeded_and_brackets_the_estimate():
    rng = np.random.default_rng(6)
    probs, _ = gaussian_posteriors(rng, [0.2, 0.3, 0.5], 500)
    plain = estimate_prior(probs, TRAIN_PRIOR)
    assert plain.lower is None and plain.upper is None
    first = estimate_prior(probs, TRAIN_PRIOR, interval=0.8, n_bootstrap=50, seed=1)
    again = estimate_prior(probs, TRAIN_PRIOR, interval=0.8, n_bootstrap=50, seed=1)
    other = estimate_prior(probs, TRAIN_PRIOR, interval=0.8, n_bootstrap=50, seed=2)
    np.testing.assert_array_equal(first.lower, again.lower)
    np.testing.assert_array_equal(first.upper, again.upper)
    assert not np.array_equal(first.lower, other.lower)
    np.testing.assert_array_equal(first.prior, plain.prior)
    assert first.lower.shape == first.upper.shape == (3,)
    assert np.all(first.lower < first.prior) and np.all(first.prior < first.upper)
    wider = estimate_prior(probs, TRAIN_PRIOR, interval=0.98, n_bootstrap=50, seed=1)
    assert np.all(wider.lower <= first.lower) and np.all(wider.upper >= first.upper)


def test_bootstrap_interval_covers_the_true_prior_about_90_percent():
    rng = np.random.default_rng(7)
    true_prior = np.array([0.2, 0.3, 0.5])
    hits = np.zeros(3)
    for draw in range(200):
        probs, _ = gaussian_posteriors(rng, true_prior, 1000)
        estimate = estimate_prior(probs, TRAIN_PRIOR, interval=0.9, n_bootstrap=200,
                                  seed=draw)
        hits += (estimate.lower <= true_prior) & (true_prior <= estimate.upper)
    coverage = hits / 200
    assert 0.85 <= coverage.mean() <= 0.95, coverage


def test_prior_shift_test_p_values_uniform_under_h0_and_tiny_under_a_shift():
    rng = np.random.default_rng(8)
    p_values = np.array([
        prior_shift_test(gaussian_posteriors(rng, TRAIN_PRIOR, 500)[0], TRAIN_PRIOR).p_value
        for _ in range(200)
    ])
    assert 0.01 <= np.mean(p_values < 0.05) <= 0.10
    assert 0.4 <= np.mean(p_values < 0.5) <= 0.6
    shifted, _ = gaussian_posteriors(rng, [0.2, 0.3, 0.5], 500)
    result = prior_shift_test(shifted, TRAIN_PRIOR)
    assert result.p_value < 1e-3


def test_prior_shift_test_is_the_likelihood_ratio_of_the_ml_estimate():
    rng = np.random.default_rng(9)
    probs, _ = gaussian_posteriors(rng, [0.3, 0.3, 0.4], 300)
    result = prior_shift_test(probs, TRAIN_PRIOR)
    assert isinstance(result, PriorShiftTest) and result.df == 2
    ml = em_loop(probs, TRAIN_PRIOR)
    statistic = 2 * np.log(probs @ (ml / TRAIN_PRIOR)).sum()  # LL(train_prior) = 0
    assert result.statistic == pytest.approx(statistic, rel=1e-8)
    assert result.p_value == pytest.approx(chi2.sf(statistic, 2), rel=1e-6)
    np.testing.assert_allclose(result.estimate.prior, ml, atol=1e-7)
    map_result = prior_shift_test(probs, TRAIN_PRIOR, dirichlet=3.0)
    assert map_result.statistic <= result.statistic  # MAP: conservative
    assert exported_prior_shift_test is prior_shift_test
    assert ExportedPriorShiftTest is PriorShiftTest


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"dirichlet": 0.5}, r"`dirichlet` must be a finite number >= 1 .*got 0\.5"),
        ({"dirichlet": np.nan}, r"`dirichlet` must be a finite number >= 1 .*got nan"),
        ({"dirichlet": True}, r"`dirichlet` must be a finite number >= 1 .*got True"),
        ({"dirichlet": "1.1"}, r"`dirichlet` must be a finite number >= 1 .*got '1\.1'"),
        ({"interval": 0.0}, r"`interval` must be None or a number in \(0, 1\).*got 0\.0"),
        ({"interval": 1}, r"`interval` must be None or a number in \(0, 1\).*got 1$"),
        ({"interval": 90}, r"`interval` must be None or a number in \(0, 1\).*got 90"),
        ({"interval": 0.9, "n_bootstrap": 0}, r"`n_bootstrap` must be a positive integer, got 0"),
        ({"n_bootstrap": 2.5}, r"`n_bootstrap` must be a positive integer, got 2\.5"),
        ({"seed": -1}, r"`seed` must be an integer >= 0 or None, got -1"),
        ({"accelerate": "yes"}, r"`accelerate` must be True or False, got 'yes'"),
    ],
)
def test_estimate_prior_names_the_bad_argument(kwargs, message):
    with pytest.raises(ValueError, match=message):
        estimate_prior(np.full((2, 3), 1 / 3), [0.2, 0.3, 0.5], **kwargs)


def test_prior_shift_test_names_a_bad_dirichlet():
    with pytest.raises(ValueError, match=r"`dirichlet` must be a finite number >= 1"):
        prior_shift_test(np.full((2, 3), 1 / 3), [0.2, 0.3, 0.5], dirichlet=0.0)
