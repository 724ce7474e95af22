import keras
import numpy as np
import pytest
import tensorflow as tf

from calibkeras.layers import LogitCalibration, PriorShift
from calibkeras.losses import LogitAdjustedCrossentropy
from calibkeras.models import (
    BACKBONES,
    build_classifier,
    fit_calibrated,
    logits_model,
    probabilities_model,
    remove_training_prior,
    unfreeze_top,
)
from calibkeras.models.backbones import native_image_size

NAMES = ["ribs", "pie", "tartare"]


@pytest.fixture(scope="module")
def toy_data():
    rng = np.random.default_rng(0)
    labels = rng.choice(3, size=96, p=[0.6, 0.3, 0.1])
    images = rng.uniform(0, 255, size=(96, 32, 32, 3)).astype("float32")
    images[labels == 1, :, :, 0] = 255.0
    images[labels == 2, :, :, 1] = 0.0
    dataset = tf.data.Dataset.from_tensor_slices((images, labels)).batch(16)
    return images, labels, dataset, np.bincount(labels, minlength=3)


@pytest.fixture(scope="module")
def trained_lite0(toy_data):
    """Lite0 (offline ImageNet weights) through the whole recipe: head, fine-tune, T."""
    images, labels, dataset, counts = toy_data
    model = build_classifier(
        3, backbone="efficientnet_lite0", weights="imagenet", image_size=32,
        class_counts=counts, class_names=NAMES,
    )
    history = fit_calibrated(model, dataset, dataset, counts, head_epochs=1,
                             fine_tune_epochs=1, verbose=0)
    return model, history


def test_recipe_fits_the_calibration(trained_lite0, toy_data):
    images = toy_data[0]
    model, history = trained_lite0
    assert [layer.name for layer in model.layers] == [
        "images", "backbone", "avg_pool", "dropout", "logits", "calibration", "prior_shift"
    ]
    fit = history["calibration"]
    assert model.calibration.method == fit.method in ("temperature", "bias_corrected", "vector")
    np.testing.assert_allclose(model.calibration.scale.numpy(), fit.scale, rtol=1e-6)
    relative = fit.bias + np.log(model.prior_shift.training_prior) - np.log(fit.posterior_mean)
    np.testing.assert_allclose(model.calibration.bias.numpy(), relative - relative.mean(),
                               atol=1e-5)
    assert history["temperature"] == pytest.approx(model.temperature, rel=1e-5)
    assert set(fit.cv_nll) == {"temperature", "bias_corrected", "vector"}
    probs = probabilities_model(model).predict(images, verbose=0)
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-5)


def test_recipe_model_round_trips_through_keras_file(trained_lite0, toy_data, tmp_path):
    images = toy_data[0]
    model, _ = trained_lite0
    model.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras")
    np.testing.assert_allclose(
        loaded.predict(images, verbose=0), model.predict(images, verbose=0), atol=1e-5
    )
    assert loaded.get_layer("prior_shift").class_names == NAMES
    assert loaded.calibration.method == model.calibration.method
    np.testing.assert_allclose(loaded.calibration.scale.numpy(), model.calibration.scale.numpy())
    np.testing.assert_allclose(loaded.calibration.bias.numpy(), model.calibration.bias.numpy())


def test_keras_applications_backbone_fits_and_round_trips(toy_data, tmp_path):
    images, labels, dataset, counts = toy_data
    model = build_classifier(3, backbone="efficientnet_b0", weights=None, image_size=32,
                             class_counts=counts)
    model.get_layer("backbone").trainable = False  # head training: a short trace on CPU
    model.compile("adam", loss=LogitAdjustedCrossentropy(counts))
    model.fit(dataset.take(2), epochs=1, verbose=0, shuffle=False)
    model.save(tmp_path / "b0.keras")
    loaded = keras.models.load_model(tmp_path / "b0.keras")
    np.testing.assert_allclose(
        loaded.predict(images[:8], verbose=0), model.predict(images[:8], verbose=0), atol=1e-5
    )


def test_outputs_are_balanced_logits_plus_log_prior(toy_data):
    images, labels, _, counts = toy_data
    model = build_classifier(3, weights=None, image_size=32, class_counts=counts)
    model.calibration.set_temperature(2.0)
    model.set_prior("training")
    balanced = model.balanced_logits_model().predict(images[:8], verbose=0)
    with pytest.deprecated_call(match=r"use model.balanced_logits_model\(\)"):
        np.testing.assert_array_equal(logits_model(model).predict(images[:8], verbose=0),
                                      balanced)
    expected = balanced / 2.0 + np.log(counts / counts.sum())
    np.testing.assert_allclose(model.predict(images[:8], verbose=0), expected, atol=1e-5)


def test_remove_training_prior_shifts_bias():
    model = build_classifier(3, weights=None, image_size=32)
    bias_before = model.get_layer("logits").get_weights()[1]
    remove_training_prior(model, [50, 30, 20])
    np.testing.assert_allclose(
        model.get_layer("logits").get_weights()[1],
        bias_before - np.log([0.5, 0.3, 0.2]), rtol=1e-6,
    )


def test_unfreeze_top_keeps_batchnorm_frozen():
    model = build_classifier(3, weights=None, image_size=32)
    unfrozen = unfreeze_top(model, 0.3)
    backbone = model.get_layer("backbone")
    assert unfrozen > 0
    assert not any(
        layer.trainable for layer in backbone.layers
        if isinstance(layer, keras.layers.BatchNormalization)
    )
    assert not backbone.layers[1].trainable and backbone.layers[-1].trainable


def test_every_efficientnet_is_known():
    assert {"efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2", "efficientnet_b7",
            "efficientnet_v2_l"} <= set(BACKBONES)
    assert len(BACKBONES) == 18


def test_native_image_size_is_the_keras_applications_default(monkeypatch):
    # Each keras.applications constructor passes its ImageNet size to the family's
    # builder as `default_size`: record it there instead of building the network.
    from keras.src.applications import efficientnet, efficientnet_v2

    class Recorded(Exception):
        pass

    def record(*args, **kwargs):  # B0-B7 pass it by position, V2 by keyword
        raise Recorded(kwargs["default_size"] if "default_size" in kwargs else args[2])

    monkeypatch.setattr(efficientnet, "EfficientNet", record)
    monkeypatch.setattr(efficientnet_v2, "EfficientNetV2", record)
    names = [name for name in BACKBONES if not name.startswith("efficientnet_lite")]
    assert len(names) == 15
    for name in names:
        with pytest.raises(Recorded) as size:
            BACKBONES[name](include_top=False, weights=None)
        assert native_image_size(name) == (size.value.args[0],) * 2, name


def test_the_default_image_size_is_the_backbones():
    assert native_image_size("efficientnet_lite1") == (240, 240)
    lite2 = build_classifier(3, backbone="efficientnet_lite2", weights=None)
    assert lite2.input_shape == (None, 260, 260, 3)
    tiny = keras.Sequential([keras.Input((16, 24, 3)), keras.layers.Conv2D(4, 3)])
    assert build_classifier(3, backbone=tiny, weights=None).input_shape == (None, 16, 24, 3)
    free = keras.Sequential([keras.Input((None, None, 3)), keras.layers.Conv2D(4, 3)])
    with pytest.raises(ValueError, match=r"`image_size` is needed: `backbone` .* takes "
                                         r"images of any size .* pass image_size="):
        build_classifier(3, backbone=free, weights=None)
    with pytest.raises(ValueError, match=r"`backbone` must be one of .* got 'resnet'"):
        native_image_size("resnet")


def test_offline_imagenet_download_fails_fast_with_offline_options(monkeypatch):
    def no_network(*args, **kwargs):
        raise Exception("URL fetch failure on https://storage.googleapis.com/x.h5: None")

    monkeypatch.setattr(keras.utils, "get_file", no_network)
    monkeypatch.setattr("keras.src.applications.efficientnet.file_utils.get_file", no_network)
    with pytest.raises(ConnectionError, match=r"offline options: backbone='efficientnet_lite0'"):
        build_classifier(3, backbone="efficientnet_b0", weights="imagenet", image_size=32)


def test_local_weights_file_for_keras_applications_backbone(tmp_path):
    first = build_classifier(3, backbone="efficientnet_b0", weights=None, image_size=32)
    path = tmp_path / "b0.weights.h5"
    first.get_layer("backbone").save_weights(path)
    second = build_classifier(3, backbone="efficientnet_b0", weights=path, image_size=32)
    for a, b in zip(
        first.get_layer("backbone").weights, second.get_layer("backbone").weights, strict=True
    ):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"num_classes": 1}, ValueError, r"`num_classes` must be at least 2, got 1"),
        ({"backbone": "resnet50"}, ValueError, r"`backbone` must be one of"),
        ({"weights": "/nope.weights.h5"}, ValueError, r"'/nope.weights.h5' does not exist"),
        ({"dropout": 1.5}, ValueError, r"`dropout` must be a number in \[0, 1\), got 1.5"),
        ({"image_size": (0, 32)}, ValueError, r"`image_size` must be a pair of positive"),
        ({"class_counts": [1, 2]}, ValueError, r"disagree on the number of classes"),
    ],
)
def test_bad_arguments(kwargs, error, message):
    arguments = {"num_classes": 3, "weights": None, "image_size": 32, **kwargs}
    with pytest.raises(error, match=message):
        build_classifier(**arguments)


def test_layers_are_calibkeras_layers():
    model = build_classifier(3, weights=None, image_size=32)
    assert isinstance(model.calibration, LogitCalibration)
    assert isinstance(model.prior_shift, PriorShift)
    assert not model.calibration.trainable_weights


def test_build_backbone_takes_a_keras_model(tmp_path):
    from calibkeras.models import build_classifier
    from calibkeras.models.backbones import build_backbone

    tiny = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Conv2D(4, 3)], name="mine")
    backbone = build_backbone(tiny, None, (16, 16, 3))
    assert backbone.name == "backbone" and tiny.name == "mine"  # the user's model is kept
    assert backbone.layers[-1] is tiny.layers[-1]  # shares its layers and weights
    path = tmp_path / "tiny.weights.h5"
    backbone.save_weights(path)
    reloaded = build_backbone(
        keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Conv2D(4, 3)]), path, (16, 16, 3)
    )
    for a, b in zip(reloaded.get_weights(), backbone.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    model = build_classifier(3, backbone=tiny, weights=None, image_size=16)
    assert model.get_layer("backbone").count_params() == tiny.count_params()


@pytest.mark.parametrize(
    ("make", "weights", "message"),
    [
        (lambda k: k.Sequential([k.Input((16, 16, 3)), k.layers.Conv2D(4, 3)]), "imagenet",
         r"`weights` must be None or a weights file when `backbone` is a keras.Model"),
        (lambda k: k.Sequential([k.Input((32, 32, 3)), k.layers.Conv2D(4, 3)]), None,
         r"takes inputs of shape \(32, 32, 3\), but the classifier's images are \(16, 16, 3\)"),
        (lambda k: k.Sequential([k.Input((16, 16, 3)), k.layers.Flatten()]), None,
         r"must output a 4-D feature map .* got shape \(None, 768\)"),
        (lambda k: k.Sequential([k.layers.Conv2D(4, 3)]), None,
         r"must be a functional or Sequential keras.Model with one input"),
    ],
)
def test_build_backbone_refuses_a_model_that_does_not_fit(make, weights, message):
    from calibkeras.models.backbones import build_backbone

    with pytest.raises(ValueError, match=message):
        build_backbone(make(keras), weights, (16, 16, 3))
