"""Streaming metrics fed in uneven batches equal the whole-array NumPy functions."""

import keras
import numpy as np
import pytest

from calibkeras.calibration import calibration_errors
from calibkeras.metrics import (
    BalancedAccuracy,
    BrierScore,
    ExpectedCalibrationError,
    NegativeLogLikelihood,
)

UNEVEN = [1, 7, 100, 3, 512, 33, 1000]


def metrics_for(num_classes, dtype=None):
    return {
        "ece": ExpectedCalibrationError(num_bins=15, dtype=dtype),
        "classwise_ece": ExpectedCalibrationError(
            classwise=True, num_classes=num_classes, dtype=dtype
        ),
        "brier": BrierScore(dtype=dtype),
        "nll": NegativeLogLikelihood(dtype=dtype),
        "balanced_accuracy": BalancedAccuracy(num_classes, dtype=dtype),
    }


def feed(metric, labels, probs, sizes, weights=None):
    start = 0
    while start < len(labels):
        for size in sizes:
            stop = min(start + size, len(labels))
            w = None if weights is None else weights[start:stop]
            metric.update_state(labels[start:stop], probs[start:stop], sample_weight=w)
            start = stop
            if start >= len(labels):
                break


def test_uneven_batches_equal_whole_array(record):
    probs, labels = record
    expected = calibration_errors(labels, probs)
    for name, metric in metrics_for(probs.shape[1], dtype="float64").items():
        feed(metric, labels, probs, UNEVEN)
        assert float(metric.result()) == pytest.approx(expected[name], abs=1e-9), name
    # The default float32 state accumulates rounding error, still far below 1e-4.
    for name, metric in metrics_for(probs.shape[1]).items():
        feed(metric, labels, probs.astype("float32"), UNEVEN)
        assert float(metric.result()) == pytest.approx(expected[name], abs=5e-5), name


def test_mean_of_batch_eces_is_not_the_ece(small_record):
    probs, labels = small_record
    metric = ExpectedCalibrationError()
    batch_eces = []
    for start in range(0, 2000, 100):
        one = ExpectedCalibrationError()
        one.update_state(labels[start : start + 100], probs[start : start + 100])
        batch_eces.append(float(one.result()))
        metric.update_state(labels[start : start + 100], probs[start : start + 100])
    exact = calibration_errors(labels[:2000], probs[:2000])["ece"]
    assert float(metric.result()) == pytest.approx(exact, abs=1e-6)
    assert abs(np.mean(batch_eces) - exact) > 1e-3


def test_sample_weight_equals_repetition(small_record):
    probs, labels = small_record
    probs, labels = probs[:600].astype("float32"), labels[:600]
    weights = (np.arange(600) % 3).astype("float32")
    repeated = np.repeat(np.arange(600), weights.astype(int))
    for name, metric in metrics_for(10).items():
        feed(metric, labels, probs, [64], weights)
        plain = metrics_for(10)[name]
        plain.update_state(labels[repeated], probs[repeated])
        assert float(metric.result()) == pytest.approx(float(plain.result()), abs=1e-5), name


def test_from_logits_and_one_hot_labels(small_record):
    probs, labels = small_record
    logits = np.log(probs[:300]).astype("float32")
    one_hot = np.eye(10)[labels[:300]]
    expected = calibration_errors(labels[:300], probs[:300])
    pairs = {
        "ece": ExpectedCalibrationError(from_logits=True),
        "brier": BrierScore(from_logits=True),
        "nll": NegativeLogLikelihood(from_logits=True),
    }
    for name, metric in pairs.items():
        metric.update_state(one_hot, logits)
        assert float(metric.result()) == pytest.approx(expected[name], abs=1e-5), name


def test_reset_state_and_config_round_trip(small_record, tmp_path):
    probs, labels = small_record
    for name, metric in metrics_for(10).items():
        metric.update_state(labels[:50], probs[:50])
        metric.reset_state()
        assert float(metric.result()) == 0.0, name
        metric.update_state(labels[:50], probs[:50])
        clone = type(metric).from_config(metric.get_config())
        clone.update_state(labels[:50], probs[:50])
        assert float(clone.result()) == pytest.approx(float(metric.result())), name
    inputs = keras.Input((10,))
    model = keras.Model(inputs, keras.layers.Softmax()(inputs))
    model.compile(loss="sparse_categorical_crossentropy", metrics=list(metrics_for(10).values()))
    logits = np.log(probs[:200]).astype("float32")
    before = model.evaluate(logits, labels[:200], verbose=0, return_dict=True)
    model.save(tmp_path / "m.keras")
    after = keras.models.load_model(tmp_path / "m.keras").evaluate(
        logits, labels[:200], verbose=0, return_dict=True
    )
    assert before == pytest.approx(after)


def test_ece_state_has_fixed_shape():
    metric = ExpectedCalibrationError(num_bins=10, classwise=True, num_classes=4)
    assert [tuple(v.shape) for v in metric.variables] == [(4, 10)] * 3
    assert all(v.aggregation == "sum" for v in metric.variables)


@pytest.mark.parametrize(
    "make, message",
    [
        (
            lambda: ExpectedCalibrationError(num_bins=0),
            r"`num_bins` must be a positive integer, got 0",
        ),
        (lambda: ExpectedCalibrationError(classwise=True), r"`num_classes` is required"),
        (
            lambda: BalancedAccuracy(num_classes=-2),
            r"`num_classes` must be a positive integer, got -2",
        ),
    ],
)
def test_bad_arguments(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_wrong_number_of_classes():
    metric = BalancedAccuracy(num_classes=3)
    with pytest.raises(ValueError, match=r"built for 3 classes"):
        metric.update_state([0], np.array([[0.5, 0.5]], "float32"))
