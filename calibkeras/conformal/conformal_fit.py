"""Split-conformal prediction sets: label-conditional (Mondrian) or marginal, the latter
weighted for a deployment prior."""

import dataclasses
import math

import numpy as np
from keras import ops
from sklearn.utils import check_random_state

from calibkeras.choices import CONFORMITY_SCORES
from calibkeras.conformal.coverage import set_coverage
from calibkeras.conformal.scores import conformity_scores
from calibkeras.utils.checks import (
    MISCOVERAGE,
    _show,
    check_bool,
    check_choice,
    check_labels,
    check_nonnegative_float,
    check_nonnegative_int,
    check_open_fraction,
    check_prior,
    check_probabilities,
)

#: Default RAPS regularisation: ``penalty`` per rank beyond the ``k_reg`` top ones.
DEFAULT_PENALTY = 0.01
DEFAULT_K_REG = 1

#: Relative slack in the quantile's level, against rounding in ``(1 - alpha) * total``
#: (``0.9 * 100`` must select the 90th score, not the 91st).
_LEVEL_SLACK = 1e-12


def min_calibration_count(alpha):
    """The fewest calibration scores that give a finite threshold at level ``alpha``:
    ``ceil(1 / alpha) - 1`` (with fewer, ``ceil((n + 1)(1 - alpha)) > n``)."""
    return math.ceil(1.0 / alpha * (1 - _LEVEL_SLACK)) - 1


def conformal_quantile(scores, weights, test_weights, alpha):
    """Weighted split-conformal thresholds, one per test weight.

    The threshold for a test point of weight ``w`` is the smallest score ``s`` with
    ``sum(weights[scores <= s]) >= (1 - alpha) * (sum(weights) + w)``: the ``1 - alpha``
    quantile of the calibration scores with the test point's mass at ``+inf``
    (Tibshirani et al. 2019). With unit weights it is the ``ceil((n + 1)(1 - alpha))``-th
    smallest score. ``+inf`` where no score reaches the level.

    Args:
        scores: ``(n,)`` calibration scores.
        weights: ``(n,)`` positive weights.
        test_weights: ``(m,)`` weights of a test point (one threshold each).
        alpha: miscoverage level in (0, 1).

    Returns:
        ``(m,)`` float64 thresholds.
    """
    test_weights = np.asarray(test_weights, dtype=np.float64)
    if len(scores) == 0:
        return np.full(test_weights.shape, np.inf)
    order = np.argsort(scores, kind="stable")
    ranked = np.asarray(scores, dtype=np.float64)[order]
    mass = np.cumsum(np.asarray(weights, dtype=np.float64)[order])
    level = (1.0 - alpha) * (mass[-1] + test_weights) * (1 - _LEVEL_SLACK)
    index = np.searchsorted(mass, level, side="left")
    padded = np.append(ranked, np.inf)
    return padded[np.minimum(index, len(ranked))]


@dataclasses.dataclass(frozen=True, eq=False)
class ConformalFit:
    """Prediction sets fitted by :func:`fit_conformal`: class ``k`` is in the set of
    probabilities ``p`` when its conformity score is at most ``thresholds[k]``.

    Attributes:
        alpha: the miscoverage level; sets hold the true class with probability at
            least ``1 - alpha`` (per class for ``"by_class"``; overall, under
            ``prior``, for ``"marginal"``).
        mode: ``"by_class"`` or ``"marginal"``.
        score: ``"lac"``, ``"aps"`` or ``"raps"``.
        thresholds: ``(K,)`` float64; ``inf`` for a class always in the set. Read-only.
        class_counts: ``(K,)`` calibration examples of each class.
        prior: the deployment prior the marginal thresholds were weighted for, or None
            (the calibration data's own class frequencies).
        randomized: whether scores are randomised (APS and RAPS).
        penalty: the RAPS penalty per rank beyond ``k_reg``.
        k_reg: the number of top ranks RAPS leaves unpenalised.
    """

    alpha: float
    mode: str
    score: str
    thresholds: np.ndarray
    class_counts: np.ndarray
    prior: np.ndarray | None = None
    randomized: bool = False
    penalty: float = DEFAULT_PENALTY
    k_reg: int = DEFAULT_K_REG

    def __post_init__(self):
        for name in ("thresholds", "class_counts", "prior"):
            value = getattr(self, name)
            if value is not None:
                array = np.array(value)
                array.setflags(write=False)
                object.__setattr__(self, name, array)

    @property
    def always_included(self):
        """Ids of the classes with an infinite threshold: always in the set (for
        ``"by_class"``, those with fewer than :attr:`min_class_count` calibration
        examples; for ``"marginal"``, classes the calibration data lack, or too
        little calibration weight for the level)."""
        return np.flatnonzero(np.isinf(self.thresholds))

    @property
    def min_class_count(self):
        """``ceil(1 / alpha) - 1``: the calibration examples a class needs for a finite
        class-conditional threshold."""
        return min_calibration_count(self.alpha)

    def scores(self, probs, *, random_state=None):
        """``(N, K)`` float64 scores of every class as the sets compare them (``u = 0``,
        or ``u ~ U(0, 1)`` per row when randomised)."""
        probs = check_probabilities(probs)
        _check_columns(probs, len(self.thresholds))
        u = _uniform(random_state, len(probs)) if self.randomized else 0.0
        return ops.convert_to_numpy(conformity_scores(
            probs, score=self.score, u=u, penalty=self.penalty, k_reg=self.k_reg
        ))

    def predict_sets(self, probs, *, random_state=None):
        """``(N, K)`` booleans: ``[i, k]`` when class ``k`` is in row ``i``'s set.

        Args:
            probs: ``(N, K)`` calibrated balanced posteriors (uniform prior), as the
                thresholds were fitted on.
            random_state: seed, ``RandomState`` or ``Generator`` of the randomised
                sets (ignored unless :attr:`randomized`).
        """
        return self.scores(probs, random_state=random_state) <= self.thresholds

    def coverage(self, probs, labels, *, prior=None, random_state=None):
        """:class:`calibkeras.conformal.SetCoverage` of the sets of ``probs``."""
        sets = self.predict_sets(probs, random_state=random_state)
        return set_coverage(labels, sets, prior=prior)

    def as_dict(self, class_names=None):
        """A JSON-ready summary (thresholds keyed by class name; ``inf`` as None)."""
        names = class_names or [str(k) for k in range(len(self.thresholds))]
        return {
            "alpha": self.alpha,
            "mode": self.mode,
            "score": self.score,
            "randomized": self.randomized,
            "penalty": self.penalty if self.score == "raps" else None,
            "k_reg": self.k_reg if self.score == "raps" else None,
            "thresholds": {
                name: (None if np.isinf(t) else float(t))
                for name, t in zip(names, self.thresholds, strict=True)
            },
            "calibration_counts": dict(zip(names, self.class_counts.tolist(), strict=True)),
            "always_included": [names[k] for k in self.always_included],
            "prior": (None if self.prior is None
                      else dict(zip(names, self.prior.tolist(), strict=True))),
        }


def fit_conformal(
    probs,
    labels,
    alpha=0.1,
    *,
    by_class=True,
    score="lac",
    prior=None,
    randomized=False,
    penalty=DEFAULT_PENALTY,
    k_reg=DEFAULT_K_REG,
    random_state=0,
):
    """Fits split-conformal prediction sets on labelled calibration data.

    Scores come from calibrated *balanced* posteriors (the model's probabilities under
    the uniform prior), a fixed function of the image: changing the deployment prior
    later leaves class-conditional sets valid, and marginal sets are re-weighted for
    the prior instead (``prior``).

    * ``by_class=True`` (Mondrian, label-conditional; Vovk 2012): a threshold per class
      from that class's calibration scores. For exchangeable data the set holds the
      true class with probability at least ``1 - alpha`` *for every class*, whatever
      the class prior of the deployment (it conditions on the label). A class with
      fewer than ``ceil(1 / alpha) - 1`` calibration examples cannot have a finite
      threshold: it is always in the set (:attr:`ConformalFit.always_included`).
    * ``by_class=False`` (marginal): one quantile of all calibration scores; with
      ``prior``, weighted split conformal for label shift (Podkopaev & Ramdas 2021):
      example ``i`` weighs ``prior[y_i] / freq[y_i]`` (``freq`` the calibration
      label frequencies) and the threshold of candidate class ``k`` puts the test
      point's weight ``prior[k] / freq[k]`` at ``+inf``, so marginal coverage holds
      under the deployment prior. Without ``prior`` it holds under the calibration
      data's own class frequencies only.

    APS and RAPS calibration scores always use a random ``u`` (Romano et al.'s
    randomised scores; MAPIE does the same): whatever ``u``, the score with ``u = 0``
    is at most the calibration score, so the non-randomised sets keep the guarantee,
    and a random ``u`` gives a much lower threshold than ``u = 1`` (the whole mass of
    the class), which for confident networks makes sets of most classes.

    Args:
        probs: ``(N, K)`` calibrated balanced posteriors of the calibration images.
        labels: ``(N,)`` their class ids.
        alpha: miscoverage level in (0, 1) (default 0.1: 90 % coverage).
        by_class: class-conditional (default) or marginal thresholds.
        score: ``"lac"`` (``1 - p_y``, default; smallest sets), ``"aps"`` or
            ``"raps"`` (sets that grow with the model's uncertainty; see
            :func:`calibkeras.conformal.conformity_scores`).
        prior: the deployment prior for ``by_class=False``: ``"uniform"`` or ``(K,)``
            probabilities (e.g. an EM estimate's ``.prior``); None: no weighting.
        randomized: randomise the APS/RAPS sets too (a fresh ``u ~ U(0, 1)`` per row
            at prediction), for coverage close to exactly ``1 - alpha`` at the price of
            sets that vary from call to call (and may be empty). Default False: a set
            holds every class whose score with ``u = 0`` is within the threshold (the
            class that crosses it is included), a fixed function of the image with
            coverage at least ``1 - alpha``. Served sets are never randomised.
        penalty: RAPS penalty per rank beyond ``k_reg`` (default 0.01).
        k_reg: ranks RAPS leaves unpenalised (default 1).
        random_state: the draws of ``u`` of the APS/RAPS calibration scores: an int
            seed (default 0: the same data give the same thresholds), a
            ``numpy.random.RandomState`` or ``Generator``, or None (fresh entropy). An
            int seeds a ``RandomState`` as scikit-learn does, so the scores equal MAPIE's
            for the same seed.

    Returns:
        A :class:`ConformalFit`.

    Raises:
        ValueError: naming the bad argument (probabilities, labels, ``alpha`` outside
            (0, 1), an unknown ``score``, ``prior`` with ``by_class=True``...).

    Example:
        >>> fit = fit_conformal(val_probs, val_labels, alpha=0.1)
        >>> sets = fit.predict_sets(test_probs)          # (N, K) booleans
        >>> fit.coverage(test_probs, test_labels).per_class

    References:
        Vovk (2012), Conditional validity of inductive conformal predictors. Sadinle,
        Lei & Wasserman (2019), Least ambiguous set-valued classifiers with bounded
        error levels. Romano, Sesia & Candes (2020), Classification with valid and
        adaptive coverage. Angelopoulos et al. (2021), Uncertainty sets for image
        classifiers using conformal prediction. Podkopaev & Ramdas (2021),
        Distribution-free uncertainty quantification for classification under label
        shift.
    """
    probs = check_probabilities(probs)
    num_classes = probs.shape[1]
    labels = check_labels(labels, num_classes, probs.shape[0])
    alpha = check_open_fraction(alpha, "alpha", MISCOVERAGE)
    by_class = check_bool(by_class, "by_class")
    score = check_choice(score, "score", CONFORMITY_SCORES)
    randomized = check_bool(randomized, "randomized")
    penalty = check_nonnegative_float(penalty, "penalty")
    k_reg = check_nonnegative_int(k_reg, "k_reg")
    if by_class and prior is not None:
        raise ValueError(
            f"`prior` ({_show(prior)}) applies to marginal sets only (by_class=False): "
            "class-conditional sets hold for every class under any prior. Drop `prior`, "
            "or pass by_class=False"
        )
    if prior is not None:
        prior = (np.full(num_classes, 1.0 / num_classes) if _is_uniform(prior)
                 else check_prior(prior, num_classes))

    # The mass down to the class less u times its probability (as MAPIE; LAC ignores u).
    u = 1.0 - _uniform(random_state, len(labels))
    matrix = conformity_scores(probs, score=score, u=u, penalty=penalty, k_reg=k_reg)
    own = ops.convert_to_numpy(matrix)[np.arange(len(labels)), labels]
    counts = np.bincount(labels, minlength=num_classes)

    if by_class:
        thresholds = np.array([
            conformal_quantile(own[labels == k], np.ones(counts[k]), [1.0], alpha)[0]
            for k in range(num_classes)
        ])
    elif prior is None:
        thresholds = np.full(
            num_classes, conformal_quantile(own, np.ones(len(own)), [1.0], alpha)[0]
        )
    else:
        frequencies = counts / counts.sum()
        with np.errstate(divide="ignore"):
            class_weights = np.where(counts > 0, prior / np.maximum(frequencies, 1e-300),
                                     np.inf)
        # A class without calibration data weighs inf: its threshold is inf.
        thresholds = conformal_quantile(own, class_weights[labels], class_weights, alpha)
    return ConformalFit(
        alpha=alpha, mode="by_class" if by_class else "marginal", score=score,
        thresholds=thresholds, class_counts=counts, prior=prior, randomized=randomized,
        penalty=penalty, k_reg=k_reg,
    )


def _is_uniform(prior):
    return isinstance(prior, str) and prior == "uniform"




def _check_columns(probs, num_classes):
    if probs.shape[1] != num_classes:
        raise ValueError(
            f"`probs` has {probs.shape[1]} columns but the sets were fitted for "
            f"{num_classes} classes"
        )


def _uniform(random_state, n):
    """``(n, 1)`` draws of U(0, 1): from a ``Generator`` as it is, else from
    scikit-learn's ``check_random_state`` (an int seeds a ``RandomState``)."""
    if isinstance(random_state, np.random.Generator):
        return random_state.uniform(size=(n, 1))
    return check_random_state(random_state).uniform(size=n).reshape(-1, 1)
