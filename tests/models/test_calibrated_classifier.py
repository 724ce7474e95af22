"""CalibratedClassifier: saving and loading (also 0.1 files), outputs, priors, calibration."""

import copy
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from tiny_models import tiny_backbone, tiny_classifier

from calibkeras.calibration import estimate_prior, fit_temperature
from calibkeras.layers import LogitCalibration, PriorShift
from calibkeras.models import CalibratedClassifier, build_classifier, load_classifier

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
NAMES = ["cake", "soda", "soup"]
COUNTS = [5, 3, 2]
TRAINING_PRIOR = np.array([0.5, 0.3, 0.2])


def softmax(scores):
    scores = np.asarray(scores, np.float64)
    scores = np.exp(scores - scores.max(axis=1, keepdims=True))
    return scores / scores.sum(axis=1, keepdims=True)


def images(n=6, size=16, seed=0):
    """Images of one colour each plus noise, float32 in 0..255."""
    rng = np.random.default_rng(seed)
    colours = rng.uniform(0, 255, size=(n, 1, 1, 3))
    return np.clip(colours + rng.normal(0, 30, (n, size, size, 3)), 0, 255).astype("float32")


def named_model(**kwargs):
    """An image classifier with names and counts, confident enough for priors to matter."""
    return tiny_classifier(class_counts=COUNTS, class_names=NAMES, head_kernel_stddev=3.0,
                           head_bias_stddev=0.5, **kwargs)


@pytest.fixture(scope="module")
def features():
    """Labelled 6-D features ``(x, y)`` with the labels drawn 20/30/50."""
    rng = np.random.default_rng(0)
    centres = rng.normal(scale=1.5, size=(3, 6))
    labels = rng.choice(3, size=300, p=[0.2, 0.3, 0.5])
    x = (centres[labels] + rng.normal(size=(300, 6))).astype("float32")
    return x, labels


def features_model(**kwargs):
    """A linear classifier of the 6 features (identity backbone, no pooling)."""
    return tiny_classifier(input_shape=(6,), class_counts=COUNTS, class_names=NAMES,
                           head_kernel_stddev=1.0, **kwargs)


# ------------------------------------------------ config, saving and loading


def test_config_round_trip_gives_the_same_model():
    model = named_model(prior="training", dropout=0.1, name="mine")
    config = model.get_config()
    assert {key: config[key] for key in ("name", "num_classes", "dropout", "class_counts",
                                         "class_names", "prior")} == {
        "name": "mine", "num_classes": 3, "dropout": 0.1, "class_counts": COUNTS,
        "class_names": NAMES, "prior": "training"}
    # A copy: Keras' deserialisation empties the nested backbone config it is given.
    clone = CalibratedClassifier.from_config(copy.deepcopy(config))
    assert isinstance(clone, CalibratedClassifier)
    assert clone.get_config() == config
    assert [layer.name for layer in clone.layers] == [layer.name for layer in model.layers]
    clone.set_weights(model.get_weights())
    x = images(4)
    np.testing.assert_allclose(clone.predict_on_batch(x), model.predict_on_batch(x), atol=1e-6)


def test_keras_file_round_trip_keeps_predictions_temperature_prior_and_names(tmp_path):
    model = named_model(temperature=1.3)
    model.set_prior({"soup": 0.6, "cake": 0.1, "soda": 0.3})
    path = tmp_path / "model.keras"
    model.save(path)
    x = images(5)
    for loaded in (load_classifier(path), keras.models.load_model(path)):
        assert isinstance(loaded, CalibratedClassifier)
        np.testing.assert_allclose(loaded.predict_on_batch(x), model.predict_on_batch(x),
                                   atol=1e-5)
        assert loaded.temperature == pytest.approx(1.3, rel=1e-6)
        np.testing.assert_allclose(loaded.prior_shift.prior, [0.1, 0.3, 0.6], rtol=1e-6)
        np.testing.assert_allclose(loaded.prior_shift.training_prior, TRAINING_PRIOR)
        assert loaded.class_names == NAMES
        assert loaded.image_size == (16, 16)
        assert not loaded.calibration.trainable
        assert isinstance(loaded.calibration, LogitCalibration)
        assert isinstance(loaded.prior_shift, PriorShift)


def test_a_file_saved_by_calibkeras_0_1_loads_as_a_calibrated_classifier():
    path = FIXTURES / "calibkeras-0.1-tiny.keras"
    stored = np.load(FIXTURES / "calibkeras-0.1-tiny.npz")
    model = load_classifier(path)
    assert isinstance(model, CalibratedClassifier)
    np.testing.assert_allclose(model.predict_on_batch(stored["images"]), stored["logits"],
                               atol=1e-5, rtol=0)
    assert model.temperature == pytest.approx(1.7, rel=1e-6)
    np.testing.assert_allclose(model.prior_shift.prior, TRAINING_PRIOR, rtol=1e-6)
    np.testing.assert_allclose(model.prior_shift.training_prior, TRAINING_PRIOR)
    assert model.class_names == NAMES
    assert model.image_size == (8, 8)
    # The same file is still an ordinary Keras model for Keras itself.
    plain = keras.models.load_model(path)
    assert not isinstance(plain, CalibratedClassifier)
    np.testing.assert_allclose(plain.predict_on_batch(stored["images"]), stored["logits"],
                               atol=1e-5, rtol=0)


def test_from_functional_names_the_missing_layer():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.GlobalAveragePooling2D()(inputs)
    plain = keras.Model(inputs, keras.layers.Dense(3, name="logits")(x), name="plain")
    with pytest.raises(ValueError, match=r"`model` 'plain' is not a calibkeras classifier: it "
                                         r"needs a top-level Model layer named 'backbone'"):
        CalibratedClassifier.from_functional(plain)


# ------------------------------------------------ outputs


def test_outputs_are_balanced_logits_over_t_plus_log_prior():
    model = named_model(temperature=1.6)
    prior = np.array([0.6, 0.15, 0.25])
    model.set_prior(prior)
    x = images(6)
    # Balanced logits written out in NumPy from the backbone's features and the head.
    kernel, bias = model.head.get_weights()
    pooled = np.asarray(model.backbone(x)).mean(axis=(1, 2))
    balanced = pooled @ kernel + bias
    np.testing.assert_allclose(np.asarray(model.balanced_logits(x)), balanced, atol=1e-5)
    np.testing.assert_allclose(model.balanced_logits_model().predict_on_batch(x), balanced,
                               atol=1e-5)
    outputs = model.predict_on_batch(x)
    np.testing.assert_allclose(outputs, balanced / 1.6 + np.log(prior), atol=1e-5)
    expected = softmax(balanced / 1.6 + np.log(prior))
    np.testing.assert_allclose(softmax(outputs), expected, atol=1e-6)
    np.testing.assert_allclose(model.probabilities(balanced), expected, atol=1e-6)
    # Another prior, and no temperature, without touching the model.
    np.testing.assert_allclose(model.probabilities(balanced, "uniform", calibrated=False),
                               softmax(balanced), atol=1e-6)
    np.testing.assert_allclose(model.prior_shift.prior, prior)


def test_layers_and_defaults():
    model = tiny_classifier()
    assert [layer.name for layer in model.layers] == [
        "images", "backbone", "avg_pool", "dropout", "logits", "calibration", "prior_shift"]
    assert model.class_names == ["0", "1", "2"]
    assert model.temperature == 1.0 and not model.calibration.trainable
    np.testing.assert_allclose(model.prior_shift.prior, np.full(3, 1 / 3))
    assert model.image_size == (16, 16) and model.num_classes == 3
    built = build_classifier(3, backbone=tiny_backbone(), weights=None, image_size=16)
    assert isinstance(built, CalibratedClassifier) and built.dropout == 0.2


# ------------------------------------------------ priors


@pytest.mark.parametrize(
    "prior, expected",
    [
        ("uniform", np.full(3, 1 / 3)),
        ("training", TRAINING_PRIOR),
        ("train", TRAINING_PRIOR),
        ({"soup": 0.7, "cake": 0.1, "soda": 0.2}, np.array([0.1, 0.2, 0.7])),
        ([0.25, 0.25, 0.5], np.array([0.25, 0.25, 0.5])),
    ],
)
def test_set_prior_without_data(prior, expected):
    model = named_model(temperature=1.4)
    x = images(4)
    balanced = np.asarray(model.balanced_logits(x))
    np.testing.assert_allclose(model.set_prior(prior), expected, rtol=1e-12)
    np.testing.assert_allclose(model.prior_shift.prior, expected, rtol=1e-6)
    np.testing.assert_allclose(model.predict_on_batch(x), balanced / 1.4 + np.log(expected),
                               atol=1e-5)


def test_set_prior_estimate_runs_em_on_the_calibrated_posteriors(features):
    x, y = features
    model = features_model(temperature=0.8)
    kernel, bias = model.head.get_weights()
    balanced = x.astype(np.float64) @ kernel + bias  # identity backbone: a linear model
    posteriors = softmax(balanced / 0.8 + np.log(TRAINING_PRIOR))
    expected = estimate_prior(posteriors, TRAINING_PRIOR).prior
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(64)
    estimated = model.set_prior("estimate", data=dataset)
    np.testing.assert_allclose(estimated, expected, atol=1e-5)
    np.testing.assert_allclose(model.prior_shift.prior, expected, atol=1e-5)
    assert not np.allclose(expected, TRAINING_PRIOR, atol=0.05)  # EM moved the prior


def test_set_prior_estimate_takes_images_without_labels(features):
    # "labels not needed": the data for "estimate" may be images alone.
    x, y = features
    model = features_model()
    labelled = model.resolve_prior("estimate", logits=np.asarray(model.balanced_logits(x)))
    np.testing.assert_allclose(model.set_prior("estimate", data=x), labelled, atol=1e-6)
    dataset = tf.data.Dataset.from_tensor_slices(x).batch(64)
    np.testing.assert_allclose(model.set_prior("estimate", data=dataset), labelled, atol=1e-6)


@pytest.mark.parametrize("name", ["labels", "validation"])
def test_set_prior_labels_is_the_label_frequencies(features, name):
    x, y = features
    model = features_model()
    frequencies = np.bincount(y, minlength=3) / len(y)
    np.testing.assert_allclose(model.set_prior(name, data=(x, y)), frequencies, rtol=1e-12)
    np.testing.assert_allclose(model.prior_shift.prior, frequencies, rtol=1e-6)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda m: m.set_prior("balanced"),
         r"`prior` must be one of 'uniform', 'training', 'labels', 'estimate' \(or 'train', "
         r"'validation'\), a mapping from class name to probability, or 3 probabilities; "
         r"got 'balanced'"),
        (lambda m: m.set_prior("estimate"), r"`prior` 'estimate' needs `data`: the images"),
        (lambda m: m.set_prior("labels"), r"`prior` 'labels' needs `data`: the images"),
        (lambda m: m.set_prior({"cake": 0.5, "soda": 0.3, "pie": 0.2}),
         r"`prior` names unknown classes \['pie'\] and misses \['soup'\]; the classes are "
         r"\['cake', 'soda', 'soup'\]"),
        (lambda m: m.set_prior([0.5, 0.5]), r"`prior` must have 3 entries"),
        (lambda m: m.probabilities(np.zeros((1, 3)), "balanced"), r"`prior` must be one of"),
    ],
)
def test_bad_priors_are_named(call, message):
    model = features_model()
    before = model.prior_shift.prior.copy()
    with pytest.raises(ValueError, match=message):
        call(model)
    np.testing.assert_array_equal(model.prior_shift.prior, before)


def test_training_needs_class_counts():
    model = tiny_classifier(input_shape=(6,), class_names=NAMES)
    with pytest.raises(ValueError, match=r"`prior` 'training' needs the training class "
                                         r"counts, and none are known: pass `class_counts=`"):
        model.set_prior("training")


def test_estimate_needs_class_counts_and_says_so(features):
    # EM starts from the posteriors under the training prior; the message names the
    # value the caller gave ('estimate'), not the one used inside.
    model = tiny_classifier(input_shape=(6,), class_names=NAMES)
    with pytest.raises(ValueError, match=r"`prior` 'estimate' needs the training class "
                                         r"counts, and none are known: pass `class_counts=`"):
        model.set_prior("estimate", data=features)


# ------------------------------------------------ calibration


def test_calibrate_with_temperature_is_fit_temperature_on_the_balanced_logits(features):
    x, y = features
    model = features_model()
    model.compile(keras.optimizers.Adam(0.05), loss="sparse_categorical_crossentropy")
    model.fit(x, y, epochs=2, batch_size=64, verbose=0)
    balanced = model.balanced_logits_model().predict(x, verbose=0)

    def temperature(data, prior=None):
        fit = model.calibrate(data, method="temperature", prior=prior)
        assert model.calibration.method == "temperature"
        # No bias of its own: only the one relative to the prior it implies, the mean
        # calibrated posterior of the data (written out here in NumPy).
        fitting = {None: TRAINING_PRIOR, "labels": np.bincount(y, minlength=3) / len(y),
                   "uniform": np.full(3, 1 / 3)}[prior]
        implied = softmax(balanced / fit.temperature + np.log(fitting)).mean(axis=0)
        np.testing.assert_allclose(model.source_prior, implied, rtol=1e-5)
        expected = np.log(fitting) - np.log(implied)
        np.testing.assert_allclose(model.calibration.bias.numpy(),
                                   expected - expected.mean(), atol=1e-5)
        return fit.temperature

    # Default: under the training prior (the model has class counts).
    fitted = temperature((x, y))
    assert fitted == pytest.approx(fit_temperature(balanced, y, prior=TRAINING_PRIOR),
                                   rel=1e-6)
    assert model.temperature == pytest.approx(fitted, rel=1e-6)
    frequencies = np.bincount(y, minlength=3) / len(y)
    assert temperature((x, y), prior="labels") == pytest.approx(
        fit_temperature(balanced, y, prior=frequencies), rel=1e-6)
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(50)
    assert temperature(dataset, prior="uniform") == pytest.approx(
        fit_temperature(balanced, y, prior=np.full(3, 1 / 3)), rel=1e-6)
    # Without class counts: under the current prior.
    plain = tiny_classifier(input_shape=(6,), head_kernel_stddev=1.0)
    plain.set_prior([0.2, 0.3, 0.5])
    balanced = np.asarray(plain.balanced_logits(x))
    assert plain.calibrate((x, y), method="temperature").temperature == pytest.approx(
        fit_temperature(balanced, y, prior=[0.2, 0.3, 0.5]), rel=1e-6)


def test_calibrate_writes_the_chosen_fit_into_the_layer(features, tmp_path):
    from calibkeras.calibration import fit_calibration

    x, y = features
    model = features_model()
    model.compile(keras.optimizers.Adam(0.05), loss="sparse_categorical_crossentropy")
    model.fit(x, y, epochs=2, batch_size=64, verbose=0)
    # A per-class bias the logits cannot show: BCTS or vector scaling fits it.
    kernel, bias = model.head.get_weights()
    model.head.set_weights([kernel, bias + np.array([2.0, -1.0, -1.0])])
    balanced = np.asarray(model.balanced_logits(x))
    fit = model.calibrate((x, y))
    expected = fit_calibration(balanced, y, prior=TRAINING_PRIOR)
    assert fit.method == expected.method == model.calibration.method
    assert fit.method in ("bias_corrected", "vector")  # the injected bias needs class biases
    np.testing.assert_allclose(model.calibration.scale.numpy(), expected.scale, rtol=1e-5)
    fitted = softmax(expected.logits(balanced) + np.log(TRAINING_PRIOR))
    implied = fitted.mean(axis=0)
    np.testing.assert_allclose(model.source_prior, implied, rtol=1e-5)
    bias = expected.bias + np.log(TRAINING_PRIOR) - np.log(implied)
    np.testing.assert_allclose(model.calibration.bias.numpy(), bias - bias.mean(), atol=1e-5)
    # Under the prior the fit implies, the model gives the fit's posteriors; under any
    # other, those re-weighted from it (Bayes' rule).
    np.testing.assert_allclose(model.probabilities(balanced, implied), fitted, atol=1e-5)
    uniform = fitted / implied
    np.testing.assert_allclose(model.probabilities(balanced, "uniform"),
                               uniform / uniform.sum(axis=1, keepdims=True), atol=1e-5)
    model.save(tmp_path / "m.keras")
    loaded = load_classifier(tmp_path / "m.keras")
    assert loaded.calibration.method == fit.method
    np.testing.assert_allclose(loaded.calibration.bias.numpy(), model.calibration.bias.numpy())
    np.testing.assert_allclose(loaded.source_prior, model.source_prior)


def test_em_finds_the_implied_prior_on_the_calibration_data(features):
    from calibkeras.priors import prior_shift_test

    x, y = features
    model = features_model()
    model.compile(keras.optimizers.Adam(0.05), loss="sparse_categorical_crossentropy")
    model.fit(x, y, epochs=2, batch_size=64, verbose=0)
    np.testing.assert_array_equal(model.source_prior, TRAINING_PRIOR)  # before calibrate
    model.calibrate((x, y), method="temperature")
    balanced = np.asarray(model.balanced_logits(x))
    # Maximum-likelihood EM on the calibration data: no shift from the implied prior.
    estimate = model.estimate_prior(balanced, dirichlet=1.0, tol=1e-12)
    np.testing.assert_allclose(estimate.prior, model.source_prior, atol=1e-6)
    test = prior_shift_test(model.probabilities(balanced, model.source_prior),
                            model.source_prior)
    assert test.statistic == pytest.approx(0.0, abs=1e-6)


# ------------------------------------------------ backbones


def test_a_backbone_of_2d_features_needs_no_pooling_and_has_no_image_size(features):
    x, _ = features
    model = features_model(name="linear")
    assert model.pooling is None
    assert [layer.name for layer in model.layers] == [
        "images", "backbone", "dropout", "logits", "calibration", "prior_shift"]
    kernel, bias = model.head.get_weights()
    np.testing.assert_allclose(model.predict_on_batch(x[:5]),
                               x[:5] @ kernel + bias + np.log(1 / 3), atol=1e-5)
    with pytest.raises(ValueError, match=r"'linear' takes inputs of shape \(6,\), not RGB "
                                         r"images \(height, width, 3\)"):
        _ = model.image_size


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: keras.Model(inp := keras.Input((8, 3)), keras.layers.Dense(4)(inp)),
         r"`backbone` must have one output: a 4-D feature map \(batch, height, width, "
         r"channels\) or 2-D features \(batch, features\); got shapes \[\(None, 8, 4\)\]"),
        (lambda: keras.Model(inp := keras.Input((None, None, 3)), keras.layers.Conv2D(2, 3)(inp)),
         r"`backbone` must take inputs of a fixed shape, .* got \(None, None, 3\)"),
        (lambda: keras.layers.Conv2D(2, 3),
         r"`backbone` must be a functional keras.Model with one input .* got Conv2D"),
    ],
)
def test_backbones_that_do_not_fit_are_refused_naming_backbone(make, message):
    with pytest.raises(ValueError, match=message):
        CalibratedClassifier(make(), 3)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_classes": 1}, r"`num_classes` must be at least 2, got 1"),
        ({"dropout": 1.0}, r"`dropout` must be a number in \[0, 1\), got 1.0"),
        ({"class_names": ["a", "b"]}, r"disagree on the number of classes"),
    ],
)
def test_bad_arguments_are_named(kwargs, message):
    arguments = {"num_classes": 3, **kwargs}
    with pytest.raises(ValueError, match=message):
        CalibratedClassifier(tiny_backbone((6,)), **arguments)


def test_logits_calibration_and_prior_stay_float32_under_mixed_precision():
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = named_model(temperature=1.5)
        assert model.backbone.compute_dtype == "float16"  # the policy holds there
        for layer in (model.head, model.calibration, model.prior_shift):
            assert layer.compute_dtype == "float32", layer.name
        x = images(3)
        outputs = model.predict_on_batch(x)
        assert outputs.dtype == np.float32
        assert keras.backend.standardize_dtype(model(x).dtype) == "float32"
        assert keras.backend.standardize_dtype(model.balanced_logits(x).dtype) == "float32"
        balanced = np.asarray(model.balanced_logits(x), np.float64)
        np.testing.assert_allclose(outputs, balanced / 1.5 + np.log(1 / 3), atol=1e-4)
    finally:
        keras.mixed_precision.set_global_policy(previous)
