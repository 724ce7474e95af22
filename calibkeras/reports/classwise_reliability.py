"""Classwise (one-vs-rest) reliability curves and their grid plot."""

import math

import numpy as np

from calibkeras.calibration.reliability import classwise_reliability_curve
from calibkeras.reports._figures import new_figure
from calibkeras.utils.checks import check_class_names
from calibkeras.utils.deprecation import labels_first


@labels_first()
def plot_classwise_reliability(labels, probs, class_names, num_bins=10):
    """Draws one small one-vs-rest reliability curve per class, in a grid.

    Each panel plots, for every non-empty bin of ``p_k``, the observed frequency of
    class ``k`` against the mean predicted ``p_k`` (marker area grows with the bin's
    count, on a log scale since most samples sit near ``p_k = 0``), with the diagonal
    of perfect calibration; the title gives the class's one-vs-rest ECE.

    Args:
        labels: ``(N,)`` integer class ids.
        probs: ``(N, K)`` predicted probabilities.
        class_names: ``K`` class names, in column order.
        num_bins: number of equal-width bins (default 10).

    Returns:
        A ``matplotlib.figure.Figure`` with exactly ``K`` axes (one per class, in class
        order; unused grid cells are removed).

    Example:
        >>> plot_classwise_reliability(labels, probs, names).savefig("classwise.png")
    """
    curve = classwise_reliability_curve(labels, probs, num_bins)
    num_classes = curve["count"].shape[0]
    class_names = list(check_class_names(class_names, num_classes))
    columns = min(5, num_classes)
    rows = math.ceil(num_classes / columns)
    figure = new_figure(2.3 * columns + 0.6, 2.35 * rows + 0.6)
    axes = np.atleast_1d(figure.subplots(rows, columns, sharex=True, sharey=True)).ravel()
    for extra in axes[num_classes:]:
        extra.remove()
    largest = max(int(curve["count"].max()), 1)
    for k, (ax, name) in enumerate(zip(axes[:num_classes], class_names, strict=True)):
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
