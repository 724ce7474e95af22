"""fit_conformal against plain references, coverage in simulation, and the peers."""

import math
from fractions import Fraction

import numpy as np
import pytest

from calibkeras.conformal import (
    conformity_scores,
    fit_conformal,
    min_calibration_count,
    set_coverage,
)


def split(probs, labels, seed=0):
    """A seeded 50/50 calibration/test split."""
    order = np.random.default_rng(seed).permutation(len(labels))
    half = len(labels) // 2
    cal, test = order[:half], order[half:]
    return probs[cal], labels[cal], probs[test], labels[test]


def order_statistic(scores, alpha):
    """The ceil((n + 1)(1 - alpha))-th smallest score in exact arithmetic; inf if > n."""
    n = len(scores)
    k = math.ceil((n + 1) * (1 - Fraction(str(alpha))))
    return np.inf if k > n else np.sort(scores)[k - 1]


def reference_lac(cal_probs, cal_labels, test_probs, alpha, by_class):
    """LAC sets from a loop: score 1 - p_y, one order statistic per class (or one)."""
    own = 1.0 - cal_probs[np.arange(len(cal_labels)), cal_labels]
    num_classes = cal_probs.shape[1]
    if by_class:
        thresholds = [order_statistic(own[cal_labels == k], alpha) for k in range(num_classes)]
    else:
        thresholds = [order_statistic(own, alpha)] * num_classes
    return (1.0 - test_probs) <= np.array(thresholds)


def reference_aps(cal_probs, cal_labels, test_probs, alpha, seed=0):
    """Non-randomised APS sets as Angelopoulos et al.'s code builds them (the top
    ``#{cumsum <= tau} + 1`` classes) for the threshold of randomised calibration
    scores (the cumulative mass at the true class less ``u`` times its probability,
    ``u`` drawn as scikit-learn's ``check_random_state(seed)`` does)."""
    def sorted_cumsum(probs):
        order = np.argsort(-probs, axis=1, kind="stable")
        return order, np.cumsum(np.take_along_axis(probs, order, axis=1), axis=1)

    order, cumsum = sorted_cumsum(cal_probs)
    position = np.argmax(order == cal_labels[:, None], axis=1)
    u = np.random.RandomState(seed).uniform(size=len(cal_labels))
    own = cal_probs[np.arange(len(cal_labels)), cal_labels]
    tau = order_statistic(cumsum[np.arange(len(cal_labels)), position] - u * own, alpha)
    order, cumsum = sorted_cumsum(test_probs)
    sizes = np.minimum((cumsum <= tau).sum(axis=1) + 1, test_probs.shape[1])
    sets = np.zeros(test_probs.shape, dtype=bool)
    for row, size in enumerate(sizes):
        sets[row, order[row, :size]] = True
    return sets


def reference_weighted(cal_probs, cal_labels, test_probs, alpha, prior):
    """Weighted marginal LAC sets, by brute force over candidate thresholds."""
    num_classes = cal_probs.shape[1]
    own = 1.0 - cal_probs[np.arange(len(cal_labels)), cal_labels]
    frequencies = np.bincount(cal_labels, minlength=num_classes) / len(cal_labels)
    weights = prior / frequencies
    thresholds = []
    for k in range(num_classes):
        total = weights[cal_labels].sum() + weights[k]
        candidates = [s for s in np.unique(own)
                      if weights[cal_labels][own <= s].sum() / total >= 1 - alpha - 1e-12]
        thresholds.append(min(candidates) if candidates else np.inf)
    return (1.0 - test_probs) <= np.array(thresholds)


@pytest.mark.parametrize("alpha", [0.05, 0.1, 0.2])
@pytest.mark.parametrize("by_class", [True, False])
def test_lac_sets_equal_the_order_statistic_reference(record, alpha, by_class):
    cal_probs, cal_labels, test_probs, _ = split(*record)
    fit = fit_conformal(cal_probs, cal_labels, alpha, by_class=by_class)
    expected = reference_lac(cal_probs, cal_labels, test_probs, alpha, by_class)
    np.testing.assert_array_equal(fit.predict_sets(test_probs), expected)


def test_aps_sets_equal_angelopoulos_reference(record):
    cal_probs, cal_labels, test_probs, _ = split(*record)
    fit = fit_conformal(cal_probs, cal_labels, 0.1, by_class=False, score="aps")
    expected = reference_aps(cal_probs, cal_labels, test_probs, 0.1)
    np.testing.assert_array_equal(fit.predict_sets(test_probs), expected)


def test_weighted_marginal_sets_equal_brute_force(small_record):
    cal_probs, cal_labels, test_probs, _ = split(*small_record)
    cal_probs, cal_labels = cal_probs[:600], cal_labels[:600]
    prior = np.random.default_rng(3).dirichlet(np.ones(10))
    fit = fit_conformal(cal_probs, cal_labels, 0.1, by_class=False, prior=prior)
    expected = reference_weighted(cal_probs, cal_labels, test_probs, 0.1, prior)
    np.testing.assert_array_equal(fit.predict_sets(test_probs), expected)


def test_scores_match_their_definitions():
    probs = np.array([[0.5, 0.3, 0.2], [0.1, 0.1, 0.8]])
    np.testing.assert_allclose(np.asarray(conformity_scores(probs)), 1 - probs)
    aps = np.asarray(conformity_scores(probs, score="aps", u=1.0))
    np.testing.assert_allclose(aps, [[0.5, 0.8, 1.0], [0.9, 1.0, 0.8]])  # ties: by id
    raps = np.asarray(conformity_scores(probs, score="raps", u=0.0, penalty=0.1, k_reg=1))
    np.testing.assert_allclose(raps, [[0.0, 0.6, 0.8 + 0.2], [0.8 + 0.1, 0.9 + 0.2, 0.0]])


# === Coverage in simulation ===

ALPHA = 0.1
#: Class signal strengths: the rare classes of the calibration data are the hard ones,
#: so an unweighted marginal threshold under-covers them.
SIGNAL = np.array([3.0, 2.5, 1.5, 0.8])
CALIBRATION_PRIOR = np.array([0.55, 0.25, 0.15, 0.05])


def synthetic(rng, n, prior):
    """Probabilities of a fixed, calibrated-looking model for labels drawn from prior."""
    labels = rng.choice(len(prior), size=n, p=prior)
    logits = rng.normal(size=(n, len(prior)))
    logits[np.arange(n), labels] += SIGNAL[labels]
    probs = np.exp(logits)
    return probs / probs.sum(axis=1, keepdims=True), labels


def simulate(fit_options, test_prior, splits=200, n_cal=400, n_test=1000, weighted=False):
    """Per-split (marginal, per-class) coverage of sets fitted on fresh calibration data."""
    marginal, per_class = [], []
    for seed in range(splits):
        rng = np.random.default_rng(seed)
        prior = test_prior(rng)
        cal_probs, cal_labels = synthetic(rng, n_cal, CALIBRATION_PRIOR)
        test_probs, test_labels = synthetic(rng, n_test, prior)
        options = dict(fit_options, prior=prior) if weighted else fit_options
        coverage = fit_conformal(cal_probs, cal_labels, ALPHA, **options).coverage(
            test_probs, test_labels)
        marginal.append(coverage.marginal)
        per_class.append(coverage.per_class)
    return np.array(marginal), np.array(per_class)


def mean_and_se(values):
    values = values[~np.isnan(values)]
    return values.mean(), values.std(ddof=1) / np.sqrt(len(values))


@pytest.mark.parametrize("by_class", [True, False])
def test_exchangeable_coverage_is_between_the_conformal_bounds(by_class):
    marginal, per_class = simulate({"by_class": by_class}, lambda rng: CALIBRATION_PRIOR)
    mean, se = mean_and_se(marginal)
    upper = 1 - ALPHA + 1 / (400 + 1)
    if by_class:  # the per-class bound, with the class's expected count
        upper = 1 - ALPHA + 1 / (400 * CALIBRATION_PRIOR.min() + 1)
    assert 1 - ALPHA - 3 * se <= mean <= upper + 3 * se
    if by_class:
        for k, n_k in enumerate(400 * CALIBRATION_PRIOR):
            mean_k, se_k = mean_and_se(per_class[:, k])
            assert 1 - ALPHA - 3 * se_k <= mean_k <= 1 - ALPHA + 1 / (n_k + 1) + 3 * se_k


def dirichlet_shift(rng):
    return rng.dirichlet(np.ones(4))


def test_under_label_shift_only_class_conditional_and_weighted_sets_keep_coverage():
    _, per_class = simulate({"by_class": True}, dirichlet_shift, splits=100)
    for k in range(4):
        mean_k, se_k = mean_and_se(per_class[:, k])
        assert mean_k >= 1 - ALPHA - 3 * se_k
    unweighted, _ = simulate({"by_class": False}, dirichlet_shift, splits=100)
    weighted, _ = simulate({"by_class": False}, dirichlet_shift, splits=100, weighted=True)
    mean_u, se_u = mean_and_se(unweighted)
    mean_w, se_w = mean_and_se(weighted)
    assert mean_u < 1 - ALPHA - 3 * se_u  # lost: the hard classes are rare in calibration
    assert mean_w >= 1 - ALPHA - 3 * se_w  # recovered by the prior's weights


def test_randomised_aps_covers_close_to_the_level():
    marginal = []
    for seed in range(100):
        rng = np.random.default_rng(seed)
        cal_probs, cal_labels = synthetic(rng, 400, CALIBRATION_PRIOR)
        test_probs, test_labels = synthetic(rng, 1000, CALIBRATION_PRIOR)
        # Streams of their own: the data's seed would reuse the draws behind the labels.
        fit = fit_conformal(cal_probs, cal_labels, ALPHA, by_class=False, score="aps",
                            randomized=True, random_state=10_000 + seed)
        coverage = fit.coverage(test_probs, test_labels, random_state=20_000 + seed)
        marginal.append(coverage.marginal)
    mean, se = mean_and_se(np.array(marginal))
    assert 1 - ALPHA - 3 * se <= mean <= 1 - ALPHA + 1 / 401 + 3 * se


# === Small classes, results and errors ===

def test_a_class_below_the_minimum_count_is_always_in_the_set():
    rng = np.random.default_rng(0)
    probs, labels = synthetic(rng, 300, CALIBRATION_PRIOR)
    keep = (labels != 3) | (np.cumsum(labels == 3) <= min_calibration_count(0.1) - 1)
    fit = fit_conformal(probs[keep], labels[keep], 0.1)
    assert min_calibration_count(0.1) == 9 and fit.min_class_count == 9
    assert fit.class_counts[3] == 8 and fit.always_included.tolist() == [3]
    assert fit.predict_sets(probs)[:, 3].all()
    assert np.isfinite(fit.thresholds[:3]).all()
    summary = fit.as_dict(["a", "b", "c", "d"])
    assert summary["always_included"] == ["d"] and summary["thresholds"]["d"] is None


def test_set_coverage_counts_by_hand():
    sets = np.array([[True, False, False], [True, True, False], [False, False, True],
                     [False, True, True]])
    coverage = set_coverage([0, 0, 2, 0], sets, prior=[0.5, 0.25, 0.25])
    assert coverage.marginal == 0.75
    np.testing.assert_array_equal(coverage.per_class, [2 / 3, np.nan, 1.0])
    assert coverage.mean_size == 1.5 and coverage.size_histogram.tolist() == [0, 2, 2, 0]
    assert coverage.weighted == pytest.approx((0.5 * 2 / 3 + 0.25) / 0.75)
    assert coverage.classes_below(0.9).tolist() == [0]


@pytest.mark.parametrize(
    "options, message",
    [
        ({"alpha": 0.0}, r"`alpha` must be a number in \(0, 1\)"),
        ({"alpha": 1.5}, r"`alpha` must be a number in \(0, 1\)"),
        ({"score": "hinge"}, r"`score` must be one of 'lac', 'aps', 'raps'"),
        ({"prior": "uniform"}, r"`prior` .* applies to marginal sets only"),
        ({"by_class": False, "prior": [0.5, 0.5]}, r"`prior` must have 3 entries"),
        ({"penalty": -1.0}, r"`penalty` must be a finite number >= 0"),
        ({"by_class": "yes"}, r"`by_class` must be"),
    ],
)
def test_bad_arguments_are_refused_by_name(options, message):
    probs = np.full((4, 3), 1 / 3)
    with pytest.raises(ValueError, match=message):
        fit_conformal(probs, [0, 1, 2, 0], **options)


def test_predict_sets_refuses_another_class_count():
    fit = fit_conformal(np.full((4, 3), 1 / 3), [0, 1, 2, 0], by_class=False)
    with pytest.raises(ValueError, match="`probs` has 2 columns but the sets were fitted "
                                         "for 3 classes"):
        fit.predict_sets(np.full((2, 2), 0.5))


# === Peers (benchmark extra; skipped when absent) ===

@pytest.mark.parametrize("score", ["lac", "aps"])
def test_marginal_sets_agree_with_mapie(record, score):
    classification = pytest.importorskip("mapie.classification")
    from sklearn.base import BaseEstimator, ClassifierMixin

    class Probabilities(ClassifierMixin, BaseEstimator):
        """A prefit "classifier" whose inputs are its probabilities."""

        def fit(self, X, y):
            self.classes_ = np.arange(X.shape[1])
            return self

        def predict_proba(self, X):
            return X

        def predict(self, X):
            return X.argmax(axis=1)

    cal_probs, cal_labels, test_probs, _ = split(*record)
    mapie = classification.SplitConformalClassifier(
        Probabilities().fit(cal_probs, cal_labels), confidence_level=0.9,
        conformity_score=score, prefit=True, random_state=0,
    )
    mapie.conformalize(cal_probs, cal_labels)
    theirs = mapie.predict_set(test_probs)[1][:, :, 0]
    ours = fit_conformal(cal_probs, cal_labels, 0.1, by_class=False, score=score)
    agreement = (ours.predict_sets(test_probs) == theirs).mean()
    # The same seed gives the same calibration draws of u (APS) as MAPIE's.
    assert agreement >= 0.999


def test_class_conditional_sets_equal_crepes_mondrian(record):
    crepes = pytest.importorskip("crepes")
    from crepes.extras import hinge

    cal_probs, cal_labels, test_probs, _ = split(*record)
    classes = np.arange(cal_probs.shape[1])
    if len(classes) > 10 and len(cal_labels) > 1000:
        pytest.skip("CIFAR-100 is compared on the bundled subset (crepes is slow); the "
                    "benchmark compares the full records")
    # crepes computes p-values in a Python loop, K * K per test row: a few rows for
    # CIFAR-100 (the benchmark compares every row).
    test_probs = test_probs[: 1000 if len(classes) <= 10 else 40]
    mondrian = crepes.ConformalClassifier().fit(hinge(cal_probs, classes, cal_labels),
                                               bins=cal_labels)
    test_scores = hinge(test_probs)

    def crepes_sets(confidence):
        return np.stack([
            mondrian.predict_set(test_scores, np.full(len(test_probs), k),
                                 confidence=confidence, smoothing=False)[:, k]
            for k in classes
        ], axis=1).astype(bool)

    ours = fit_conformal(cal_probs, cal_labels, 0.1).predict_sets(test_probs)
    # crepes keeps a class when its p-value is >= 1 - confidence; the conformal set
    # is p > alpha (Vovk): the two differ only where alpha * (n_k + 1) is an integer.
    np.testing.assert_array_equal(ours, crepes_sets(0.9 - 1e-9))
    theirs = crepes_sets(0.9)
    counts = np.bincount(cal_labels, minlength=len(classes))
    integer = np.isclose(0.1 * (counts + 1), np.round(0.1 * (counts + 1)))
    differ = np.flatnonzero((ours != theirs).any(axis=0))
    assert integer[differ].all() and (theirs >= ours).all()
