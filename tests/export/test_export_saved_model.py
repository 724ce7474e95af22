import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st
from tiny_models import tiny_classifier

from calibkeras.calibration import adjust_to_prior, estimate_prior
from calibkeras.data.preprocessing import decode_images
from calibkeras.export import (
    SIGNATURE_NAMES,
    ServingSession,
    export_saved_model,
    read_export_metadata,
)
from calibkeras.export import saved_model as saved_model_module

ATOL = 1e-5


def softmax(logits):
    logits = np.asarray(logits, dtype=np.float64)
    z = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def numpy_expected_costs(probs, cost_matrix, abstain_cost=None):
    costs = np.asarray(probs, np.float64) @ np.asarray(cost_matrix, np.float64).T
    if abstain_cost is not None:
        costs = np.concatenate([costs, np.full((len(costs), 1), abstain_cost)], axis=1)
    return costs


def assert_optimal(chosen, scores, maximise=False):
    """Chosen ids are best (argmin/argmax) up to float32 near-ties."""
    scores = np.asarray(scores, np.float64)
    picked = scores[np.arange(len(scores)), np.asarray(chosen)]
    best = scores.max(axis=1) if maximise else scores.min(axis=1)
    gap = best - picked if maximise else picked - best
    assert np.all(gap <= ATOL), (chosen, scores)


def strings(values):
    return [v.decode() for v in values]


def test_layout_and_signature_defs(exported, serving):
    assert sorted(os.listdir(exported)) == ["1"]  # no staging folder left behind
    assert (exported / "1" / "saved_model.pb").is_file()
    assert (exported / "1" / "variables").is_dir()
    assert serving.signature_names == sorted(SIGNATURE_NAMES)
    defs = serving.signature_defs
    dtypes = {
        name: (
            {key: tf.dtypes.as_dtype(t.dtype).name for key, t in d.inputs.items()},
            {key: tf.dtypes.as_dtype(t.dtype).name for key, t in d.outputs.items()},
        )
        for name, d in defs.items()
    }
    class_outputs = {"probabilities": "float32", "classes": "int32", "class_names": "string",
                     "confidence": "float32"}
    assert dtypes["serving_default"] == ({"images": "float32"}, class_outputs)
    assert dtypes["predict_image_bytes"] == ({"image_bytes": "string"}, class_outputs)
    assert dtypes["decide"] == (
        {"images": "float32"},
        {"decision": "int32", "decision_names": "string", "expected_cost": "float32",
         "probabilities": "float32"},
    )
    assert dtypes["decide_with_costs"] == (
        {"images": "float32", "cost_matrix": "float32", "log_prior": "float32"},
        {"decision": "int32", "expected_cost": "float32", "probabilities": "float32"},
    )


def test_metadata_travels_inside_the_saved_model(tiny, exported):
    metadata = read_export_metadata(exported)
    assert metadata["class_names"] == tiny.class_names
    assert metadata["image_size"] == (16, 16)
    assert metadata["temperature"] == pytest.approx(1.7, rel=1e-6)
    np.testing.assert_allclose(metadata["prior"], np.array(tiny.class_counts) / 100, rtol=1e-6)
    np.testing.assert_allclose(metadata["cost_matrix"], tiny.cost_matrix, rtol=1e-7)
    assert metadata["abstain_cost"] == pytest.approx(tiny.abstain_cost)
    assert metadata["action_names"] == ["0", "1", "2", "3", "abstain"]


def test_metadata_equals_what_tf_saved_model_load_finds(exported):
    # The reader goes through the checkpoint's object graph; the reference loads the
    # whole SavedModel and reads the collections as attributes.
    loaded = tf.saved_model.load(str(exported / "1"))
    metadata = read_export_metadata(exported)
    first = {name: list(getattr(loaded, name))[0].numpy() for name in (
        "deployment_log_prior", "cost_matrix", "calibration_scale", "training_log_prior",
        "prediction_set_thresholds", "estimate_dirichlet", "max_image_pixels")}
    np.testing.assert_array_equal(metadata["log_prior"], first["deployment_log_prior"])
    np.testing.assert_array_equal(metadata["cost_matrix"], first["cost_matrix"])
    np.testing.assert_array_equal(metadata["calibration_scale"], first["calibration_scale"])
    np.testing.assert_array_equal(metadata["training_log_prior"], first["training_log_prior"])
    np.testing.assert_array_equal(metadata["prediction_set_thresholds"],
                                  first["prediction_set_thresholds"])
    assert metadata["estimate_dirichlet"] == first["estimate_dirichlet"]
    assert metadata["max_image_pixels"] == first["max_image_pixels"]


def test_metadata_of_an_export_without_the_newer_collections(tmp_path):
    # A calibkeras 0.1 export carries only these collections: the others read as None
    # or as what 0.1 meant (scale 1 / T, bias 0).
    module = tf.Module()
    module.class_names = [tf.Variable(["a", "b"], dtype=tf.string)]
    module.image_size = [tf.Variable([8, 8], dtype=tf.int32)]
    module.log_temperature = [tf.Variable(np.log(2.0), dtype=tf.float32)]
    module.deployment_log_prior = [tf.Variable(np.log([0.25, 0.75]), dtype=tf.float32)]
    module.cost_matrix = [tf.Variable(1 - np.eye(2), dtype=tf.float32)]
    module.abstain_cost = []
    module.action_names = [tf.Variable(["a", "b"], dtype=tf.string)]
    module.serve = tf.function(lambda x: {"y": x * 2.0},
                               input_signature=[tf.TensorSpec([None], tf.float32)])
    tf.saved_model.save(module, str(tmp_path / "1"), signatures={"serving_default": module.serve})
    metadata = read_export_metadata(tmp_path)
    assert metadata["class_names"] == ["a", "b"] and metadata["image_size"] == (8, 8)
    assert metadata["temperature"] == pytest.approx(2.0)
    np.testing.assert_allclose(metadata["prior"], [0.25, 0.75], rtol=1e-6)
    np.testing.assert_array_equal(metadata["calibration_scale"], [0.5, 0.5])
    np.testing.assert_array_equal(metadata["calibration_bias"], [0.0, 0.0])
    for name in ("abstain_cost", "max_image_pixels", "training_log_prior", "estimate_dirichlet",
                 "prediction_set_thresholds", "prediction_set"):
        assert metadata[name] is None, name


def test_serving_default_equals_keras(tiny, serving, sample_images, references):
    out = serving.run("serving_default", images=sample_images)
    probs = references["probs"]
    np.testing.assert_allclose(out["probabilities"], probs, atol=ATOL, rtol=0)
    np.testing.assert_allclose(out["confidence"], probs.max(axis=1), atol=ATOL, rtol=0)
    assert_optimal(out["classes"], probs, maximise=True)
    assert strings(out["class_names"]) == [tiny.class_names[c] for c in out["classes"]]
    assert len(set(out["classes"].tolist())) > 1  # the sample images are not all alike


def _encode(images, fmt):
    pixels = np.clip(np.round(images), 0, 255).astype(np.uint8)
    encode = tf.io.encode_png if fmt == "png" else tf.io.encode_jpeg
    return np.array([encode(image).numpy() for image in pixels], dtype=object)


@pytest.mark.parametrize("fmt, size", [("png", (16, 16)), ("jpeg", (16, 16)), ("png", (24, 20))])
def test_predict_image_bytes_equals_keras_on_the_shared_preprocessing(
    tiny, serving, classifier, sample_images, fmt, size
):
    images = tf.image.resize(sample_images, size).numpy()  # other sizes get resized
    encoded = _encode(images, fmt)
    out = serving.run("predict_image_bytes", image_bytes=encoded)
    decoded = decode_images(tf.constant(encoded), (16, 16))
    probs = softmax(np.asarray(classifier(decoded, training=False)))
    np.testing.assert_allclose(out["probabilities"], probs, atol=ATOL, rtol=0)
    assert_optimal(out["classes"], probs, maximise=True)
    assert strings(out["class_names"]) == [tiny.class_names[c] for c in out["classes"]]


def test_decide_is_the_bayes_action_with_the_exported_costs(
    tiny, serving, sample_images, references
):
    out = serving.run("decide", images=sample_images)
    probs = references["probs"]
    costs = numpy_expected_costs(probs, tiny.cost_matrix, tiny.abstain_cost)
    np.testing.assert_allclose(out["probabilities"], probs, atol=ATOL, rtol=0)
    np.testing.assert_allclose(out["expected_cost"], costs, atol=ATOL, rtol=0)
    assert_optimal(out["decision"], costs)
    names = ["0", "1", "2", "3", "abstain"]
    assert strings(out["decision_names"]) == [names[d] for d in out["decision"]]


@st.composite
def requests(draw):
    num_actions = draw(st.integers(2, 6))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    cost_matrix = rng.uniform(0, 5, size=(num_actions, 3))
    abstain = draw(st.one_of(st.none(), st.floats(0, 5)))
    if abstain is not None:  # abstaining is one more row of constant cost
        cost_matrix = np.vstack([cost_matrix, np.full((1, 3), abstain)])
    prior = rng.dirichlet(np.ones(3)) * 0.98 + 0.02 / 3
    shift = draw(st.floats(-3, 3))  # log priors need not be normalised
    return cost_matrix.astype(np.float32), (np.log(prior) + shift).astype(np.float32)


@settings(max_examples=25, deadline=None)
@given(request_data=requests())
def test_decide_with_costs_is_argmin_of_expected_cost(serving, sample_images, references,
                                                      request_data):
    cost_matrix, log_prior = request_data
    out = serving.run("decide_with_costs", images=sample_images, cost_matrix=cost_matrix,
                      log_prior=log_prior)
    probs = softmax(references["scaled_logits"] + log_prior)
    costs = numpy_expected_costs(probs, cost_matrix)
    np.testing.assert_allclose(out["probabilities"], probs, atol=ATOL, rtol=0)
    np.testing.assert_allclose(out["expected_cost"], costs, atol=ATOL, rtol=0)
    assert_optimal(out["decision"], costs)


def test_decide_with_costs_and_the_model_prior_reproduces_the_model(serving, sample_images,
                                                                    references):
    out = serving.run("decide_with_costs", images=sample_images,
                      cost_matrix=(1 - np.eye(3)).astype(np.float32),
                      log_prior=references["log_prior"])
    np.testing.assert_allclose(out["probabilities"], references["probs"], atol=ATOL, rtol=0)
    assert_optimal(out["decision"], references["probs"], maximise=True)


def test_default_costs_are_zero_one_and_prior_option_leaves_the_model_alone(
    tiny, classifier, sample_images, references, tmp_path
):
    before = classifier.prior_shift.prior.copy()
    path = export_saved_model(classifier, tmp_path / "m", version=3, prior="uniform")
    assert path == os.fspath(tmp_path / "m" / "3")
    np.testing.assert_array_equal(classifier.prior_shift.prior, before)
    probs = softmax(references["scaled_logits"] + np.log(1 / 3))  # uniform prior
    with ServingSession(path) as session:
        decide = session.run("decide", images=sample_images)
        default = session.run("serving_default", images=sample_images)
    np.testing.assert_allclose(decide["probabilities"], probs, atol=ATOL, rtol=0)
    np.testing.assert_allclose(default["probabilities"], probs, atol=ATOL, rtol=0)
    np.testing.assert_allclose(decide["expected_cost"], 1 - probs, atol=ATOL, rtol=0)
    assert_optimal(decide["decision"], probs, maximise=True)
    names = [tiny.class_names[d] for d in decide["decision"]]
    assert strings(decide["decision_names"]) == names
    metadata = read_export_metadata(tmp_path / "m")
    np.testing.assert_allclose(metadata["prior"], [1 / 3] * 3, rtol=1e-6)
    assert metadata["abstain_cost"] is None
    np.testing.assert_array_equal(metadata["cost_matrix"], 1 - np.eye(3))


def _synthetic_calibrated_probs(train_prior, true_prior, size, seed):
    """Posteriors under `train_prior` of 1-D Gaussian classes drawn with `true_prior`."""
    rng = np.random.default_rng(seed)
    means = np.array([-2.0, 0.0, 2.0])
    labels = rng.choice(3, size=size, p=true_prior)
    x = rng.normal(means[labels], 1.0)
    likelihood = np.exp(-0.5 * (x[:, None] - means[None, :]) ** 2)
    joint = likelihood * train_prior
    return joint / joint.sum(axis=1, keepdims=True)


def test_prior_shift_set_from_estimate_prior_changes_decide(
    tiny, classifier, sample_images, references, tmp_path
):
    train_prior = np.array(tiny.class_counts) / np.sum(tiny.class_counts)
    true_prior = np.array([0.1, 0.2, 0.7])
    estimate = estimate_prior(
        _synthetic_calibrated_probs(train_prior, true_prior, 4000, seed=5), train_prior
    )
    assert np.abs(estimate.prior - true_prior).sum() < 0.05
    model = tiny.build_classifier()  # same weights as the shared classifier, its own PriorShift
    model.set_prior(estimate.prior)
    costs = {"cost_matrix": tiny.cost_matrix, "abstain_cost": tiny.abstain_cost}
    path = export_saved_model(model, tmp_path / "m", version=1, **costs)
    # The same prior through the `prior=` argument, with the unchanged shared model.
    path_2 = export_saved_model(classifier, tmp_path / "m", version=2, prior=estimate, **costs)
    with ServingSession(path) as session:
        out = session.run("decide", images=sample_images)
    with ServingSession(path_2) as session:
        out_2 = session.run("decide", images=sample_images)
    for key in out:
        np.testing.assert_array_equal(out_2[key], out[key])
    old_probs = references["probs"]
    new_probs = adjust_to_prior(old_probs, train_prior, estimate.prior)
    np.testing.assert_allclose(out["probabilities"], new_probs, atol=ATOL, rtol=0)
    costs = numpy_expected_costs(new_probs, tiny.cost_matrix, tiny.abstain_cost)
    np.testing.assert_allclose(out["expected_cost"], costs, atol=ATOL, rtol=0)
    assert_optimal(out["decision"], costs)
    old_costs = numpy_expected_costs(old_probs, tiny.cost_matrix, tiny.abstain_cost)
    assert np.any(out["decision"] != old_costs.argmin(axis=1))  # the prior moved decisions
    np.testing.assert_allclose(read_export_metadata(path)["prior"], estimate.prior, rtol=1e-5)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"cost_matrix": [[0, np.nan, 1], [1, 0, 1]]}, ValueError,
         r"`cost_matrix` must be finite; found nan at row 0, column 1"),
        ({"cost_matrix": [[0, -1, 1], [1, 0, 1]]}, ValueError,
         r"`cost_matrix` must be non-negative"),
        ({"cost_matrix": [[0, 1], [1, 0]]}, ValueError,
         r"`cost_matrix` must have 3 columns \(one per class of the model\), got shape \(2, 2\)"),
        ({"cost_matrix": [0, 1, 1]}, ValueError, r"`cost_matrix` must be a 2-D array"),
        ({"abstain_cost": -0.5}, ValueError, r"`abstain_cost` must be None or a non-negative"),
        ({"prior": [0.5, 0.6, 0.1]}, ValueError, r"`prior` must sum to 1, got sum 1.2"),
        ({"prior": [0.5, 0.5]}, ValueError, r"`prior` must have 3 entries"),
        ({"prior": [0.5, 0.5, 0.0]}, ValueError, r"every entry of `prior` must be a positive"),
        ({"prior": "balanced"}, ValueError,
         r"`prior` must be one of 'uniform', 'training', 'labels', 'estimate' \(or 'train', "
         r"'validation'\), a mapping from class name to probability, or 3 probabilities; "
         r"got 'balanced'"),
        ({"prior": "estimate"}, ValueError, r"`prior` 'estimate' needs images to estimate it"),
        ({"prior": "labels"}, ValueError, r"`prior` 'labels' needs labelled data"),
        ({"prior": {"food": 0.5, "drink": 0.3, "cake": 0.2}}, ValueError,
         r"`prior` names unknown classes \['cake'\] and misses \['dessert'\]; the classes "
         r"are \['food', 'drink', 'dessert'\]"),
        ({"version": 0}, ValueError, r"`version` must be a positive integer, got 0"),
        ({"version": "1"}, ValueError, r"`version` must be a positive integer, got '1'"),
        ({"action_names": ["a", "b"]}, ValueError, r"`action_names` must have 3 entries"),
    ],
)
def test_bad_export_arguments_write_nothing(classifier, tmp_path, kwargs, error, message):
    with pytest.raises(error, match=message):
        export_saved_model(classifier, tmp_path / "m", **kwargs)
    assert not (tmp_path / "m").exists()


def test_prior_by_class_name_is_resolved_for_the_export_only(tiny, classifier):
    before = classifier.prior_shift.prior.copy()
    log_prior = saved_model_module._deployment_log_prior(
        classifier, {"dessert": 0.1, "food": 0.6, "drink": 0.3}
    )
    np.testing.assert_allclose(log_prior, np.log([0.6, 0.3, 0.1]), rtol=1e-6)
    np.testing.assert_allclose(saved_model_module._deployment_log_prior(classifier, "train"),
                               np.log(np.array(tiny.class_counts) / 100), rtol=1e-6)
    np.testing.assert_array_equal(classifier.prior_shift.prior, before)


CALIBRATED_CLASSIFIER_ONLY = (
    r"`model` must be a calibkeras CalibratedClassifier \(from build_classifier or "
    r"load_classifier\), got Functional 'plain'; a model saved by calibkeras 0.1 becomes one "
    r"with load_classifier\(path\) or CalibratedClassifier.from_functional\(model\)"
)


def _hand_made_0_1_layout():
    """A plain functional model with the 0.1 layers: no longer taken as it is."""
    from calibkeras.layers.prior_shift import PriorShift
    from calibkeras.layers.temperature_scaling import TemperatureScaling

    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Dense(3, name="logits")(keras.layers.GlobalAveragePooling2D()(inputs))
    x = PriorShift(num_classes=3, name="prior_shift")(TemperatureScaling(name="temperature")(x))
    return keras.Model(inputs, x, name="plain")


def test_models_outside_the_contract_are_rejected(tmp_path):
    inputs = keras.Input((8, 8, 3))
    plain = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Flatten()(inputs)),
                        name="plain")
    for model in (plain, _hand_made_0_1_layout()):
        with pytest.raises(ValueError, match=CALIBRATED_CLASSIFIER_ONLY):
            export_saved_model(model, tmp_path / "m")
    # A CalibratedClassifier of 1-D features is no image classifier: TF Serving's
    # signatures take images.
    features = tiny_classifier(input_shape=(6,), temperature=1.5, name="features")
    with pytest.raises(ValueError, match=r"'features' takes inputs of shape \(6,\), not RGB "
                                         r"images \(height, width, 3\)"):
        export_saved_model(features, tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_unfitted_calibration_warns(tiny, tmp_path):
    (tmp_path / "m" / "1").mkdir(parents=True)
    (tmp_path / "m" / "1" / "saved_model.pb").write_text("an earlier export")
    with pytest.warns(UserWarning, match=r"calibration of .* was never fitted"):
        with pytest.raises(FileExistsError):
            export_saved_model(tiny.build_classifier(temperature=None), tmp_path / "m")


def test_existing_version_needs_overwrite_and_is_replaced_whole(classifier, tmp_path):
    version = tmp_path / "m" / "1"
    version.mkdir(parents=True)
    (version / "old_marker").write_text("previous export")
    with pytest.raises(FileExistsError, match=r"already exists and is not empty; .*overwrite=True"):
        export_saved_model(classifier, tmp_path / "m")
    # Without saved_model.pb it is not a SavedModel version folder: overwrite refuses it.
    with pytest.raises(FileExistsError, match=r"is not a SavedModel version folder \(with "
                                              r"saved_model.pb\), so overwrite=True"):
        export_saved_model(classifier, tmp_path / "m", overwrite=True)
    assert sorted(os.listdir(version)) == ["old_marker"]
    (version / "saved_model.pb").write_text("previous export")
    export_saved_model(classifier, tmp_path / "m", overwrite=True)
    assert sorted(os.listdir(version)) == ["assets", "fingerprint.pb", "saved_model.pb",
                                           "variables"]
    assert sorted(os.listdir(tmp_path / "m")) == ["1"]


class _FailingArchive:
    def write_out(self, filepath, verbose=False):
        with open(os.path.join(filepath, "saved_model.pb"), "w") as f:
            f.write("half written")
        raise OSError("disk full")


@pytest.mark.parametrize("existing", [False, True])
def test_a_failed_write_leaves_nothing_half_written(classifier, tmp_path, monkeypatch, existing):
    monkeypatch.setattr(saved_model_module, "_build_archive", lambda *a: _FailingArchive())
    version = tmp_path / "m" / "1"
    if existing:
        version.mkdir(parents=True)
        (version / "old_marker").write_text("previous export")
        (version / "saved_model.pb").write_text("previous export")
    with pytest.raises(OSError, match="disk full"):
        export_saved_model(classifier, tmp_path / "m", overwrite=True)
    assert sorted(os.listdir(tmp_path / "m")) == (["1"] if existing else [])
    if existing:
        assert sorted(os.listdir(version)) == ["old_marker", "saved_model.pb"]
