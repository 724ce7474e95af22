import keras
import numpy as np
import pytest
from tiny_models import tiny_classifier

from calibkeras.layers import PriorShift
from calibkeras.layers.prior_shift import check_data_classes


def test_adds_log_prior():
    logits = np.array([[0.0, 1.0, 2.0]], dtype="float32")
    out = np.asarray(PriorShift(prior=[0.2, 0.3, 0.5])(logits))
    np.testing.assert_allclose(out, logits + np.log([0.2, 0.3, 0.5]), rtol=1e-6)


def test_from_class_counts_and_reset_without_rebuild():
    layer = PriorShift(class_counts=[300, 100, 100], prior="training")
    np.testing.assert_allclose(layer.prior, [0.6, 0.2, 0.2], rtol=1e-6)
    np.testing.assert_allclose(layer.training_prior, [0.6, 0.2, 0.2])
    weight = layer.log_prior
    layer.set_prior("uniform")
    np.testing.assert_allclose(layer.prior, [1 / 3] * 3, rtol=1e-6)
    layer.set_prior([0.1, 0.1, 0.8])
    np.testing.assert_allclose(layer.prior, [0.1, 0.1, 0.8], rtol=1e-6)
    assert layer.log_prior is weight
    assert layer.trainable_weights == []


def test_softmax_of_shifted_balanced_logits_is_bayes_rule():
    balanced = np.array([[0.3, -0.2, 1.0]])
    prior = np.array([0.7, 0.2, 0.1])
    shifted = np.asarray(PriorShift(prior=prior)(balanced.astype("float32")))
    posterior = np.exp(shifted) / np.exp(shifted).sum()
    expected = np.exp(balanced) * prior
    np.testing.assert_allclose(posterior, expected / expected.sum(), rtol=1e-5)


def test_round_trip_keeps_current_prior_and_names(tmp_path):
    inputs = keras.Input((3,))
    layer = PriorShift(class_counts=[5, 3, 2], class_names=["a", "b", "c"], name="prior_shift")
    model = keras.Model(inputs, layer(inputs))
    layer.set_prior([0.5, 0.25, 0.25])
    clone = PriorShift.from_config(layer.get_config())
    assert clone.class_names == ["a", "b", "c"] and clone.class_counts == [5, 3, 2]
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.models.load_model(path).get_layer("prior_shift")
    np.testing.assert_allclose(loaded.prior, [0.5, 0.25, 0.25], rtol=1e-6)
    x = np.ones((2, 3), "float32")
    np.testing.assert_array_equal(np.asarray(loaded(x)), np.asarray(layer(x)))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"prior": [0.5, 0.5, 0.0]}, r"every entry of `prior` must be a positive"),
        ({"prior": [-0.5, 1.5]}, r"every entry of `prior` must be a positive"),
        ({"prior": [0.6, 0.6]}, r"`prior` must sum to 1"),
        ({"class_counts": [3, 0, 1]}, r"every entry of `class_counts` must be a positive count"),
        ({"prior": "training", "num_classes": 3}, r"'training' needs the training class counts"),
        ({"prior": "balanced", "num_classes": 3}, r"`prior` must be one of 'uniform', 'training'"),
        ({"class_counts": [1, 2, 3], "num_classes": 4}, r"disagree on the number of classes"),
        ({}, r"needs the number of classes"),
        ({"num_classes": 0}, r"`num_classes` must be a positive integer, got 0"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PriorShift(**kwargs)


def test_wrong_prior_length_in_set_prior_and_wrong_input():
    layer = PriorShift(num_classes=3)
    with pytest.raises(ValueError, match=r"`prior` must have 3 entries"):
        layer.set_prior([0.5, 0.5])
    with pytest.raises(ValueError, match=r"prior over 3 classes but its input has 4 logits"):
        layer(np.zeros((1, 4), "float32"))


# ------------------------------------------------ data whose classes are not the model's


class _Named:
    """Stands for a LabeledDataset: only `class_names` matters to the check."""

    def __init__(self, class_names):
        self.class_names = tuple(class_names)


def _model(class_names=None, num_classes=3):
    return tiny_classifier(input_shape=(4,), num_classes=num_classes, class_names=class_names)


def test_data_classes_that_match_pass():
    check_data_classes(_model(["cat", "dog", "eel"]), _Named(["cat", "dog", "eel"]), "data")
    check_data_classes(_model(["cat", "dog", "eel"]), object(), "data")  # no names: nothing
    check_data_classes(_model(None), _Named(["a", "b", "c"]), "data")  # model without names


def test_a_model_that_is_no_calibrated_classifier_is_not_compared():
    # The check reads `model.prior_shift`; a plain functional model has none, even with a
    # PriorShift layer inside (such models are refused where a CalibratedClassifier is
    # needed, with their own message).
    inputs = keras.Input((4,))
    shift = PriorShift(num_classes=3, class_names=["cat", "dog", "eel"], name="prior_shift")
    plain = keras.Model(inputs, shift(keras.layers.Dense(3)(inputs)))
    check_data_classes(plain, _Named(["fox", "dog"]), "data")


@pytest.mark.parametrize(
    "data_names, message",
    [
        (
            ["cat", "eel", "dog"],
            r"`validation_data` has the classes \['cat', 'eel', 'dog'\] but the model's "
            r"classes are \['cat', 'dog', 'eel'\] \(the same names in another order; id 1 is "
            r"'eel' in `validation_data` and 'dog' in the model\)\. Load the data with the "
            r"model's classes",
        ),
        (
            ["cat", "dog"],
            r"\(2 classes against 3; id 2 is absent in `validation_data` and 'eel' in the model\)",
        ),
        (["cat", "dog", "fox"], r"\(other names; id 2 is 'fox' in `validation_data` and 'eel'"),
    ],
)
def test_data_with_other_classes_is_refused_naming_both_lists(data_names, message):
    with pytest.raises(ValueError, match=message):
        check_data_classes(_model(["cat", "dog", "eel"]), _Named(data_names), "validation_data")


def test_class_count_is_compared_when_the_model_has_no_names():
    with pytest.raises(
        ValueError, match=r"`data` has 2 classes \['a', 'b'\] but the model predicts 3\."
    ):
        check_data_classes(_model(None), _Named(["a", "b"]), "data")


def test_long_class_lists_are_cut_in_the_message():
    names = [f"class_{k:04d}_" + "x" * 50 for k in range(1000)]
    other = names[:999] + ["different"]
    with pytest.raises(ValueError) as error:
        check_data_classes(_model(names, 1000), _Named(other), "data")
    message = str(error.value)
    assert "id 999 is 'different' in `data` and 'class_0999_xxx" in message
    assert len(message) < 800
