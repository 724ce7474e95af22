import calibration_reference as ref
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import balanced_accuracy_score, brier_score_loss, f1_score, log_loss

from calibkeras.calibration import SCORE_NAMES, calibration_errors


def test_matches_numpy_loop_and_sklearn(record):
    probs, labels = record
    scores = calibration_errors(labels, probs)
    num_classes = probs.shape[1]
    one_hot = np.eye(num_classes)[labels]
    expected = {
        "ece": ref.ece(probs, labels),
        "classwise_ece": ref.classwise_ece(probs, labels),
        "adaptive_ece": ref.adaptive_ece(probs, labels),
        "mce": ref.mce(probs, labels),
        "brier": ref.brier(probs, labels),
        # sklearn's multiclass Brier is mean sum of squares (sklearn >= 1.7 scale_by_half=False)
        # DESIGN.md clips p_y at 1e-12 inside the log (sklearn clips at float eps).
        "nll": log_loss(labels, np.maximum(probs, 1e-12), labels=np.arange(num_classes)),
        "accuracy": np.mean(probs.argmax(1) == labels),
        "balanced_accuracy": balanced_accuracy_score(labels, probs.argmax(1)),
        "macro_f1": f1_score(labels, probs.argmax(1), average="macro"),
    }
    assert set(scores) == set(SCORE_NAMES)
    for name, value in expected.items():
        assert scores[name] == pytest.approx(value, abs=1e-6), name
    assert ref.nll(probs, labels) == pytest.approx(scores["nll"], abs=1e-6)
    sklearn_brier = brier_score_loss(one_hot.ravel(), probs.ravel()) * num_classes
    assert scores["brier"] == pytest.approx(sklearn_brier, abs=1e-6)


def test_confidence_of_one_goes_to_last_bin():
    probs = np.array([[1.0, 0.0], [0.0, 1.0]])
    scores = calibration_errors([0, 0], probs)
    # One bin (0.93, 1] with mean confidence 1 and accuracy 0.5.
    assert scores["ece"] == pytest.approx(0.5)
    assert scores["mce"] == pytest.approx(0.5)


def test_bootstrap_intervals_contain_estimate(small_record):
    probs, labels = small_record
    scores = calibration_errors(labels[:2000], probs[:2000], n_bootstrap=30, seed=0)
    for name in SCORE_NAMES:
        low, high = scores["intervals"][name]
        assert low <= high
        if name != "mce":  # a maximum's bootstrap is biased upward: see the next test
            assert low - 1e-9 <= scores[name] <= high + 1e-9, name


def test_bootstrap_intervals_are_percentiles_of_independently_resampled_scores(small_record):
    # The same resamples (the generator's draws), scored with the plain NumPy reference:
    # the percentile interval of every binned score, MCE included, must match.
    probs, labels = small_record[0][:2000], small_record[1][:2000]
    scores = calibration_errors(labels, probs, n_bootstrap=30, confidence_level=0.8, seed=3)
    rng = np.random.default_rng(3)
    references = {"ece": ref.ece, "mce": ref.mce, "classwise_ece": ref.classwise_ece,
                  "adaptive_ece": ref.adaptive_ece, "brier": ref.brier}
    samples = {name: [] for name in references}
    for _ in range(30):
        index = rng.integers(0, len(labels), len(labels))
        for name, function in references.items():
            samples[name].append(function(probs[index], labels[index]))
    for name, values in samples.items():
        expected = np.percentile(values, [10, 90])
        np.testing.assert_allclose(scores["intervals"][name], expected, atol=1e-9, err_msg=name)


@settings(max_examples=40, deadline=None)
@given(
    st.integers(2, 6),
    st.integers(1, 40),
    st.integers(0, 2**32 - 1),
    st.integers(1, 20),
)
def test_ece_in_unit_interval(num_classes, num_samples, seed, num_bins):
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.full(num_classes, 0.3), size=num_samples)
    labels = rng.integers(0, num_classes, num_samples)
    scores = calibration_errors(labels, probs, num_bins=num_bins)
    for name in ("ece", "classwise_ece", "adaptive_ece", "mce"):
        assert 0.0 <= scores[name] <= 1.0
    assert 0.0 <= scores["brier"] <= 2.0


@settings(max_examples=25, deadline=None)
@given(st.integers(2, 8), st.integers(1, 30), st.integers(0, 2**32 - 1))
def test_brier_of_one_hot_predictions_is_zero(num_classes, num_samples, seed):
    labels = np.random.default_rng(seed).integers(0, num_classes, num_samples)
    scores = calibration_errors(labels, np.eye(num_classes)[labels])
    assert scores["brier"] == 0.0
    assert scores["ece"] == 0.0
    assert scores["nll"] == 0.0


@pytest.mark.parametrize(
    "probs, labels, message",
    [
        ([[0.5, 0.5]], [2], r"`labels` must be class ids in \[0, 2\); found 2"),
        ([[0.5, 0.5]], [-1], r"found -1"),
        ([[0.5, 0.6]], [0], r"rows of `probs` must sum to 1.*row 0 sums to 1.1"),
        ([[np.nan, 0.5]], [0], r"`probs` must be finite; found nan"),
        ([[1.5, -0.5]], [0], r"probabilities in \[0, 1\]; found 1.5"),
        ([[0.5, 0.5], [0.5, 0.5]], [0], r"`labels` has 1 entries but the predictions have 2"),
        (np.zeros((0, 3)), [], r"`probs` is empty"),
        ([0.5, 0.5], [0], r"must be a 2-D array"),
        ([[0.5, 0.5]], [0.5], r"`labels` must hold integer class ids"),
    ],
)
def test_bad_input_raises_with_clear_message(probs, labels, message):
    with pytest.raises(ValueError, match=message):
        calibration_errors(labels, probs)


@pytest.mark.parametrize("num_bins", [0, -3, 2.5, True])
def test_bad_num_bins(num_bins):
    with pytest.raises(ValueError, match=r"`num_bins` must be a positive integer"):
        calibration_errors([0], [[0.5, 0.5]], num_bins=num_bins)


@pytest.mark.parametrize("n_bootstrap", [2.7, -1, True, "3"])
def test_bad_n_bootstrap(n_bootstrap):
    with pytest.raises(
        ValueError, match=r"`n_bootstrap` must be an integer >= 0 \(0 for no intervals\), got "
    ):
        calibration_errors([0], [[0.5, 0.5]], n_bootstrap=n_bootstrap)


@pytest.mark.parametrize(
    "labels",
    [[0, 2**63], np.array([0, 2**63], dtype=np.uint64), [0, 2**70], [0.0, 2.0**63]],
    ids=["python-int", "uint64", "beyond-uint64", "float"],
)
def test_huge_labels_are_reported_as_they_are(labels):
    with pytest.raises(
        ValueError, match=rf"`labels` must be class ids in \[0, 2\); found {int(labels[1])} at "
        r"position 1"
    ):
        calibration_errors(labels, [[0.5, 0.5], [0.5, 0.5]])


def test_float16_softmax_rows_are_accepted():
    # A softmax computed in float16 sums to 1 only within float16's precision.
    rng = np.random.default_rng(0)
    logits = rng.normal(scale=3.0, size=(300, 10)).astype(np.float16)
    exps = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs = (exps / exps.sum(axis=1, keepdims=True, dtype=np.float16)).astype(np.float16)
    sums = probs.astype(np.float64).sum(axis=1)
    assert np.abs(sums - 1).max() > 1e-4  # beyond float32's tolerance
    labels = rng.integers(0, 10, 300)
    scores = calibration_errors(labels, probs)
    expected = log_loss(labels, probs.astype(np.float64) / sums[:, None], labels=range(10))
    assert scores["nll"] == pytest.approx(expected, abs=5e-3)
    with pytest.raises(
        ValueError, match=r"must sum to 1 \(within 0\.0001\); row \d+ sums to .*renormalise them"
    ):
        calibration_errors(labels, probs.astype(np.float32))
    with pytest.raises(ValueError, match=r"within 0\.0039 for its dtype.*Apply a softmax first"):
        calibration_errors(labels, (probs * 0.95).astype(np.float16))
