"""Exact affine calibration of balanced logits: temperature, bias-corrected and vector
scaling, fitted by convex minimisation of the validation NLL (optionally shrunk toward
temperature scaling), with a cross-validated choice among them and their shrinkage."""

import contextlib
import copy
import dataclasses
import functools
import types
import typing
import warnings

import numpy as np
import scipy.linalg
import scipy.special
from keras import ops

from calibkeras.calibration.temperature import (
    MAX_TEMPERATURE,
    MIN_TEMPERATURE,
    fit_temperature,
)
from calibkeras.choices import CALIBRATION_METHODS
from calibkeras.choices import CALIBRATIONS as METHODS
from calibkeras.metrics import functional
from calibkeras.utils.checks import (
    check_choice,
    check_finite_matrix,
    check_int_at_least,
    check_labels,
    check_nonnegative_float,
    check_nonnegative_int,
    check_positive_int,
    check_prior,
    check_sample_weight,
)

#: Ridge coefficient on the parameters of a class without examples (total weight 0):
#: ``EMPTY_CLASS_L2 * (b_k**2 + (a_k / a_T - 1)**2)`` (the scale term for vector
#: scaling only). Without it the NLL would keep falling as ``b_k -> -inf``.
EMPTY_CLASS_L2 = 1e-6

#: The penalty strengths ``method="auto"`` cross-validates (with ``l2=None``), besides
#: no penalty: ``l2 = c * W / K`` for each ``c`` here (``W`` the total sample weight, the
#: number of samples when unweighted; ``K`` the number of classes), strongest first. The
#: penalty's curvature on a bias is then ``2 c W / K``, against the data's
#: ``sum_i w_i p_ik (1 - p_ik)``, at most about ``W / K`` for a typical class: 1 shrinks
#: hard toward temperature scaling, 1/512 barely. (On the four shared
#: CIFAR records the cross-validated optimum lay between 1/256 and 1 for 300 to
#: 5,000 validation rows.)
L2_GRID = (1.0, 0.125, 0.015625, 0.001953125)

#: Up to this many classes each Newton step solves the dense Hessian system (``K + 1``
#: or ``2K`` parameters, O(N K^2) to build); above it, the step is found by conjugate
#: gradients on analytic Hessian-vector products (O(N K) each), preconditioned by the
#: Hessian's diagonal.
MAX_NEWTON_CLASSES = 1000

#: A Newton step reuses the previous step's Hessian when that step was a full one and
#: cut the gradient norm at least this many times (see ``_newton``).
REUSE_RATIO = 1.0 / 8.0

#: Up to this many classes the fit runs with one BLAS thread: its matrix products are
#: small (a (N, 2K) Gram matrix at most), and on shared cores threaded BLAS made
#: ``method="auto"`` 2-10x slower (CIFAR-100, N = 5,000, 2 shared cores) where it can
#: at best make it 1.3-1.7x faster.
MAX_SINGLE_THREAD_CLASSES = 256

#: Fits with up to this many parameters keep their last Hessian to start the fits of
#: the same candidate on the cross-validation folds (a (P, P) float64 matrix each).
MAX_KEPT_PARAMETERS = 512

#: The scale times ``s = max|logit|`` is kept in ``[MIN_SCALE, MAX_SCALE]``, the range
#: :func:`fit_temperature` searches (``T / s`` in ``[MIN_TEMPERATURE,
#: MAX_TEMPERATURE]``): a scale stays positive, and separated data stop at the cap.
MIN_SCALE = 1.0 / MAX_TEMPERATURE
MAX_SCALE = 1.0 / MIN_TEMPERATURE

_ARMIJO = 1e-4
_EPS = np.finfo(np.float64).eps


@dataclasses.dataclass(frozen=True, eq=False)
class CalibrationFit:
    """The result of :func:`fit_calibration`: calibrated logits ``scale * f + bias``.

    The calibrated posterior under a class prior ``pi`` is
    ``softmax(scale * f + bias + log(pi))`` for balanced logits ``f``.

    Attributes:
        method: the fitted map, one of ``CALIBRATION_METHODS`` (for
            ``method="auto"``, the one chosen).
        scale: ``(K,)`` positive float64 per-class scale ``a`` (all equal for
            ``"temperature"`` and ``"bias_corrected"``); read-only.
        bias: ``(K,)`` float64 per-class bias ``b``, summing to 0 (zeros for
            ``"temperature"``); read-only.
        temperature: ``1 / mean(scale)``: the temperature ``T`` of the scalar methods;
            for ``"vector"`` the temperature of the mean scale (a summary only: the
            classes have their own scales).
        nll: the weighted mean NLL (natural log) of the fit on the data it was fitted
            on, without any ``l2`` penalty.
        cv_nll: for ``method="auto"``, ``{method: mean held-out NLL over the folds}``
            for every method in ``CALIBRATION_METHODS``, each at its best penalty
            strength (the lowest ``cv_nll`` among its rows of ``cv_table``); else None.
        cv_se: for ``method="auto"``, ``{method: standard error of the mean per-fold
            NLL difference between that method (at its best strength) and the best
            candidate}`` (0.0 for the best one); else None.
        cv_folds: for ``method="auto"``, the number of folds used; else None.
        l2: the penalty strength of the returned fit (the argument ``l2``; for
            ``method="auto"`` with ``l2=None``, the one chosen; 0.0 for temperature
            scaling and for an unpenalised fit).
        cv_table: for ``method="auto"``, one read-only mapping per candidate, simplest
            first, with keys ``"method"``, ``"l2"``, ``"cv_nll"`` (mean held-out NLL)
            and ``"cv_se"`` (standard error of the per-fold NLL difference to the best
            candidate, 0.0 for the best); else None. The candidates are temperature
            scaling, then bias-corrected and then vector scaling, each from the
            strongest ``l2`` down to 0. The fit is the first row with
            ``cv_nll - min(cv_nll) <= cv_se`` (one-standard-error rule), refitted on
            all the data.
        posterior_mean: ``(K,)`` float64, the weighted mean of the calibrated
            posteriors ``softmax(scale * f + bias + log(prior))`` over the data fitted
            on: the class prior the calibrated model implies for that data; read-only.
            It equals the weighted label frequencies (to ``tol``) when the biases are
            fitted without a penalty (the score equations of the biases), but not for
            temperature scaling or with ``l2 > 0``: then it is the source prior that
            keeps EM prior estimation consistent (``estimate_prior(posteriors,
            fit.posterior_mean)``; Alexandari et al. 2020, section 3.2).
    """

    method: str
    scale: np.ndarray
    bias: np.ndarray
    temperature: float
    nll: float
    cv_nll: dict | None = None
    cv_se: dict | None = None
    cv_folds: int | None = None
    l2: float = 0.0
    cv_table: tuple | None = None
    posterior_mean: np.ndarray | None = None

    def __post_init__(self):
        for name in ("scale", "bias") + (() if self.posterior_mean is None else
                                         ("posterior_mean",)):
            array = np.array(getattr(self, name), dtype=np.float64)
            array.setflags(write=False)
            object.__setattr__(self, name, array)
        for name in ("cv_nll", "cv_se"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, types.MappingProxyType(dict(value)))
        if self.cv_table is not None:
            object.__setattr__(self, "cv_table", tuple(
                types.MappingProxyType(dict(row)) for row in self.cv_table
            ))

    def logits(self, logits):
        """Calibrated logits ``scale * logits + bias``.

        Args:
            logits: ``(N, K)`` finite balanced logits.

        Returns:
            ``(N, K)`` float64 array. Add ``log(prior)`` and take a softmax for
            probabilities.
        """
        logits = check_finite_matrix(logits, "logits", num_columns=self.scale.shape[0])
        return logits * self.scale + self.bias


class _Objective:
    """Weighted mean NLL of ``softmax(alpha * x + b + offset)`` plus a quadratic penalty,
    with its gradient, Hessian, Hessian diagonal and Hessian-vector products in
    ``theta = (alpha, b)``.

    ``alpha`` is one number (``vector=False``) or one per class; ``b`` has ``K``
    entries. The penalty is ``sum_k alpha_ridge_k (alpha_k / alpha_centre - 1)**2 +
    sum_k bias_ridge_k b_k**2 + sum_k spread_k (alpha_k - abar)**2`` with ``abar =
    sum(spread * alpha) / sum(spread)`` (the scales' spread around their common
    value; vector scaling only). The NLL does not change when a constant is added to
    ``b``; gradients and Hessians are returned projected onto ``sum(b) = 0`` (the
    Hessian with the projector's null direction filled in), so Newton steps keep
    ``sum(b) = 0``.
    """

    def __init__(self, data, vector, alpha_centre, alpha_ridge, bias_ridge, spread=None):
        self.x, self.labels, self.offset, self.weights = (
            data.x, data.labels, data.offset, data.weights)
        self.vector = vector
        self.num_classes = data.x.shape[1]
        self.num_alpha = self.num_classes if vector else 1
        self.rows = data.rows
        # Constants of the data: w_i x_ik, sum_{i: y_i = k} w_i (x_ik), a bound on |x|.
        self.weighted_x, self.label_weight, self.label_weighted_x = data.weighted_terms()
        self.x_bound = data.x_bound
        self.ones = np.ones(self.num_classes)
        self.alpha_centre = alpha_centre
        self.alpha_ridge, self.bias_ridge = alpha_ridge, bias_ridge
        self.spread = spread if spread is not None and spread.any() else None
        self.ridge_curvature = np.concatenate(
            [2 * alpha_ridge / alpha_centre**2, 2 * bias_ridge]
        )
        if self.spread is not None:
            self.ridge_curvature[: self.num_alpha] += (
                2 * self.spread * (1.0 - self.spread / self.spread.sum())
            )
        self.penalised = bool(np.any(self.ridge_curvature))
        self._key, self._state = None, None
        self._grad_key, self._grad = None, None

    def split(self, theta):
        return theta[: self.num_alpha], theta[self.num_alpha:]

    def project(self, vector):
        """``vector`` with the mean of its bias part removed (a new array)."""
        vector = np.array(vector, dtype=np.float64)
        vector[self.num_alpha:] -= vector[self.num_alpha:].mean()
        return vector

    def _spread_gradient(self, alpha):
        """Gradient of ``sum_k spread_k (alpha_k - abar)**2``: ``2 spread (alpha - abar)``
        (``abar`` depends on ``alpha``, but its partial derivative term vanishes)."""
        return 2 * self.spread * (alpha - self.spread @ alpha / self.spread.sum())

    def _evaluate(self, theta):
        key = theta.tobytes()
        if key != self._key:
            alpha, bias = self.split(theta)
            logits = self.x * alpha
            shift = bias + self.offset
            logits += shift
            label_logits = logits[self.rows, self.labels]
            # Every |logit| <= max|alpha| max|x| + max|shift|: below 300 no exponential
            # over- or underflows, and the row maxima (a slow reduction over short rows)
            # need not be subtracted.
            if np.abs(alpha).max() * self.x_bound + np.abs(shift).max() > 300:
                peak = logits.max(axis=1)
                logits -= peak[:, None]
                label_logits = label_logits - peak
            exps = np.exp(logits, out=logits)  # the one exponential pass
            totals = exps @ self.ones  # row sums as a matrix-vector product
            probs = np.multiply(exps, (1.0 / totals)[:, None], out=exps)
            nll = self.weights @ (np.log(totals) - label_logits)
            self._key, self._state = key, (float(nll), probs)
        return self._state

    def nll(self, theta):
        """Weighted mean NLL, without the penalty."""
        return self._evaluate(theta)[0]

    def value(self, theta):
        """Weighted mean NLL plus the penalty."""
        alpha, bias = self.split(theta)
        ridge = (self.alpha_ridge @ (alpha / self.alpha_centre - 1.0) ** 2
                 + self.bias_ridge @ bias**2)
        if self.spread is not None:
            ridge += self.spread @ (alpha - self.spread @ alpha / self.spread.sum()) ** 2
        return self._evaluate(theta)[0] + float(ridge)

    def gradient(self, theta):
        """Projected gradient of :meth:`value` (a read-only array, cached per ``theta``)."""
        key = theta.tobytes()
        if key != self._grad_key:
            self._grad_key, self._grad = key, self._gradient(theta)
            self._grad.setflags(write=False)
        return self._grad

    def _gradient(self, theta):
        alpha, bias = self.split(theta)
        probs = self._evaluate(theta)[1]
        # sum_i w_i (p_ik - [y_i = k]) (x_ik, 1)
        grad_alpha = np.einsum("ij,ij->j", probs, self.weighted_x) - self.label_weighted_x
        if not self.vector:
            grad_alpha = np.array([grad_alpha.sum()])
        grad_alpha += 2 * self.alpha_ridge * (alpha / self.alpha_centre - 1.0) / self.alpha_centre
        if self.spread is not None:
            grad_alpha += self._spread_gradient(alpha)
        grad_bias = self.weights @ probs - self.label_weight + 2 * self.bias_ridge * bias
        return self.project(np.concatenate([grad_alpha, grad_bias]))

    def hessian(self, theta):
        """Projected Hessian of :meth:`value` plus ``c v v^T`` (``v`` the unit vector
        of the biases' constant direction, ``c`` their mean curvature), dense.

        Per sample the Hessian in the logits is ``diag(p) - p p^T``; the chain rule
        through ``z = alpha * x + b`` gives, for vector scaling,
        ``[[diag(w p x^2), diag(w p x)], [., diag(w p)]] - Q^T Q`` with
        ``Q = sqrt(w) [p x, p]`` (one symmetric product)."""
        probs = self._evaluate(theta)[1]
        mass = self.weights @ probs  # sum_i w_i p_ik
        root_weights = np.sqrt(self.weights)[:, None]
        if self.vector:
            k = self.num_classes
            stacked = np.empty((probs.shape[0], 2 * k))
            scaled = np.multiply(probs, self.x, out=stacked[:, :k])
            first = self.weights @ scaled  # sum_i w_i p_ik x_ik
            second = np.einsum("ij,ij->j", scaled, self.weighted_x)  # sum_i w_i p_ik x_ik^2
            stacked[:, k:] = probs
            stacked *= root_weights
            hessian = -(stacked.T @ stacked)  # numpy calls syrk for A.T @ A
            diagonal = np.arange(k)
            hessian[diagonal, diagonal] += second
            hessian[diagonal, diagonal + k] += first
            hessian[diagonal + k, diagonal] += first
            hessian[diagonal + k, diagonal + k] += mass
            if self.spread is not None:  # 2 (diag(s) - s s^T / sum(s)), the off-diagonal
                hessian[:k, :k] -= np.outer(self.spread, self.spread) * (2 / self.spread.sum())
                hessian[diagonal, diagonal] += 2 * self.spread**2 / self.spread.sum()
        else:
            scaled = probs * self.x
            mean_x = scaled @ self.ones  # p_i . x_i
            root = probs * root_weights
            hess_bb = np.diag(mass) - root.T @ root
            hess_aa = self.weights @ (np.einsum("ij,ij->i", scaled, self.x) - mean_x**2)
            hess_ab = self.weights @ scaled - (self.weights * mean_x) @ probs
            hessian = np.block([[np.array([[hess_aa]]), hess_ab[None, :]],
                                [hess_ab[:, None], hess_bb]])
        hessian[np.diag_indices_from(hessian)] += self.ridge_curvature
        # Project onto sum(b) = 0 on both sides, then fill the null direction.
        b = slice(self.num_alpha, None)
        hessian[:, b] -= hessian[:, b].mean(axis=1, keepdims=True)
        hessian[b, :] -= hessian[b, :].mean(axis=0, keepdims=True)
        fill = max(float(np.trace(hessian[b, b])) / self.num_classes, 1e-300)
        hessian[b, b] += fill / self.num_classes
        return hessian

    def diagonal(self, theta):
        """Diagonal of the (unprojected) Hessian of :meth:`value`, O(N K)."""
        probs = self._evaluate(theta)[1]
        weighted = probs * self.weights[:, None]
        diag_bias = weighted.sum(axis=0) - np.einsum("ij,ij->j", weighted, probs)
        if self.vector:
            diag_alpha = np.einsum("ij,ij->j", weighted, self.x**2) - np.einsum(
                "ij,ij->j", weighted * self.x, probs * self.x)
        else:
            mean_x = np.einsum("ij,ij->i", probs, self.x)
            diag_alpha = np.array(
                [self.weights @ (np.einsum("ij,ij->i", probs, self.x**2) - mean_x**2)]
            )
        return np.concatenate([diag_alpha, diag_bias]) + self.ridge_curvature

    def hessp(self, theta, direction):
        """Projected Hessian of :meth:`value` times ``direction``, O(N K)."""
        direction = self.project(direction)
        d_alpha, d_bias = self.split(direction)
        probs = self._evaluate(theta)[1]
        d_logits = self.x * d_alpha + d_bias
        d_logits -= np.einsum("ij,ij->i", probs, d_logits)[:, None]
        weighted = probs * d_logits * self.weights[:, None]
        out_alpha = np.einsum("ij,ij->j", weighted, self.x)
        if not self.vector:
            out_alpha = np.array([out_alpha.sum()])
        out = np.concatenate([out_alpha, weighted.sum(axis=0)])
        out += self.ridge_curvature * direction
        if self.spread is not None:  # the off-diagonal part of 2 (diag(s) - s s^T / sum(s))
            spread = self.spread
            out[: self.num_alpha] -= (2 / spread.sum()) * (
                spread * (spread @ d_alpha) - spread**2 * d_alpha
            )
        return self.project(out)


def _dense_step(objective, theta, grad, free, cache):
    """Newton step on the free parameters (zeros elsewhere): Cholesky of the Hessian,
    with growing damping if it does not factorise (a numerically singular Hessian).
    ``cache`` keeps the Hessian at ``theta`` between calls."""
    if "hessian" not in cache:
        cache["hessian"] = objective.hessian(theta)
        cache.pop("factor", None)
    rhs = grad[free]
    key = free.tobytes()
    if cache.get("factor", (None,))[0] == key:  # a reused Hessian, the same free set
        factor = cache["factor"][1]
        if factor is not None:
            full = np.zeros_like(theta)
            full[free] = -scipy.linalg.cho_solve(factor, rhs, check_finite=False)
            return full
    hessian = cache["hessian"] if free.all() else cache["hessian"][np.ix_(free, free)]
    scale = max(float(np.abs(np.diag(hessian)).max()), 1e-300)
    damping, step, factor = 0.0, None, None
    for _ in range(20):
        try:
            factor = scipy.linalg.cho_factor(
                hessian + damping * np.eye(hessian.shape[0]), check_finite=False
            )
            step = -scipy.linalg.cho_solve(factor, rhs, check_finite=False)
            if np.all(np.isfinite(step)):
                break
        except np.linalg.LinAlgError:
            pass
        damping = scale * 1e-14 if damping == 0 else damping * 100
        step = factor = None
    cache["factor"] = (key, factor, scale)
    full = np.zeros_like(theta)
    full[free] = -rhs / scale if step is None else step
    return full


def _cg_step(objective, theta, grad, free, cache):
    """Newton step on the free parameters by conjugate gradients on Hessian-vector
    products, preconditioned by the Hessian's diagonal, to a relative residual of
    ``min(0.5, sqrt(|g|))`` (superlinear convergence of the outer iteration).
    ``cache`` keeps the diagonal at ``theta`` between calls."""
    grad_norm = float(np.linalg.norm(grad[free]))
    target = min(0.5, np.sqrt(grad_norm)) * grad_norm
    if "diagonal" not in cache:
        cache["diagonal"] = np.maximum(objective.diagonal(theta), 1e-300)
    diagonal = np.where(free, cache["diagonal"], 1.0)

    def restrict(vector):
        return np.where(free, vector, 0.0)

    def precondition(vector):
        return restrict(objective.project(restrict(vector) / diagonal))

    step = np.zeros_like(theta)
    residual = -restrict(grad)
    z = precondition(residual)
    direction = z
    rz = residual @ z
    for _ in range(max(10, 2 * int(free.sum()))):
        product = restrict(objective.hessp(theta, direction))
        curvature = direction @ product
        if curvature <= 0:
            break
        length = rz / curvature
        step += length * direction
        residual -= length * product
        if np.linalg.norm(residual) <= target:
            break
        z = precondition(residual)
        rz, rz_old = residual @ z, rz
        direction = z + (rz / rz_old) * direction
    return step if step.any() else precondition(-grad)


def _free(theta, grad, num_alpha):
    """Mask of the parameters a step may move: all but the scales at a bound whose
    gradient pushes them out of ``[MIN_SCALE, MAX_SCALE]``."""
    alpha, slope = theta[:num_alpha], grad[:num_alpha]
    free = np.ones(theta.size, dtype=bool)
    free[:num_alpha] = ~(((alpha <= MIN_SCALE) & (slope > 0))
                         | ((alpha >= MAX_SCALE) & (slope < 0)))
    return free


def _room(alpha, moving):
    """Per scale, the largest ``t`` with ``alpha + t * moving`` inside the bounds."""
    with np.errstate(divide="ignore", invalid="ignore"):
        room = np.where(moving < 0, (MIN_SCALE - alpha) / moving, (MAX_SCALE - alpha) / moving)
    return np.where(moving == 0, np.inf, np.maximum(room, 0.0))


def _feasible(theta, num_alpha):
    """``theta`` (in place) with its scales clipped to the bounds, and put exactly on a
    bound they reach within rounding."""
    alpha = theta[:num_alpha]
    np.clip(alpha, MIN_SCALE, MAX_SCALE, out=alpha)
    for bound in (MIN_SCALE, MAX_SCALE):
        alpha[np.abs(alpha - bound) <= 1e-9 * bound] = bound
    return theta


def _newton(objective, theta, tol, max_iter, dense, cache=None):
    """Projected damped Newton with Armijo backtracking on ``value``, the scales kept in
    ``[MIN_SCALE, MAX_SCALE]``. Returns ``(theta, problem)``: ``problem`` is None after
    convergence (gradient norm over the free parameters ``<= tol``, or no decrease left
    above rounding), else the text of a warning.

    A scale at a bound whose gradient pushes it out is held there; a step is cut where
    it reaches a bound (the scale lands on it); a scale that would stop a step almost
    at once (within 1e-3 of its length) is put on that bound if that does not raise
    the objective, else held for that step.

    ``cache`` (a dict, updated in place) holds the last Hessian (or its diagonal, for
    conjugate-gradient steps) that was computed; on entry it may hold one from a
    nearby problem (the same candidate on all the data, or the previous penalty
    strength), used for the first step. A Hessian is reused for the next step while
    full steps keep cutting the gradient norm ``REUSE_RATIO``-fold (a chord step costs
    one softmax pass, a fresh Hessian O(N K^2)); the gradient is always exact, so the
    optimum and the stopping rule do not depend on it."""
    num_alpha = objective.num_alpha
    step_of = _dense_step if dense else _cg_step
    cache = {} if cache is None else cache
    reuse = bool(cache)
    for _ in range(max_iter):
        value, grad = objective.value(theta), objective.gradient(theta)
        free = _free(theta, grad, num_alpha)
        grad_norm = float(np.linalg.norm(grad[free]))
        if grad_norm <= tol:
            return theta, None
        if not reuse:
            cache.clear()
        reuse, previous_norm = False, grad_norm
        snapped = None
        while True:
            step = objective.project(step_of(objective, theta, grad, free, cache))
            room = _room(theta[:num_alpha], step[:num_alpha])
            blocked = free[:num_alpha] & (room < 1e-3)
            if not blocked.any():
                break
            # Scales the step would take to a bound at once: put them there (when that
            # does not raise the objective) and step afresh, else hold them.
            snapped = theta.copy()
            snapped[:num_alpha][blocked] = np.where(step[:num_alpha][blocked] < 0,
                                                    MIN_SCALE, MAX_SCALE)
            if objective.value(snapped) <= value:
                break
            snapped = None
            free[:num_alpha] &= ~blocked
        if snapped is not None:
            theta = snapped
            continue
        longest = float(min(1.0, room.min(initial=np.inf)))
        slope = float(grad @ step)
        if slope >= 0:  # not a descent direction (rounding): steepest descent instead
            step = np.where(free, -grad, 0.0)
            longest = float(min(1.0, _room(theta[:num_alpha], step[:num_alpha]).min()))
            slope = -float(step @ step)
        if -slope * longest <= 16 * _EPS * max(1.0, abs(value)):
            # The decrease left is below rounding, so the line search cannot judge a
            # step: take the Newton step while it shrinks the gradient, else stop.
            candidate = objective.project(_feasible(theta + longest * step, num_alpha))
            new_grad = objective.gradient(candidate)
            if np.linalg.norm(new_grad[_free(candidate, new_grad, num_alpha)]) < grad_norm:
                theta = candidate
                continue
            return theta, None
        t = longest
        while True:
            # Projected before it is evaluated, so that the next step reuses the softmax.
            candidate = objective.project(_feasible(theta + t * step, num_alpha))
            if objective.value(candidate) <= value + _ARMIJO * t * slope:
                break
            t *= 0.5
            if t < 1e-12 * longest:
                if grad_norm > max(1e-6, 1e3 * tol):
                    return theta, (
                        f"the line search found no decrease at gradient norm "
                        f"{grad_norm:.3g} > `tol`={tol:g}"
                    )
                return theta, None  # no decrease possible in floating point
        theta = candidate
        if t == 1.0:  # keep the Hessian if the full step converged fast enough
            new_grad = objective.gradient(theta)
            reuse = bool(np.linalg.norm(new_grad[_free(theta, new_grad, num_alpha)])
                         <= REUSE_RATIO * previous_norm)
    grad = objective.gradient(theta)
    grad_norm = float(np.linalg.norm(grad[_free(theta, grad, num_alpha)]))
    if grad_norm <= tol:
        return theta, None
    return theta, (
        f"stopped after `max_iter`={max_iter} Newton steps before converging (gradient "
        f"norm {grad_norm:.3g} > `tol`={tol:g}); raise `max_iter`"
    )

@functools.cache
def _blas_controller():
    """threadpoolctl's controller of the loaded BLAS libraries (created once: a limit
    through it costs microseconds), or None without threadpoolctl."""
    try:
        import threadpoolctl  # noqa: PLC0415 (a scikit-learn dependency)
    except ImportError:  # pragma: no cover
        return None
    return threadpoolctl.ThreadpoolController()


def _blas_threads(num_classes):
    """A context with BLAS limited to one thread for ``num_classes <=
    MAX_SINGLE_THREAD_CLASSES`` (else, or without threadpoolctl, no limit)."""
    controller = _blas_controller() if num_classes <= MAX_SINGLE_THREAD_CLASSES else None
    if controller is None:
        return contextlib.nullcontext()
    return controller.limit(limits=1, user_api="blas")


class _Data:
    """Fitting data: positive-weight samples only, weights summing to 1 (``total``: what
    they summed to), and ``x = logits / s`` with ``s`` the largest ``|logit|`` (1 if all
    are 0)."""

    def __init__(self, logits, labels, weights, offset, prior):
        keep = weights > 0
        self.logits, self.labels = logits[keep], labels[keep]
        self.total = float(weights[keep].sum())
        self.weights = weights[keep] / self.total
        self.offset, self.prior = offset, prior
        self.num_classes = logits.shape[1]
        scale = float(np.abs(self.logits).max())
        self.scale = scale if scale > 0 else 1.0
        self.x = self.logits / self.scale
        self.x_bound = 1.0  # max|x|, or more
        self.rows = np.arange(self.x.shape[0])
        self._weighted_terms = None

    def weighted_terms(self):
        """``(w_i x_ik, sum_{i: y_i = k} w_i, sum_{i: y_i = k} w_i x_ik)``, computed once."""
        if self._weighted_terms is None:
            k = self.num_classes
            self._weighted_terms = (
                self.x * self.weights[:, None],
                np.bincount(self.labels, weights=self.weights, minlength=k),
                np.bincount(self.labels, minlength=k,
                            weights=self.weights * self.x[self.rows, self.labels]),
            )
        return self._weighted_terms

    def subset(self, rows):
        """The samples ``rows`` (a mask or indices), on the same ``x`` scale ``s`` as
        this data (so that a fit of one starts the fit of the other as it is)."""
        child = copy.copy(self)
        child.logits, child.labels, child.x = self.logits[rows], self.labels[rows], self.x[rows]
        weights = self.weights[rows]
        child.total = self.total * float(weights.sum())
        child.weights = weights / weights.sum()
        child.rows = np.arange(child.x.shape[0])
        child._weighted_terms = None
        return child

    def column_variances(self):
        """``(K,)`` weighted variance of each column of ``x``, floored at 1e-12 (the
        weights of the scale-spread penalty, in ``x`` units)."""
        mean = self.weights @ self.x
        return np.maximum(self.weights @ (self.x - mean) ** 2, 1e-12)


class _Result(typing.NamedTuple):
    """One candidate's fit: ``scale`` and ``bias`` in logit units, the warning texts,
    ``theta`` (``(alpha, b)`` in ``x`` units; None for temperature scaling) and the
    Newton cache, kept as a first Hessian for a nearby fit when it is small."""

    scale: np.ndarray
    bias: np.ndarray
    problems: list
    theta: np.ndarray | None
    cache: dict | None = None  # the last Hessian (or diagonal) of its Newton iteration


def _candidates(l2, total, num_classes):
    """The ``(method, l2)`` pairs that ``method="auto"`` cross-validates, simplest first:
    temperature scaling, then each penalised method from the strongest penalty down to
    none. ``l2=None``: the strengths ``L2_GRID * total / num_classes`` and 0; a number:
    that strength alone."""
    if l2 is None:
        strengths = [float(c * total / num_classes) for c in L2_GRID] + [0.0]
    else:
        strengths = [l2]
    return [("temperature", 0.0)] + [
        (method, strength) for method in CALIBRATION_METHODS[1:] for strength in strengths
    ]


def _fit_candidates(data, candidates, tol, max_iter, starts=None):
    """``{(method, l2): _Result}`` for each candidate, fitted on ``data``.

    The temperature fit comes first: it is the ``"temperature"`` result, the start of
    the other fits and the centre of the empty classes' ridge. On a cross-validation
    fold (``starts``: the fits on all the data) each candidate starts at its fit on all
    the data, with that fit's last Hessian for the first step; otherwise at whichever
    has the lower objective of the previous candidate of the same method (the next
    stronger penalty, with its Hessian; else the temperature fit) and, for vector
    scaling, the bias-corrected fit of the same strength. The start changes the
    number of Newton steps, not the optimum (the objective is convex)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        temperature = fit_temperature(
            data.logits, data.labels, sample_weight=data.weights, prior=data.prior,
            tol=tol, max_iter=max_iter,
        )
    k = data.num_classes
    beta = float(np.clip(data.scale / temperature, MIN_SCALE, MAX_SCALE))  # alpha for x
    empty = np.bincount(data.labels, weights=data.weights, minlength=k) <= 0
    variances = None
    dense = k <= MAX_NEWTON_CLASSES
    results, last = {}, {}
    for candidate in candidates:
        method, l2 = candidate
        if method == "temperature":
            results[candidate] = _Result(
                np.full(k, 1.0 / temperature), np.zeros(k),
                [str(w.message).replace("fit_temperature: ", "") for w in caught], None,
            )
            continue
        vector = method == "vector"
        strength = l2 / data.total  # the penalty against the *mean* NLL
        bias_ridge = strength + EMPTY_CLASS_L2 * empty
        alpha_ridge = EMPTY_CLASS_L2 * empty if vector else np.zeros(1)
        spread = None
        if vector and strength > 0:
            if variances is None:
                variances = data.column_variances()
            spread = strength * variances
        objective = _Objective(data, vector, beta, alpha_ridge, bias_ridge, spread)
        num_alpha = objective.num_alpha
        # (start, Newton cache) pairs; the caches seed the first step's Hessian.
        if starts is not None and candidate in starts:
            options = [(starts[candidate].theta, starts[candidate].cache)]
        else:
            options = [last.get(method, (np.concatenate([np.full(num_alpha, beta),
                                                         np.zeros(k)]), None))]
            scalar = results.get(("bias_corrected", l2))
            if vector and scalar is not None:
                options.append((np.concatenate([np.full(k, scalar.theta[0]),
                                                scalar.theta[1:]]), None))
        theta, hint = min(options, key=lambda option: objective.value(option[0]))
        cache = dict(hint) if hint else {}
        theta, problem = _newton(objective, theta.copy(), tol, max_iter, dense, cache)
        alpha, bias = objective.split(theta)
        if not objective.penalised and alpha.max() < MAX_SCALE:
            # Newton's gradient vanishes (exponentially) long before the scale reaches
            # its cap on separated data. If alpha * x + b ranks every label first, the
            # NLL falls without bound along c * theta: go to the cap and polish there.
            linear = data.x * alpha + bias
            label_linear = linear[objective.rows, data.labels]
            linear[objective.rows, data.labels] = -np.inf
            if np.all(label_linear > linear.max(axis=1)):
                theta, problem = _newton(objective, theta * (MAX_SCALE / alpha.max()), tol,
                                         max_iter, dense)
                alpha, bias = objective.split(theta)
        problems = [problem] if problem else []
        for count, text in (
            (np.sum(alpha >= MAX_SCALE),
             f"the NLL still decreases at the largest scale searched, {MAX_SCALE:g} / "
             f"max|logit| (T = {MIN_TEMPERATURE:g} x max|logit|, max|logit| = "
             f"{data.scale:.6g}), in {{}} of {alpha.size} entries: the data are (almost) "
             "perfectly separated; returning that bound"),
            (np.sum(alpha <= MIN_SCALE),
             f"the NLL is lowest at the smallest scale searched, {MIN_SCALE:g} / max|logit| "
             f"(T = {MAX_TEMPERATURE:g} x max|logit|), in {{}} of {alpha.size} entries: those "
             "logits carry no information beyond the prior (or rank the labels backwards); "
             "returning that bound"),
        ):
            if count:
                problems.append(text.format(int(count)))
        kept = cache if theta.size <= MAX_KEPT_PARAMETERS else None
        last[method] = (theta, kept)
        scale = np.broadcast_to(alpha / data.scale, (k,)).copy()
        results[candidate] = _Result(scale, bias - bias.mean(), problems, theta, kept)
    return results


def _held_out_nlls(data, fits):
    """``(len(fits),)`` weighted mean NLL on ``data`` of each ``(scale, bias)`` in
    ``fits`` (logit units), by the fitting objective's own NumPy pass (the one the
    optimum is found with; :func:`_weighted_nll` checks it with the metric)."""
    k = data.num_classes
    objective = _Objective(data, True, 1.0, np.zeros(k), np.zeros(k))
    return np.array([objective.nll(np.concatenate([scale * data.scale, bias]))
                     for scale, bias in fits])


def _weighted_nll(data, logits):
    """Weighted mean NLL of ``softmax(logits)`` (``scale * data.logits + bias + offset``)
    on ``data``, by :func:`calibkeras.metrics.functional.negative_log_likelihood`."""
    per_sample = functional.negative_log_likelihood(data.labels, logits, from_logits=True)
    return float(data.weights @ np.asarray(ops.convert_to_numpy(per_sample), dtype=np.float64))


def _stratified_folds(labels, num_classes, n_folds, seed):
    """Fold id of each sample: within each class, a seeded shuffle dealt out round-robin,
    each class starting where the previous one stopped (folds of near-equal size)."""
    rng = np.random.default_rng(seed)
    folds = np.empty(labels.shape[0], dtype=np.int64)
    start = 0
    for label in range(num_classes):
        members = rng.permutation(np.flatnonzero(labels == label))
        folds[members] = (start + np.arange(members.size)) % n_folds
        start = (start + members.size) % n_folds
    return folds


def _one_se_choice(fold_nll):
    """``(chosen index, cv_nll, cv_se)`` for ``(C, F)`` held-out NLLs of candidates in
    order of simplicity: the first candidate whose mean is within one standard error
    (of its per-fold difference to the best candidate) of the best mean."""
    cv_nll = fold_nll.mean(axis=1)
    best = int(np.argmin(cv_nll))
    cv_se = np.std(fold_nll - fold_nll[best], axis=1, ddof=1) / np.sqrt(fold_nll.shape[1])
    cv_se[best] = 0.0
    chosen = int(np.flatnonzero(cv_nll - cv_nll[best] <= cv_se)[0])
    return chosen, cv_nll, cv_se


def _warn(problems, method):
    for problem in problems:
        warnings.warn(f"fit_calibration (method={method!r}): {problem}", stacklevel=3)


def fit_calibration(logits, labels, *, method="auto", prior=None, sample_weight=None,
                    l2=None, n_folds=5, seed=0, tol=1e-10, max_iter=100):
    """Fits ``softmax(a * f + b + log(prior))`` to labels by minimising the mean NLL.

    The (optionally sample-weighted) mean NLL of ``softmax(a * f + b + log(prior))`` is
    jointly convex in ``(a, b)``; it is minimised exactly:

    * ``"temperature"``: scalar ``a = 1 / T``, ``b = 0``, by :func:`fit_temperature`;
    * ``"bias_corrected"``: scalar ``a`` and a free ``b`` with ``sum(b) = 0`` (BCTS);
    * ``"vector"``: per-class ``a`` and ``b``, ``sum(b) = 0`` (vector scaling);
    * ``"auto"``: the simplest of these and of their penalised variants (below) whose
      stratified ``n_folds``-fold cross-validated NLL is within one standard error of
      the best one's, the standard error being that of the per-fold NLL difference
      (one-SE rule); then refitted on all the data.

    ``sum(b) = 0`` only identifies ``b``: adding a constant to every bias changes no
    probability.

    Shrinkage toward temperature scaling (for small validation sets): with ``l2 > 0``
    the objective is the *total* weighted NLL plus ``l2`` times a penalty, that is the
    mean NLL plus ``(l2 / W) * penalty`` with ``W`` the sum of the weights (``N``
    without ``sample_weight``). The penalty, in logit units, is ``sum_k b_k**2`` for
    ``"bias_corrected"`` (the scale is free) and, for ``"vector"``,
    ``sum_k b_k**2 + sum_k v_k (a_k - abar)**2``: ``v_k`` the weighted variance of
    logit column ``k`` over the fitted data (floored at 1e-12 of ``max|logit|**2``)
    and ``abar = sum_k v_k a_k / sum_k v_k``, so that ``v_k (a_k - abar)**2`` is the
    mean square by which class ``k``'s scale moves its logits away from a common
    scale. Both fits tend to temperature scaling as ``l2 -> inf`` (equal scales, zero
    biases, the scale free). ``l2`` is a prior precision in units of samples (a
    Gaussian prior of variance ``1 / (2 l2)`` on each bias): the same ``l2`` shrinks
    less as the data grow, and a cross-validation fold is fitted with the same ``l2``
    on its own ``W``. ``l2=None`` (default) means no penalty for a named method; for
    ``"auto"`` it adds, for bias-corrected and vector scaling each, the strengths
    ``l2 = c * W / K`` for ``c`` in ``L2_GRID`` (1, 1/8, 1/64, 1/512) beside 0 to the
    candidates, ordered by simplicity: temperature < bias-corrected < vector, and
    within a method more shrinkage is simpler. A number fixes the strength of every
    candidate (``l2=0`` reproduces the unpenalised choice among the three methods).
    The reported ``nll`` never includes the penalty; ``CalibrationFit.l2`` is the
    strength used and ``CalibrationFit.cv_table`` the cross-validated NLL of every
    candidate.

    Optimiser: projected damped Newton steps on the full parameter vector (``K + 1``
    or ``2K`` numbers; the biases kept on ``sum(b) = 0`` by projecting the analytic
    gradient and Hessian onto that subspace) with an Armijo backtracking line search,
    started at the temperature fit. It stops when the gradient norm is ``<= tol`` or
    no decrease is left above floating-point rounding, and warns when ``max_iter``
    steps did not get there (typically it takes 5-15). A Hessian is reused for the
    next step while full steps keep shrinking the gradient ``1 / REUSE_RATIO``-fold
    (8-fold), as it costs O(N K^2) against O(N K) for the gradient. Up to
    ``MAX_NEWTON_CLASSES`` (1000) classes each step solves the dense Hessian (about a
    second to build for vector scaling at N = 10,000, K = 1,000); above, the step is
    found by conjugate gradients on Hessian-vector products (O(N K) each), with the
    same stopping rule. As in :func:`fit_temperature` the fit runs on ``logits / s``
    (``s`` the largest ``|logit|``), so scaling the logits by ``c`` divides ``scale``
    by ``c`` and no exponential overflows; ``tol`` applies to the gradient in
    ``(a * s, b)``. Every ``a * s`` is kept in ``[MIN_SCALE, MAX_SCALE]`` =
    ``[1e-6, 1e4]``, the range :func:`fit_temperature` searches: the optimum is
    the exact minimum over that box, so scales are always positive.

    ``"auto"`` fits every candidate on all the data first (each strength starting
    from the next stronger one's optimum and Hessian), then on each fold's training
    part starting from that optimum and its Hessian: the folds share the scale ``s``
    of all the data, and every fold fit converges to the same ``tol`` (the starts
    change the number of steps, not the optima), so the cross-validated NLLs are
    those of exact fits. Up to ``MAX_SINGLE_THREAD_CLASSES`` (256) classes the fit
    limits BLAS to one thread while it runs (threadpoolctl, as scikit-learn's
    ``KMeans`` does; process-wide for that time): its products are small, and
    threaded BLAS on shared cores made it several times slower.

    Degenerate data:

    * a class without examples (total weight 0): its bias would go to ``-inf``; a
      ridge ``EMPTY_CLASS_L2 * b_k**2`` (1e-6; with ``"vector"`` also
      ``EMPTY_CLASS_L2 * (a_k / a_T - 1)**2``) keeps it finite (a bias of roughly
      -10 to -20 relative to the others);
    * perfectly separated data: the NLL keeps falling as the scale grows. When the
      fitted ``a * f + b`` ranks every sample's label first (and no ridge applies),
      the fit is scaled up along that ray until the largest ``a * s`` reaches
      ``MAX_SCALE`` (``T = MIN_TEMPERATURE * s``, as :func:`fit_temperature`),
      re-polished there, and a warning says so;
    * logits no better than the prior (or ranking the labels backwards): the scale
      stops at ``MIN_SCALE / s``, with a warning (for ``"vector"``, per class: it
      happens with few examples per class).

    Vector scaling is not invariant to adding a different constant to each row of
    ``logits`` (``a_k`` multiplies it); the scalar methods are. Pass the logits the
    model will be calibrated on (for probabilities, ``log(probs)``).

    Args:
        logits: ``(N, K)`` finite balanced logits ``f``, ``K >= 2``.
        labels: ``(N,)`` integer class ids in ``[0, K)``; at least 2 classes among the
            samples of positive weight.
        method: ``"auto"`` (default), ``"temperature"``, ``"bias_corrected"`` or
            ``"vector"``.
        prior: None (uniform: no shift) or ``(K,)`` positive probabilities: the class
            prior of the data the labels come from; ``log(prior)`` is added to the
            calibrated logits while fitting.
        sample_weight: optional ``(N,)`` non-negative weights with a positive sum; the
            NLL is their weighted mean. Samples of weight 0 are left out.
        l2: None (default) or a finite number ``>= 0``: the shrinkage toward
            temperature scaling (above). None: chosen by cross-validation among 0 and
            ``L2_GRID * W / K`` for ``"auto"``, 0 for a named method.
        n_folds: integer ``>= 2``, cross-validation folds for ``"auto"``. Default 5;
            when the rarest class present has fewer (positive-weight) examples ``m``,
            ``m`` folds are used, so every fold holds out one of them.
        seed: integer ``>= 0`` seeding the fold assignment. Default 0.
        tol: finite number ``>= 0``; stop at gradient norm ``<= tol``. Default 1e-10.
        max_iter: positive integer, the cap on Newton steps per fit (and on the
            steps of the temperature fit). Default 100.

    Returns:
        A :class:`CalibrationFit`.

    Raises:
        ValueError: naming the argument: ``logits`` not a finite ``(N, K)`` matrix with
            ``K >= 2``, bad ``labels`` (or fewer than 2 classes), ``method`` not one of
            ``METHODS``, bad ``prior`` or ``sample_weight``, an ``l2`` that is neither
            None nor a finite number ``>= 0``,
            ``n_folds < 2`` or a ``"auto"`` fit whose rarest class has a single
            example, a bad ``seed``, ``tol`` or ``max_iter``.

    Example:
        >>> fit = fit_calibration(val_logits, val_labels, prior=val_prior)
        >>> fit.method, fit.temperature
        >>> probs = scipy.special.softmax(fit.logits(test_logits) + np.log(test_prior), 1)

    References:
        Guo et al. (2017), On Calibration of Modern Neural Networks. Alexandari,
        Kundaje & Shrikumar (2020), Maximum Likelihood with Bias-Corrected Calibration
        is Hard-To-Beat at Label Shift Adaptation.
    """
    logits = check_finite_matrix(logits, "logits")
    num_classes = logits.shape[1]
    if num_classes < 2:
        raise ValueError(
            f"`logits` must have at least 2 columns (one per class), got shape "
            f"{logits.shape}; with one class there is nothing to calibrate"
        )
    labels = check_labels(labels, num_classes, logits.shape[0])
    method = check_choice(method, "method", METHODS)
    weights = check_sample_weight(sample_weight, logits.shape[0])
    if prior is None:
        offset = np.zeros(num_classes)
    else:
        prior = check_prior(prior, num_classes)
        offset = np.log(prior)
    if l2 is not None:
        try:
            l2 = check_nonnegative_float(l2, "l2")
        except ValueError:
            raise ValueError(
                f"`l2` must be None (chosen by cross-validation for method='auto') or a "
                f"finite number >= 0, got {l2!r}"
            ) from None
    n_folds = check_int_at_least(n_folds, "n_folds", 2)
    seed = check_nonnegative_int(seed, "seed")
    tol = check_nonnegative_float(tol, "tol")
    max_iter = check_positive_int(max_iter, "max_iter")

    with _blas_threads(num_classes):  # see MAX_SINGLE_THREAD_CLASSES
        data = _Data(logits, labels, weights, offset, prior)
        counts = np.bincount(data.labels, minlength=num_classes)
        present = np.flatnonzero(counts)
        if present.size < 2:
            raise ValueError(
                f"`labels` must contain at least 2 classes (among samples of positive weight), "
                f"got only class {int(present[0])}: there is nothing to calibrate"
            )

        folds_used = cv_nll = cv_se = cv_table = None
        if method == "auto":
            rarest = int(present[np.argmin(counts[present])])
            folds_used = min(n_folds, int(counts[rarest]))
            if folds_used < 2:
                raise ValueError(
                    f"`labels`: class {rarest} has a single example (of positive weight), too "
                    "few to cross-validate the choice of `method`='auto'; pass `method` "
                    "explicitly"
                )
            candidates = _candidates(l2, data.total, num_classes)
            full = _fit_candidates(data, candidates, tol, max_iter)
            folds = _stratified_folds(data.labels, num_classes, folds_used, seed)
            fold_nll = np.empty((len(candidates), folds_used))
            fold_problems = {candidate: [] for candidate in candidates}
            for fold in range(folds_used):
                train, test = data.subset(folds != fold), data.subset(folds == fold)
                fits = _fit_candidates(train, candidates, tol, max_iter, starts=full)
                for candidate in candidates:
                    fold_problems[candidate] += fits[candidate].problems
                fold_nll[:, fold] = _held_out_nlls(
                    test, [(fits[c].scale, fits[c].bias) for c in candidates]
                )
            chosen, means, errors = _one_se_choice(fold_nll)
            cv_table = tuple(
                {"method": name, "l2": strength, "cv_nll": float(mean), "cv_se": float(error)}
                for (name, strength), mean, error in zip(candidates, means, errors, strict=True)
            )
            cv_nll, cv_se = {}, {}
            for name in CALIBRATION_METHODS:  # each method at its best strength
                row = min((row for row in cv_table if row["method"] == name),
                          key=lambda row: row["cv_nll"])
                cv_nll[name], cv_se[name] = row["cv_nll"], row["cv_se"]
            candidate = candidates[chosen]
            method, l2 = candidate
            # Only the chosen candidate's fold fits matter: one that warned and lost (vector
            # scaling on a small validation set, typically) is not the user's concern.
            if fold_problems[candidate]:
                warnings.warn(
                    f"fit_calibration (method='auto'): {len(fold_problems[candidate])} "
                    f"cross-validation fit(s) of the chosen {method!r} (l2={l2:g}) warned; the "
                    f"first: {fold_problems[candidate][0]}",
                    stacklevel=2,
                )
            result = full[candidate]
        else:
            l2 = 0.0 if l2 is None or method == "temperature" else l2
            result = _fit_candidates(data, [(method, l2)], tol, max_iter)[(method, l2)]

        _warn(result.problems, method)
        calibrated = data.logits * result.scale + (result.bias + data.offset)
    return CalibrationFit(
        method=method,
        scale=result.scale,
        bias=result.bias,
        temperature=float(1.0 / result.scale.mean()),  # every scale is > 0
        nll=_weighted_nll(data, calibrated),
        cv_nll=cv_nll,
        cv_se=cv_se,
        cv_folds=folds_used,
        l2=l2,
        cv_table=cv_table,
        posterior_mean=data.weights @ scipy.special.softmax(calibrated, axis=1),
    )
