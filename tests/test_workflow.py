"""The Python workflow below the command: its config, priors, and the CLI's flag names."""

import ast
import dataclasses
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from calibkeras import cli, workflow
from calibkeras.choices import SCHEDULES
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
        ("zoom", 1.0, r"`zoom` must be a number in \[0, 1\), such as 0.4 \(0: no zoom\); got 1.0"),
        ("fine_tune_schedule", "linear",
         r"`fine_tune_schedule` must be one of 'constant', 'cosine'; got 'linear'"),
        ("fine_tune_ema_momentum", 1.0,
         r"`fine_tune_ema_momentum` must be None or a number in \(0, 1\), such as 0.99"),
        ("early_stopping_patience", -1,
         r"`early_stopping_patience` must be an integer >= 0 or None \(no early stopping\), "
         r"got -1"),
    ],
)
def test_train_config_refuses_bad_values_naming_the_field(field, value, message):
    with pytest.raises(ValueError, match=message):
        workflow.TrainConfig(train_csv="t.csv", output="run", **{field: value})


def test_the_recipe_flags_give_the_config_fields():
    args = cli.build_parser().parse_args([
        "train", "--train-csv", "t.csv", "--output", "run", "--zoom", "0.4",
        "--fine-tune-schedule", "cosine", "--fine-tune-ema-momentum", "0.99",
        "--early-stopping-patience", "none"])
    config = cli._train_config(args)
    assert (config.zoom, config.fine_tune_schedule, config.fine_tune_ema_momentum,
            config.early_stopping_patience) == (0.4, "cosine", 0.99, None)
    args = cli.build_parser().parse_args([
        "train", "--train-csv", "t.csv", "--output", "run", "--early-stopping-patience", "0"])
    assert cli._train_config(args).early_stopping_patience == 0


@pytest.mark.parametrize(
    "sources, message",
    [
        ({}, r"give `train_csv` or `train_dir`: a CSV of image paths and labels, or a folder"),
        ({"train_csv": "t.csv", "train_dir": "d"}, r"give `train_csv` or `train_dir`, not both"),
        ({"train_dir": "d", "val_csv": "v.csv", "val_dir": "v"},
         r"give `val_csv` or `val_dir`, not both"),
    ],
)
def test_train_config_takes_one_source_per_data_set(sources, message):
    with pytest.raises(ValueError, match=message):
        workflow.TrainConfig(output="run", **sources)


def test_train_config_checks_class_names_and_bad_image_reports():
    config = workflow.TrainConfig(train_dir="d", output="run", class_names=["b", "a"])
    assert config.class_names == ("b", "a")
    with pytest.raises(ValueError, match=r"`class_names` must be distinct"):
        workflow.TrainConfig(train_dir="d", output="run", class_names=["a", "a"])
    with pytest.raises(ValueError, match=r"`skip_bad_images` must be False, True or the path"):
        workflow.TrainConfig(train_dir="d", output="run", skip_bad_images="")


def test_choices_need_no_tensorflow_and_are_the_librarys():
    from calibkeras import choices
    from calibkeras.calibration import CALIBRATION_METHODS
    from calibkeras.data import SAMPLING_MODES
    from calibkeras.distribute import STRATEGIES
    from calibkeras.models import CALIBRATIONS, LOSSES

    assert (choices.CALIBRATION_METHODS, choices.CALIBRATIONS, choices.LOSSES,
            choices.SAMPLING_MODES, choices.STRATEGIES) == (
        CALIBRATION_METHODS, CALIBRATIONS, LOSSES, SAMPLING_MODES, STRATEGIES)
    tree = ast.parse(Path(choices.__file__).read_text())
    assert not [node for node in ast.walk(tree) if isinstance(node, ast.Import | ast.ImportFrom)]


def food_folders(root, counts, bad=()):
    """``root/<class>/<k>.jpg`` with ``counts[class]`` food10 JPEGs each, and a file that
    does not decode in each class of ``bad``."""
    from calibkeras.datasets import food10_csv, food10_dir

    rows = pd.read_csv(food10_csv("train"))
    images = [Path(food10_dir()) / path for path in rows["filepath"][: max(counts.values())]]
    for label, count in counts.items():
        (root / label).mkdir(parents=True)
        for k in range(count):
            shutil.copyfile(images[k], root / label / f"{k}.jpg")
        if label in bad:
            (root / label / "broken.jpg").write_text("not a JPEG")
    return root


def test_training_data_from_folders_keep_the_class_order_and_report_skips_apart(tmp_path):
    train_dir = food_folders(tmp_path / "train", {"cake": 3, "soup": 2}, bad=["soup"])
    val_dir = food_folders(tmp_path / "val", {"cake": 1, "soup": 1}, bad=["cake"])
    report = tmp_path / "skipped.csv"
    config = workflow.TrainConfig(train_dir=str(train_dir), val_dir=str(val_dir),
                                  class_names=["soup", "cake"], skip_bad_images=str(report),
                                  output=str(tmp_path / "run"), batch_size=2)
    with pytest.warns(UserWarning, match="Skipped 1 rows"):
        train, val = workflow._training_data(config, (16, 16))
    assert train.class_names == val.class_names == ("soup", "cake")
    np.testing.assert_array_equal(train.class_counts, [2, 3])
    np.testing.assert_array_equal(val.class_counts, [1, 1])
    # One report per data set: the given path for training, <name>.val.csv for validation.
    assert pd.read_csv(report)["path"].tolist() == [str(train_dir / "soup" / "broken.jpg")]
    assert pd.read_csv(tmp_path / "skipped.val.csv")["path"].tolist() == [
        str(val_dir / "cake" / "broken.jpg")]


def test_training_data_from_one_folder_is_split_by_class(tmp_path):
    train_dir = food_folders(tmp_path / "train", {"cake": 5, "soup": 10})
    config = workflow.TrainConfig(train_dir=str(train_dir), output=str(tmp_path / "run"),
                                  val_fraction=0.2, batch_size=4)
    train, val = workflow._training_data(config, (16, 16))
    np.testing.assert_array_equal(train.class_counts, [4, 8])
    np.testing.assert_array_equal(val.class_counts, [1, 2])
    assert not set(train.file_paths) & set(val.file_paths)
    assert train.class_names == val.class_names == ("cake", "soup")


def test_training_data_from_one_csv_is_the_stratified_split_of_its_rows(tmp_path):
    from calibkeras.data import stratified_split
    from calibkeras.datasets import food10_csv, food10_dir

    rows = pd.read_csv(food10_csv("val")).groupby("label", group_keys=False).head(3)
    rows.to_csv(tmp_path / "train.csv", index=False)
    config = workflow.TrainConfig(train_csv=str(tmp_path / "train.csv"), image_root=food10_dir(),
                                  output=str(tmp_path / "run"), val_fraction=0.34)
    train, val = workflow._training_data(config, (16, 16))
    # The split of the checked images is the split of the CSV's rows (same seed).
    expected_train, expected_val = stratified_split(rows.reset_index(drop=True),
                                                    val_fraction=0.34, seed=0)
    as_paths = [os.path.join(food10_dir(), path) for path in expected_val["filepath"]]
    assert list(val.file_paths) == as_paths
    assert train.num_examples == len(expected_train) == 20 and val.num_examples == 10


@pytest.mark.parametrize("kind", ["csv", "dir"])
def test_validation_data_lacking_a_training_class_names_it_and_the_fix(tmp_path, kind):
    train_dir = food_folders(tmp_path / "train", {"cake": 2, "soup": 2, "tea": 2})
    val_dir = food_folders(tmp_path / "val", {"cake": 1, "tea": 1})
    if kind == "csv":
        rows = [(str(path), path.parent.name) for path in sorted(val_dir.rglob("*.jpg"))]
        val = tmp_path / "val.csv"
        pd.DataFrame(rows, columns=["filepath", "label"]).to_csv(val, index=False)
    else:
        val = val_dir
    config = workflow.TrainConfig(train_dir=str(train_dir), output=str(tmp_path / "run"),
                                  **{f"val_{kind}": str(val)})
    with pytest.raises(ValueError) as error:
        workflow._training_data(config, (16, 16))
    assert str(error.value) == (
        f"`val_{kind}` '{val}' has no images of the training class 'soup', and the "
        f"calibration is fitted on every class: add images of it to `val_{kind}`, or leave "
        f"`val_{kind}` out to hold out `val_fraction` of each training class instead")
    flags = cli._flag_names(cli.build_parser(), "train")
    assert cli._in_flags(str(error.value), flags).startswith(f"`--val-{kind}` '{val}' has no")
    assert "`--val-fraction` of each" in cli._in_flags(str(error.value), flags)


def test_a_calibration_on_few_validation_images_warns_with_the_numbers():
    from types import SimpleNamespace

    fit = SimpleNamespace(method="temperature", temperature=9.137)
    few = SimpleNamespace(num_examples=20, num_classes=10)
    with pytest.warns(UserWarning) as record:
        workflow._warn_if_few_for_calibration(few, fit)
    assert str(record[0].message) == (
        "the calibration (temperature, T = 9.14) was fitted on 20 validation images for 10 "
        "classes (2.0 per class on average, fewer than 10): the fit is uncertain; give more "
        "validation images (`val_csv` or `val_dir`, or a larger `val_fraction`)")
    enough = SimpleNamespace(num_examples=10 * workflow.MIN_IMAGES_PER_CLASS, num_classes=10)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        workflow._warn_if_few_for_calibration(enough, fit)


def test_mirrored_strategy_says_what_it_runs_on(capsys, tmp_path):
    import warnings

    import tensorflow as tf

    from calibkeras.distribute import describe_strategy, make_strategy

    strategy = make_strategy("mirrored")
    line, on_gpu = describe_strategy("mirrored", strategy)
    devices = [d for d in tf.config.list_logical_devices() if d.device_type == "GPU"]
    if devices:
        assert on_gpu and line.startswith(f"mirrored strategy: {len(devices)} replica")
        return
    assert (line, on_gpu) == ("mirrored strategy: 1 replica (CPU:0)", False)
    # train says it as soon as the strategy exists, before anything else (here: an
    # existing output folder, refused).
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("earlier work")
    taken = workflow.TrainConfig(train_dir=str(tmp_path), output=str(tmp_path / "taken"),
                                 strategy="mirrored")
    with pytest.warns(UserWarning, match=r"^mirrored strategy: 1 replica \(CPU:0\): no GPU"):
        with pytest.raises((OSError, ValueError), match="already exists"):
            workflow.train(taken)
    config = workflow.TrainConfig(train_dir="d", output="run", strategy="mirrored",
                                  verbose=False)
    with pytest.warns(UserWarning, match=r"^mirrored strategy: 1 replica \(CPU:0\): no GPU "
                                         r"found, so nothing is mirrored; it trains as "
                                         r"`strategy` 'default' would$"):
        workflow._say_strategy(config, line, on_gpu)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        workflow._say_strategy(dataclasses.replace(config, verbose=True),
                               "mirrored strategy: 2 replicas (GPU:0, GPU:1)", True)
    assert capsys.readouterr().out == "mirrored strategy: 2 replicas (GPU:0, GPU:1)\n"


def test_command_choices_come_from_the_workflow():
    parser = cli.build_parser()
    train = next(a for a in parser._actions if a.dest == "command").choices["train"]
    choices = {a.dest: tuple(a.choices) for a in train._actions if a.choices}
    assert choices == {"loss": workflow.LOSSES, "sampling": workflow.SAMPLINGS,
                       "strategy": workflow.STRATEGIES, "calibration": workflow.CALIBRATIONS,
                       "conformal": workflow.CONFORMAL_MODES,
                       "set_score": workflow.CONFORMITY_SCORES,
                       "fine_tune_schedule": SCHEDULES}


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


class _Stop(Exception):
    """Raised by a spy to end a training run once it has seen what it came for."""


def test_the_recipe_options_reach_the_training_and_its_record(tmp_path, monkeypatch):
    import calibkeras.data.pipeline
    import calibkeras.models
    from calibkeras.datasets import food10_csv, food10_dir

    zooms, recipe = [], {}
    build_augmentation = calibkeras.data.pipeline.build_augmentation

    def augmentation_spy(**kwargs):
        zooms.append(kwargs["zoom"])
        return build_augmentation(**kwargs)

    def fit_spy(*args, **kwargs):
        recipe.update(kwargs)
        raise _Stop

    monkeypatch.setattr(calibkeras.data.pipeline, "build_augmentation", augmentation_spy)
    monkeypatch.setattr(calibkeras.models, "fit_calibrated", fit_spy)
    rows = pd.read_csv(food10_csv("val")).groupby("label", group_keys=False).head(2)
    rows.to_csv(tmp_path / "train.csv", index=False)
    options = {"zoom": 0.3, "fine_tune_schedule": "cosine", "fine_tune_ema_momentum": 0.5,
               "early_stopping_patience": None}
    config = workflow.TrainConfig(
        train_csv=str(tmp_path / "train.csv"), val_csv=str(tmp_path / "train.csv"),
        image_root=food10_dir(), output=str(tmp_path / "run"), image_size=32, weights=None,
        epochs=0, fine_tune_epochs=1, verbose=False, **options)
    with pytest.raises(_Stop):
        workflow.train(config)
    assert zooms == [0.3]  # the training data only; validation is not augmented
    fine_tuning = ("fine_tune_schedule", "fine_tune_ema_momentum", "early_stopping_patience")
    assert {name: recipe[name] for name in fine_tuning} == {
        "fine_tune_schedule": "cosine", "fine_tune_ema_momentum": 0.5,
        "early_stopping_patience": None}
    assert not (tmp_path / "run").exists()
    settings = workflow._recipe_settings(config)
    assert {name: settings[name] for name in options} == options
    assert settings["train_csv"] == settings["val_csv"] == str(tmp_path / "train.csv")
    assert settings["train_dir"] is None
    json.dumps(settings)  # calibration.json can hold it
