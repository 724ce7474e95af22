"""Classwise (one-vs-rest) reliability curves and their grid plot."""

import math

import numpy as np
from keras import ops

from calibkeras.metrics import functional
from calibkeras.reports._figures import new_figure
from calibkeras.utils.checks import (
    check_class_names,
    check_labels,
    check_positive_int,
    check_probabilities,
)


def classwise_reliability_curve(probs, labels, num_bins=10):
    """Per-class binned points of ``p_k`` against the event ``y = k`` (one-vs-rest).

    Uses the equal-width bins on (0, 1] of :func:`calibkeras.metrics.functional.bin_statistics`
    (the same bins as the classwise ECE of
    :func:`calibkeras.calibration.calibration_errors`): bin ``b`` of class ``k`` holds
    the samples whose ``p_k`` is in ``(b / B, (b + 1) / B]``.

    Args:
        probs: ``(N, K)`` predicted probabilities.
        labels: ``(N,)`` integer class ids.
        num_bins: number of bins ``B`` (default 10).

    Returns:
        A dict with ``bin_lower`` and ``bin_upper`` (``(B,)``); ``confidence`` (mean
        ``p_k`` in the bin, NaN when empty), ``frequency`` (share of the bin's samples
        whose label is ``k``, NaN when empty) and ``count`` (int), each ``(K, B)``; and
        ``ece`` (``(K,)``), each class's one-vs-rest calibration error, whose mean
        is the ``classwise_ece`` at ``num_bins`` bins.

    Example:
        >>> curve = classwise_reliability_curve(probs, labels)
        >>> curve["frequency"][3]  # observed frequency of class 3 in each bin
    """
    probs = check_probabilities(probs)
    labels = check_labels(labels, probs.shape[1], probs.shape[0])
    num_bins = check_positive_int(num_bins, "num_bins")
    one_hot = functional.labels_to_one_hot(labels, probs)
    bins = functional.bin_statistics(probs, one_hot, num_bins)
    ece = ops.convert_to_numpy(functional.calibration_error_from_bins(*bins))
    counts, confidence_sums, outcome_sums = (ops.convert_to_numpy(x) for x in bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        confidence = np.where(counts > 0, confidence_sums / counts, np.nan)
        frequency = np.where(counts > 0, outcome_sums / counts, np.nan)
    edges = np.linspace(0.0, 1.0, num_bins + 1)
    return {
        "bin_lower": edges[:-1],
        "bin_upper": edges[1:],
        "confidence": confidence,
        "frequency": frequency,
        "count": np.rint(counts).astype(np.int64),
        "ece": np.asarray(ece, dtype=np.float64),
    }


def plot_classwise_reliability(probs, labels, class_names, num_bins=10):
    """Draws one small one-vs-rest reliability curve per class, in a grid.

    Each panel plots, for every non-empty bin of ``p_k``, the observed frequency of
    class ``k`` against the mean predicted ``p_k`` (marker area grows with the bin's
    count, on a log scale since most samples sit near ``p_k = 0``), with the diagonal
    of perfect calibration; the title gives the class's one-vs-rest ECE.

    Args:
        probs: ``(N, K)`` predicted probabilities.
        labels: ``(N,)`` integer class ids.
        class_names: ``K`` class names, in column order.
        num_bins: number of equal-width bins (default 10).

    Returns:
        A ``matplotlib.figure.Figure`` with exactly ``K`` axes (one per class, in class
        order; unused grid cells are removed).

    Example:
        >>> plot_classwise_reliability(probs, labels, names).savefig("classwise.png")
    """
    curve = classwise_reliability_curve(probs, labels, num_bins)
    num_classes = curve["count"].shape[0]
    class_names = list(check_class_names(class_names, num_classes))
    columns = min(5, num_classes)
    rows = math.ceil(num_classes / columns)
    figure = new_figure(2.3 * columns + 0.6, 2.35 * rows + 0.6)
    axes = np.atleast_1d(figure.subplots(rows, columns, sharex=True, sharey=True)).ravel()
    for extra in axes[num_classes:]:
        extra.remove()
    largest = max(int(curve["count"].max()), 1)
    for k, (ax, name) in enumerate(zip(axes, class_names)):
        filled = curve["count"][k] > 0
        sizes = 8 + 60 * np.log1p(curve["count"][k][filled]) / np.log1p(largest)
        ax.plot([0, 1], [0, 1], linestyle="--", color="0.5", linewidth=0.8)
        ax.plot(curve["confidence"][k][filled], curve["frequency"][k][filled],
                color="#4C72B0", linewidth=1.2)
        ax.scatter(curve["confidence"][k][filled], curve["frequency"][k][filled], s=sizes,
                   color="#4C72B0", edgecolor="white", linewidth=0.5, zorder=3)
        ax.set_title(f"{_shorten(name)}\nECE {curve['ece'][k]:.4f}", fontsize=9)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xticks([0, 0.5, 1])
        ax.set_yticks([0, 0.5, 1])
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.25)
    figure.supxlabel("predicted probability of the class, p_k", fontsize=10)
    figure.supylabel("observed frequency of the class", fontsize=10)
    return figure


def _shorten(name, limit=22):
    return name if len(name) <= limit else name[: limit - 1] + "…"
