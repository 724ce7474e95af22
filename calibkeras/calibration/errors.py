"""Calibration and accuracy scores of a set of probabilistic predictions.

:func:`calibration_errors` checks the ``(N, K)`` probabilities in one scan, then reads
them once more, in row blocks that stay in the CPU cache (:mod:`calibkeras.utils.blocks`),
and takes from each block every
piece the scores share (:func:`row_statistics`): the argmax (once), the top-label
confidence and each sample's ``p_y`` (gathered, no one-hot matrix), the squared norm
``sum_k p_k**2``, and the classwise bin sums of every entry. The top-label bins and
the classwise outcome sums are the bins of the ``(N,)`` confidences and ``p_y``, the
same entries, so the matrix is binned once for both ECEs. The scores are then made
from these ``(N,)`` vectors and ``(K, B)`` sums by the definitions in
:mod:`calibkeras.metrics.functional`. Arithmetic is float64: float32 input is read as
it is and widened block by block, which is exact (float32 arithmetic would not be:
rounding the benchmark's float64 probabilities to float32 moves its MCE by 2e-9,
relative). Timings on 1,000,000 x 100 against the earlier whole-matrix version:
BENCHMARKS.md, "calibration_errors in row blocks".
"""

from typing import NamedTuple

import numpy as np
from keras import ops

from calibkeras.metrics import functional
from calibkeras.utils.blocks import row_blocks
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


class RowStatistics(NamedTuple):
    """The pieces of :func:`row_statistics`, shared by the scores.

    Attributes:
        predicted: ``(N,)`` argmax class of each row (ties to the lowest index).
        confidence: ``(N,)`` top-label probability ``max_k p_k``.
        label_probability: ``(N,)`` probability of the label, ``p_y``.
        squared_norm: ``(N,)`` ``sum_k p_k**2``.
        top_label_bin: ``(N,)`` equal-width bin index of ``confidence``, in ``[0, B)``.
        class_bins: ``(counts, confidence_sums, outcome_sums)``, each ``(K, B)``: the
            classwise bin sums of ``p_k`` against ``1[y = k]``, as
            :func:`calibkeras.metrics.functional.bin_statistics` gives them for the
            whole matrix; None when not asked for.
    """

    predicted: np.ndarray
    confidence: np.ndarray
    label_probability: np.ndarray
    squared_norm: np.ndarray
    top_label_bin: np.ndarray
    class_bins: tuple = None


#: A block whose share of entries above the first bin edge (``p > 1 / B``) is below
#: this is binned sparsely: only those entries are binned and counted, and the first
#: bin gets the rest (the block's rows and column sums less the other bins). With many
#: classes most entries are small, and binning only the few large ones is the cheaper
#: way; dense blocks (few classes) are binned entry by entry.
SPARSE_SHARE = 0.25


def _numbers_of_scaled(scaled):
    """``ceil(scaled)`` as integers, in place on the float ``scaled = p * B``."""
    np.ceil(scaled, out=scaled)
    return scaled.astype(np.intp)


def _bin_numbers(values, num_bins):
    """``ceil(p * B)`` as integers: 1 + the equal-width bin index of ``p`` in (0, 1],
    and 0 for ``p = 0``, which belongs to bin 0 (the rule of
    :func:`calibkeras.metrics.functional.bin_indices`, ``clip(ceil(p B) - 1, 0, B - 1)``;
    ``p * B <= B`` in floating point for ``p <= 1``, so no clip is needed above).
    """
    return _numbers_of_scaled(np.multiply(values, num_bins, dtype=np.float64))


def row_statistics(labels, probs, num_bins, classwise=True, index=None):
    """One pass over checked ``probs`` in cache-sized row blocks; see :class:`RowStatistics`.

    Args:
        labels: ``(N,)`` int class ids (of the rows ``index`` picks, when given).
        probs: ``(M, K)`` float64 or float32 probabilities, checked.
        num_bins: number of equal-width bins ``B``.
        classwise: whether to bin every entry for the classwise bins (the only step
            that does more than read each entry once).
        index: optional ``(N,)`` rows of ``probs`` to score (a bootstrap resample),
            gathered block by block instead of copying ``probs[index]`` whole.

    Returns:
        A :class:`RowStatistics`.
    """
    num_rows = probs.shape[0] if index is None else index.shape[0]
    num_classes = probs.shape[1]
    predicted = np.empty(num_rows, dtype=np.intp)
    confidence = np.empty(num_rows)
    label_probability = np.empty(num_rows)
    squared_norm = np.empty(num_rows)
    # Classwise sums by bin number: class k owns slots k * (B + 1) + number, number
    # 0..B; number 0 (p = 0) joins bin 0 at the end. Dense and sparse blocks are
    # summed apart, as the sparse ones leave their first bin to be filled in.
    stride = num_bins + 1
    offsets = np.arange(num_classes, dtype=np.intp) * stride
    size = num_classes * stride
    dense = [np.zeros(size, dtype=np.int64), np.zeros(size)]
    sparse = [np.zeros(size, dtype=np.int64), np.zeros(size)]
    sparse_rows, sparse_column_sums = 0, np.zeros(num_classes)
    for start, stop in row_blocks(num_rows, num_classes * 8):
        rows = slice(start, stop)
        block = probs[rows] if index is None else probs[index[rows]]
        block = np.ascontiguousarray(block, dtype=np.float64)  # float32: widened, exact
        within = np.arange(stop - start)
        top = block.argmax(axis=1)
        predicted[rows] = top
        confidence[rows] = block[within, top]
        label_probability[rows] = block[within, labels[rows]]
        np.einsum("ij,ij->i", block, block, out=squared_norm[rows])
        if not classwise:
            continue
        scaled = np.multiply(block, num_bins)
        above = scaled > 1  # bin number >= 2: beyond the first bin
        if np.count_nonzero(above) < SPARSE_SHARE * above.size:
            flat = np.flatnonzero(above)
            slots = _numbers_of_scaled(scaled.ravel()[flat])
            slots += (flat % num_classes) * stride
            weights = block.ravel()[flat]
            sparse_rows += stop - start
            sparse_column_sums += block.sum(axis=0)
            totals = sparse
        else:
            slots = _numbers_of_scaled(scaled)
            slots += offsets
            slots = slots.ravel()
            weights = block.ravel()
            totals = dense
        totals[0] += np.bincount(slots, minlength=size)
        totals[1] += np.bincount(slots, weights=weights, minlength=size)
    top_number = _bin_numbers(confidence, num_bins)
    class_bins = None
    if classwise:
        counts, sums = (values.reshape(num_classes, stride) for values in sparse)
        counts[:, 1] = sparse_rows - counts.sum(axis=1)  # the entries not above 1 / B
        sums[:, 1] = np.where(counts[:, 1] > 0, sparse_column_sums - sums.sum(axis=1), 0.0)
        label_slots = labels * stride + _bin_numbers(label_probability, num_bins)
        class_bins = tuple(
            _fold_zero_slot(values.reshape(num_classes, stride))
            for values in (
                dense[0] + sparse[0],
                dense[1] + sparse[1],
                np.bincount(label_slots, minlength=size),
            )
        )
    top_label_bin = np.maximum(top_number, 1) - 1
    return RowStatistics(
        predicted, confidence, label_probability, squared_norm, top_label_bin, class_bins
    )


def _fold_zero_slot(values):
    """``(K, B + 1)`` sums by bin number -> ``(K, B)`` float64 by bin index (number 0,
    ``p = 0``, joins bin 0)."""
    folded = values[:, 1:].astype(np.float64)
    folded[:, 0] += values[:, 0]
    return folded


def top_label_bins(statistics, correct, num_bins):
    """``(counts, confidence_sums, outcome_sums)`` of the top-label bins, each ``(1, B)``
    float64, from :func:`row_statistics` and the ``(N,)`` float ``correct``."""
    bins = statistics.top_label_bin
    return tuple(
        np.bincount(bins, weights=weights, minlength=num_bins)[None, :].astype(np.float64)
        for weights in (None, statistics.confidence, correct)
    )


def top_label_ece(labels, probs, num_bins):
    """Top-label ECE (15-bin L1 by default) of checked arrays; see :func:`calibration_errors`."""
    statistics = row_statistics(labels, probs, num_bins, classwise=False)
    correct = (statistics.predicted == labels).astype(np.float64)
    bins = top_label_bins(statistics, correct, num_bins)
    return float(_numpy(functional.calibration_error_from_bins(*bins))[0])


def _adaptive_ece(confidence, correct, num_bins):
    """Top-label ECE over equal-mass bins: the samples in stable order of confidence
    (ties by index), cut as ``np.array_split`` cuts ``N`` items into ``B`` bins (empty
    bins dropped)."""
    order = np.argsort(confidence, kind="stable")
    gaps = [
        abs(confidence[chunk].sum() - correct[chunk].sum())
        for chunk in np.array_split(order, num_bins)
        if chunk.size
    ]
    return float(np.sum(gaps) / confidence.shape[0])


def _macro_f1(true_counts, predicted_counts, hits):
    present = (true_counts + predicted_counts) > 0
    denominator = true_counts + predicted_counts
    f1 = np.divide(2.0 * hits, denominator, out=np.zeros(hits.shape[0]), where=denominator > 0)
    return float(f1[present].mean())


def _scores(probs, labels, num_bins, index=None):
    if index is not None:
        labels = labels[index]
    num_classes = probs.shape[1]
    statistics = row_statistics(labels, probs, num_bins, index=index)
    correct = (statistics.predicted == labels).astype(np.float64)
    top_bins = top_label_bins(statistics, correct, num_bins)
    support = np.bincount(labels, minlength=num_classes).astype(np.float64)
    hits = np.bincount(labels, weights=correct, minlength=num_classes)
    predicted_counts = np.bincount(statistics.predicted, minlength=num_classes)
    brier = functional.brier_score_from_label_probability(
        statistics.squared_norm, statistics.label_probability
    )
    nll = functional.negative_log_likelihood_from_label_probability(
        statistics.label_probability
    )
    return {
        "ece": float(_numpy(functional.calibration_error_from_bins(*top_bins))[0]),
        "classwise_ece": float(
            _numpy(functional.calibration_error_from_bins(*statistics.class_bins)).mean()
        ),
        "adaptive_ece": _adaptive_ece(statistics.confidence, correct, num_bins),
        "mce": float(
            _numpy(functional.calibration_error_from_bins(*top_bins, norm="max"))[0]
        ),
        "brier": float(_numpy(brier).mean()),
        "nll": float(_numpy(nll).mean()),
        "accuracy": float(correct.mean()),
        "balanced_accuracy": float(
            _numpy(functional.balanced_accuracy_from_counts(support, hits))
        ),
        "macro_f1": _macro_f1(support, predicted_counts, hits),
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
    probs = check_probabilities(probs, keep_float32=True)
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
            resampled = _scores(probs, labels, num_bins, index=index)
            samples[row] = [resampled[name] for name in SCORE_NAMES]
        tail = 100 * (1 - confidence_level) / 2
        low, high = np.percentile(samples, [tail, 100 - tail], axis=0)
        scores["intervals"] = {
            name: (float(low[i]), float(high[i])) for i, name in enumerate(SCORE_NAMES)
        }
    return scores
