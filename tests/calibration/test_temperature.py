import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import log_softmax

from calibkeras.calibration import fit_temperature


def nll_at(temperature, logits, labels, prior=None):
    offset = 0.0 if prior is None else np.log(prior)
    log_probs = log_softmax(logits / temperature + offset, axis=1)
    return -log_probs[np.arange(len(labels)), labels].mean()


def test_reaches_grid_optimum(record):
    probs, labels = record
    logits = np.log(np.maximum(probs, 1e-30))
    temperature = fit_temperature(logits, labels)  # speed: benchmarks/temperature_fitting.py
    # Brute force: a coarse grid, then a fine grid around its best point.
    grid = np.exp(np.linspace(np.log(0.05), np.log(20), 60))
    best = grid[np.argmin([nll_at(t, logits, labels) for t in grid])]
    fine = np.linspace(best * 0.9, best * 1.1, 201)
    grid_nll = min(nll_at(t, logits, labels) for t in fine)
    assert nll_at(temperature, logits, labels) <= grid_nll + 1e-6


def test_with_prior_offset_reaches_grid_optimum(small_record):
    probs, labels = small_record
    logits = np.log(probs)
    prior = np.linspace(1, 3, 10)
    prior /= prior.sum()
    temperature = fit_temperature(logits, labels, prior=prior)
    fine = np.exp(np.linspace(np.log(temperature) - 0.05, np.log(temperature) + 0.05, 1001))
    grid_nll = min(nll_at(t, logits, labels, prior) for t in fine)
    assert nll_at(temperature, logits, labels, prior) <= grid_nll + 1e-9


def test_sample_weight_equals_repetition(small_record):
    probs, labels = small_record
    logits = np.log(probs[:500])
    labels = labels[:500]
    weights = np.arange(500) % 3
    repeated = np.repeat(np.arange(500), weights)
    assert fit_temperature(logits, labels, sample_weight=weights) == pytest.approx(
        fit_temperature(logits[repeated], labels[repeated]), rel=1e-8
    )


@settings(max_examples=30, deadline=None)
@given(st.floats(0.2, 5.0), st.integers(0, 2**32 - 1))
def test_recovers_true_temperature(true_temperature, seed):
    # Labels drawn from softmax(z / T*): the fitted T converges to T* with many samples.
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=3.0, size=(4000, 5))
    probs = np.exp(log_softmax(logits / true_temperature, axis=1))
    labels = (rng.random((4000, 1)) > probs.cumsum(1)).sum(1)
    temperature = fit_temperature(logits, labels)
    assert temperature == pytest.approx(true_temperature, rel=0.15)


def test_degenerate_inputs_converge_with_warning():
    logits = np.array([[2.0, 0.0], [0.0, 2.0]])
    with pytest.warns(UserWarning, match="perfectly separated"):
        assert fit_temperature(logits, [0, 1]) == pytest.approx(1e-4)
    with pytest.warns(UserWarning, match="no information"):
        assert fit_temperature(logits, [1, 0]) == pytest.approx(1e6)


@pytest.mark.parametrize(
    "logits, labels, kwargs, message",
    [
        ([[np.nan, 0.0]], [0], {}, r"`logits` must be finite; found nan"),
        ([[np.inf, 0.0]], [0], {}, r"`logits` must be finite; found inf"),
        ([[1.0, 0.0]], [3], {}, r"`labels` must be class ids in \[0, 2\)"),
        ([[1.0, 0.0]], [0, 1], {}, r"`labels` has 2 entries"),
        (np.zeros((0, 2)), [], {}, r"`logits` is empty"),
        ([[1.0, 0.0]], [0], {"prior": [1.0, 0.0]}, r"every entry of `prior` must be a positive"),
        ([[1.0, 0.0]], [0], {"prior": [0.2, 0.3, 0.5]}, r"`prior` must have 2 entries"),
        ([[1.0, 0.0]], [0], {"sample_weight": [-1.0]}, r"`sample_weight` must be finite"),
    ],
)
def test_bad_input(logits, labels, kwargs, message):
    with pytest.raises(ValueError, match=message):
        fit_temperature(logits, labels, **kwargs)


def test_one_class_is_refused():
    with pytest.raises(
        ValueError, match=r"`logits` must have at least 2 columns \(one per class\), got shape "
        r"\(3, 1\); with one class there is nothing to calibrate"
    ):
        fit_temperature(np.zeros((3, 1)), [0, 0, 0])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"max_iter": 0}, r"`max_iter` must be a positive integer, got 0"),
        ({"max_iter": -5}, r"`max_iter` must be a positive integer, got -5"),
        ({"max_iter": 2.5}, r"`max_iter` must be a positive integer, got 2.5"),
        ({"tol": -1.0}, r"`tol` must be a finite number >= 0, got -1.0"),
        ({"tol": np.nan}, r"`tol` must be a finite number >= 0, got nan"),
    ],
)
def test_bad_max_iter_and_tol(kwargs, message):
    with pytest.raises(ValueError, match=message):
        fit_temperature([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]], [0, 1, 1], **kwargs)


def _overlapping(seed=0, temperature=1.7, n=2000):
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=3.0, size=(n, 5))
    probs = np.exp(log_softmax(logits / temperature, axis=1))
    return logits, (rng.random((n, 1)) > probs.cumsum(1)).sum(1)


@pytest.mark.parametrize("scale", [1e155, 1e300, 1e-150])
def test_temperature_scales_with_the_logits(scale):
    # NLL(softmax(c z / (c T))) = NLL(softmax(z / T)): the optimum for c z is c T.
    logits, labels = _overlapping()
    reference = fit_temperature(logits, labels)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow, no bound warning
        assert fit_temperature(logits * scale, labels) == pytest.approx(scale * reference, rel=1e-9)


def test_stopping_at_max_iter_warns():
    logits, labels = _overlapping()
    with pytest.warns(UserWarning, match=r"stopped after `max_iter`=1 steps before converging"):
        fit_temperature(logits, labels, max_iter=1)
