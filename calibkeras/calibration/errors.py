"""Calibration and accuracy scores of a set of probabilistic predictions."""


import numpy as np
from keras import ops

from calibkeras.metrics import functional
from calibkeras.utils.checks import (
    check_labels,
    check_nonnegative_int,
    check_positive_int,
    check_probabilities,
)
from calibkeras.utils.deprecation import labels_first

#: The scalar scores that :func:`calibration_errors` returns, in order.
SCORE_NAMES = (
    "ece",
    "classwise_ece",
    "adaptive_ece",
    "mce",
    "brier",
    "nll",
    "accuracy",
    "balanced_accuracy",
    "macro_f1",
)


def _numpy(tensor):
    return ops.convert_to_numpy(tensor)


def top_label_ece(labels, probs, num_bins):
    """Top-label ECE (15-bin L1 by default) of checked arrays; see :func:`calibration_errors`."""
    confidence, correct = functional.top_label_outcomes(labels, probs)
    bins = functional.bin_statistics(confidence, correct, num_bins)
    return float(_numpy(functional.calibration_error_from_bins(*bins))[0])


def _adaptive_ece(confidence, correct, num_bins):
    order = np.argsort(confidence, kind="stable")
    gaps = [
        abs(confidence[chunk].sum() - correct[chunk].sum())
        for chunk in np.array_split(order, num_bins)
        if chunk.size
    ]
    return float(np.sum(gaps) / confidence.shape[0])


def _macro_f1(labels, predicted, num_classes):
    true_counts = np.bincount(labels, minlength=num_classes)
    predicted_counts = np.bincount(predicted, minlength=num_classes)
    hits = np.bincount(labels[labels == predicted], minlength=num_classes)
    present = (true_counts + predicted_counts) > 0
    denominator = true_counts + predicted_counts
    f1 = np.divide(2.0 * hits, denominator, out=np.zeros(num_classes), where=denominator > 0)
    return float(f1[present].mean())


def _scores(probs, labels, num_bins):
    num_classes = probs.shape[1]
    predicted = probs.argmax(axis=1)
    probs, labels = ops.convert_to_tensor(probs), ops.convert_to_tensor(labels)  # once
    confidence, correct = functional.top_label_outcomes(labels, probs)
    top_bins = functional.bin_statistics(confidence, correct, num_bins)
    one_hot = functional.labels_to_one_hot(labels, probs)
    class_bins = functional.bin_statistics(probs, one_hot, num_bins)
    support, hits = functional.class_recall_counts(labels, probs)
    labels = _numpy(labels)
    return {
        "ece": float(_numpy(functional.calibration_error_from_bins(*top_bins))[0]),
        "classwise_ece": float(
            _numpy(functional.calibration_error_from_bins(*class_bins)).mean()
        ),
        "adaptive_ece": _adaptive_ece(
            _numpy(confidence)[:, 0], _numpy(correct)[:, 0], num_bins
        ),
        "mce": float(
            _numpy(functional.calibration_error_from_bins(*top_bins, norm="max"))[0]
        ),
        "brier": float(_numpy(functional.brier_score(labels, probs)).mean()),
        "nll": float(_numpy(functional.negative_log_likelihood(labels, probs)).mean()),
        "accuracy": float(np.mean(predicted == labels)),
        "balanced_accuracy": float(
            _numpy(functional.balanced_accuracy_from_counts(support, hits))
        ),
        "macro_f1": _macro_f1(labels, predicted, num_classes),
    }


@labels_first()
def calibration_errors(
    labels, probs, num_bins=15, n_bootstrap=0, confidence_level=0.9, seed=None
):
    """Calibration errors, proper scores and accuracies of probabilistic predictions.

    Definitions (equal-width bins on (0, 1]; a confidence of 1.0 is in the last bin):

    * ``ece``: top-label expected calibration error, ``sum_b (n_b/N) |acc_b - conf_b|``
      over ``num_bins`` equal-width bins (Guo et al. 2017). Lower is better, in [0, 1].
    * ``classwise_ece``: the same for every class's one-vs-rest probability ``p_k``
      against ``1[y = k]``, averaged (not summed) over classes.
    * ``adaptive_ece``: top-label ECE with equal-mass bins (each holds ~N/num_bins
      samples, sorted by confidence).
    * ``mce``: maximum calibration error, the largest ``|acc_b - conf_b|`` over the
      non-empty top-label bins.
    * ``brier``: mean of ``sum_k (p_k - 1[y = k])**2``, in [0, 2].
    * ``nll``: mean of ``-ln p_y``, ``p_y`` clipped at 1e-12 inside the log.
    * ``accuracy``: share of argmax predictions equal to the label.
    * ``balanced_accuracy``: mean per-class recall over classes present in ``labels``
      (as ``sklearn.metrics.balanced_accuracy_score``).
    * ``macro_f1``: unweighted mean F1 over the classes present in ``labels`` or in the
      predictions (as ``sklearn.metrics.f1_score(average="macro")``).

    Binned ECE is biased upward on small sets (a perfectly calibrated 10-class model at
    ~73% accuracy shows a 15-bin ECE near 0.048 on 500 samples): read it beside
    :func:`calibration_test`, and prefer the proper scores ``nll`` and ``brier``.

    Args:
        labels: ``(N,)`` integer class ids in ``[0, K)``.
        probs: ``(N, K)`` predicted probabilities; rows must sum to 1.
        num_bins: number of bins for the binned errors, a positive integer (default 15).
        n_bootstrap: int >= 0, number of bootstrap resamples for confidence intervals;
            0 (default) computes none.
        confidence_level: coverage of the percentile bootstrap intervals, in (0, 1).
        seed: seed of the bootstrap's random generator.

    Returns:
        A dict with the float scores named in ``SCORE_NAMES``. With ``n_bootstrap > 0``
        it also holds ``"intervals"``: a dict mapping each score name to its
        ``(low, high)`` percentile interval.

    Example:
        >>> scores = calibration_errors(y_test, model_probs)
        >>> scores["ece"], scores["nll"]

    References:
        Guo et al. (2017), On Calibration of Modern Neural Networks.
        Nixon et al. (2019), Measuring Calibration in Deep Learning (classwise,
        adaptive bins).
    """
    probs = check_probabilities(probs)
    labels = check_labels(labels, probs.shape[1], probs.shape[0])
    num_bins = check_positive_int(num_bins, "num_bins")
    n_bootstrap = check_nonnegative_int(n_bootstrap, "n_bootstrap", " (0 for no intervals)")
    if not 0 < confidence_level < 1:
        raise ValueError(f"`confidence_level` must be in (0, 1), got {confidence_level}")
    scores = _scores(probs, labels, num_bins)
    if n_bootstrap:
        rng = np.random.default_rng(seed)
        samples = np.empty((n_bootstrap, len(SCORE_NAMES)))
        for row in range(n_bootstrap):
            index = rng.integers(0, probs.shape[0], probs.shape[0])
            resampled = _scores(probs[index], labels[index], num_bins)
            samples[row] = [resampled[name] for name in SCORE_NAMES]
        tail = 100 * (1 - confidence_level) / 2
        low, high = np.percentile(samples, [tail, 100 - tail], axis=0)
        scores["intervals"] = {
            name: (float(low[i]), float(high[i])) for i, name in enumerate(SCORE_NAMES)
        }
    return scores
