import numpy as np
import pytest
from scipy.special import softmax

from calibkeras.calibration import adjust_to_prior, estimate_prior


def test_em_recovers_known_prior():
    rng = np.random.default_rng(0)
    num_classes = 4
    train_prior = np.full(num_classes, 0.25)
    true_prior = np.array([0.55, 0.25, 0.15, 0.05])
    means = rng.normal(scale=2.0, size=(num_classes, 6))
    labels = rng.choice(num_classes, size=20000, p=true_prior)
    x = means[labels] + rng.normal(size=(20000, 6))
    # Exact posteriors under the training prior for this Gaussian mixture.
    log_lik = -0.5 * ((x[:, None, :] - means[None]) ** 2).sum(-1)
    probs = softmax(log_lik + np.log(train_prior), axis=1)
    estimate = estimate_prior(probs, train_prior)
    assert estimate.converged
    assert np.abs(estimate.prior - true_prior).sum() < 0.02
    np.testing.assert_allclose(estimate.probs.sum(1), 1.0)


@pytest.mark.parametrize(
    "probs",
    [
        np.eye(3)[[0, 0, 1]],  # one-hot, a class never predicted
        np.full((5, 3), 1 / 3),  # uninformative
        np.array([[0.2, 0.3, 0.5]]),  # a single sample
    ],
)
def test_em_converges_on_degenerate_input(probs):
    estimate = estimate_prior(probs, [0.5, 0.3, 0.2], max_iter=5000)
    assert estimate.converged
    assert np.all(estimate.prior > 0) and estimate.prior.sum() == pytest.approx(1.0)


def test_adjust_to_prior_is_bayes_rule():
    probs = np.array([[0.6, 0.4]])
    adjusted = adjust_to_prior(probs, [0.5, 0.5], [0.2, 0.8])
    expected = np.array([0.6 * 0.2, 0.4 * 0.8])
    np.testing.assert_allclose(adjusted[0], expected / expected.sum())


@pytest.mark.parametrize(
    "train_prior, kwargs, message",
    [
        ([0.5, 0.5, 0.0], {}, r"every entry of `train_prior` must be a positive"),
        ([0.5, 0.5], {}, r"`train_prior` must have 3 entries"),
        ([0.4, 0.4, 0.4], {}, r"`train_prior` must sum to 1"),
        ([0.2, 0.3, 0.5], {"method": "bbse"}, r"`method` must be one of 'em'"),
        ([0.2, 0.3, 0.5], {"max_iter": 0}, r"`max_iter` must be a positive integer"),
    ],
)
def test_bad_input(train_prior, kwargs, message):
    with pytest.raises(ValueError, match=message):
        estimate_prior(np.full((2, 3), 1 / 3), train_prior, **kwargs)


@pytest.mark.parametrize(
    "to_prior, message",
    [
        ([1.0, 0.0], r"every entry of `to_prior` must be a positive finite probability, got "
         r"\[1\.0, 0\.0\]"),
        ([-3.0, 4.0], r"every entry of `to_prior` must be a positive finite probability"),
        ([0.2, 0.3, 0.5], r"`to_prior` must have 2 entries \(one per class\), got 3"),
        ([0.4, 0.4], r"`to_prior` must sum to 1, got sum 0\.8"),
    ],
)
def test_adjust_to_prior_refuses_bad_priors(to_prior, message):
    with pytest.raises(ValueError, match=message):
        adjust_to_prior([[0.0, 1.0], [0.6, 0.4]], [0.5, 0.5], to_prior)


def test_adjust_to_prior_refuses_bad_probs_and_from_prior():
    with pytest.raises(ValueError, match=r"rows of `probs` must sum to 1.*row 0 sums to 1\.1"):
        adjust_to_prior([[0.5, 0.6]], [0.5, 0.5], [0.2, 0.8])
    with pytest.raises(ValueError, match=r"every entry of `from_prior` must be a positive"):
        adjust_to_prior([[0.5, 0.5]], [1.0, 0.0], [0.2, 0.8])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"tol": 0.0}, r"`tol` must be a positive finite number, got 0\.0"),
        ({"tol": -1e-3}, r"`tol` must be a positive finite number, got -0\.001"),
        ({"tol": np.nan}, r"`tol` must be a positive finite number, got nan"),
        ({"max_iter": 2.7}, r"`max_iter` must be a positive integer, got 2\.7"),
    ],
)
def test_estimate_prior_bad_tol_and_max_iter(kwargs, message):
    with pytest.raises(ValueError, match=message):
        estimate_prior(np.full((2, 3), 1 / 3), [0.2, 0.3, 0.5], **kwargs)


def test_estimate_prior_warns_when_it_stops_at_max_iter():
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.7, 0.3]])
    with pytest.warns(UserWarning, match=r"EM stopped at `max_iter`=2 iterations before conv"):
        estimate = estimate_prior(probs, [0.5, 0.5], max_iter=2)
    assert not estimate.converged and estimate.n_iter == 2


def test_em_step_matches_the_plain_reweighting_loop():
    # Independent reference: Saerens et al.'s EM written out with an explicit loop.
    rng = np.random.default_rng(1)
    probs = softmax(rng.normal(scale=2.0, size=(300, 6)), axis=1)
    train_prior = np.full(6, 1 / 6)
    prior = train_prior.copy()
    for _ in range(7):
        weighted = probs * prior / train_prior
        prior = (weighted / weighted.sum(axis=1, keepdims=True)).mean(axis=0)
    with pytest.warns(UserWarning, match="EM stopped"):
        estimate = estimate_prior(probs, train_prior, max_iter=7, dirichlet=1.0, accelerate=False)
    np.testing.assert_allclose(estimate.prior, prior, rtol=1e-12)
    expected = probs * estimate.prior / train_prior
    np.testing.assert_allclose(estimate.probs, expected / expected.sum(1, keepdims=True))
