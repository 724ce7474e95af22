"""Class counts and class priors: the numbers PriorShift and the logit-adjusted loss take.

Pure NumPy, so layers, losses and the data loaders share one definition."""

import numpy as np


def class_counts(labels, num_classes):
    """Counts how many examples each class has.

    Args:
        labels: integer class ids, any array-like of shape `[N]`, each in
            `[0, num_classes)`.
        num_classes: positive int, the number of classes `K`. Classes without
            examples get a count of 0.

    Returns:
        `np.ndarray` of dtype int64 and shape `[K]`.

    Raises:
        ValueError: if `num_classes` is not a positive integer, `labels` is not
            1-D or holds a value outside `[0, num_classes)`.

    Example:
    >>> class_counts([0, 2, 2], num_classes=3)
    array([1, 0, 2])
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)):
        raise ValueError(f"`num_classes` must be a positive integer, got {num_classes!r}")
    if num_classes < 1:
        raise ValueError(f"`num_classes` must be a positive integer, got {num_classes}")
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"`labels` must be 1-D, got shape {labels.shape}")
    if labels.size == 0:
        return np.zeros(num_classes, dtype=np.int64)
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"`labels` must hold integer class ids, got dtype {labels.dtype}")
    bad = labels[(labels < 0) | (labels >= num_classes)]
    if bad.size:
        raise ValueError(
            f"`labels` must lie in [0, {num_classes}) for `num_classes`={num_classes}, "
            f"got {int(bad[0])}"
        )
    return np.bincount(labels, minlength=num_classes).astype(np.int64)


def prior_from_counts(counts):
    """Turns class counts into a class prior (relative frequencies).

    Args:
        counts: non-negative numbers, array-like of shape `[K]`, not all zero.

    Returns:
        `np.ndarray` of dtype float64 and shape `[K]` that sums to 1:
        `counts / counts.sum()`.

    Raises:
        ValueError: if `counts` is not 1-D, is empty, holds a negative or
            non-finite value, or sums to zero.

    Example:
    >>> prior_from_counts([3, 1])
    array([0.75, 0.25])
    """
    counts = np.asarray(counts, dtype=np.float64)
    if counts.ndim != 1 or counts.size == 0:
        raise ValueError(f"`counts` must be a non-empty 1-D array, got shape {counts.shape}")
    if not np.all(np.isfinite(counts)) or np.any(counts < 0):
        raise ValueError(f"`counts` must be finite and non-negative, got {counts.tolist()}")
    total = counts.sum()
    if total <= 0:
        raise ValueError(f"`counts` must not all be zero, got {counts.tolist()}")
    return counts / total
