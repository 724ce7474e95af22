"""Every calibkeras layer, loss and metric through the shared Keras harness."""

import pytest
from keras_harness import run_layer_test, run_loss_test, run_metric_test

from calibkeras import losses, metrics
from calibkeras.layers import (
    CostSensitiveDecision,
    LogitCalibration,
    PredictionSet,
    PriorShift,
    TemperatureScaling,
)

LAYERS = {
    "TemperatureScaling": (lambda: TemperatureScaling(initial_temperature=1.7), False),
    "LogitCalibration": (lambda: LogitCalibration(3, method="vector",
                                                  initial_scale=[0.5, 0.8, 1.2],
                                                  initial_bias=[0.3, -0.1, -0.2]), False),
    "PriorShift": (lambda: PriorShift(prior="training", class_counts=[6, 3, 1],
                                      class_names=["a", "b", "c"]), False),
    # RAPS: the sort, the ranks and the penalty (LAC is 1 - p); an inf threshold.
    "PredictionSet": (lambda: PredictionSet(3, score="raps", alpha=0.1, mode="by_class",
                                            penalty=0.05, k_reg=1,
                                            initial_thresholds=[0.7, None, 0.8]), False),
    "CostSensitiveDecision": (
        lambda: CostSensitiveDecision([[0.0, 2.0, 3.0], [1.0, 0.0, 4.0]], abstain_cost=0.5,
                                      action_names=["serve", "check"]),
        True,
    ),
}
METRICS = {
    "BalancedAccuracy": lambda: metrics.BalancedAccuracy(3),
    "BrierScore": lambda: metrics.BrierScore(from_logits=True),
    "ExpectedCalibrationError": lambda: metrics.ExpectedCalibrationError(from_logits=True),
    "ExpectedCalibrationError(classwise)": lambda: metrics.ExpectedCalibrationError(
        num_bins=5, classwise=True, num_classes=3, from_logits=True),
    "NegativeLogLikelihood": lambda: metrics.NegativeLogLikelihood(from_logits=True),
}
LOSSES = {
    "BrierScore": lambda: losses.BrierScore(from_logits=True),
    "FocalCrossentropy": lambda: losses.FocalCrossentropy(gamma=2.0),
    "LogitAdjustedCrossentropy": lambda: losses.LogitAdjustedCrossentropy([6, 3, 1]),
}


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_layer_contract(name, tmp_path):
    make, softmax_input = LAYERS[name]
    run_layer_test(make, tmp_path, softmax_input=softmax_input)


@pytest.mark.parametrize("name", sorted(METRICS))
def test_metric_contract(name):
    run_metric_test(METRICS[name])


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_loss_contract(name):
    run_loss_test(LOSSES[name])


def test_build_classifier_keeps_logits_float32_under_mixed_precision():
    import keras
    import numpy as np
    from keras_harness import dtype_policy

    from calibkeras.models import build_classifier

    with dtype_policy("mixed_float16"):
        tiny = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Conv2D(4, 3)])
        model = build_classifier(3, backbone=tiny, weights=None, image_size=16)
    assert model.get_layer("backbone").compute_dtype == "float16"  # the policy holds there
    logits = model.predict_on_batch(np.full((2, 16, 16, 3), 100.0, "float32"))
    assert logits.dtype == np.float32
    for name in ("logits", "calibration", "prior_shift"):
        assert model.get_layer(name).compute_dtype == "float32", name
