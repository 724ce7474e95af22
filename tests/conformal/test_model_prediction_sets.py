"""CalibratedClassifier.fit_prediction_sets: the sets of the model, kept in .keras files."""

import numpy as np
import pytest
from tiny_models import tiny_classifier

from calibkeras.conformal import fit_conformal
from calibkeras.layers import PredictionSet
from calibkeras.models import load_classifier


def labelled_images(model, num_images=90, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.uniform(0, 255, (num_images, 16, 16, 3)).astype("float32")
    labels = np.asarray(model.balanced_logits(images)).argmax(axis=1)
    noisy = rng.random(num_images) < 0.2
    labels[noisy] = rng.integers(0, 3, noisy.sum())
    return images, labels


@pytest.fixture(scope="module")
def model():
    model = tiny_classifier(class_names=["a", "b", "c"], class_counts=[60, 25, 15],
                            head_kernel_stddev=4.0)
    model.calibrate(labelled_images(model, seed=1), method="temperature")
    return model


def test_sets_are_those_of_fit_conformal_on_the_balanced_posteriors(model, tmp_path):
    images, labels = labelled_images(model)
    fit = model.fit_prediction_sets((images, labels), alpha=0.2, by_class=False,
                                    prior="uniform", score="aps")
    logits = np.asarray(model.balanced_logits(images))
    reference = fit_conformal(model.probabilities(logits, "uniform"), labels, 0.2,
                              by_class=False, prior="uniform", score="aps")
    np.testing.assert_allclose(fit.thresholds, reference.thresholds)
    sets = model.prediction_sets(logits)
    np.testing.assert_array_equal(sets, reference.predict_sets(
        model.probabilities(logits, "uniform")))
    # The deployment prior changes the probabilities, never the sets.
    model.set_prior("training")
    np.testing.assert_array_equal(model.prediction_sets(logits), sets)

    path = tmp_path / "model.keras"
    model.save(path)
    loaded = load_classifier(path)
    assert (loaded.prediction_set.mode, loaded.prediction_set.score,
            loaded.prediction_set.alpha) == ("marginal", "aps", 0.2)
    np.testing.assert_array_equal(loaded.prediction_sets(logits), sets)


def test_a_new_calibration_resets_the_sets_with_a_warning(model):
    images, labels = labelled_images(model)
    model.fit_prediction_sets((images, labels), alpha=0.2)
    assert model.prediction_set.fitted
    with pytest.warns(UserWarning, match="prediction sets were fitted on the previous "
                                         "calibration and are now reset"):
        model.calibrate((images, labels), method="temperature")
    assert not model.prediction_set.fitted
    assert model.prediction_sets(np.zeros((2, 3))).all()


def test_randomised_sets_are_not_served(model):
    images, labels = labelled_images(model)
    with pytest.raises(ValueError, match="randomised prediction sets .* are not served"):
        model.fit_prediction_sets((images, labels), score="aps", randomized=True)


def test_layer_refuses_bad_thresholds_and_settings():
    layer = PredictionSet(3)
    with pytest.raises(ValueError, match=r"`thresholds` must be 3 numbers or inf"):
        layer.set_thresholds([0.1, 0.2], alpha=0.1, mode="by_class", score="lac")
    with pytest.raises(ValueError, match=r"`score` must be one of 'lac', 'aps', 'raps'"):
        layer.set_thresholds([0.1, 0.2, 0.3], alpha=0.1, mode="by_class", score="hinge")
    with pytest.raises(ValueError, match=r"`mode` must be one of"):
        PredictionSet(3, mode="per_class")
    assert np.asarray(layer(np.zeros((2, 3)))).all()  # unchanged: every class
