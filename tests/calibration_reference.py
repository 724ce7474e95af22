"""Independent plain-NumPy loops for the calibration definitions in DESIGN.md.

Written from the definitions, bin by bin and sample by sample, without calling
calibkeras, so tests can check the package against them.
"""

import math

import numpy as np


def _bin_of(confidence, num_bins):
    # Bin b holds (b/B, (b+1)/B]; exactly 0 goes to bin 0.
    for b in range(num_bins):
        if confidence <= (b + 1) / num_bins:
            return b
    return num_bins - 1


def binned_gaps(confidences, outcomes, num_bins):
    """Per-bin (count, |sum conf - sum outcome|) with an explicit Python loop."""
    counts = [0] * num_bins
    conf_sums = [0.0] * num_bins
    hit_sums = [0.0] * num_bins
    for c, o in zip(confidences, outcomes, strict=True):
        b = _bin_of(c, num_bins)
        counts[b] += 1
        conf_sums[b] += c
        hit_sums[b] += o
    return counts, conf_sums, hit_sums


def ece(probs, labels, num_bins=15):
    confidences = [max(row) for row in probs.tolist()]
    predicted = [int(np.argmax(row)) for row in probs]
    outcomes = [float(p == y) for p, y in zip(predicted, labels, strict=True)]
    counts, conf_sums, hit_sums = binned_gaps(confidences, outcomes, num_bins)
    n = len(confidences)
    return sum(
        (counts[b] / n) * abs(conf_sums[b] / counts[b] - hit_sums[b] / counts[b])
        for b in range(num_bins)
        if counts[b]
    )


def mce(probs, labels, num_bins=15):
    confidences = [max(row) for row in probs.tolist()]
    outcomes = [float(int(np.argmax(row)) == y) for row, y in zip(probs, labels, strict=True)]
    counts, conf_sums, hit_sums = binned_gaps(confidences, outcomes, num_bins)
    return max(
        abs(conf_sums[b] / counts[b] - hit_sums[b] / counts[b])
        for b in range(num_bins)
        if counts[b]
    )


def classwise_ece(probs, labels, num_bins=15):
    num_classes = probs.shape[1]
    total = 0.0
    for k in range(num_classes):
        confidences = probs[:, k].tolist()
        outcomes = [float(y == k) for y in labels]
        counts, conf_sums, hit_sums = binned_gaps(confidences, outcomes, num_bins)
        n = len(confidences)
        total += sum(abs(conf_sums[b] - hit_sums[b]) / n for b in range(num_bins) if counts[b])
    return total / num_classes


def adaptive_ece(probs, labels, num_bins=15):
    confidences = probs.max(axis=1)
    outcomes = (probs.argmax(axis=1) == labels).astype(float)
    order = np.argsort(confidences, kind="stable")
    n = len(order)
    total = 0.0
    # Equal-mass bins: the first n % B bins hold one extra sample (np.array_split rule).
    size, extra = divmod(n, num_bins)
    start = 0
    for b in range(num_bins):
        stop = start + size + (1 if b < extra else 0)
        members = order[start:stop]
        if len(members):
            total += abs(confidences[members].sum() - outcomes[members].sum())
        start = stop
    return total / n


def brier(probs, labels):
    total = 0.0
    for row, y in zip(probs.tolist(), labels, strict=True):
        total += sum((p - (1.0 if k == y else 0.0)) ** 2 for k, p in enumerate(row))
    return total / len(labels)


def nll(probs, labels):
    rows = zip(probs.tolist(), labels, strict=True)
    return -sum(math.log(max(row[y], 1e-12)) for row, y in rows) / len(labels)


def _argmax(row):
    best = 0
    for k, p in enumerate(row):
        if p > row[best]:
            best = k
    return best


def accuracy(probs, labels):
    rows = probs.tolist()
    return sum(_argmax(row) == y for row, y in zip(rows, labels, strict=True)) / len(labels)


def balanced_accuracy(probs, labels):
    # Mean recall over the classes present in labels.
    rows = probs.tolist()
    support, hits = {}, {}
    for row, y in zip(rows, labels, strict=True):
        y = int(y)
        support[y] = support.get(y, 0) + 1
        hits[y] = hits.get(y, 0) + (_argmax(row) == y)
    return sum(hits[k] / support[k] for k in support) / len(support)


def macro_f1(probs, labels):
    # Mean F1 over the classes present in the labels or the predictions.
    predicted = [_argmax(row) for row in probs.tolist()]
    classes = set(int(y) for y in labels) | set(predicted)
    total = 0.0
    for k in classes:
        tp = sum(p == k and y == k for p, y in zip(predicted, labels, strict=True))
        fp = sum(p == k and y != k for p, y in zip(predicted, labels, strict=True))
        fn = sum(p != k and y == k for p, y in zip(predicted, labels, strict=True))
        total += 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0
    return total / len(classes)
