import calibration_reference as ref
import numpy as np
import pytest
from scipy import stats

from calibkeras.calibration import calibration_test


def draw_labels(probs, rng):
    return (rng.random((len(probs), 1)) > probs.cumsum(1)).sum(1)


def test_observed_ece_is_the_reference_ece(small_record):
    probs, labels = small_record
    result = calibration_test(labels[:1000], probs[:1000], n_resamples=200, seed=0)
    assert result["ece"] == pytest.approx(ref.ece(probs[:1000], labels[:1000]), abs=1e-12)
    assert result["ece_perfect_mean"] < result["ece_perfect_p90"]
    assert result["num_samples"] == 1000 and result["n_resamples"] == 200


def test_perfect_calibration_ece_shrinks_with_sample_size():
    # DESIGN.md: a calibrated 10-class model near 73% accuracy shows a 15-bin ECE near
    # 0.048 on 500 images and 0.015 on 5,000: the bias falls roughly as 1/sqrt(n).
    rng = np.random.default_rng(1)
    logits = rng.normal(scale=2.2, size=(5000, 10))
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    labels = draw_labels(probs, rng)
    small = calibration_test(labels[:500], probs[:500], n_resamples=300, seed=0)
    large = calibration_test(labels, probs, n_resamples=300, seed=0)
    assert 0.02 < small["ece_perfect_mean"] < 0.07
    assert 0.005 < large["ece_perfect_mean"] < 0.025
    assert large["ece_perfect_mean"] < small["ece_perfect_mean"] / 2


def test_p_value_is_roughly_uniform_for_calibrated_labels():
    rng = np.random.default_rng(2)
    p_values = []
    for _ in range(60):
        probs = rng.dirichlet(np.full(4, 0.7), size=300)
        p_values.append(
            calibration_test(draw_labels(probs, rng), probs, n_resamples=199,
                             seed=rng.integers(1 << 30))["p_value"]
        )
    # Kolmogorov-Smirnov against U(0, 1); p-values are discrete (steps of 1/200).
    assert stats.kstest(p_values, "uniform").pvalue > 0.01


def test_p_value_near_zero_for_overconfident_model():
    rng = np.random.default_rng(3)
    logits = rng.normal(scale=1.0, size=(1000, 5))
    true = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    labels = draw_labels(true, rng)
    sharp = np.exp(3 * logits) / np.exp(3 * logits).sum(1, keepdims=True)
    result = calibration_test(labels, sharp, n_resamples=500, seed=0)
    assert result["p_value"] <= 2 / 501
    assert result["ece"] > result["ece_perfect_p90"]


def test_bad_n_resamples():
    with pytest.raises(ValueError, match=r"`n_resamples` must be a positive integer, got 0"):
        calibration_test([0], [[0.5, 0.5]], n_resamples=0)
