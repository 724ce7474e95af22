"""Reliability curve: what a reliability diagram draws."""

import numpy as np
from keras import ops

from calibkeras.metrics import functional
from calibkeras.utils.checks import check_labels, check_positive_int, check_probabilities


def reliability_curve(probs, labels, num_bins=15):
    """Per-bin mean confidence, accuracy and count of the top-label prediction.

    Bins are equal-width on (0, 1], as in :func:`calibration_errors`: bin ``b`` holds
    confidences in ``(b / num_bins, (b + 1) / num_bins]``.

    Args:
        probs: ``(N, K)`` predicted probabilities.
        labels: ``(N,)`` integer class ids.
        num_bins: number of bins (default 15).

    Returns:
        A dict of 1-D arrays of length ``num_bins``: ``bin_lower``, ``bin_upper``,
        ``confidence`` (mean top-label probability in the bin, NaN when empty),
        ``accuracy`` (share correct in the bin, NaN when empty) and ``count``
        (number of samples, int).

    Example:
        >>> curve = reliability_curve(probs, labels)
        >>> plt.bar(curve["bin_lower"], curve["accuracy"], width=1 / 15, align="edge")
    """
    probs = check_probabilities(probs)
    labels = check_labels(labels, probs.shape[1], probs.shape[0])
    num_bins = check_positive_int(num_bins, "num_bins")
    confidence, correct = functional.top_label_outcomes(labels, probs)
    counts, confidence_sums, correct_sums = (
        ops.convert_to_numpy(x)[0] for x in functional.bin_statistics(confidence, correct, num_bins)
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_confidence = np.where(counts > 0, confidence_sums / counts, np.nan)
        accuracy = np.where(counts > 0, correct_sums / counts, np.nan)
    edges = np.linspace(0.0, 1.0, num_bins + 1)
    return {
        "bin_lower": edges[:-1],
        "bin_upper": edges[1:],
        "confidence": mean_confidence,
        "accuracy": accuracy,
        "count": counts.astype(np.int64),
    }
