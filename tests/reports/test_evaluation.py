import json
import warnings

import numpy as np
import pytest
from sklearn.metrics import classification_report

from calibkeras.calibration import SCORE_NAMES, calibration_errors, calibration_test
from calibkeras.reports import evaluation_summary, format_summary_table

TEST_KEYS = {"ece", "ece_perfect_mean", "ece_perfect_p90", "p_value", "n_resamples"}


@pytest.fixture
def summary(cifar):
    probs, labels, names, uncalibrated = cifar
    return evaluation_summary(
        labels, probs, names, uncalibrated_probs=uncalibrated, prior_used=np.full(10, 0.1),
        temperature=1.5, n_resamples=200, seed=3,
    )


def test_keys_and_values_equal_the_calibration_functions(cifar, summary):
    probs, labels, names, uncalibrated = cifar
    expected_keys = set(SCORE_NAMES) | {
        "per_class", "prior_used", "temperature", "calibration_test", "num_samples",
        "uncalibrated",
    }
    assert expected_keys <= set(summary)
    for scores, p in ((summary, probs), (summary["uncalibrated"], uncalibrated)):
        errors = calibration_errors(labels, p)
        test = calibration_test(labels, p, n_resamples=200, seed=3)
        assert set(SCORE_NAMES) <= set(scores)
        for name in SCORE_NAMES:
            assert scores[name] == errors[name]
        assert set(scores["calibration_test"]) == TEST_KEYS
        for key in TEST_KEYS:
            assert scores["calibration_test"][key] == test[key]
    assert summary["num_samples"] == 2000
    assert summary["temperature"] == 1.5
    assert summary["prior_used"] == [0.1] * 10
    assert summary["class_names"] == names
    # The sharpened probabilities keep the argmax but are over-confident.
    assert summary["uncalibrated"]["accuracy"] == summary["accuracy"]
    assert summary["uncalibrated"]["nll"] > summary["nll"]


def test_per_class_equals_classification_report(cifar, summary):
    probs, labels, names, _ = cifar
    report = classification_report(
        labels, probs.argmax(1), labels=list(range(10)), target_names=names,
        output_dict=True, zero_division=0,
    )
    assert list(summary["per_class"]) == names
    for name in names:
        row = summary["per_class"][name]
        assert row["precision"] == pytest.approx(report[name]["precision"], abs=1e-12)
        assert row["recall"] == pytest.approx(report[name]["recall"], abs=1e-12)
        assert row["f1"] == pytest.approx(report[name]["f1-score"], abs=1e-12)
        assert row["support"] == report[name]["support"]


def test_never_predicted_class_has_zero_precision():
    probs = np.array([[0.9, 0.05, 0.05], [0.2, 0.7, 0.1], [0.6, 0.3, 0.1]])
    summary = evaluation_summary([0, 1, 2], probs, ["a", "b", "c"], n_resamples=20)
    assert summary["per_class"]["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert summary["uncalibrated"] is None
    assert summary["prior_used"] is None and summary["temperature"] is None


def test_classes_absent_from_the_labels_have_no_recall(cifar, tmp_path):
    # A test set without trucks and ships (ids 9, 8): balanced accuracy is the mean recall
    # of the 8 classes present, as sklearn's balanced_accuracy_score defines it; the
    # absent classes have no recall, and precision and F1 only if they are predicted.
    from sklearn.metrics import balanced_accuracy_score

    from calibkeras.reports import write_report

    probs, labels, names, _ = cifar
    keep = labels < 8
    probs, labels = probs[keep], labels[keep]
    never = probs.argmax(axis=1) != 9  # drop the rows predicted as truck: never predicted
    probs, labels = probs[never], labels[never]
    assert (probs.argmax(axis=1) == 8).any()  # ships are predicted, wrongly
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the command would print any warning
        summary = evaluation_summary(labels, probs, names, n_resamples=20)
        paths = write_report(tmp_path / "report", summary, labels, probs, names)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "y_pred contains classes not in y_true"
        reference = balanced_accuracy_score(labels, probs.argmax(axis=1))
    assert summary["balanced_accuracy"] == pytest.approx(reference, abs=1e-12)
    assert summary["absent_classes"] == ["ship", "truck"]
    assert summary["per_class"]["truck"] == {"precision": None, "recall": None, "f1": None,
                                             "support": 0}
    ship = summary["per_class"]["ship"]
    assert (ship["precision"], ship["recall"], ship["f1"]) == (0.0, None, 0.0)
    assert json.loads(json.dumps(summary)) == summary
    table = format_summary_table(summary)
    assert ("Not in the labels: ship, truck (no recall; balanced accuracy is the mean "
            "recall of the 8 classes present)") in table
    truck = next(line for line in table.splitlines() if line.startswith("truck "))
    assert truck.split() == ["truck", "-", "-", "-", "0"]
    html = paths["report.html"].read_text()
    assert "<td>truck</td><td>-</td><td>-</td><td>-</td><td>0</td>" in html
    assert "Not in the labels: ship, truck" in html
    assert evaluation_summary(labels, probs, names, n_resamples=20) == summary


def test_json_round_trip(summary):
    assert json.loads(json.dumps(summary)) == summary


def test_summary_table(summary):
    table = format_summary_table(summary)
    header = next(line for line in table.splitlines() if line.startswith("metric"))
    assert header.split() == ["metric", "calibrated", "uncalibrated"]
    test = summary["calibration_test"]
    assert (
        f"ECE {test['ece']:.3f} (perfectly calibrated at this size: "
        f"{test['ece_perfect_mean']:.3f}, p " in table
    )
    assert f"{summary['nll']:.4f}" in table
    assert f"{summary['uncalibrated']['nll']:.4f}" in table
    for name, row in summary["per_class"].items():
        line = next(line for line in table.splitlines() if line.startswith(name + " "))
        assert line.split()[1:] == [
            f"{row['precision']:.4f}", f"{row['recall']:.4f}", f"{row['f1']:.4f}",
            str(row["support"]),
        ]


def test_summary_table_without_uncalibrated(cifar):
    probs, labels, names, _ = cifar
    table = format_summary_table(evaluation_summary(labels, probs, names, n_resamples=20))
    assert "uncalibrated" not in table
    assert "perfectly calibrated at this size" in table


def test_bad_arguments(cifar):
    probs, labels, names, _ = cifar
    with pytest.raises(ValueError, match=r"`class_names` must have 10 entries"):
        evaluation_summary(labels, probs, names[:3])
    with pytest.raises(ValueError, match=r"`uncalibrated_probs` must have the shape"):
        evaluation_summary(labels, probs, names, uncalibrated_probs=probs[:10], n_resamples=10)
    with pytest.raises(ValueError, match=r"`temperature` must be a positive finite number, got 0"):
        evaluation_summary(labels, probs, names, temperature=0)
    with pytest.raises(ValueError, match=r"`prior_used` must have 10 entries"):
        evaluation_summary(labels, probs, names, prior_used=[0.5, 0.5])
