"""MirroredStrategy over two logical CPU devices gives the single-device numbers.

`mirrored_check.py` runs in a fresh process (the CPU must be split into two logical
devices before TensorFlow starts) and trains the tiny model (Conv -> GAP -> Dense ->
TemperatureScaling -> PriorShift, logit-adjusted loss, plain SGD) on the tiny CSV
image pipeline, once on one device and once mirrored, with CalibrationMonitor and
TemperatureCalibration; then scores both on the same fixed weights.

Tolerances. On fixed weights the two runs compute the same sums in a different
grouping (two half-batch partial sums added across replicas instead of one sum), so
they agree to float32 rounding: 1e-5 absolute for the scores (measured: <= 7e-8),
and 1e-5 for the outputs (logits up to ~6; measured <= 1e-6). In training the
replicas' gradients are summed, which rounds differently from the one-device
gradient of the whole batch; over 8 SGD steps at learning rate 0.1 the weights
drift apart by float32 rounding only (measured: 7e-7), so 1e-5 is the bound. A real
error (a loss not divided by the number of replicas doubles every step; another
batch order) moves the weights by ~1e-1, four orders of magnitude above it.
"""

import json

import numpy as np
import pytest

pytestmark = pytest.mark.slow

TIMEOUT_SECONDS = 150
WEIGHT_TOLERANCE = 1e-5
SCORE_TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def results(tiny_data, tmp_path_factory, scripts):
    folder = tmp_path_factory.mktemp("mirrored")
    output, log_path = folder / "results.json", folder / "mirrored.log"
    with open(log_path, "w") as log:
        process = scripts.start("mirrored_check.py", tiny_data, output, log=log)
        scripts.wait_all([process], TIMEOUT_SECONDS, [log_path])
    return json.loads(output.read_text())


def max_difference(a, b):
    pairs = zip(a, b, strict=True)
    return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y)))) for x, y in pairs)


def test_the_model_really_is_mirrored_over_two_replicas(results):
    assert results["num_replicas"] == 2
    assert results["mirrored_variable"] == "MirroredVariable"
    assert results["shards_by_data"]


def test_training_gives_the_single_device_weights(results):
    single, mirrored = results["single_train"], results["mirrored_train"]
    assert len(single["weights"]) == len(mirrored["weights"])
    assert max_difference(single["weights"], mirrored["weights"]) < WEIGHT_TOLERANCE


def test_training_logs_and_calibration_monitor_logs_match(results):
    single, mirrored = results["single_train"]["history"], results["mirrored_train"]["history"]
    assert set(single) == set(mirrored)
    for key in ("val_ece", "val_brier", "val_nll", "val_balanced_accuracy", "loss", "ece"):
        assert key in single
    for key in single:
        assert mirrored[key] == pytest.approx(single[key], abs=SCORE_TOLERANCE), key


def test_temperature_calibration_callback_matches(results):
    single, mirrored = results["single_train"], results["mirrored_train"]
    assert mirrored["fit_temperature"] == pytest.approx(single["fit_temperature"], rel=1e-4)


@pytest.mark.parametrize("section", ["evaluate", "monitor", "monitor_weighted"])
def test_metrics_on_fixed_weights_match(results, section):
    single, mirrored = results["single_score"][section], results["mirrored_score"][section]
    assert set(single) == set(mirrored)
    for key in single:
        assert mirrored[key] == pytest.approx(single[key], abs=SCORE_TOLERANCE), key


def test_monitor_equals_evaluate_of_the_same_metrics(results):
    score = results["mirrored_score"]
    for monitor_key, evaluate_key in (("ece", "ece"), ("brier", "brier_score"),
                                      ("nll", "nll"), ("balanced_accuracy", "balanced_accuracy")):
        assert score["monitor"][monitor_key] == pytest.approx(
            score["evaluate"][evaluate_key], abs=SCORE_TOLERANCE
        )


def test_predictions_and_calibrate_temperature_on_fixed_weights_match(results):
    single, mirrored = results["single_score"], results["mirrored_score"]
    outputs_single = np.asarray(single["outputs"])
    outputs_mirrored = np.asarray(mirrored["outputs"])
    assert outputs_mirrored.shape == outputs_single.shape == (50, 3)
    np.testing.assert_allclose(outputs_mirrored, outputs_single, rtol=1e-6, atol=1e-5)
    np.testing.assert_allclose(mirrored["balanced_logits"], single["balanced_logits"],
                               rtol=1e-6, atol=1e-5)
    assert np.shape(mirrored["balanced_logits"]) == (50, 3)
    assert mirrored["temperature"] == pytest.approx(single["temperature"], rel=1e-5)


def test_decision_layer_other_losses_and_classwise_ece_match(results):
    single, mirrored = results["single_other"], results["mirrored_other"]
    assert mirrored["decision"] == single["decision"]
    assert len(single["decision"]) == 50
    # float32 expected costs up to 5: allow float32 rounding relative to the value.
    np.testing.assert_allclose(mirrored["expected_cost"], single["expected_cost"],
                               rtol=1e-6, atol=1e-6)
    for name in ("brier_loss", "focal_loss"):
        assert set(mirrored[name]) == {"loss", "classwise_ece"}
        for key, value in single[name].items():
            assert mirrored[name][key] == pytest.approx(value, abs=SCORE_TOLERANCE), (name, key)


def test_batches_smaller_than_the_replicas_never_reach_the_network_empty(results):
    # batch_predictor ran a model that refuses empty batches (as oneDNN does on AVX-512
    # CPUs) on batches of 0, 1 and 3 images over 2 replicas.
    single, mirrored = results["single_small"], results["mirrored_small"]
    for size in ("0", "1", "3"):
        assert mirrored["shapes"][size] == single["shapes"][size] == [int(size), 3]
        np.testing.assert_allclose(mirrored["outputs"][size], single["outputs"][size],
                                   rtol=1e-6, atol=1e-5)
    np.testing.assert_allclose(mirrored["outputs"]["3"][:1], mirrored["outputs"]["1"], atol=1e-6)
    for section in ("monitor", "weighted"):  # batches of 1: padded with weight-0 rows
        for key, value in single[section].items():
            assert mirrored[section][key] == pytest.approx(value, abs=SCORE_TOLERANCE), key
