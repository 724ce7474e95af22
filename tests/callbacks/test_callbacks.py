import keras
import numpy as np
import pytest
import tensorflow as tf
from scipy.special import softmax

from calibkeras.calibration import calibration_errors, fit_temperature
from calibkeras.callbacks import CalibrationMonitor, TemperatureCalibration, calibrate_temperature
from calibkeras.data import LabeledDataset
from calibkeras.layers import PriorShift, TemperatureScaling
from calibkeras.losses import LogitAdjustedCrossentropy


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    centers = rng.normal(scale=1.5, size=(3, 6))
    labels = rng.choice(3, size=900, p=[0.7, 0.2, 0.1])
    x = (centers[labels] + rng.normal(size=(900, 6))).astype("float32")
    return x[:600], labels[:600], x[600:], labels[600:]


def make_model(counts):
    inputs = keras.Input((6,))
    logits = keras.layers.Dense(3, name="logits")(inputs)
    scaled = TemperatureScaling(name="temperature")(logits)
    outputs = PriorShift(class_counts=counts, name="prior_shift")(scaled)
    model = keras.Model(inputs, outputs)
    model.get_layer("temperature").trainable = False
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss=LogitAdjustedCrossentropy(counts))
    return model


def test_monitor_logs_equal_numpy_scores_and_reach_other_callbacks(data, tmp_path):
    x, y, x_val, y_val = data
    model = make_model(np.bincount(y, minlength=3))
    csv_path = tmp_path / "log.csv"
    history = model.fit(
        x, y, epochs=3, batch_size=64, verbose=0,
        callbacks=[
            CalibrationMonitor((x_val, y_val), batch_size=50),
            keras.callbacks.EarlyStopping("val_nll", mode="min", patience=5),
            keras.callbacks.CSVLogger(str(csv_path)),
        ],
    )
    for key in ("val_ece", "val_brier", "val_nll", "val_balanced_accuracy"):
        assert len(history.history[key]) == 3
        assert key in csv_path.read_text().splitlines()[0]
    probs = softmax(model.predict(x_val, verbose=0).astype(np.float64), axis=1)
    expected = calibration_errors(probs, y_val)
    last = {k: v[-1] for k, v in history.history.items()}
    assert last["val_ece"] == pytest.approx(expected["ece"], abs=1e-5)
    assert last["val_brier"] == pytest.approx(expected["brier"], abs=1e-5)
    assert last["val_nll"] == pytest.approx(expected["nll"], abs=1e-5)
    assert last["val_balanced_accuracy"] == pytest.approx(expected["balanced_accuracy"], abs=1e-6)


def test_monitor_warns_for_probability_outputs(data):
    x, y, x_val, y_val = data
    inputs = keras.Input((6,))
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(inputs))
    model.compile(loss="sparse_categorical_crossentropy")
    monitor = CalibrationMonitor((x_val, y_val))
    monitor.set_model(model)
    with pytest.warns(UserWarning, match="look like probabilities"):
        monitor.compute()


def test_temperature_calibration_fits_exact_optimum_under_training_prior(data):
    x, y, x_val, y_val = data
    counts = np.bincount(y, minlength=3)
    model = make_model(counts)
    callback = TemperatureCalibration((x_val, y_val))
    model.fit(x, y, epochs=5, batch_size=64, verbose=0, callbacks=[callback])
    balanced = keras.Model(model.inputs, model.get_layer("logits").output).predict(x_val, verbose=0)
    expected = fit_temperature(balanced, y_val, prior=counts / counts.sum())
    assert callback.temperature == pytest.approx(expected, rel=1e-6)
    assert model.get_layer("temperature").temperature == pytest.approx(expected, rel=1e-5)


def test_recipe_keeps_argmax(data):
    x, y, x_val, y_val = data
    model = make_model(np.bincount(y, minlength=3))
    model.fit(x, y, epochs=2, verbose=0)
    before = model.predict(x_val, verbose=0).argmax(1)
    temperature = calibrate_temperature(model, (x_val, y_val), prior="validation")
    assert temperature != pytest.approx(1.0)
    np.testing.assert_array_equal(model.predict(x_val, verbose=0).argmax(1), before)


def test_needs_one_temperature_layer(data):
    x, y, x_val, y_val = data
    inputs = keras.Input((6,))
    model = keras.Model(inputs, keras.layers.Dense(3)(inputs))
    with pytest.raises(ValueError, match=r"exactly one TemperatureScaling layer"):
        calibrate_temperature(model, (x_val, y_val))


def test_bad_prior_argument(data):
    x, y, x_val, y_val = data
    model = make_model(np.bincount(y, minlength=3))
    with pytest.raises(ValueError, match=r"`prior` must be None, 'validation', 'uniform'"):
        calibrate_temperature(model, (x_val, y_val), prior="train")
    with pytest.raises(ValueError, match=r"classes \[2\] have no examples"):
        keep = y_val != 2
        calibrate_temperature(model, (x_val[keep], y_val[keep]), prior="validation")


# ------------------------------------------------ data whose classes are not the model's


def _labeled(x, y, class_names):
    return LabeledDataset(
        dataset=tf.data.Dataset.from_tensor_slices((x, y)).batch(100),
        class_names=class_names,
        class_counts=np.bincount(y, minlength=3),
        prior=np.bincount(y, minlength=3) / len(y),
        file_paths=(),
        labels=y,
        num_examples=len(y),
        batch_size=100,
        image_size=(1, 1),
        sampling="natural",
    )


def _named_model(counts):
    inputs = keras.Input((6,))
    scaled = TemperatureScaling(name="temperature")(keras.layers.Dense(3, name="logits")(inputs))
    shift = PriorShift(class_counts=counts, class_names=NAMES, name="prior_shift")
    model = keras.Model(inputs, shift(scaled))
    model.get_layer("temperature").trainable = False
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss=LogitAdjustedCrossentropy(counts))
    return model


NAMES = ("cake", "soda", "soup")
REORDERED = r"`validation_data` has the classes \['soda', 'cake', 'soup'\] but the model's " \
    r"classes are \['cake', 'soda', 'soup'\] \(the same names in another order"


def test_calibrate_temperature_refuses_data_with_other_classes(data):
    x, y, x_val, y_val = data
    model = _named_model(np.bincount(y, minlength=3))
    model.fit(x, y, epochs=3, batch_size=64, verbose=0)
    with pytest.raises(ValueError, match=REORDERED):
        calibrate_temperature(model, _labeled(x_val, y_val, ("soda", "cake", "soup")))
    assert model.get_layer("temperature").temperature == 1.0  # not fitted
    temperature = calibrate_temperature(model, _labeled(x_val, y_val, NAMES))
    assert model.get_layer("temperature").temperature == pytest.approx(temperature)
    assert 0.1 < temperature < 10


@pytest.mark.parametrize("callback", [TemperatureCalibration, CalibrationMonitor])
def test_callbacks_refuse_data_with_other_classes_before_training(data, callback):
    x, y, x_val, y_val = data
    model = _named_model(np.bincount(y, minlength=3))
    kernel = model.get_layer("logits").kernel.numpy()
    with pytest.raises(ValueError, match=REORDERED):
        model.fit(x, y, epochs=1, verbose=0,
                  callbacks=[callback(_labeled(x_val, y_val, ("soda", "cake", "soup")))])
    np.testing.assert_array_equal(model.get_layer("logits").kernel.numpy(), kernel)
