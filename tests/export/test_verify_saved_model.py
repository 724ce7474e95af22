import shutil

import keras
import numpy as np
import pytest

from calibkeras.export import SIGNATURE_NAMES, SavedModelVerificationError, verify_saved_model
from calibkeras.export.serving_session import find_version_dir


def test_verify_against_the_keras_model(exported, classifier, sample_images):
    report = verify_saved_model(exported, classifier, sample_images=sample_images)
    assert report["ok"] and report["reference"] == "keras model"
    assert report["num_samples"] == len(sample_images)
    assert set(report["signatures"]) == {*SIGNATURE_NAMES, "metadata"}
    for name in SIGNATURE_NAMES:
        entry = report["signatures"][name]
        assert entry["ok"] and entry["failures"] == []
        assert 0 <= entry["max_abs_diff"] <= 1e-5


def test_verify_without_a_model_checks_the_signatures_against_each_other(exported):
    report = verify_saved_model(exported / "1", num_samples=3, seed=1)
    assert report["ok"] and report["reference"] == "self-consistency"
    assert set(report["signatures"]) == set(SIGNATURE_NAMES)
    assert report["num_samples"] == 3


def test_a_changed_model_fails_with_a_list_of_failures(exported, tiny):
    model = tiny.build_classifier()  # same weights as the exported one ...
    model.calibration.set_temperature(0.4)  # ... but another temperature
    with pytest.raises(SavedModelVerificationError) as info:
        verify_saved_model(exported, model)
    message = str(info.value)
    for name in ("metadata: temperature", "serving_default: probabilities",
                 "predict_image_bytes: probabilities", "decide: probabilities",
                 "decide_with_costs: probabilities"):
        assert name in message
    assert "failed verification (keras model, atol 1e-05)" in message
    report = info.value.report
    assert not report["ok"] and not report["signatures"]["decide"]["ok"]
    assert report["signatures"]["decide"]["max_abs_diff"] > 1e-3


def test_base_folder_means_the_highest_numeric_version(exported, tmp_path):
    for version in ("2", "10"):
        shutil.copytree(exported / "1", tmp_path / version)
    (tmp_path / "11-not-a-version").mkdir()
    (tmp_path / "12").mkdir()  # no saved_model.pb: TF Serving would skip it as well
    assert find_version_dir(tmp_path) == tmp_path / "10"
    assert find_version_dir(tmp_path / "2") == tmp_path / "2"
    assert verify_saved_model(tmp_path, num_samples=2)["path"] == str(tmp_path / "10")


def test_missing_export_and_bad_sample_images(exported, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"holds no SavedModel"):
        verify_saved_model(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"does not exist"):
        verify_saved_model(tmp_path / "missing")
    with pytest.raises(ValueError, match=r"`sample_images` must have shape \(N, 16, 16, 3\)"):
        verify_saved_model(exported, sample_images=np.zeros((2, 8, 8, 3)))


def test_a_model_that_is_no_calibrated_classifier_is_refused_naming_the_fix(exported):
    inputs = keras.Input((16, 16, 3))
    plain = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Flatten()(inputs)),
                        name="plain")
    with pytest.raises(ValueError, match=r"`model` must be a calibkeras CalibratedClassifier "
                                         r"\(from build_classifier or load_classifier\), got "
                                         r"Functional 'plain'; .*load_classifier\(path\)"):
        verify_saved_model(exported, plain, num_samples=2)


@pytest.mark.parametrize("score", ["aps", "raps"])
def test_tied_probabilities_may_rank_either_way_in_the_served_sets(score):
    from calibkeras.export.saved_model import SET_SEPARATOR
    from calibkeras.export.verify import _check_sets, _Checker

    # Classes 1 and 2 tie exactly (as classes whose fitted scale is 0 do): NumPy ranks
    # class 1 first (scores 0, 0.4, 0.7), float32 in the graph may rank class 2 first.
    probs = np.array([[0.4, 0.3, 0.3], [0.6, 0.3, 0.1]])
    metadata = {"prediction_set": {"score": score, "penalty": 0.0, "k_reg": 1},
                "prediction_set_thresholds": np.full(3, 0.5), "class_names": ["a", "b", "c"]}

    def failures(in_set):
        in_set = np.array(in_set)
        names = [SET_SEPARATOR.join(n for n, k in zip("abc", row, strict=True) if k)
                 for row in in_set]
        served = {"in_set": in_set, "set_size": in_set.sum(axis=1),
                  "set_names": np.array(names, dtype=object)}
        checker = _Checker(1e-5)
        _check_sets(checker, served, probs, metadata)
        return checker.failures

    assert failures([[True, True, False], [True, False, False]]) == []
    assert failures([[True, False, True], [True, False, False]]) == []  # the tie flipped
    # A class that is no tie is still checked: row 1, class 1 (score 0.6 > 0.5).
    assert failures([[True, True, False], [True, True, False]]) == [
        "in_set: entries [[1, 1]] differ from the thresholds applied to the balanced "
        "posteriors"]
