"""Consistency-resampling test of calibration (Broecker & Smith 2007)."""

import numpy as np
from keras import ops

from calibkeras.calibration.errors import top_label_ece
from calibkeras.metrics import functional
from calibkeras.utils.checks import check_labels, check_positive_int, check_probabilities
from calibkeras.utils.deprecation import labels_first

#: Resampled outcomes are drawn in chunks of at most this many values (memory bound).
_CHUNK_VALUES = 20_000_000


@labels_first()
def calibration_test(labels, probs, num_bins=15, n_resamples=1000, seed=None):
    """Tests whether an observed ECE is consistent with perfect calibration.

    Binned ECE is biased upward on finite sets: even a perfectly calibrated model shows
    an ECE well above 0 on a few hundred samples. Consistency resampling measures that
    bias for *these* confidences and *this* sample size: it draws labels from the
    predicted probabilities themselves (so the model is calibrated by construction),
    recomputes the top-label ECE ``n_resamples`` times, and compares the observed ECE
    with that distribution. For the top-label ECE, drawing a label from ``p_i`` and
    checking it against the argmax is the same as drawing "correct" with probability
    ``max_k p_ik``, which is what is sampled.

    Args:
        labels: ``(N,)`` integer class ids.
        probs: ``(N, K)`` predicted probabilities.
        num_bins: equal-width bins for the ECE (default 15).
        n_resamples: number of perfectly calibrated resamples (default 1000).
        seed: seed of the random generator (``None`` draws fresh entropy).

    Returns:
        A dict with ``ece`` (observed), ``ece_perfect_mean`` and ``ece_perfect_p90``
        (mean and 90th percentile of the ECE of a perfectly calibrated model with the
        same confidences and sample size), ``p_value`` (share of resamples, with the
        +1 correction, whose ECE is at least the observed one; small values mean the
        miscalibration is real), ``n_resamples``, ``num_bins`` and ``num_samples``.

    Example:
        >>> result = calibration_test(labels, probs, seed=0)
        >>> print(f"ECE {result['ece']:.3f} (perfect: {result['ece_perfect_mean']:.3f},"
        ...       f" p = {result['p_value']:.2f})")

    References:
        Broecker & Smith (2007), Increasing the Reliability of Reliability Diagrams.
        Vaicenavicius et al. (2019), Evaluating model calibration in classification.
    """
    probs = check_probabilities(probs)
    labels = check_labels(labels, probs.shape[1], probs.shape[0])
    num_bins = check_positive_int(num_bins, "num_bins")
    n_resamples = check_positive_int(n_resamples, "n_resamples")
    num_samples = probs.shape[0]

    observed = top_label_ece(labels, probs, num_bins)
    confidence = probs.max(axis=1)
    bins = ops.convert_to_numpy(functional.bin_indices(confidence, num_bins))
    membership = np.zeros((num_samples, num_bins))
    membership[np.arange(num_samples), bins] = 1.0
    confidence_sums = confidence @ membership

    rng = np.random.default_rng(seed)
    resampled = np.empty(n_resamples)
    chunk = max(1, _CHUNK_VALUES // num_samples)
    for start in range(0, n_resamples, chunk):
        size = min(chunk, n_resamples - start)
        correct = (rng.random((size, num_samples)) < confidence).astype(np.float64)
        gaps = np.abs(confidence_sums - correct @ membership)
        resampled[start : start + size] = gaps.sum(axis=1) / num_samples

    return {
        "ece": observed,
        "ece_perfect_mean": float(resampled.mean()),
        "ece_perfect_p90": float(np.percentile(resampled, 90)),
        "p_value": float((1 + np.sum(resampled >= observed)) / (n_resamples + 1)),
        "n_resamples": n_resamples,
        "num_bins": num_bins,
        "num_samples": num_samples,
    }
