"""Top-label reliability diagram with a confidence histogram."""

import numpy as np

from calibkeras.calibration import calibration_errors, reliability_curve
from calibkeras.reports._figures import new_figure
from calibkeras.reports.evaluation import format_p_value
from calibkeras.utils.checks import check_labels, check_probabilities
from calibkeras.utils.deprecation import labels_first

#: Labels of the bar containers on the reliability panel (tests and users find them by it).
ACCURACY_LABEL = "accuracy in bin"
GAP_LABEL = "gap to confidence"


@labels_first()
def plot_reliability_diagram(labels, probs, num_bins=15, title=None, reference=None):
    """Draws the top-label reliability diagram and the confidence histogram.

    The upper panel has one bar per non-empty equal-width confidence bin (the bins of
    :func:`calibkeras.calibration.reliability_curve`): its height is the accuracy of
    the samples in the bin; the shaded part between the bar top and the bin's mean
    confidence is the calibration gap. A calibrated model's bars follow the diagonal.
    The lower panel shows the share of samples in each bin. The ECE is annotated and,
    when ``reference`` is given, so are the mean and 90th percentile of the ECE of a
    perfectly calibrated model at this sample size and the p-value.

    Args:
        labels: ``(N,)`` integer class ids.
        probs: ``(N, K)`` predicted probabilities.
        num_bins: number of equal-width bins on (0, 1] (default 15).
        title: optional title of the figure.
        reference: optional result of :func:`calibkeras.calibration.calibration_test`
            on the same ``probs``, ``labels`` and ``num_bins``.

    Returns:
        A ``matplotlib.figure.Figure`` with 2 axes: the reliability panel and the
        histogram panel.

    Example:
        >>> test = calibration_test(labels, probs, seed=0)
        >>> plot_reliability_diagram(labels, probs, reference=test).savefig("rel.png")
    """
    probs = check_probabilities(probs)
    labels = check_labels(labels, probs.shape[1], probs.shape[0])
    curve = reliability_curve(labels, probs, num_bins=num_bins)
    scores = calibration_errors(labels, probs, num_bins=num_bins)
    if reference is not None:
        _check_reference(reference, num_bins, probs.shape[0])

    figure = new_figure(5.6, 6.4)
    top, bottom = figure.subplots(
        2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    filled = curve["count"] > 0
    lower = curve["bin_lower"][filled]
    width = 1.0 / num_bins
    accuracy = curve["accuracy"][filled]
    confidence = curve["confidence"][filled]

    top.plot([0, 1], [0, 1], linestyle="--", color="0.4", linewidth=1, label="perfect calibration")
    top.bar(lower, accuracy, width=width, align="edge", color="#4C72B0", edgecolor="white",
            linewidth=0.8, label=ACCURACY_LABEL)
    top.bar(lower, np.abs(confidence - accuracy), bottom=np.minimum(confidence, accuracy),
            width=width, align="edge", color="#DD8452", alpha=0.45, edgecolor="#C44E52",
            hatch="//", linewidth=0.5, label=GAP_LABEL)
    top.set_xlim(0, 1)
    top.set_ylim(0, 1)
    top.set_ylabel("accuracy")
    top.set_aspect("auto")
    top.legend(loc="upper left", fontsize=8, frameon=True)
    top.grid(alpha=0.25)
    top.text(0.03, 0.80, _annotation(scores, reference, probs.shape[0]), transform=top.transAxes,
             ha="left", va="top", fontsize=8, family="monospace",
             bbox={"boxstyle": "round", "facecolor": "white", "edgecolor": "0.7", "alpha": 0.9})
    if title:
        top.set_title(title)

    num_samples = probs.shape[0]
    bottom.bar(curve["bin_lower"], curve["count"] / num_samples, width=width, align="edge",
               color="0.55", edgecolor="white", linewidth=0.8)
    mean_confidence = float(np.nansum(curve["confidence"] * curve["count"]) / num_samples)
    bottom.axvline(scores["accuracy"], color="#4C72B0", linestyle="-", linewidth=1.2,
                   label=f"accuracy {scores['accuracy']:.3f}")
    bottom.axvline(mean_confidence, color="#C44E52", linestyle="--", linewidth=1.2,
                   label=f"mean confidence {mean_confidence:.3f}")
    bottom.set_xlabel("confidence (top-label probability)")
    bottom.set_ylabel("share of samples")
    bottom.set_ylim(0, 1)
    bottom.legend(loc="upper left", fontsize=7, frameon=False)
    bottom.grid(alpha=0.25)
    return figure


def _annotation(scores, reference, num_samples):
    lines = [f"ECE  {scores['ece']:.4f}"]
    if reference is not None:
        lines += [
            "perfectly calibrated",
            f"  at N = {num_samples}:",
            f"  mean {reference['ece_perfect_mean']:.4f}",
            f"  p90  {reference['ece_perfect_p90']:.4f}",
            format_p_value(reference["p_value"], reference["n_resamples"]),
        ]
    lines.append(f"NLL  {scores['nll']:.4f}")
    lines.append(f"Brier {scores['brier']:.4f}")
    return "\n".join(lines)


def _check_reference(reference, num_bins, num_samples):
    missing = [
        key for key in ("ece_perfect_mean", "ece_perfect_p90", "p_value", "n_resamples")
        if key not in reference
    ]
    if missing:
        raise ValueError(
            "`reference` must be a calibration_test result; it lacks the keys "
            f"{missing} (got keys {sorted(reference)})"
        )
    if reference.get("num_bins", num_bins) != num_bins:
        raise ValueError(
            f"`reference` was computed with num_bins={reference['num_bins']}, but the "
            f"diagram uses num_bins={num_bins}; pass the same number of bins"
        )
    if reference.get("num_samples", num_samples) != num_samples:
        raise ValueError(
            f"`reference` was computed on {reference['num_samples']} samples, but `probs` "
            f"has {num_samples} rows; compute it on the same predictions"
        )
