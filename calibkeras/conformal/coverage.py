"""SetCoverage: how often prediction sets hold the true class, overall and by class."""

import dataclasses

import numpy as np

from calibkeras.utils.checks import check_labels, check_prior


@dataclasses.dataclass(frozen=True, eq=False)
class SetCoverage:
    """Coverage and size of prediction sets on labelled data (:func:`set_coverage`).

    Attributes:
        marginal: the fraction of rows whose set holds the true class.
        per_class: ``(K,)`` that fraction among the rows of each class (NaN for a class
            without rows).
        class_counts: ``(K,)`` the number of rows of each class.
        mean_size: the mean number of classes in a set.
        size_histogram: ``(K + 1,)`` the number of sets of each size ``0 .. K``.
        weighted: the coverage under ``prior`` (``sum_k prior_k * per_class_k`` over
            the classes present, renormalised), when one was given; else None.
    """

    marginal: float
    per_class: np.ndarray
    class_counts: np.ndarray
    mean_size: float
    size_histogram: np.ndarray
    weighted: float | None = None

    @property
    def worst_class(self):
        """The lowest per-class coverage over the classes present (float)."""
        return float(np.nanmin(self.per_class))

    def classes_below(self, level):
        """Ids of the classes present whose coverage is below ``level``."""
        present = self.class_counts > 0
        return np.flatnonzero(present & (np.nan_to_num(self.per_class, nan=1.0) < level))

    def as_dict(self, class_names=None):
        """A JSON-ready dict; per-class entries keyed by ``class_names`` (or ids)."""
        names = class_names or [str(k) for k in range(len(self.per_class))]
        return {
            "marginal_coverage": self.marginal,
            "weighted_coverage": self.weighted,
            "per_class_coverage": {
                name: (None if np.isnan(value) else float(value))
                for name, value in zip(names, self.per_class, strict=True)
            },
            "class_counts": dict(zip(names, self.class_counts.tolist(), strict=True)),
            "mean_set_size": self.mean_size,
            "set_size_histogram": self.size_histogram.tolist(),
        }


def set_coverage(labels, sets, *, prior=None):
    """Coverage and sizes of prediction sets ``sets`` for true classes ``labels``.

    Args:
        labels: ``(N,)`` integer class ids.
        sets: ``(N, K)`` booleans, ``sets[i, k]``: class ``k`` is in row ``i``'s set.
        prior: optional ``(K,)`` deployment prior for the ``weighted`` coverage.

    Returns:
        A :class:`SetCoverage`.

    Example:
        >>> sets = np.array([[True, False], [True, True], [False, True]])
        >>> set_coverage([0, 1, 0], sets).marginal
        0.6666666666666666
    """
    sets = np.asarray(sets)
    if sets.ndim != 2 or sets.dtype != bool:
        raise ValueError(
            f"`sets` must be an (N, K) boolean array, got shape {sets.shape} and dtype "
            f"{sets.dtype}"
        )
    num_classes = sets.shape[1]
    labels = check_labels(labels, num_classes, sets.shape[0], against="`sets` has {n} rows")
    covered = sets[np.arange(len(labels)), labels]
    counts = np.bincount(labels, minlength=num_classes)
    hits = np.bincount(labels, weights=covered, minlength=num_classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_class = np.where(counts > 0, hits / np.maximum(counts, 1), np.nan)
    weighted = None
    if prior is not None:
        prior = check_prior(prior, num_classes)
        present = counts > 0
        weighted = float(np.sum(prior[present] * per_class[present]) / prior[present].sum())
    sizes = sets.sum(axis=1)
    return SetCoverage(
        marginal=float(covered.mean()),
        per_class=per_class,
        class_counts=counts,
        mean_size=float(sizes.mean()),
        size_histogram=np.bincount(sizes, minlength=num_classes + 1),
        weighted=weighted,
    )
