"""Estimating an unknown deployment prior from calibrated probabilities (EM)."""

from typing import NamedTuple

import numpy as np

from calibkeras._checks import check_choice, check_prior, check_probabilities

#: Estimated priors are floored at this value so every class stays possible.
MIN_PRIOR = 1e-6


class PriorEstimate(NamedTuple):
    """Result of :func:`estimate_prior`.

    Attributes:
        prior: ``(K,)`` estimated deployment prior (positive, sums to 1).
        probs: ``(N, K)`` the input probabilities re-weighted to that prior.
        n_iter: number of EM iterations run.
        converged: whether the prior moved less than ``tol`` (max-abs) in the last step.
    """

    prior: np.ndarray
    probs: np.ndarray
    n_iter: int
    converged: bool


def adjust_to_prior(probs, from_prior, to_prior):
    """Re-weights posteriors from one class prior to another (Bayes' rule).

    ``p'(k | x) ∝ p(k | x) * to_prior[k] / from_prior[k]``, normalised per row.

    Args:
        probs: ``(N, K)`` posteriors under ``from_prior``.
        from_prior: ``(K,)`` prior the probabilities were computed under.
        to_prior: ``(K,)`` prior to move them to.

    Returns:
        ``(N, K)`` posteriors under ``to_prior``.
    """
    weighted = np.asarray(probs) * (np.asarray(to_prior) / np.asarray(from_prior))
    return weighted / weighted.sum(axis=1, keepdims=True)


def estimate_prior(probs, train_prior, method="em", tol=1e-8, max_iter=1000):
    """Estimates the class prior of unlabelled data by EM (Saerens et al. 2002).

    Starting from the training prior, EM alternates: re-weight every posterior to the
    current prior estimate (Bayes' rule), then set the prior to the mean re-weighted
    posterior. With calibrated probabilities this maximises the likelihood of the
    unlabelled data over the prior. Classes the data give no evidence for converge
    toward 0; the returned prior is floored at ``MIN_PRIOR`` and renormalised so a
    PriorShift layer can take it.

    Args:
        probs: ``(N, K)`` calibrated posteriors computed under ``train_prior``.
        train_prior: ``(K,)`` prior the posteriors were computed under.
        method: ``"em"`` (the only method).
        tol: stop when no prior entry moves more than ``tol`` in one step.
        max_iter: cap on EM iterations (positive).

    Returns:
        A :class:`PriorEstimate` ``(prior, probs, n_iter, converged)``.

    Example:
        >>> estimate = estimate_prior(test_probs, train_prior)
        >>> model.get_layer("prior_shift").set_prior(estimate.prior)

    References:
        Saerens, Latinne & Decaestecker (2002), Adjusting the Outputs of a Classifier
        to New a Priori Probabilities: A Simple Procedure. Neural Computation 14(1).
    """
    probs = check_probabilities(probs)
    train_prior = check_prior(train_prior, probs.shape[1], name="train_prior")
    check_choice(method, "method", ("em",))
    if isinstance(max_iter, bool) or int(max_iter) != max_iter or max_iter < 1:
        raise ValueError(f"`max_iter` must be a positive integer, got {max_iter!r}")
    prior = train_prior.copy()
    converged = False
    n_iter = 0
    for n_iter in range(1, int(max_iter) + 1):
        new_prior = adjust_to_prior(probs, train_prior, prior).mean(axis=0)
        change = np.max(np.abs(new_prior - prior))
        prior = new_prior
        if change < tol:
            converged = True
            break
    prior = np.maximum(prior, MIN_PRIOR)
    prior /= prior.sum()
    return PriorEstimate(prior, adjust_to_prior(probs, train_prior, prior), n_iter, converged)
