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


def _random_case(seed, num_samples, num_classes, dtype=np.float64):
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.full(num_classes, rng.uniform(0.1, 2.0)), size=num_samples)
    probs = probs.astype(dtype)
    if dtype == np.float32:  # rows of the stored float32 values sum to 1 within 1e-6
        probs = (probs / probs.sum(axis=1, keepdims=True, dtype=np.float64)).astype(dtype)
    return probs, rng.integers(0, num_classes, num_samples)


REFERENCES = {
    "ece": ref.ece,
    "classwise_ece": ref.classwise_ece,
    "adaptive_ece": ref.adaptive_ece,
    "mce": ref.mce,
    "brier": ref.brier,
    "nll": ref.nll,
    "accuracy": ref.accuracy,
    "balanced_accuracy": ref.balanced_accuracy,
    "macro_f1": ref.macro_f1,
}


@pytest.mark.parametrize("block_bytes", [None, 200], ids=["cache-blocks", "tiny-blocks"])
@pytest.mark.parametrize(
    "seed, num_samples, num_classes, num_bins, dtype",
    [
        (0, 1500, 10, 15, np.float64),
        (1, 777, 3, 7, np.float64),
        (2, 400, 2, 1, np.float64),
        (3, 1200, 25, 15, np.float32),
        (4, 5, 4, 20, np.float64),
    ],
)
def test_every_score_equals_the_plain_numpy_loops_to_1e9(
    monkeypatch, block_bytes, seed, num_samples, num_classes, num_bins, dtype
):
    # The one-pass, row-block implementation against loops written from the definitions
    # (tests/calibration_reference.py), relative 1e-9; tiny blocks split the rows into
    # many blocks of one to a few rows. float32 input is scored as its float64 values.
    import calibkeras.utils.blocks as blocks

    if block_bytes is not None:
        monkeypatch.setattr(blocks, "CACHE_BLOCK_BYTES", block_bytes)
    probs, labels = _random_case(seed, num_samples, num_classes, dtype)
    scores = calibration_errors(labels, probs, num_bins=num_bins)
    exact = probs.astype(np.float64)
    for name, reference in REFERENCES.items():
        kwargs = {"num_bins": num_bins} if name in ("ece", "classwise_ece", "adaptive_ece",
                                                      "mce") else {}
        expected = reference(exact, labels, **kwargs)
        assert scores[name] == pytest.approx(expected, rel=1e-9, abs=1e-15), name


def test_row_blocks_leave_scores_and_intervals_unchanged(monkeypatch):
    import calibkeras.utils.blocks as blocks

    probs, labels = _random_case(7, 900, 6)
    whole = calibration_errors(labels, probs, n_bootstrap=5, seed=2)
    monkeypatch.setattr(blocks, "CACHE_BLOCK_BYTES", 7 * 6 * 8)  # blocks of 7 rows
    blocked = calibration_errors(labels, probs, n_bootstrap=5, seed=2)
    for name in SCORE_NAMES:
        assert blocked[name] == pytest.approx(whole[name], rel=1e-12, abs=1e-15), name
        np.testing.assert_allclose(blocked["intervals"][name], whole["intervals"][name],
                                   rtol=1e-12, atol=1e-15, err_msg=name)


@pytest.mark.parametrize("num_bins", [1, 3, 10, 15])
def test_one_pass_bins_follow_functional_bin_statistics_on_bin_edges(num_bins):
    # Entries exactly on the edges b / B, a hair either side of them, 0 and 1: the
    # NumPy one-pass bins must put each where functional.bin_indices does (the one
    # definition, also used by the streaming metric).
    from keras import ops

    from calibkeras.calibration.errors import row_statistics, top_label_bins
    from calibkeras.metrics import functional

    edges = np.arange(num_bins + 1) / num_bins
    values = np.concatenate([edges, np.nextafter(edges, 2), np.nextafter(edges, -1)])
    values = np.unique(np.clip(values, 0.0, 1.0))
    # Two-column rows (p, 1 - p): every value appears as p_0, its complement as p_1.
    probs = np.column_stack([values, 1.0 - values])
    labels = np.arange(values.size) % 2
    statistics = row_statistics(labels, probs, num_bins)
    expected = functional.bin_statistics(probs, np.eye(2)[labels], num_bins)
    for got, want in zip(statistics.class_bins, expected, strict=True):
        np.testing.assert_allclose(got, ops.convert_to_numpy(want), rtol=1e-15, atol=0)
    confidence, correct = functional.top_label_outcomes(labels, probs)
    np.testing.assert_array_equal(
        statistics.top_label_bin,
        ops.convert_to_numpy(functional.bin_indices(confidence, num_bins))[:, 0],
    )
    top = top_label_bins(statistics, ops.convert_to_numpy(correct)[:, 0], num_bins)
    expected_top = functional.bin_statistics(confidence, correct, num_bins)
    for got, want in zip(top, expected_top, strict=True):
        np.testing.assert_allclose(got, ops.convert_to_numpy(want), rtol=1e-15, atol=0)


def test_float32_input_is_read_as_it_is_and_scored_as_its_float64_values():
    from calibkeras.utils.checks import check_probabilities

    probs, labels = _random_case(11, 600, 8, np.float32)
    assert check_probabilities(probs, keep_float32=True) is probs  # no float64 copy
    assert check_probabilities(probs).dtype == np.float64
    as_float32 = calibration_errors(labels, probs)
    as_float64 = calibration_errors(labels, probs.astype(np.float64))
    for name in SCORE_NAMES:
        assert as_float32[name] == pytest.approx(as_float64[name], rel=1e-12, abs=1e-15)


def test_fortran_ordered_and_strided_input_score_like_contiguous_input():
    probs, labels = _random_case(12, 300, 5)
    expected = calibration_errors(labels, probs)
    wide = np.zeros((300, 10))
    wide[:, ::2] = probs
    for variant in (np.asfortranarray(probs), wide[:, ::2]):
        scores = calibration_errors(labels, variant)
        for name in SCORE_NAMES:
            assert scores[name] == pytest.approx(expected[name], rel=1e-12, abs=1e-15)


@pytest.mark.parametrize(
    "bad_rows, message",
    [
        ({30: (1.5, -0.5), 50: (np.nan, 0.5)}, r"`probs` must be finite; found nan at row 50"),
        ({30: (0.7, 0.7), 50: (-0.2, 1.2)}, r"found -0.2 at row 50, column 0"),
        ({30: (0.7, 0.7), 50: (0.6, 0.6)}, r"row 30 sums to 1.4"),
    ],
)
def test_blocked_checks_name_the_first_bad_entry_of_the_whole_array(
    monkeypatch, bad_rows, message
):
    # The scan in row blocks stops at the first bad block; the message must still come
    # from the whole-array checks, in their order (finite, range, sums).
    import calibkeras.utils.blocks as blocks

    monkeypatch.setattr(blocks, "CACHE_BLOCK_BYTES", 4 * 2 * 8)  # blocks of 4 rows
    probs = np.full((64, 2), 0.5)
    labels = np.zeros(64, dtype=int)
    for row, values in bad_rows.items():
        probs[row] = values
    with pytest.raises(ValueError, match=message):
        calibration_errors(labels, probs)


@pytest.mark.parametrize("num_classes, alpha", [(3, 1.0), (40, 0.2)])
def test_sparse_and_dense_binning_give_the_same_bins(monkeypatch, num_classes, alpha):
    # Blocks with few entries above 1 / B are binned sparsely (their first bin filled in
    # from row counts and column sums), the others entry by entry: forcing either way
    # must give the same classwise bins and scores.
    import calibkeras.calibration.errors as errors
    import calibkeras.utils.blocks as blocks

    monkeypatch.setattr(blocks, "CACHE_BLOCK_BYTES", 50 * num_classes * 8)
    rng = np.random.default_rng(num_classes)
    probs = rng.dirichlet(np.full(num_classes, alpha), size=1000)
    probs[:20] = np.eye(num_classes)[rng.integers(0, num_classes, 20)]  # zeros and ones
    labels = rng.integers(0, num_classes, 1000)
    results = {}
    for share in (0.0, 2.0):  # never sparse, always sparse
        monkeypatch.setattr(errors, "SPARSE_SHARE", share)
        results[share] = (errors.row_statistics(labels, probs, 15).class_bins,
                          calibration_errors(labels, probs))
    (dense_bins, dense_scores), (sparse_bins, sparse_scores) = results.values()
    for dense, sparse in zip(dense_bins, sparse_bins, strict=True):
        np.testing.assert_allclose(sparse, dense, rtol=1e-12, atol=1e-12)
    for name in SCORE_NAMES:
        assert sparse_scores[name] == pytest.approx(dense_scores[name], rel=1e-12), name
