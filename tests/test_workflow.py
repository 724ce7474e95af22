"""The Python workflow below the command: its config, priors, and the CLI's flag names."""

import dataclasses
import json

import numpy as np
import pytest

from calibkeras import cli, workflow
from calibkeras.models import CalibratedClassifier


def test_train_config_defaults_are_the_commands():
    config = workflow.TrainConfig(train_csv="t.csv", output="run")
    args = cli.build_parser().parse_args(["train", "--train-csv", "t.csv", "--output", "run"])
    assert cli._train_config(args) == dataclasses.replace(config, verbose=True)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.epochs = 3


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("epochs", -1, r"`epochs` must be an integer >= 0, got -1"),
        ("val_fraction", 0.0, r"`val_fraction` must be a number in \(0, 1\], got 0.0"),
        ("loss", "hinge", r"`loss` must be one of"),
        ("image_size", 0, r"`image_size` must be a positive integer"),
        ("learning_rate", 0, r"`learning_rate` must be a positive finite number, got 0"),
    ],
)
def test_train_config_refuses_bad_values_naming_the_field(field, value, message):
    with pytest.raises(ValueError, match=message):
        workflow.TrainConfig(train_csv="t.csv", output="run", **{field: value})


def test_command_choices_come_from_the_workflow():
    parser = cli.build_parser()
    train = next(a for a in parser._actions if a.dest == "command").choices["train"]
    choices = {a.dest: tuple(a.choices) for a in train._actions if a.choices}
    assert choices == {"loss": workflow.LOSSES, "sampling": workflow.SAMPLINGS,
                       "strategy": workflow.STRATEGIES, "calibration": workflow.CALIBRATIONS}


def test_library_argument_names_become_flags_in_messages():
    flags = cli._flag_names(cli.build_parser(), "evaluate")
    message = "`json_path` 'x' already exists; `image_root` is bad; `labels` stays"
    assert cli._in_flags(message, flags) == (
        "`--json` 'x' already exists; `--image-root` is bad; `labels` stays"
    )


@pytest.fixture(scope="module")
def model():
    import keras

    inputs = keras.Input((4,))
    backbone = keras.Model(inputs, keras.layers.Identity()(inputs))
    model = CalibratedClassifier(backbone, 3, class_counts=[6, 3, 1],
                                 class_names=["cake", "soda", "soup"], prior=[0.2, 0.3, 0.5])
    return model


def test_deployment_prior_vocabulary(model, tmp_path):
    vector, name, *_ = workflow.deployment_prior(model, "model")
    np.testing.assert_allclose(vector, [0.2, 0.3, 0.5])
    assert name.startswith("model")
    for spelling in ("train", "training"):
        np.testing.assert_allclose(workflow.deployment_prior(model, spelling)[0], [0.6, 0.3, 0.1])
    np.testing.assert_allclose(workflow.deployment_prior(model, "uniform")[0], [1 / 3] * 3)
    by_name = tmp_path / "by_name.json"
    by_name.write_text(json.dumps({"soup": 0.1, "cake": 0.7, "soda": 0.2}))
    np.testing.assert_allclose(workflow.deployment_prior(model, str(by_name))[0], [0.7, 0.2, 0.1])
    wrapped = tmp_path / "wrapped.json"
    wrapped.write_text(json.dumps({"prior": [0.5, 0.25, 0.25]}))
    np.testing.assert_allclose(workflow.deployment_prior(model, str(wrapped))[0],
                               [0.5, 0.25, 0.25])


def test_deployment_prior_errors_name_the_argument(model, tmp_path):
    with pytest.raises(ValueError, match=r"`prior` must be model, train, uniform, estimate"):
        workflow.deployment_prior(model, "balanced")
    with pytest.raises(ValueError, match=r"`prior` 'estimate' needs labelled or unlabelled"):
        workflow.deployment_prior(model, "estimate")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"cake": 0.5, "tea": 0.5}))
    with pytest.raises(ValueError, match=r"`prior` file '.*bad.json': .*unknown classes \['tea'\]"):
        workflow.deployment_prior(model, str(bad))
    with pytest.raises(FileNotFoundError, match=r"`prior` file '.*missing.json' does not exist"):
        workflow.deployment_prior(model, str(tmp_path / "missing.json"))


def test_estimated_prior_is_em_on_the_calibrated_posteriors(model):
    from scipy.stats import chi2

    from calibkeras.calibration import estimate_prior

    rng = np.random.default_rng(0)
    logits = rng.normal(size=(200, 3)).astype("float32") * 2
    choice = workflow.deployment_prior(model, "estimate", logits)
    z = logits.astype(np.float64) + np.log([0.6, 0.3, 0.1])
    posteriors = np.exp(z - z.max(axis=1, keepdims=True))
    posteriors /= posteriors.sum(axis=1, keepdims=True)
    expected = estimate_prior(posteriors, [0.6, 0.3, 0.1])
    np.testing.assert_allclose(choice.vector, expected.prior, atol=1e-6)
    assert np.all(choice.estimate.lower <= choice.vector)
    assert np.all(choice.vector <= choice.estimate.upper)
    # The shift test: twice the log-likelihood gain of the ML prior, chi-square, K-1 df.
    ml = estimate_prior(posteriors, [0.6, 0.3, 0.1], dirichlet=1.0)
    ratio = ml.prior / np.array([0.6, 0.3, 0.1])
    statistic = 2 * np.log(posteriors @ ratio).sum()
    assert choice.shift_test.statistic == pytest.approx(statistic, rel=1e-6)
    assert choice.shift_test.p_value == pytest.approx(chi2.sf(statistic, 2), rel=1e-6)
    assert choice.name.startswith("estimate (EM on 200 images")
    report = workflow.prior_report(model, choice)
    assert set(report["interval_90"]) == {"cake", "soda", "soup"}
    text = workflow.format_prior_report(report)
    assert "90% interval" in text and text.count("\n") == 3


def test_estimate_on_few_images_warns(model):
    logits = np.random.default_rng(1).normal(size=(12, 3)).astype("float32")
    with pytest.warns(UserWarning, match=r"on 12 images for 3 classes \(fewer than 10 per"):
        workflow.deployment_prior(model, "estimate", logits)


def test_reversed_prior_subset_reverses_the_training_prior():
    labels = np.repeat(np.arange(4), 20)
    training = np.array([0.5, 0.05, 0.3, 0.15])
    indices, prior = workflow.reversed_prior_subset(labels, training)
    counts = np.bincount(labels[indices], minlength=4)
    # Largest training class gets the fewest: ranks reversed, the rarest keeps all 20.
    np.testing.assert_array_equal(np.argsort(counts), np.argsort(-training))
    assert counts[1] == 20 and counts[0] == 2  # floor(20 * 0.05 / 0.5) = 2
    np.testing.assert_allclose(prior, counts / counts.sum())
    assert len(set(indices.tolist())) == len(indices)
    again, _ = workflow.reversed_prior_subset(labels, training)
    np.testing.assert_array_equal(again, indices)


def test_demo_table_has_both_views():
    row = {"balanced_accuracy": 0.7, "accuracy": 0.7, "nll": 0.8, "brier": 0.4, "ece": 0.05,
           "ece_perfect_mean": 0.03, "ece_p_value": 0.2, "prior_l1": 0.0}
    rows = [{**row, "view": "balanced", "num_images": 750, "setting": "calibrated, uniform"},
            {**row, "view": "reversed", "num_images": 300, "setting": "EM", "prior_l1": 0.25}]
    text = workflow.format_demo_rows(rows)
    assert "balanced food10 test set (750 images):" in text
    assert "reversed training prior (300 images):" in text
    assert text.count("prior L1") == 3 and "   0.250" in text
