"""Reliability curves, top-label and classwise: what the reliability diagrams draw."""

import numpy as np
from keras import ops

from calibkeras.calibration.errors import row_statistics, top_label_bins
from calibkeras.metrics import functional
from calibkeras.utils.checks import check_labels, check_positive_int, check_probabilities
from calibkeras.utils.deprecation import labels_first


@labels_first()
def reliability_curve(labels, probs, num_bins=15):
    """Per-bin mean confidence, accuracy and count of the top-label prediction.

    Bins are equal-width on (0, 1], as in :func:`calibration_errors`: bin ``b`` holds
    confidences in ``(b / num_bins, (b + 1) / num_bins]``.

    Args:
        labels: ``(N,)`` integer class ids.
        probs: ``(N, K)`` predicted probabilities.
        num_bins: number of bins (default 15).

    Returns:
        A dict of 1-D arrays of length ``num_bins``: ``bin_lower``, ``bin_upper``,
        ``confidence`` (mean top-label probability in the bin, NaN when empty),
        ``accuracy`` (share correct in the bin, NaN when empty) and ``count``
        (number of samples, int).

    Example:
        >>> curve = reliability_curve(labels, probs)
        >>> plt.bar(curve["bin_lower"], curve["accuracy"], width=1 / 15, align="edge")
    """
    probs = check_probabilities(probs)
    labels = check_labels(labels, probs.shape[1], probs.shape[0])
    num_bins = check_positive_int(num_bins, "num_bins")
    statistics = row_statistics(labels, probs, num_bins, classwise=False)
    correct = (statistics.predicted == labels).astype(np.float64)
    curve = _curve(top_label_bins(statistics, correct, num_bins), num_bins, "accuracy")
    return {key: value if key.startswith("bin_") else value[0] for key, value in curve.items()}


def _curve(bins, num_bins, outcome_name):
    """Bin edges, mean confidence, mean outcome and count of ``bin_statistics`` output."""
    counts, confidence_sums, outcome_sums = (ops.convert_to_numpy(x) for x in bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        confidence = np.where(counts > 0, confidence_sums / counts, np.nan)
        outcome = np.where(counts > 0, outcome_sums / counts, np.nan)
    edges = np.linspace(0.0, 1.0, num_bins + 1)
    return {
        "bin_lower": edges[:-1],
        "bin_upper": edges[1:],
        "confidence": confidence,
        outcome_name: outcome,
        "count": np.rint(counts).astype(np.int64),
    }


@labels_first()
def classwise_reliability_curve(labels, probs, num_bins=10):
    """Per-class binned points of ``p_k`` against the event ``y = k`` (one-vs-rest).

    Uses the equal-width bins on (0, 1] of
    :func:`calibkeras.metrics.functional.bin_statistics`, computed by the same one pass
    over the rows as the classwise ECE of :func:`calibration_errors`: bin ``b`` of class
    ``k`` holds the samples whose ``p_k`` is in ``(b / B, (b + 1) / B]``.

    Args:
        labels: ``(N,)`` integer class ids.
        probs: ``(N, K)`` predicted probabilities.
        num_bins: number of bins ``B`` (default 10).

    Returns:
        A dict with ``bin_lower`` and ``bin_upper`` (``(B,)``); ``confidence`` (mean
        ``p_k`` in the bin, NaN when empty), ``frequency`` (share of the bin's samples
        whose label is ``k``, NaN when empty) and ``count`` (int), each ``(K, B)``; and
        ``ece`` (``(K,)``), each class's one-vs-rest calibration error, whose mean
        is the ``classwise_ece`` at ``num_bins`` bins.

    Example:
        >>> curve = classwise_reliability_curve(labels, probs)
        >>> curve["frequency"][3]  # observed frequency of class 3 in each bin
    """
    probs = check_probabilities(probs)
    labels = check_labels(labels, probs.shape[1], probs.shape[0])
    num_bins = check_positive_int(num_bins, "num_bins")
    bins = row_statistics(labels, probs, num_bins).class_bins
    curve = _curve(bins, num_bins, "frequency")
    curve["ece"] = np.asarray(
        ops.convert_to_numpy(functional.calibration_error_from_bins(*bins)), dtype=np.float64
    )
    return curve
