"""Exact affine calibration of balanced logits: temperature, bias-corrected and vector
scaling, fitted by convex minimisation of the validation NLL, with a cross-validated
choice among them."""

import dataclasses
import types
import warnings

import numpy as np
import scipy.linalg
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

#: Up to this many classes each Newton step solves the dense Hessian system (``K + 1``
#: or ``2K`` parameters, O(N K^2) to build); above it, the step is found by conjugate
#: gradients on analytic Hessian-vector products (O(N K) each), preconditioned by the
#: Hessian's diagonal.
MAX_NEWTON_CLASSES = 1000

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
            for every method in ``CALIBRATION_METHODS``; else None.
        cv_se: for ``method="auto"``, ``{method: standard error of the mean per-fold
            NLL difference between that method and the method with the lowest
            cv_nll}`` (0.0 for the best one); else None. The chosen method is the
            simplest ``m`` with ``cv_nll[m] - min(cv_nll) <= cv_se[m]``.
        cv_folds: for ``method="auto"``, the number of folds used; else None.
    """

    method: str
    scale: np.ndarray
    bias: np.ndarray
    temperature: float
    nll: float
    cv_nll: dict | None = None
    cv_se: dict | None = None
    cv_folds: int | None = None

    def __post_init__(self):
        for name in ("scale", "bias"):
            array = np.array(getattr(self, name), dtype=np.float64)
            array.setflags(write=False)
            object.__setattr__(self, name, array)
        for name in ("cv_nll", "cv_se"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, types.MappingProxyType(dict(value)))

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
    """Weighted mean NLL of ``softmax(alpha * x + b + offset)`` plus a ridge, with its
    gradient, Hessian, Hessian diagonal and Hessian-vector products in
    ``theta = (alpha, b)``.

    ``alpha`` is one number (``vector=False``) or one per class; ``b`` has ``K``
    entries. The NLL does not change when a constant is added to ``b``; gradients and
    Hessians are returned projected onto ``sum(b) = 0`` (the Hessian with the
    projector's null direction filled in), so Newton steps keep ``sum(b) = 0``.
    """

    def __init__(self, x, labels, offset, weights, vector, alpha_centre, alpha_ridge,
                 bias_ridge):
        self.x, self.labels, self.offset, self.weights = x, labels, offset, weights
        self.vector = vector
        self.num_classes = x.shape[1]
        self.num_alpha = self.num_classes if vector else 1
        self.rows = np.arange(x.shape[0])
        self.root_weights = np.sqrt(weights)[:, None]
        self.alpha_centre = alpha_centre
        self.alpha_ridge, self.bias_ridge = alpha_ridge, bias_ridge
        self.ridge_curvature = np.concatenate(
            [2 * alpha_ridge / alpha_centre**2, 2 * bias_ridge]
        )
        self._key, self._state = None, None

    def split(self, theta):
        return theta[: self.num_alpha], theta[self.num_alpha:]

    def project(self, vector):
        """``vector`` with the mean of its bias part removed (a new array)."""
        vector = np.array(vector, dtype=np.float64)
        vector[self.num_alpha:] -= vector[self.num_alpha:].mean()
        return vector

    def _evaluate(self, theta):
        key = theta.tobytes()
        if key != self._key:
            alpha, bias = self.split(theta)
            logits = self.x * alpha
            logits += bias + self.offset
            label_logits = logits[self.rows, self.labels]
            peak = logits.max(axis=1, keepdims=True)
            np.subtract(logits, peak, out=logits)
            exps = np.exp(logits, out=logits)  # the one exponential pass
            totals = exps.sum(axis=1)
            probs = np.divide(exps, totals[:, None], out=exps)
            nll = self.weights @ (peak[:, 0] + np.log(totals) - label_logits)
            self._key, self._state = key, (float(nll), probs)
        return self._state

    def value(self, theta):
        """Weighted mean NLL plus the ridge."""
        alpha, bias = self.split(theta)
        ridge = (self.alpha_ridge @ (alpha / self.alpha_centre - 1.0) ** 2
                 + self.bias_ridge @ bias**2)
        return self._evaluate(theta)[0] + float(ridge)

    def gradient(self, theta):
        """Projected gradient of :meth:`value`."""
        alpha, bias = self.split(theta)
        residual = self.weights[:, None] * self._evaluate(theta)[1]
        residual[self.rows, self.labels] -= self.weights  # w_i (p_ik - [y_i = k])
        grad_alpha = np.einsum("ij,ij->j", residual, self.x)
        if not self.vector:
            grad_alpha = np.array([grad_alpha.sum()])
        grad_alpha += 2 * self.alpha_ridge * (alpha / self.alpha_centre - 1.0) / self.alpha_centre
        grad_bias = residual.sum(axis=0) + 2 * self.bias_ridge * bias
        return self.project(np.concatenate([grad_alpha, grad_bias]))

    def hessian(self, theta):
        """Projected Hessian of :meth:`value` plus ``c v v^T`` (``v`` the unit vector
        of the biases' constant direction, ``c`` their mean curvature), dense.

        Per sample the Hessian in the logits is ``diag(p) - p p^T``; the chain rule
        through ``z = alpha * x + b`` gives, for vector scaling,
        ``[[diag(w p x^2), diag(w p x)], [., diag(w p)]] - Q^T Q`` with
        ``Q = sqrt(w) [p x, p]`` (one symmetric product)."""
        probs = self._evaluate(theta)[1]
        weighted = probs * self.weights[:, None]
        mass = weighted.sum(axis=0)  # sum_i w_i p_ik
        if self.vector:
            stacked = np.concatenate([probs * self.x, probs], axis=1)
            stacked *= self.root_weights
            hessian = -(stacked.T @ stacked)  # numpy calls syrk for A.T @ A
            k = self.num_classes
            first = np.einsum("ij,ij->j", weighted, self.x)
            second = np.einsum("ij,ij->j", weighted, self.x**2)
            diagonal = np.arange(k)
            hessian[diagonal, diagonal] += second
            hessian[diagonal, diagonal + k] += first
            hessian[diagonal + k, diagonal] += first
            hessian[diagonal + k, diagonal + k] += mass
        else:
            scaled = probs * self.x
            mean_x = scaled.sum(axis=1)  # p_i . x_i
            root = probs * self.root_weights
            hess_bb = np.diag(mass) - root.T @ root
            hess_aa = self.weights @ (np.einsum("ij,ij->i", scaled, self.x) - mean_x**2)
            hess_ab = self.weights @ (scaled - probs * mean_x[:, None])
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
        return self.project(out + self.ridge_curvature * direction)


def _dense_step(objective, theta, grad, free, cache):
    """Newton step on the free parameters (zeros elsewhere): Cholesky of the Hessian,
    with growing damping if it does not factorise (a numerically singular Hessian).
    ``cache`` keeps the Hessian at ``theta`` between calls."""
    if "hessian" not in cache:
        cache["hessian"] = objective.hessian(theta)
    hessian = cache["hessian"][np.ix_(free, free)]
    rhs = grad[free]
    scale = max(float(np.abs(np.diag(hessian)).max()), 1e-300)
    damping, step = 0.0, None
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
        step = None
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


def _newton(objective, theta, tol, max_iter, dense):
    """Projected damped Newton with Armijo backtracking on ``value``, the scales kept in
    ``[MIN_SCALE, MAX_SCALE]``. Returns ``(theta, problem)``: ``problem`` is None after
    convergence (gradient norm over the free parameters ``<= tol``, or no decrease left
    above rounding), else the text of a warning.

    A scale at a bound whose gradient pushes it out is held there; a step is cut where
    it reaches a bound (the scale lands on it); a scale that would stop a step almost
    at once (within 1e-3 of its length) is put on that bound if that does not raise
    the objective, else held for that step."""
    num_alpha = objective.num_alpha
    step_of = _dense_step if dense else _cg_step
    for _ in range(max_iter):
        value, grad = objective.value(theta), objective.gradient(theta)
        free = _free(theta, grad, num_alpha)
        grad_norm = float(np.linalg.norm(grad[free]))
        if grad_norm <= tol:
            return theta, None
        cache, snapped = {}, None
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
            candidate = _feasible(theta + longest * step, num_alpha)
            new_grad = objective.gradient(candidate)
            if np.linalg.norm(new_grad[_free(candidate, new_grad, num_alpha)]) < grad_norm:
                theta = objective.project(candidate)
                continue
            return theta, None
        t = longest
        while True:
            candidate = _feasible(theta + t * step, num_alpha)
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
        theta = objective.project(candidate)
    grad = objective.gradient(theta)
    grad_norm = float(np.linalg.norm(grad[_free(theta, grad, num_alpha)]))
    if grad_norm <= tol:
        return theta, None
    return theta, (
        f"stopped after `max_iter`={max_iter} Newton steps before converging (gradient "
        f"norm {grad_norm:.3g} > `tol`={tol:g}); raise `max_iter`"
    )

class _Data:
    """Fitting data: positive-weight samples only, weights summing to 1, and
    ``x = logits / s`` with ``s`` the largest ``|logit|`` (1 if all are 0)."""

    def __init__(self, logits, labels, weights, offset, prior):
        keep = weights > 0
        self.logits, self.labels = logits[keep], labels[keep]
        self.weights = weights[keep] / weights[keep].sum()
        self.offset, self.prior = offset, prior
        self.num_classes = logits.shape[1]
        scale = float(np.abs(self.logits).max())
        self.scale = scale if scale > 0 else 1.0
        self.x = self.logits / self.scale

    def subset(self, rows):
        return _Data(self.logits[rows], self.labels[rows], self.weights[rows], self.offset,
                     self.prior)


def _fit_methods(data, methods, l2, tol, max_iter):
    """``{method: (scale, bias, problems)}`` on ``data``; ``problems``: warning texts.

    The temperature fit comes first: it is the ``"temperature"`` result, the start of
    the other fits and the centre of their ridge."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        temperature = fit_temperature(
            data.logits, data.labels, sample_weight=data.weights, prior=data.prior,
            tol=tol, max_iter=max_iter,
        )
    results = {}
    if "temperature" in methods:
        results["temperature"] = (
            np.full(data.num_classes, 1.0 / temperature), np.zeros(data.num_classes),
            [str(w.message).replace("fit_temperature: ", "") for w in caught],
        )
    beta = float(np.clip(data.scale / temperature, MIN_SCALE, MAX_SCALE))  # alpha for x
    empty = np.bincount(data.labels, weights=data.weights, minlength=data.num_classes) <= 0
    for method in methods:
        if method == "temperature":
            continue
        vector = method == "vector"
        bias_ridge = l2 + EMPTY_CLASS_L2 * empty
        alpha_ridge = l2 + EMPTY_CLASS_L2 * empty if vector else np.array([l2])
        objective = _Objective(data.x, data.labels, data.offset, data.weights, vector, beta,
                               alpha_ridge, bias_ridge)
        theta = np.concatenate([np.full(objective.num_alpha, beta), np.zeros(data.num_classes)])
        dense = data.num_classes <= MAX_NEWTON_CLASSES
        theta, problem = _newton(objective, theta, tol, max_iter, dense)
        alpha, bias = objective.split(theta)
        if not (alpha_ridge.any() or bias_ridge.any()) and alpha.max() < MAX_SCALE:
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
        scale = np.broadcast_to(alpha / data.scale, (data.num_classes,)).copy()
        results[method] = (scale, bias - bias.mean(), problems)
    return results


def _weighted_nll(data, scale, bias):
    """Weighted mean NLL of ``softmax(scale * logits + bias + offset)`` on ``data``, by
    :func:`calibkeras.metrics.functional.negative_log_likelihood`."""
    logits = data.logits * scale + bias + data.offset
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


def _warn(problems, method):
    for problem in problems:
        warnings.warn(f"fit_calibration (method={method!r}): {problem}", stacklevel=3)


def fit_calibration(logits, labels, *, method="auto", prior=None, sample_weight=None,
                    l2=0.0, n_folds=5, seed=0, tol=1e-10, max_iter=100):
    """Fits ``softmax(a * f + b + log(prior))`` to labels by minimising the mean NLL.

    The (optionally sample-weighted) mean NLL of ``softmax(a * f + b + log(prior))`` is
    jointly convex in ``(a, b)``; it is minimised exactly:

    * ``"temperature"``: scalar ``a = 1 / T``, ``b = 0``, by :func:`fit_temperature`;
    * ``"bias_corrected"``: scalar ``a`` and a free ``b`` with ``sum(b) = 0`` (BCTS);
    * ``"vector"``: per-class ``a`` and ``b``, ``sum(b) = 0`` (vector scaling);
    * ``"auto"``: the simplest of these (in that order) whose stratified
      ``n_folds``-fold cross-validated NLL is within one standard error of the best
      one's, the standard error being that of the per-fold NLL difference (one-SE
      rule); then refitted on all the data.

    ``sum(b) = 0`` only identifies ``b``: adding a constant to every bias changes no
    probability. With ``l2 > 0`` the objective adds
    ``l2 * (sum_k (a_k / a_T - 1)**2 + sum_k b_k**2)`` (one scale term for the scalar
    method), shrinking the fit toward temperature scaling ``a_T = 1 / T`` (useful on
    small validation sets); ``l2`` is a fixed argument, not chosen by the
    cross-validation. The reported ``nll`` never includes the penalty.

    Optimiser: projected damped Newton steps on the full parameter vector (``K + 1``
    or ``2K`` numbers; the biases kept on ``sum(b) = 0`` by projecting the analytic
    gradient and Hessian onto that subspace) with an Armijo backtracking line search,
    started at the temperature fit. It stops when the gradient norm is ``<= tol`` or
    no decrease is left above floating-point rounding, and warns when ``max_iter``
    steps did not get there (typically it takes 5-15). Up to ``MAX_NEWTON_CLASSES``
    (1000) classes each step solves the dense Hessian (O(N K^2) to build: about a
    second a step for vector scaling at N = 10,000, K = 1,000); above, the step is
    found by conjugate gradients on Hessian-vector products (O(N K) each), with the
    same stopping rule. As in :func:`fit_temperature` the fit runs on ``logits / s``
    (``s`` the largest ``|logit|``), so scaling the logits by ``c`` divides ``scale``
    by ``c`` and no exponential overflows; ``tol`` applies to the gradient in
    ``(a * s, b)``. Every ``a * s`` is kept in ``[MIN_SCALE, MAX_SCALE]`` =
    ``[1e-6, 1e4]``, the range :func:`fit_temperature` searches: the optimum is
    the exact minimum over that box, so scales are always positive.

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
        l2: finite number ``>= 0``, the shrinkage toward temperature scaling. Default 0.
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
            ``METHODS``, bad ``prior`` or ``sample_weight``, a negative ``l2``,
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
    l2 = check_nonnegative_float(l2, "l2")
    n_folds = check_int_at_least(n_folds, "n_folds", 2)
    seed = check_nonnegative_int(seed, "seed")
    tol = check_nonnegative_float(tol, "tol")
    max_iter = check_positive_int(max_iter, "max_iter")

    data = _Data(logits, labels, weights, offset, prior)
    counts = np.bincount(data.labels, minlength=num_classes)
    present = np.flatnonzero(counts)
    if present.size < 2:
        raise ValueError(
            f"`labels` must contain at least 2 classes (among samples of positive weight), "
            f"got only class {int(present[0])}: there is nothing to calibrate"
        )

    cv_nll = cv_se = folds_used = None
    if method == "auto":
        rarest = int(present[np.argmin(counts[present])])
        folds_used = min(n_folds, int(counts[rarest]))
        if folds_used < 2:
            raise ValueError(
                f"`labels`: class {rarest} has a single example (of positive weight), too "
                "few to cross-validate the choice of `method`='auto'; pass `method` "
                "explicitly"
            )
        folds = _stratified_folds(data.labels, num_classes, folds_used, seed)
        fold_nll = {name: np.empty(folds_used) for name in CALIBRATION_METHODS}
        fold_problems = {name: [] for name in CALIBRATION_METHODS}
        for fold in range(folds_used):
            train, test = data.subset(folds != fold), data.subset(folds == fold)
            fits = _fit_methods(train, CALIBRATION_METHODS, l2, tol, max_iter)
            for name, (scale, bias, problems) in fits.items():
                fold_problems[name] += problems
                fold_nll[name][fold] = _weighted_nll(test, scale, bias)
        cv_nll = {name: float(values.mean()) for name, values in fold_nll.items()}
        best = min(CALIBRATION_METHODS, key=cv_nll.get)
        cv_se = {
            name: float(np.std(values - fold_nll[best], ddof=1) / np.sqrt(folds_used))
            for name, values in fold_nll.items()
        }
        method = next(
            name for name in CALIBRATION_METHODS if cv_nll[name] - cv_nll[best] <= cv_se[name]
        )
        # Only the chosen method's fold fits matter: a candidate that warned and lost
        # (vector scaling on a small validation set, typically) is not the user's concern.
        if fold_problems[method]:
            warnings.warn(
                f"fit_calibration (method='auto'): {len(fold_problems[method])} "
                f"cross-validation fit(s) of the chosen {method!r} warned; the first: "
                f"{fold_problems[method][0]}",
                stacklevel=2,
            )

    scale, bias, problems = _fit_methods(data, (method,), l2, tol, max_iter)[method]
    _warn(problems, method)
    return CalibrationFit(
        method=method,
        scale=scale,
        bias=bias,
        temperature=float(1.0 / scale.mean()),  # every scale is > 0
        nll=_weighted_nll(data, scale, bias),
        cv_nll=cv_nll,
        cv_se=cv_se,
        cv_folds=folds_used,
    )
