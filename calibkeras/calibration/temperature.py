"""Exact temperature scaling: the 1-D convex minimisation of the validation NLL."""

import warnings

import numpy as np

from calibkeras.utils.checks import (
    check_finite_matrix,
    check_labels,
    check_nonnegative_float,
    check_positive_int,
    check_prior,
    check_sample_weight,
)

#: Temperatures are searched in [MIN_TEMPERATURE, MAX_TEMPERATURE].
MIN_TEMPERATURE = 1e-4
MAX_TEMPERATURE = 1e6


class _Objective:
    """Weighted mean NLL of softmax(beta * logits + offset) and its first two derivatives
    in ``beta``, each evaluation computed once (one log-softmax pass over the logits)."""

    def __init__(self, logits, labels, offset, weights):
        self.logits, self.weights = logits, weights
        self.offset = offset if np.any(offset) else None
        rows = np.arange(logits.shape[0])
        self.label_logits = logits[rows, labels]
        self.label_offsets = offset[labels]
        self.squares = logits**2
        self.cache = {}

    def __call__(self, beta):
        if beta not in self.cache:
            shifted = beta * self.logits
            if self.offset is not None:
                shifted += self.offset
            peak = shifted.max(axis=1, keepdims=True)
            np.subtract(shifted, peak, out=shifted)
            exps = np.exp(shifted, out=shifted)  # the one exponential pass
            totals = exps.sum(axis=1)
            probs = np.divide(exps, totals[:, None], out=exps)
            log_norm = peak[:, 0] + np.log(totals)
            nll = log_norm - beta * self.label_logits - self.label_offsets
            mean_logit = np.einsum("ij,ij->i", probs, self.logits)
            gradient = mean_logit - self.label_logits
            curvature = np.einsum("ij,ij->i", probs, self.squares) - mean_logit**2
            self.cache[beta] = (
                self.weights @ nll, self.weights @ gradient, self.weights @ curvature
            )
        return self.cache[beta]


def fit_temperature(logits, labels, sample_weight=None, prior=None, tol=1e-12, max_iter=200):
    """Temperature ``T`` that minimises the NLL of ``softmax(logits / T + log(prior))``.

    The NLL is convex in ``beta = 1 / T`` (a log-sum-exp of functions affine in
    ``beta``), so the minimiser is unique. It is found by safeguarded Newton steps
    inside a bracket ``[lo, hi]`` on ``beta`` whose gradient signs differ; a step that
    leaves the bracket is replaced by bisection, so the method always converges.

    The fit is scale-invariant: it runs on ``logits / s`` with ``s`` the largest
    ``|logit|``, so multiplying the logits by ``c`` multiplies ``T`` by ``c`` exactly,
    and logits of any finite size fit without overflow.

    Args:
        logits: ``(N, K)`` finite logits, ``K >= 2`` (for probabilities, pass
            ``log(probs)``). With a ``prior``, these are the *balanced* logits ``f(x)``.
        labels: ``(N,)`` integer class ids.
        sample_weight: optional ``(N,)`` non-negative weights.
        prior: optional ``(K,)`` class prior of the data the temperature is fitted on;
            ``log(prior)`` is added after dividing by ``T`` (the PriorShift layer of
            calibkeras' models). ``None`` adds nothing.
        tol: finite number >= 0; stop when ``|d NLL / d beta|`` (for the scaled logits)
            falls below ``tol`` (or the bracket closes to machine precision). Default
            1e-12.
        max_iter: positive int, cap on Newton/bisection steps. Default 200; a warning
            is given if the cap stops the search before it converges.

    Returns:
        The temperature as a positive Python float. The search covers ``T / s`` in
        ``[MIN_TEMPERATURE, MAX_TEMPERATURE]``. A warning is given when the optimum
        lies at a bound: logits no better than the prior (``T = MAX_TEMPERATURE``
        returned, the optimum is ``T = inf``), perfectly separated data
        (``T = MIN_TEMPERATURE`` returned, the optimum is ``T -> 0``), or an optimum
        beyond the searched range (its end is returned).

    Raises:
        ValueError: for logits with fewer than 2 columns, non-finite logits, bad
            labels, weights or prior, a ``tol`` that is not a finite number >= 0 or a
            ``max_iter`` that is not a positive integer.

    Example:
        >>> temperature = fit_temperature(val_logits, val_labels)
        >>> calibrated = scipy.special.softmax(test_logits / temperature, axis=1)

    References:
        Guo et al. (2017), On Calibration of Modern Neural Networks.
    """
    logits = check_finite_matrix(logits, "logits")
    if logits.shape[1] < 2:
        raise ValueError(
            f"`logits` must have at least 2 columns (one per class), got shape "
            f"{logits.shape}; with one class there is nothing to calibrate"
        )
    labels = check_labels(labels, logits.shape[1], logits.shape[0])
    max_iter = check_positive_int(max_iter, "max_iter")
    tol = check_nonnegative_float(tol, "tol")
    weights = check_sample_weight(sample_weight, logits.shape[0])
    weights = weights / weights.sum()
    if prior is None:
        offset = np.zeros(logits.shape[1])
    else:
        offset = np.log(check_prior(prior, logits.shape[1]))

    # Fit on logits scaled to max |logit| = 1 (T scales with the logits), so that
    # neither the squares nor the exponentials overflow for large logits.
    scale = float(np.abs(logits).max())
    if scale > 0:
        logits = logits / scale
    else:
        scale = 1.0
    objective = _Objective(logits, labels, offset, weights)

    def gradient(beta):
        return objective(beta)[1]

    beta_min, beta_max = 1.0 / MAX_TEMPERATURE, 1.0 / MIN_TEMPERATURE
    rows = np.arange(logits.shape[0])
    rivals = np.where(np.eye(logits.shape[1], dtype=bool)[labels], -np.inf, logits).max(axis=1)
    if np.all((logits[rows, labels] > rivals) | (weights == 0)):
        warnings.warn(
            "fit_temperature: every sample's label has the largest logit (the data are "
            "perfectly separated), so the NLL decreases as T shrinks to 0; returning "
            f"T = {MIN_TEMPERATURE:g}",
            stacklevel=2,
        )
        return MIN_TEMPERATURE
    # d NLL / d beta at beta = 0, where p = softmax(offset) for every sample: no exp pass.
    prior_probs = np.exp(offset - offset.max())
    prior_probs /= prior_probs.sum()
    if weights @ (logits @ prior_probs - objective.label_logits) >= 0:
        warnings.warn(
            "fit_temperature: the NLL decreases as T grows without bound: the logits "
            f"carry no information beyond the prior; returning T = {MAX_TEMPERATURE:g}",
            stacklevel=2,
        )
        return MAX_TEMPERATURE
    lo, hi = beta_min, 1.0
    while gradient(hi) < 0:
        lo, hi = hi, hi * 4.0
        if hi >= beta_max:
            hi = beta_max
            break
    if gradient(hi) < 0:
        warnings.warn(
            "fit_temperature: the NLL still decreases at the smallest temperature "
            f"searched, T = {MIN_TEMPERATURE:g} x the largest |logit| ({scale:.6g}); "
            "returning that bound. The data are almost perfectly separated",
            stacklevel=2,
        )
        return float(scale / beta_max)
    if gradient(lo) > 0:
        warnings.warn(
            "fit_temperature: the NLL still decreases at the largest temperature "
            f"searched, T = {MAX_TEMPERATURE:g} x the largest |logit| ({scale:.6g}); "
            "returning that bound. The logits carry almost no information beyond the prior",
            stacklevel=2,
        )
        return float(scale / beta_min)

    beta = 0.5 * (lo + hi) if hi != 1.0 else 1.0
    converged = False
    for _ in range(max_iter):
        _, grad, curvature = objective(beta)
        if abs(grad) <= tol:
            converged = True
            break
        if grad < 0:
            lo = beta
        else:
            hi = beta
        step = beta - grad / curvature if curvature > 0 else np.nan
        beta = step if lo < step < hi else 0.5 * (lo + hi)
        if hi - lo <= 4 * np.finfo(float).eps * hi:
            converged = True
            break
    if not converged:
        warnings.warn(
            f"fit_temperature: stopped after `max_iter`={max_iter} steps before "
            f"converging (|d NLL / d beta| = {abs(objective(beta)[1]):.3g} > `tol`={tol:g}); "
            "raise `max_iter`",
            stacklevel=2,
        )
    return float(scale / beta)
