"""Class priors in one place: counts, priors from counts, the prior vocabulary, EM.

Pure NumPy, so layers, losses, the data loaders, calibration and the command line share
one definition. The vocabulary every calibkeras function that takes a prior accepts is
:data:`NAMED_PRIORS` plus a mapping ``{class name: probability}`` or a vector of ``K``
probabilities; :func:`resolve_prior` turns any of them into the vector.
"""

import numbers
import warnings
from collections.abc import Mapping
from typing import NamedTuple

import numpy as np

from calibkeras.utils.checks import (
    _show,
    check_bool,
    check_choice,
    check_dirichlet,
    check_nonnegative_int,
    check_positive_float,
    check_positive_int,
    check_prior,
    check_probabilities,
)

__all__ = [
    "BOOTSTRAP_MAX_ITER",
    "DEFAULT_DIRICHLET",
    "MIN_PRIOR",
    "NAMED_PRIORS",
    "PRIOR_ALIASES",
    "PriorEstimate",
    "PriorShiftTest",
    "adjust_to_prior",
    "class_counts",
    "estimate_prior",
    "prior_from_counts",
    "prior_shift_test",
    "resolve_prior",
]

#: Estimated priors are floored at this value so every class stays possible.
MIN_PRIOR = 1e-6

#: The named priors: every class equally likely; the training class frequencies; the
#: label frequencies of the labelled data at hand; estimated by EM on unlabelled data.
NAMED_PRIORS = ("uniform", "training", "labels", "estimate")

#: Other spellings accepted for a named prior (the CLI's ``train``; the callbacks'
#: ``validation``, the labels of the validation data).
PRIOR_ALIASES = {"train": "training", "validation": "labels"}


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
    num_classes = check_positive_int(num_classes, "num_classes")
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


class PriorEstimate(NamedTuple):
    """Result of :func:`estimate_prior`.

    Attributes:
        prior: ``(K,)`` estimated deployment prior (positive, sums to 1).
        probs: ``(N, K)`` the input probabilities re-weighted to that prior.
        n_iter: number of EM steps run (evaluations of the EM map; an accelerated
            iteration takes three).
        converged: whether the last plain EM step moved the prior less than ``tol``
            (max-abs).
        lower: ``(K,)`` lower ends of the bootstrap percentile interval, or None
            (without ``interval``).
        upper: ``(K,)`` upper ends of that interval, or None.
        log_likelihood: log-likelihood of the unlabelled data at ``prior`` relative to
            the training prior, ``sum_n log sum_k p_nk prior_k / train_prior_k`` (0 at
            ``train_prior``; the Dirichlet term of a MAP estimate is not included), or
            None in a PriorEstimate built by hand.

    The last three fields are new in 0.2 and have defaults, so code that builds a
    PriorEstimate from four values keeps working; unpacking one into four names does
    not (use the attributes).
    """

    prior: np.ndarray
    probs: np.ndarray
    n_iter: int
    converged: bool
    lower: np.ndarray | None = None
    upper: np.ndarray | None = None
    log_likelihood: float | None = None


class PriorShiftTest(NamedTuple):
    """Result of :func:`prior_shift_test`.

    Attributes:
        statistic: the likelihood-ratio statistic ``2 (LL(estimate) - LL(train_prior))``
            (>= 0).
        df: degrees of freedom of its asymptotic chi-square law, ``K - 1``.
        p_value: ``P(chi2(df) >= statistic)``.
        estimate: the :class:`PriorEstimate` the statistic was computed at.
    """

    statistic: float
    df: int
    p_value: float
    estimate: PriorEstimate


def adjust_to_prior(probs, from_prior, to_prior):
    """Re-weights posteriors from one class prior to another (Bayes' rule).

    ``p'(k | x) ∝ p(k | x) * to_prior[k] / from_prior[k]``, normalised per row.

    Args:
        probs: ``(N, K)`` posteriors under ``from_prior``: rows in [0, 1] that sum to 1.
        from_prior: ``(K,)`` prior the probabilities were computed under.
        to_prior: ``(K,)`` prior to move them to.
        Both priors need positive entries that sum to 1 (a zero entry makes a class
        impossible and can leave a row with nothing to normalise).

    Returns:
        ``(N, K)`` float64 posteriors under ``to_prior``.

    Raises:
        ValueError: if ``probs`` is not a probability matrix, or a prior is not a
            positive probability vector with one entry per column of ``probs``.
    """
    probs = check_probabilities(probs)
    from_prior = check_prior(from_prior, probs.shape[1], name="from_prior")
    to_prior = check_prior(to_prior, probs.shape[1], name="to_prior")
    return _reweight(probs, from_prior, to_prior)


def _reweight(probs, from_prior, to_prior):
    """`adjust_to_prior` on checked arguments."""
    weighted = probs * (to_prior / from_prior)
    totals = weighted.sum(axis=1, keepdims=True)
    if not np.all(totals > 0):
        row = int(np.argmin(totals[:, 0] > 0))
        raise ValueError(
            f"row {row} of `probs` puts all its mass on classes whose prior ratio "
            "`to_prior / from_prior` underflows to 0; it cannot be re-weighted"
        )
    return weighted / totals


#: Default concentration of the symmetric Dirichlet prior of :func:`estimate_prior`'s MAP
#: estimate, chosen by benchmarks/em_dirichlet.py (see BENCHMARKS.md): against
#: maximum likelihood (1) it cuts the adapted NLL's excess over the best setting about
#: fourfold on shifted CIFAR samples, while the prior's L1 error stays within a few
#: percent of maximum likelihood's even under sparse shifts (larger values shrink more
#: toward uniform and cost L1 there).
DEFAULT_DIRICHLET = 1.1

#: Cap on the EM steps of each bootstrap replicate of :func:`estimate_prior` (warm-started
#: from the estimate, they need far fewer than the estimate itself).
BOOTSTRAP_MAX_ITER = 200


def _check_interval(interval):
    """`interval` as a float or None, or raises unless it lies in (0, 1)."""
    if interval is None:
        return None
    if (
        isinstance(interval, (bool, np.bool_))
        or not isinstance(interval, numbers.Real)
        or not 0 < interval < 1
    ):
        raise ValueError(
            f"`interval` must be None or a number in (0, 1), e.g. 0.9, got {_show(interval)}"
        )
    return float(interval)


def _em_step(probs, train_prior, prior, alpha, weights):
    """One EM (MAP) step for every column of ``prior``.

    ``prior`` is ``(K, B)``: B priors iterated side by side (the bootstrap replicates),
    ``weights`` None or ``(N, B)`` row weights (bootstrap counts). With
    ``r = prior / train_prior`` and ``s_n = sum_k p_nk r_k``, the responsibilities are
    ``w_nk = p_nk r_k / s_n`` and their column sums ``r_k * (P^T (c / s))_k``: two
    matrix products instead of re-weighting the ``(N, K)`` matrix.

    Returns:
        ``(new_prior, objective)``: the ``(K, B)`` M-step
        ``(sum_n c_n w_nk + alpha - 1) / (sum_n c_n + K (alpha - 1))`` and the ``(B,)``
        MAP objective at ``prior``, ``sum_n c_n log s_n + (alpha - 1) sum_k log prior_k``.
    """
    ratio = prior / train_prior[:, None]
    totals = probs @ ratio
    if weights is None:
        scaled = 1.0 / totals
        objective = np.log(totals).sum(axis=0)
        size = probs.shape[0]
    else:
        scaled = weights / totals
        objective = (weights * np.log(totals)).sum(axis=0)
        size = weights.sum(axis=0)
    counts = ratio * (probs.T @ scaled)
    extra = alpha - 1.0
    if extra:
        objective = objective + extra * np.log(prior).sum(axis=0)
        return (counts + extra) / (size + prior.shape[0] * extra), objective
    return counts / size, objective


def _run_em(probs, train_prior, start, alpha, tol, max_iter, weights=None, accelerate=True):
    """EM for every column of ``start`` ``(K, B)``, each until it converges or
    ``max_iter`` EM steps are spent.

    With ``accelerate``, each iteration is SQUAREM's (Varadhan & Roland 2008, scheme
    S3, with the step-length control of their R package): two EM steps ``p1 = F(p0)``,
    ``p2 = F(p1)``, the extrapolation ``p0 + 2 s r + s^2 v`` (``r = p1 - p0``,
    ``v = p2 - 2 p1 + p0``, ``s = |r| / |v|`` clipped to ``[1, s_max]``, moved halfway
    to 1 until every entry is positive; at 1 it is ``p2``), and one EM step from there,
    kept only if the objective at the extrapolated point is at least that at ``p1``;
    otherwise the iteration ends at the plain ``p2``. So the objective never decreases.
    ``s_max`` starts at 1, is multiplied by 4 after a kept step that used it and set
    to a quarter of the rejected step length (not below 1) after a rejection.
    Convergence is judged on plain EM steps: a column stops when one step moves its
    prior less than ``tol`` (max-abs).

    Returns:
        ``(prior, n_iter, converged, change)``: ``(K, B)``, and per column the EM steps
        run, whether it converged and the max-abs move of its last plain step.
    """
    num_columns = start.shape[1]
    prior = start.copy()
    n_iter = np.zeros(num_columns, dtype=np.int64)
    converged = np.zeros(num_columns, dtype=bool)
    change = np.full(num_columns, np.inf)
    max_length = np.ones(num_columns)
    active = np.arange(num_columns)
    steps = 0

    def step(point):
        return _em_step(
            probs, train_prior, point, alpha, None if weights is None else weights[:, active]
        )

    def record(new, old, mask=None):
        """Notes each active column's move old -> new; retires those that converged."""
        moved = np.max(np.abs(new - old), axis=0)
        done = moved < tol
        if mask is not None:
            moved = np.where(mask, moved, change[active])
            done &= mask
        change[active] = moved
        retired = active[done]
        prior[:, retired] = new[:, done]
        n_iter[retired] = steps
        converged[retired] = True
        return ~done

    p0 = prior.copy()
    while active.size and steps < max_iter:
        p1, _ = step(p0)
        steps += 1
        keep = record(p1, p0)
        p0, p1, active = p0[:, keep], p1[:, keep], active[keep]
        if not accelerate or not active.size or steps >= max_iter:
            p0 = p1
            continue
        p2, objective_p1 = step(p1)
        steps += 1
        keep = record(p2, p1)
        p0, p1, p2, objective_p1, active = (
            p0[:, keep], p1[:, keep], p2[:, keep], objective_p1[keep], active[keep]
        )
        if not active.size or steps >= max_iter:
            p0 = p2
            continue
        r = p1 - p0
        v = p2 - p1 - r
        r_norm = np.linalg.norm(r, axis=0)
        v_norm = np.linalg.norm(v, axis=0)
        length = np.where(v_norm > 0, r_norm / np.where(v_norm > 0, v_norm, 1.0), 1.0)
        length = np.clip(length, 1.0, max_length[active])
        for _ in range(64):
            candidate = p0 + 2.0 * length * r + length * length * v
            bad = ~np.all(candidate > 0, axis=0)
            if not bad.any():
                break
            length = np.where(bad, (length + 1.0) / 2.0, length)
        else:
            length = np.where(bad, 1.0, length)
            candidate = np.where(bad, p2, candidate)
        p3, objective_candidate = step(candidate)
        steps += 1
        accept = (objective_candidate >= objective_p1) | (length == 1.0)
        max_length[active] = np.where(
            accept,
            np.where(length == max_length[active], 4.0, 1.0) * max_length[active],
            np.maximum(length / 4.0, 1.0),
        )
        p0 = np.where(accept, p3, p2)
        keep = record(p3, candidate, accept)
        p0, active = p0[:, keep], active[keep]
    prior[:, active] = p0
    n_iter[active] = steps
    return prior, n_iter, converged, change


def _floor(prior):
    """Floors a prior (or the columns of a ``(K, B)`` array) at MIN_PRIOR, renormalised."""
    prior = np.maximum(prior, MIN_PRIOR)
    return prior / prior.sum(axis=0)


def estimate_prior(
    probs, train_prior, method="em", tol=1e-8, max_iter=1000, *, dirichlet=DEFAULT_DIRICHLET,
    interval=None, n_bootstrap=200, seed=0, accelerate=True,
):
    """Estimates the class prior of unlabelled data by EM (Saerens et al. 2002).

    Starting from the training prior, EM alternates: re-weight every posterior to the
    current prior estimate (Bayes' rule), then set the prior to the mean re-weighted
    posterior. With calibrated probabilities this maximises the likelihood of the
    unlabelled data over the prior. Fully converged, it drives the classes the data
    barely show to ~0, and their few true members then cost a large NLL; a symmetric
    Dirichlet(``dirichlet``) prior on the class prior turns the estimate into the MAP
    estimate, whose M-step is ``prior_k = (sum_n w_nk + dirichlet - 1) / (N + K
    (dirichlet - 1))`` (``w_nk`` the re-weighted posteriors), so no class falls below
    ``(dirichlet - 1) / (N + K (dirichlet - 1))``. The returned prior is floored at
    ``MIN_PRIOR`` and renormalised so a PriorShift layer can take it.

    Args:
        probs: ``(N, K)`` calibrated posteriors computed under ``train_prior``.
        train_prior: ``(K,)`` prior the posteriors were computed under.
        method: ``"em"`` (the only method).
        tol: positive finite number; stop when an EM step moves no prior entry more
            than ``tol``. Default 1e-8.
        max_iter: positive int, cap on EM steps. Default 1000. If EM stops at the cap
            without converging, a warning says so (and ``converged`` is False).
        dirichlet: finite number >= 1, the concentration ``alpha`` of the symmetric
            Dirichlet prior; 1 is maximum likelihood (plain EM). Default
            ``DEFAULT_DIRICHLET`` = 1.1 (measured: benchmarks/em_dirichlet.py).
        interval: None (default) or a level in (0, 1), e.g. 0.9: also return a
            bootstrap percentile interval per class (``lower``, ``upper``). The rows of
            ``probs`` are resampled with replacement ``n_bootstrap`` times, EM is re-run
            on each resample with the same settings, warm-started from the estimate and
            capped at ``min(max_iter, BOOTSTRAP_MAX_ITER)`` steps, and the
            ``(1 - interval) / 2`` and ``(1 + interval) / 2`` quantiles of the (floored)
            replicates are reported. It covers the sampling noise of the unlabelled
            data only, not a miscalibration of ``probs``.
        n_bootstrap: positive int, the number of bootstrap resamples. Default 200.
        seed: int >= 0 or None, seeds the resampling. Default 0.
        accelerate: bool, default True: SQUAREM extrapolation (Varadhan & Roland
            2008) between EM steps, kept only when it does not lower the objective, so
            the iterates stay monotone; False runs plain EM steps.

    Each EM step costs two matrix-vector products with ``probs`` (about 0.1 s for
    N = K = 10,000 in float64 on 2 CPU cores). On a random Dirichlet matrix of that size
    the default converges in 15 steps (6 s in all, with the checks and the re-weighting),
    maximum likelihood with SQUAREM in 189 (21 s), where plain EM had not converged
    after 1000 (70-80 s). The bootstrap runs its replicates side by side as
    matrix-matrix products (200 of them: 16 s more at that size).

    Returns:
        A :class:`PriorEstimate` ``(prior, probs, n_iter, converged, lower, upper,
        log_likelihood)``.

    Raises:
        ValueError: for a bad ``probs`` or ``train_prior``, or an argument out of its
            range (the message names it).

    Example:
        >>> estimate = estimate_prior(test_probs, train_prior, interval=0.9)
        >>> model.set_prior(estimate.prior)
        >>> estimate.lower, estimate.upper  # 90% bootstrap interval per class

    References:
        Saerens, Latinne & Decaestecker (2002), Adjusting the Outputs of a Classifier
        to New a Priori Probabilities: A Simple Procedure. Neural Computation 14(1).
        Varadhan & Roland (2008), Simple and Globally Convergent Methods for
        Accelerating the Convergence of Any EM Algorithm. Scand. J. Statistics 35(2).
    """
    probs = check_probabilities(probs)
    train_prior = check_prior(train_prior, probs.shape[1], name="train_prior")
    check_choice(method, "method", ("em",))
    max_iter = check_positive_int(max_iter, "max_iter")
    tol = check_positive_float(tol, "tol")
    alpha = check_dirichlet(dirichlet)
    interval = _check_interval(interval)
    n_bootstrap = check_positive_int(n_bootstrap, "n_bootstrap")
    if seed is not None:
        seed = check_nonnegative_int(seed, "seed", " or None")
    accelerate = check_bool(accelerate, "accelerate")
    prior, n_iter, converged, change = _run_em(
        probs, train_prior, train_prior[:, None], alpha, tol, max_iter,
        accelerate=accelerate,
    )
    n_iter, converged = int(n_iter[0]), bool(converged[0])
    if not converged:
        warnings.warn(
            f"estimate_prior: EM stopped at `max_iter`={max_iter} iterations before "
            f"converging (the prior still moved {change[0]:.3g} > `tol`={tol:g} in the "
            "last step); raise `max_iter` or `tol`, or use the estimate as it is",
            stacklevel=2,
        )
    prior = _floor(prior[:, 0])
    log_likelihood = float(np.log(probs @ (prior / train_prior)).sum())
    lower = upper = None
    if interval is not None:
        replicates = _bootstrap(
            probs, train_prior, prior, alpha, tol, min(max_iter, BOOTSTRAP_MAX_ITER),
            n_bootstrap, seed, accelerate,
        )
        lower, upper = np.quantile(replicates, [(1 - interval) / 2, (1 + interval) / 2], axis=1)
    return PriorEstimate(
        prior, _reweight(probs, train_prior, prior), n_iter, converged, lower, upper,
        log_likelihood,
    )


def _bootstrap(probs, train_prior, prior, alpha, tol, max_iter, n_bootstrap, seed, accelerate):
    """``(K, n_bootstrap)`` floored EM estimates on row resamples of ``probs``.

    A resample is a vector of row counts (how often each row was drawn), so the
    replicates share ``probs`` and run side by side, in chunks that keep each
    ``(N, chunk)`` array near 64 MiB.
    """
    num_samples = probs.shape[0]
    rng = np.random.default_rng(seed)
    chunk = max(1, min(n_bootstrap, (1 << 23) // num_samples))
    replicates = []
    for begin in range(0, n_bootstrap, chunk):
        size = min(chunk, n_bootstrap - begin)
        rows = rng.integers(0, num_samples, size=(size, num_samples))
        rows += (np.arange(size) * num_samples)[:, None]
        weights = np.bincount(rows.ravel(), minlength=size * num_samples)
        weights = weights.reshape(size, num_samples).T.astype(np.float64)
        start = np.repeat(prior[:, None], size, axis=1)
        estimate, *_ = _run_em(
            probs, train_prior, start, alpha, tol, max_iter, weights, accelerate
        )
        replicates.append(_floor(estimate))
    return np.concatenate(replicates, axis=1)


def prior_shift_test(probs, train_prior, *, dirichlet=1.0):
    """Likelihood-ratio test of "the deployment prior is ``train_prior``".

    The statistic is ``2 (LL(estimate) - LL(train_prior))`` with
    ``LL(pi) = sum_n log sum_k p_nk pi_k / train_prior_k`` the log-likelihood of the
    unlabelled sample as a function of its class prior (up to a constant), and
    ``estimate`` the EM estimate of :func:`estimate_prior` (maximum likelihood for
    ``dirichlet`` = 1, the default; a MAP estimate for ``dirichlet`` > 1 gives a smaller
    statistic, a conservative test). Under H0 it is asymptotically chi-square with
    ``K - 1`` degrees of freedom.

    Assumptions: ``probs`` are calibrated posteriors under ``train_prior`` (p(y | x)
    right for the source data) and the sample is iid from the deployment distribution,
    which differs from the source only in its class prior (label shift: p(x | y) is
    unchanged). The chi-square law is asymptotic (large N) and needs an interior prior
    under H0; a miscalibrated model rejects H0 even without a shift, and the p-value is
    only as good as the calibration.

    Args:
        probs: ``(N, K)`` calibrated posteriors computed under ``train_prior``.
        train_prior: ``(K,)`` the prior under test (the training/source prior).
        dirichlet: finite number >= 1, as in :func:`estimate_prior`. Default 1.0.

    Returns:
        A :class:`PriorShiftTest` ``(statistic, df, p_value, estimate)``.

    Raises:
        ValueError: as :func:`estimate_prior`.

    Example:
        >>> result = prior_shift_test(test_probs, train_prior)
        >>> if result.p_value < 0.01:
        ...     model.set_prior(result.estimate.prior)

    References:
        Saerens, Latinne & Decaestecker (2002), Adjusting the Outputs of a Classifier
        to New a Priori Probabilities: A Simple Procedure (which also tests for a
        change of the priors by a likelihood ratio). Neural Computation 14(1).
    """
    from scipy.stats import chi2  # noqa: PLC0415 (scipy only for this function)

    estimate = estimate_prior(probs, train_prior, dirichlet=dirichlet)
    statistic = max(2.0 * estimate.log_likelihood, 0.0)
    df = estimate.prior.shape[0] - 1
    return PriorShiftTest(statistic, df, float(chi2.sf(statistic, df)), estimate)


def no_training_prior(prior, name="prior"):
    """The error for a prior that needs the training class counts when none are known."""
    return ValueError(
        f"`{name}` {prior!r} needs the training class counts, and none are known: "
        "pass `class_counts=` (to build_classifier or PriorShift)"
    )


def resolve_prior(
    prior, *, num_classes, class_names=None, training_prior=None, labels=None, probs=None,
    name="prior",
):
    """The ``K`` probabilities a prior specification stands for.

    Args:
        prior: ``"uniform"``; ``"training"`` (alias ``"train"``: needs
            ``training_prior``); ``"labels"`` (alias ``"validation"``: the label
            frequencies of ``labels``, every class present); ``"estimate"`` (EM on
            ``probs``, posteriors under ``training_prior``: :func:`estimate_prior`); a
            mapping ``{class name: probability}`` over exactly ``class_names``; or a
            sequence of ``K`` positive probabilities summing to 1.
        num_classes: ``K``.
        class_names: the ``K`` class names, for a mapping and for messages.
        training_prior: the training prior, for ``"training"`` and ``"estimate"``.
        labels: integer class ids, for ``"labels"``.
        probs: ``(N, K)`` calibrated posteriors under ``training_prior``, for
            ``"estimate"``.
        name: the argument's name in messages (``"prior"``, ``"--prior"``).

    Returns:
        A float64 ``(K,)`` probability vector.

    Raises:
        ValueError: naming ``name``, the bad value and what would fix it.

    Example:
    >>> resolve_prior("uniform", num_classes=4)
    array([0.25, 0.25, 0.25, 0.25])
    >>> resolve_prior({"b": 0.2, "a": 0.8}, num_classes=2, class_names=["a", "b"])
    array([0.8, 0.2])
    """
    num_classes = check_positive_int(num_classes, "num_classes")
    if isinstance(prior, str):
        named = PRIOR_ALIASES.get(prior, prior)
        if named == "uniform":
            return np.full(num_classes, 1.0 / num_classes)
        if named in ("training", "estimate") and training_prior is None:
            raise no_training_prior(prior, name)
        if named == "training":
            return check_prior(training_prior, num_classes, name="training_prior")
        if named == "labels":
            if labels is None:
                raise ValueError(f"`{name}` {prior!r} needs labelled data")
            counts = class_counts(np.asarray(labels).reshape(-1), num_classes)
            if np.any(counts == 0):
                raise ValueError(
                    f"`{name}` {prior!r} needs every class in the labelled data; classes "
                    f"{np.flatnonzero(counts == 0).tolist()} have no examples"
                )
            return prior_from_counts(counts)
        if named == "estimate":
            if probs is None:
                raise ValueError(f"`{name}` 'estimate' needs images to estimate it on")
            return estimate_prior(probs, training_prior).prior
        raise ValueError(
            f"`{name}` must be one of {', '.join(map(repr, NAMED_PRIORS))} (or "
            f"{', '.join(map(repr, PRIOR_ALIASES))}), a mapping from class name to "
            f"probability, or {num_classes} probabilities; got {_show(prior)}"
        )
    if isinstance(prior, Mapping):
        if class_names is None:
            raise ValueError(
                f"`{name}` given as a mapping needs the class names; pass a vector of "
                f"{num_classes} probabilities instead"
            )
        keys = [str(key) for key in prior]
        unknown = sorted(set(keys) - set(class_names))
        missing = [class_name for class_name in class_names if class_name not in keys]
        if unknown or missing:
            raise ValueError(
                f"`{name}` names unknown classes {_show(unknown, 120)} and misses "
                f"{_show(missing, 120)}; the classes are {_show(list(class_names), 120)}"
            )
        values = dict(zip(keys, prior.values(), strict=True))
        prior = [values[class_name] for class_name in class_names]
    return check_prior(prior, num_classes, name=name.lstrip("-"))
