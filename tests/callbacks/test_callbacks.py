import keras
import numpy as np
import pytest
import tensorflow as tf
from scipy.special import softmax
from tiny_models import tiny_classifier

from calibkeras.calibration import calibration_errors, fit_temperature
from calibkeras.callbacks import CalibrationMonitor, TemperatureCalibration, calibrate_temperature
from calibkeras.data import LabeledDataset
from calibkeras.losses import LogitAdjustedCrossentropy


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    centers = rng.normal(scale=1.5, size=(3, 6))
    labels = rng.choice(3, size=900, p=[0.7, 0.2, 0.1])
    x = (centers[labels] + rng.normal(size=(900, 6))).astype("float32")
    return x[:600], labels[:600], x[600:], labels[600:]


def make_model(counts, class_names=None):
    """A linear CalibratedClassifier of the 6 features (uniform prior, T not trained)."""
    model = tiny_classifier(input_shape=(6,), class_counts=counts, class_names=class_names)
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
    expected = calibration_errors(y_val, probs)
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
    balanced = model.balanced_logits_model().predict(x_val, verbose=0)
    expected = fit_temperature(balanced, y_val, prior=counts / counts.sum())
    assert callback.temperature == pytest.approx(expected, rel=1e-6)
    assert model.temperature == pytest.approx(expected, rel=1e-5)


def test_recipe_writes_the_temperature_and_the_implied_source_prior(data):
    from scipy.optimize import minimize_scalar

    x, y, x_val, y_val = data
    model = make_model(np.bincount(y, minlength=3))
    model.fit(x, y, epochs=2, verbose=0)
    balanced = model.balanced_logits_model().predict(x_val, verbose=0).astype(np.float64)
    temperature = calibrate_temperature(model, (x_val, y_val), prior="validation")
    # Independently: the NLL-optimal T under the validation label frequencies (scipy),
    # the prior s that the calibrated model implies for the validation data (the mean
    # posterior), and the model's (uniform-prior) output re-weighted from s.
    log_prior = np.log(np.bincount(y_val, minlength=3) / len(y_val))

    def nll(log_t):
        logits = balanced / np.exp(log_t) + log_prior
        logits -= logits.max(axis=1, keepdims=True)
        log_probs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        return -log_probs[np.arange(len(y_val)), y_val].mean()

    expected_t = np.exp(minimize_scalar(nll, bounds=(-5, 5), method="bounded",
                                        options={"xatol": 1e-10}).x)
    assert temperature == pytest.approx(expected_t, rel=1e-4)
    implied = softmax(balanced / expected_t + log_prior, axis=1).mean(axis=0)
    np.testing.assert_allclose(model.source_prior, implied, rtol=1e-4)
    expected = softmax(balanced / expected_t + log_prior - np.log(implied), axis=1)
    probs = softmax(model.predict(x_val, verbose=0).astype(np.float64), axis=1)
    np.testing.assert_allclose(probs, expected, atol=1e-4)


NOT_A_CALIBRATED_CLASSIFIER = (
    r"`model` must be a calibkeras CalibratedClassifier \(from build_classifier or "
    r"load_classifier\), got Functional 'plain'; a model saved by calibkeras 0.1 becomes one "
    r"with load_classifier\(path\) or CalibratedClassifier.from_functional\(model\)"
)


def test_needs_a_calibrated_classifier(data):
    x, y, x_val, y_val = data
    inputs = keras.Input((6,))
    model = keras.Model(inputs, keras.layers.Dense(3)(inputs), name="plain")
    with pytest.raises(ValueError, match=NOT_A_CALIBRATED_CLASSIFIER):
        calibrate_temperature(model, (x_val, y_val))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    kernel = model.layers[-1].kernel.numpy()
    with pytest.raises(ValueError, match=NOT_A_CALIBRATED_CLASSIFIER):  # before any step
        model.fit(x, y, epochs=1, verbose=0, callbacks=[TemperatureCalibration((x_val, y_val))])
    np.testing.assert_array_equal(model.layers[-1].kernel.numpy(), kernel)


def test_prior_argument(data):
    x, y, x_val, y_val = data
    counts = np.bincount(y, minlength=3)
    model = make_model(counts)
    model.fit(x, y, epochs=2, verbose=0)
    balanced = model.balanced_logits_model().predict(x_val, verbose=0)
    for prior, expected_prior in (
        (None, counts / counts.sum()),  # the training prior
        ("train", counts / counts.sum()),
        ("uniform", np.full(3, 1 / 3)),
        ("validation", np.bincount(y_val, minlength=3) / len(y_val)),
        ({"0": 0.2, "1": 0.3, "2": 0.5}, np.array([0.2, 0.3, 0.5])),  # the default names
    ):
        temperature = calibrate_temperature(model, (x_val, y_val), prior=prior)
        expected = fit_temperature(balanced, y_val, prior=expected_prior)
        assert temperature == pytest.approx(expected, rel=1e-6), prior
    with pytest.raises(
        ValueError,
        match=r"`prior` must be one of 'uniform', 'training', 'labels', 'estimate' \(or "
              r"'train', 'validation'\), a mapping from class name to probability, or 3 "
              r"probabilities; got 'balanced'",
    ):
        calibrate_temperature(model, (x_val, y_val), prior="balanced")
    with pytest.raises(ValueError, match=r"`prior` 'validation' needs every class in the "
                                         r"labelled data; classes \[2\] have no examples"):
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
    return make_model(counts, class_names=NAMES)


NAMES = ("cake", "soda", "soup")
REORDERED = r"`validation_data` has the classes \['soda', 'cake', 'soup'\] but the model's " \
    r"classes are \['cake', 'soda', 'soup'\] \(the same names in another order"


def test_calibrate_temperature_refuses_data_with_other_classes(data):
    x, y, x_val, y_val = data
    model = _named_model(np.bincount(y, minlength=3))
    model.fit(x, y, epochs=3, batch_size=64, verbose=0)
    with pytest.raises(ValueError, match=REORDERED):
        calibrate_temperature(model, _labeled(x_val, y_val, ("soda", "cake", "soup")))
    assert model.temperature == 1.0  # not fitted
    temperature = calibrate_temperature(model, _labeled(x_val, y_val, NAMES))
    assert model.temperature == pytest.approx(temperature)
    assert 0.1 < temperature < 10


@pytest.mark.parametrize("callback", [TemperatureCalibration, CalibrationMonitor])
def test_callbacks_refuse_data_with_other_classes_before_training(data, callback):
    x, y, x_val, y_val = data
    model = _named_model(np.bincount(y, minlength=3))
    kernel = model.head.kernel.numpy()
    with pytest.raises(ValueError, match=REORDERED):
        model.fit(x, y, epochs=1, verbose=0,
                  callbacks=[callback(_labeled(x_val, y_val, ("soda", "cake", "soup")))])
    np.testing.assert_array_equal(model.head.kernel.numpy(), kernel)
