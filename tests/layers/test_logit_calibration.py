import numpy as np
import pytest

from calibkeras.layers import LogitCalibration, TemperatureScaling


def logits():
    return np.random.default_rng(0).normal(size=(7, 3)).astype("float32") * 3


def test_identity_until_fitted():
    layer = LogitCalibration(3)
    np.testing.assert_array_equal(np.asarray(layer(logits())), logits())
    assert layer.method == "none" and layer.temperature == 1.0
    assert not layer.trainable_weights


def test_affine_per_class_and_bias_centred():
    layer = LogitCalibration(3)
    layer.set_calibration([0.5, 1.0, 2.0], [3.0, 1.0, 2.0], method="vector")
    expected = logits() * np.array([0.5, 1.0, 2.0]) + np.array([1.0, -1.0, 0.0])
    np.testing.assert_allclose(np.asarray(layer(logits())), expected, rtol=1e-6)
    assert layer.method == "vector"
    assert layer.temperature == pytest.approx(1 / np.mean([0.5, 1.0, 2.0]))


def test_set_temperature_is_temperature_scaling():
    layer = LogitCalibration(3)
    layer.set_temperature(1.7)
    reference = TemperatureScaling(initial_temperature=1.7)
    np.testing.assert_allclose(np.asarray(layer(logits())), np.asarray(reference(logits())),
                               rtol=1e-6)
    assert layer.method == "temperature" and layer.temperature == pytest.approx(1.7)


@pytest.mark.parametrize(
    "scale, bias, message",
    [
        ([1.0, 1.0], [0.0, 0.0, 0.0], r"`scale` must be 3 finite numbers \(one per class\)"),
        ([1.0, 0.0, 1.0], [0.0, 0.0, 0.0], r"`scale` must be positive in every class"),
        ([1.0, 1.0, 1.0], [0.0, np.nan, 0.0], r"`bias` must be 3 finite numbers"),
    ],
)
def test_bad_calibration_is_refused_naming_the_argument(scale, bias, message):
    layer = LogitCalibration(3)
    with pytest.raises(ValueError, match=message):
        layer.set_calibration(scale, bias, method="vector")
    np.testing.assert_array_equal(layer.scale.numpy(), 1.0)  # unchanged


def test_input_width_must_match():
    with pytest.raises(ValueError, match=r"calibrates 4 classes but its input has 3 logits"):
        LogitCalibration(4)(logits())
