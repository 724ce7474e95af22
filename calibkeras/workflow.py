"""The whole job from Python: train, evaluate, predict, export and demo.

The ``calibkeras`` command only parses its flags into these calls and prints; a Python
user runs the same job with the same defaults::

    from calibkeras import workflow
    result = workflow.train(workflow.TrainConfig(train_csv="train.csv", output="run"))
    summary = workflow.evaluate("run", "test.csv", prior="estimate").summary

A trained model folder (:mod:`calibkeras.model_directory`) holds ``model.keras``,
``calibration.json``, ``saved_model/1/`` and ``report/``. Parameter names are the
command's flags without the dashes (``image_root`` is ``--image-root``).
"""

import dataclasses
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

from calibkeras.data.sampling import SAMPLING_MODES as SAMPLINGS
from calibkeras.distribute.strategies import STRATEGIES
from calibkeras.models.training import CALIBRATIONS, LOSSES
from calibkeras.utils.checks import (
    check_choice,
    check_fraction,
    check_nonnegative_int,
    check_positive_float,
    check_positive_int,
)

__all__ = [
    "DEMO_SETTINGS",
    "DEPLOYMENT_PRIORS",
    "DeploymentPrior",
    "DemoResult",
    "Evaluation",
    "Prediction",
    "calibration_selection",
    "TrainConfig",
    "TrainResult",
    "compare_on_test_set",
    "demo",
    "deployment_prior",
    "evaluate",
    "export",
    "format_demo_rows",
    "format_prior_report",
    "load_labelled_csv",
    "predict",
    "prior_report",
    "read_costs",
    "reversed_prior_subset",
    "train",
]

#: ``prior`` values of evaluate/predict/export besides a JSON file: "model" keeps the
#: prior saved with the model; the others are calibkeras.priors.resolve_prior's.
DEPLOYMENT_PRIORS = ("model", "training", "train", "uniform", "estimate")
PRIOR_CHOICES = "model, train, uniform, estimate or a JSON file"

#: Settings of ``demo`` (full) and ``demo(quick=True)``.
DEMO_SETTINGS = {
    "full": {"image_size": 224, "epochs": 5, "fine_tune_epochs": 6},
    "quick": {"image_size": 96, "epochs": 3, "fine_tune_epochs": 0},
}


@dataclasses.dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """What :func:`train` does; every field is a flag of ``calibkeras train``.

    Attributes:
        train_csv: CSV of training images and labels.
        output: the model folder to write.
        val_csv: validation CSV for the calibration (default: a stratified split of
            ``train_csv``, see ``val_fraction``).
        val_fraction: share of each class held out without ``val_csv``, in (0, 1].
        image_root: folder relative image paths start from (default: the CSV's).
        image_column, label_column: CSV columns (default ``filepath`` and ``label``).
        backbone: ``efficientnet_lite0`` (default) or a keras.applications EfficientNet.
        weights: ``"imagenet"`` (default), None (random) or a ``.weights.h5`` file.
        image_size: square image size in pixels (default 224).
        batch_size: global batch size (default 32).
        epochs: epochs of head training, backbone frozen (default 5).
        fine_tune_epochs: at most this many epochs of fine-tuning (default 6), stopped
            early when the validation NLL stops improving.
        fine_tune_fraction: share of backbone layers to fine-tune, from the top.
        learning_rate: head learning rate; fine-tuning uses a tenth (default 1e-3).
        calibration: ``"auto"`` (default: temperature, bias-corrected or vector scaling,
            chosen by cross-validated NLL on the validation data) or one of them.
        loss: one of :data:`LOSSES` (default ``logit_adjusted``).
        sampling: one of :data:`SAMPLINGS` (default ``natural``).
        seed: random seed (default 0).
        strategy: one of :data:`STRATEGIES` (default ``default``).
        overwrite: replace an existing model folder that calibkeras wrote.
        verbose: print progress (default True).

    Example:
    >>> TrainConfig(train_csv="train.csv", output="run", epochs=0).fine_tune_epochs
    6
    """

    train_csv: str
    output: str
    val_csv: str | None = None
    val_fraction: float = 0.2
    image_root: str | None = None
    image_column: str = "filepath"
    label_column: str = "label"
    backbone: str = "efficientnet_lite0"
    weights: str | None = "imagenet"
    image_size: int = 224
    batch_size: int = 32
    epochs: int = 5
    fine_tune_epochs: int = 6
    fine_tune_fraction: float = 1.0
    learning_rate: float = 1e-3
    calibration: str = "auto"
    loss: str = "logit_adjusted"
    sampling: str = "natural"
    seed: int = 0
    strategy: str = "default"
    overwrite: bool = False
    verbose: bool = True

    def __post_init__(self):
        check_positive_int(self.image_size, "image_size")
        check_positive_int(self.batch_size, "batch_size")
        check_nonnegative_int(self.epochs, "epochs")
        check_nonnegative_int(self.fine_tune_epochs, "fine_tune_epochs")
        check_fraction(self.val_fraction, "val_fraction")
        check_fraction(self.fine_tune_fraction, "fine_tune_fraction")
        check_positive_float(self.learning_rate, "learning_rate")
        check_choice(self.loss, "loss", LOSSES)
        check_choice(self.calibration, "calibration", CALIBRATIONS)
        check_choice(self.sampling, "sampling", SAMPLINGS)
        check_choice(self.strategy, "strategy", STRATEGIES)


class TrainResult(NamedTuple):
    """What :func:`train` returns: the model, its calibration.json record, and
    whatever the ``evaluation`` callable returned (None without one)."""

    model: object
    record: dict
    extra: object


class Evaluation(NamedTuple):
    """What :func:`evaluate` returns: the summary (scores), probabilities, labels and
    the data scored."""

    summary: dict
    probs: object
    labels: object
    data: object


class Prediction(NamedTuple):
    """What :func:`predict` returns: the prior (:func:`prior_report`) and one dict per
    image (``image``, ``top_k``, ``decision``, ``expected_costs`` of every action,
    ``probabilities``)."""

    prior: dict
    predictions: list


class DemoResult(NamedTuple):
    """What :func:`demo` returns: the four scored settings and the seconds it took."""

    rows: list
    seconds: float


def _say(verbose, text):
    if verbose:
        print(text, flush=True)


def read_json(path, argument):
    """The JSON content of ``path``; errors name ``argument``."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"`{argument}` file '{path}' does not exist") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"`{argument}` file '{path}' is not valid JSON: {error}") from None


def read_costs(path):
    """``(cost_matrix, abstain_cost, action_names)`` from a costs JSON file, or Nones."""
    if path is None:
        return None, None, None
    costs = read_json(path, "costs")
    if not isinstance(costs, dict) or "cost_matrix" not in costs:
        raise ValueError(
            f"`costs` file '{path}' must hold an object with a \"cost_matrix\" entry, e.g. "
            '{"cost_matrix": [[0, 1], [5, 0]], "abstain_cost": 0.5}'
        )
    return costs["cost_matrix"], costs.get("abstain_cost"), costs.get("action_names")


class DeploymentPrior(NamedTuple):
    """A prior of evaluate/predict/export: the vector, its description and, for
    ``"estimate"``, the :class:`calibkeras.priors.PriorEstimate` (with a 90% bootstrap
    interval) and the :class:`calibkeras.priors.PriorShiftTest` against the training
    prior."""

    vector: object
    name: str
    estimate: object = None
    shift_test: object = None


#: Fewer images per class than this make an estimated prior too uncertain to trust.
MIN_IMAGES_PER_CLASS = 10


def deployment_prior(model, prior, logits=None):
    """The :class:`DeploymentPrior` of a ``prior`` of evaluate/predict/export.

    Args:
        model: the :class:`calibkeras.models.CalibratedClassifier`.
        prior: ``"model"`` (the prior saved with the model), ``"training"``/``"train"``,
            ``"uniform"``, ``"estimate"`` (EM on ``logits``), or the path of a JSON file
            ``{"prior": [...]}``, ``[...]`` or ``{"class name": probability, ...}``.
        logits: balanced logits of the images at hand, for ``"estimate"``.

    Warns:
        UserWarning: ``"estimate"`` on fewer than ``MIN_IMAGES_PER_CLASS`` images per
            class.
    """
    if prior == "model":
        return DeploymentPrior(model.prior_shift.prior, "model (saved with the model)")
    if prior == "estimate":
        return _estimated_prior(model, logits)
    if isinstance(prior, str) and prior in DEPLOYMENT_PRIORS:
        return DeploymentPrior(model.resolve_prior(prior), prior)
    if not (isinstance(prior, str) and prior.endswith(".json")):
        raise ValueError(f"`prior` must be {PRIOR_CHOICES}, got {prior!r}")
    payload = read_json(prior, "prior")
    if isinstance(payload, dict) and "prior" in payload:
        payload = payload["prior"]
    try:
        return DeploymentPrior(model.resolve_prior(payload), prior)
    except ValueError as error:
        raise ValueError(f"`prior` file '{prior}': {error}") from None


def _estimated_prior(model, logits):
    import warnings

    from calibkeras.priors import prior_shift_test

    if logits is None:
        raise ValueError("`prior` 'estimate' needs labelled or unlabelled images to run on")
    num_images, num_classes = logits.shape
    if num_images < MIN_IMAGES_PER_CLASS * num_classes:
        warnings.warn(
            f"`prior` 'estimate' on {num_images} images for {num_classes} classes (fewer "
            f"than {MIN_IMAGES_PER_CLASS} per class): the estimated prior is uncertain; "
            "see its interval",
            UserWarning,
            stacklevel=3,
        )
    estimate = model.estimate_prior(logits, interval=0.9)
    training = model.prior_shift.training_prior
    test = prior_shift_test(model.probabilities(logits, training), training)
    name = (f"estimate (EM on {num_images} images; against the training prior: "
            f"likelihood-ratio statistic {test.statistic:.1f}, p = {test.p_value:.2g})")
    return DeploymentPrior(estimate.prior, name, estimate, test)


def prior_report(model, choice):
    """JSON-ready facts of a :class:`DeploymentPrior`: per class the prior and, for an
    estimate, its 90% interval; and the shift test."""
    report = {"name": choice.name,
              "prior": dict(zip(model.class_names, map(float, choice.vector), strict=True))}
    if choice.estimate is not None:
        report["interval_90"] = {
            name: [float(low), float(high)]
            for name, low, high in zip(model.class_names, choice.estimate.lower,
                                       choice.estimate.upper, strict=True)
        }
        report["shift_test"] = {key: float(getattr(choice.shift_test, key))
                                for key in ("statistic", "df", "p_value")}
    return report


def format_prior_report(report):
    """The lines the command prints for a :func:`prior_report`."""
    lines = [f"prior: {report['name']}"]
    intervals = report.get("interval_90")
    width = max(len(name) for name in report["prior"])
    for name, value in report["prior"].items():
        extra = ""
        if intervals:
            low, high = intervals[name]
            extra = f"  (90% interval {low:.3f} .. {high:.3f})"
        lines.append(f"  {name.ljust(width)}  {value:.3f}{extra}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- training


def _training_data(config, image_size):
    """Training and validation LabeledDatasets of a :class:`TrainConfig`."""
    from calibkeras.data import dataset_from_csv, dataset_from_dataframe, stratified_split

    common = {
        "image_column": config.image_column,
        "label_column": config.label_column,
        "image_size": image_size,
        "batch_size": config.batch_size,
    }
    training = {"shuffle": True, "augment": True, "seed": config.seed,
                "sampling": config.sampling, "cache": True}
    if config.val_csv:
        train = dataset_from_csv(config.train_csv, image_root=config.image_root,
                                 **common, **training)
        val = dataset_from_csv(config.val_csv, image_root=config.image_root,
                               class_names=train.class_names, cache=True, **common)
        return train, val
    # Check every row once with the CSV's line numbers, then split without re-checking.
    whole = dataset_from_csv(config.train_csv, image_root=config.image_root, **common)
    root = config.image_root or os.path.dirname(os.path.abspath(config.train_csv))
    train_rows, val_rows = stratified_split(
        config.train_csv, val_fraction=config.val_fraction, seed=config.seed,
        label_column=config.label_column,
    )
    split = {"image_root": root, "class_names": whole.class_names, "validate_images": False}
    train = dataset_from_dataframe(train_rows, **split, **common, **training)
    val = dataset_from_dataframe(val_rows, **split, cache=True, **common)
    return train, val


def train(config, *, evaluation=None):
    """Trains, calibrates, exports and reports into ``config.output``.

    Args:
        config: a :class:`TrainConfig`.
        evaluation: optional callable ``(model, record, staging_dir) -> object`` run
            before the folder is moved into place (the demo scores the test set).

    Returns:
        A :class:`TrainResult`.
    """
    import keras

    from calibkeras.distribute import is_chief, make_strategy, validate_tf_config
    from calibkeras.utils.staging import check_output_dir

    keras.utils.set_random_seed(config.seed)
    # The strategy comes first: MultiWorkerMirroredStrategy must exist before TF runs ops.
    strategy = make_strategy(config.strategy)
    chief = config.strategy != "multi_worker" or is_chief(validate_tf_config())
    if chief:
        check_output_dir(config.output, config.overwrite, argument="output", layout="model")
        output = Path(config.output)
    else:  # other workers train in step with the chief but write to a scratch folder
        output = Path(tempfile.mkdtemp(prefix="calibkeras-worker-")) / "run"
    try:
        return _train_and_write(config, strategy, output, evaluation)
    finally:
        if not chief:
            shutil.rmtree(output.parent, ignore_errors=True)


def _train_and_write(config, strategy, output, evaluation):
    """The body of :func:`train`, writing to ``output``."""
    from calibkeras.export import export_saved_model, verify_saved_model
    from calibkeras.model_directory import (
        CALIBRATION_FILE,
        MODEL_FILE,
        REPORT_DIR,
        SAVED_MODEL_DIR,
        calibration_record,
        write_json,
    )
    from calibkeras.models import build_classifier, fit_calibrated
    from calibkeras.utils.staging import staged_directory

    say = config.verbose
    image_size = (config.image_size, config.image_size)
    started = time.perf_counter()
    train_data, val = _training_data(config, image_size)
    counts = dict(zip(train_data.class_names, train_data.class_counts.tolist(), strict=True))
    _say(say, f"training data: {train_data.num_examples} images, "
              f"{train_data.num_classes} classes, counts {counts}")
    weights = None if str(config.weights).lower() == "none" else config.weights
    with strategy.scope():
        model = build_classifier(
            train_data.num_classes, backbone=config.backbone, weights=weights,
            image_size=image_size, class_counts=train_data.class_counts,
            class_names=train_data.class_names,
        )
        sampling_counts = train_data.prior * train_data.num_examples
        steps = train_data.steps_per_epoch if config.sampling == "balanced" else None
        history = fit_calibrated(
            model, train_data, val, sampling_counts, head_epochs=config.epochs,
            fine_tune_epochs=config.fine_tune_epochs, loss=config.loss,
            head_learning_rate=config.learning_rate,
            fine_tune_learning_rate=config.learning_rate / 10,
            fine_tune_fraction=config.fine_tune_fraction, steps_per_epoch=steps,
            verbose=2 if say else 0, calibration=config.calibration,
        )
    training_seconds = time.perf_counter() - started
    selection = calibration_selection(history["calibration"], config.calibration)
    _say(say, f"calibration: {selection['why']} (fitted on {val.num_examples} validation "
              "images)")
    record = calibration_record(model, image_size, {
        "image_column": config.image_column,
        "label_column": config.label_column,
        "backbone": config.backbone,
        "loss": config.loss,
        "sampling": config.sampling,
        "epochs": config.epochs,
        "fine_tune_epochs": config.fine_tune_epochs,
        "seed": config.seed,
        "train_csv": os.path.abspath(config.train_csv),
        "val_csv": os.path.abspath(config.val_csv) if config.val_csv else None,
        "validation_images": val.num_examples,
        "training_seconds": round(training_seconds, 1),
        "calibration_selection": selection,
    })
    with staged_directory(output, config.overwrite, argument="output",
                          layout="model") as staging:
        model.save(staging / MODEL_FILE)
        write_json(staging / CALIBRATION_FILE, record)
        _say(say, "exporting the SavedModel and checking it with TF Serving's loader ...")
        export_saved_model(model, staging / SAVED_MODEL_DIR, version=1)
        check = verify_saved_model(staging / SAVED_MODEL_DIR, model=model)
        _say(say, f"SavedModel verified: {', '.join(check['signatures'])}")
        _score(model, record, val, "training", title="validation data, training prior",
               report_dir=staging / REPORT_DIR, verbose=say)
        extra = evaluation(model, record, staging) if evaluation else None
    _say(say, f"wrote {output}/ ({MODEL_FILE}, {CALIBRATION_FILE}, "
              f"{SAVED_MODEL_DIR}/1/, {REPORT_DIR}/)")
    return TrainResult(model, record, extra)


def calibration_selection(fit, requested):
    """What was asked for, what was fitted and why: the cross-validated NLL per method."""
    if fit.cv_nll is None:
        why = f"{fit.method} (asked for), T = {fit.temperature:.4f}"
    else:
        scores = ", ".join(
            f"{method} {fit.cv_nll[method]:.4f}"
            + (f" ± {fit.cv_se[method]:.4f}" if fit.cv_se[method] else "")
            for method in fit.cv_nll
        )
        why = (f"{fit.method}, chosen by cross-validated NLL ({scores}; ± the standard "
               "error of the difference to the best; the simplest within one standard "
               f"error of the best), T = {fit.temperature:.4f}")
    return {
        "requested": requested,
        "method": fit.method,
        "cv_nll": fit.cv_nll,
        "cv_se": fit.cv_se,
        "why": why,
    }


# --------------------------------------------------------------------------- evaluate


def _score(model, record, data, prior, title, report_dir=None, verbose=True,
           overwrite=False):
    """Scores ``data`` under ``prior``, writes the report; returns an :class:`Evaluation`."""
    from calibkeras.reports import evaluation_summary, write_report

    _say(verbose, f"scoring {data.num_examples} images ({title}) ...")
    logits, labels = model.predict_balanced_logits(data, progress=verbose)
    choice = deployment_prior(model, prior, logits)
    prior_vector = choice.vector
    probs = model.probabilities(logits, prior_vector)
    uncalibrated = model.probabilities(logits, prior_vector, calibrated=False)
    summary = evaluation_summary(
        labels, probs, model.class_names, uncalibrated_probs=uncalibrated,
        prior_used=prior_vector, temperature=model.temperature,
    )
    summary["prior_name"] = choice.name
    summary["prior"] = prior_report(model, choice)
    summary["calibration"] = record.get("calibration_selection", {}).get(
        "why", f"{model.calibration.method}, T = {model.temperature:.4f}")
    if report_dir is not None:
        write_report(report_dir, summary, labels, probs, model.class_names,
                     uncalibrated_probs=uncalibrated, class_counts=record.get("class_counts"),
                     overwrite=overwrite)
    return Evaluation(summary, probs, labels, data)


def load_labelled_csv(record, csv, *, image_root=None, image_column=None, label_column=None):
    """A LabeledDataset of ``csv`` with the model's classes, columns and image size."""
    from calibkeras.data import dataset_from_csv

    return dataset_from_csv(
        csv,
        image_column=image_column or record.get("image_column", "filepath"),
        label_column=label_column or record.get("label_column", "label"),
        image_root=image_root,
        class_names=record["class_names"],
        image_size=tuple(record["preprocessing"]["image_size"]),
    )


def evaluate(model, csv, *, prior="model", image_root=None, image_column=None,
             label_column=None, json_path=None, report=None, predictions=None,
             overwrite=False, verbose=True):
    """Scores a trained model folder on a labelled CSV.

    Args:
        model: a trained model folder.
        csv: CSV of images and labels.
        prior: see :func:`deployment_prior` (default ``"model"``).
        image_root, image_column, label_column: as for :class:`TrainConfig` (the
            columns default to the model's).
        json_path: write the summary as JSON here.
        report: write plots and report.html into this folder.
        predictions: write one row per image here (path, label, prediction,
            probabilities).
        overwrite: replace existing outputs (a report folder only if calibkeras
            wrote it). Every output is checked before any scoring.
        verbose: print progress.

    Returns:
        An :class:`Evaluation`.
    """
    import numpy as np

    from calibkeras.model_directory import load_model_directory, write_json
    from calibkeras.utils.staging import check_output_dir, check_output_file

    for argument, path in (("json_path", json_path), ("predictions", predictions)):
        if path is not None:
            check_output_file(path, overwrite, argument=argument)
    if report is not None:
        check_output_dir(report, overwrite, argument="report", layout="report")
    classifier, record = load_model_directory(model)
    data = load_labelled_csv(record, csv, image_root=image_root, image_column=image_column,
                             label_column=label_column)
    result = _score(classifier, record, data, prior, title=f"prior: {prior}",
                    report_dir=report, verbose=verbose, overwrite=overwrite)
    if json_path:
        write_json(json_path, result.summary)
    if predictions:
        import pandas as pd

        table = pd.DataFrame(result.probs, columns=record["class_names"])
        names = np.asarray(record["class_names"])
        table.insert(0, "predicted", names[result.probs.argmax(axis=1)])
        table.insert(0, "label", names[result.labels])
        table.insert(0, "path", list(data.file_paths))
        table.to_csv(predictions, index=False)
    return result


# --------------------------------------------------------------------------- predict


def predict(model, images, *, prior="model", costs=None, top_k=3):
    """Calibrated probabilities and cost-sensitive decisions for image files.

    Args:
        model: a trained model folder.
        images: image file paths.
        prior: see :func:`deployment_prior` (default ``"model"``).
        costs: optional JSON file ``{"cost_matrix": [[...]], "abstain_cost": x,
            "action_names": [...]}`` (default: 0-1 loss, i.e. argmax).
        top_k: classes to list per image.

    Returns:
        A :class:`Prediction`.
    """
    import numpy as np
    import tensorflow as tf

    from calibkeras.calibration.decisions import bayes_decisions
    from calibkeras.data.preprocessing import load_image
    from calibkeras.metrics.functional import action_expected_costs
    from calibkeras.model_directory import load_model_directory
    from calibkeras.utils.checks import check_cost_matrix

    top_k = check_positive_int(top_k, "top_k")
    if not images:
        raise ValueError("`images` is empty: give at least one image file")
    for path in images:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"image '{path}' does not exist")
    classifier, record = load_model_directory(model)
    class_names = classifier.class_names
    image_size = tuple(record["preprocessing"]["image_size"])
    pixels = []
    for path in images:
        try:
            pixels.append(load_image(path, image_size))
        except tf.errors.InvalidArgumentError as error:
            raise ValueError(f"image '{path}' does not decode: {error.message}") from None
    logits = classifier.balanced_logits_model().predict(tf.stack(pixels), verbose=0)
    choice = deployment_prior(classifier, prior, logits)
    probs = classifier.probabilities(logits, choice.vector)
    cost_matrix, abstain_cost, action_names = read_costs(costs)
    if cost_matrix is None:
        cost_matrix = 1.0 - np.eye(len(class_names))
        action_names = class_names
    cost_matrix = check_cost_matrix(cost_matrix, len(class_names))
    decisions = bayes_decisions(probs, cost_matrix, abstain_cost)
    expected = np.asarray(action_expected_costs(probs, cost_matrix, abstain_cost))
    actions = list(action_names or [str(a) for a in range(cost_matrix.shape[0])])
    if abstain_cost is not None:
        actions.append("abstain")
    results = []
    for path, row, decision, costs in zip(images, probs, decisions, expected, strict=True):
        top = np.argsort(-row)[:top_k]
        results.append({
            "image": path,
            "top_k": [{"class": class_names[k], "probability": float(row[k])} for k in top],
            "decision": actions[int(decision)],
            "expected_costs": dict(zip(actions, map(float, costs), strict=True)),
            "probabilities": dict(zip(class_names, map(float, row), strict=True)),
        })
    return Prediction(prior_report(classifier, choice), results)


# --------------------------------------------------------------------------- export


def export(model, output, *, version=1, costs=None, prior="model", overwrite=False):
    """Writes a verified SavedModel of a trained model folder for TF Serving.

    Args:
        model: a trained model folder.
        output: the base folder; the export goes to ``output/<version>/``.
        version: positive int, the version folder (default 1).
        costs: optional costs JSON file for the ``decide`` signature.
        prior: see :func:`deployment_prior` (default ``"model"``).
        overwrite: replace an existing SavedModel version folder.

    Returns:
        ``(path, prior_name, check)``: the version folder, the prior's description and
        :func:`calibkeras.export.verify_saved_model`'s report.
    """
    from calibkeras.export import export_saved_model, verify_saved_model
    from calibkeras.model_directory import load_model_directory
    from calibkeras.utils.staging import check_output_dir

    version = check_positive_int(version, "version")
    check_output_dir(Path(output) / str(version), overwrite, argument="output/version",
                     layout="saved_model")
    classifier, _ = load_model_directory(model)
    choice = deployment_prior(classifier, prior)
    cost_matrix, abstain_cost, action_names = read_costs(costs)
    path = export_saved_model(
        classifier, output, version=version, cost_matrix=cost_matrix,
        abstain_cost=abstain_cost, prior=choice.vector, action_names=action_names,
        overwrite=overwrite,
    )
    return path, choice.name, verify_saved_model(path, model=None)


# --------------------------------------------------------------------------- demo


def demo(output="calibkeras_demo", *, quick=False, seed=0, overwrite=False, verbose=True):
    """The whole job on the bundled food10 data: train, calibrate, export, score.

    Trains on food10's imbalanced training split, calibrates on its validation split
    and scores its balanced test split four ways (:func:`compare_on_test_set`), with a
    report in ``output/report/test/``.

    Returns:
        A :class:`DemoResult`; also written to ``output/demo_summary.json``.
    """
    from calibkeras.datasets import food10_csv, load_food10
    from calibkeras.model_directory import REPORT_DIR, write_json

    settings = DEMO_SETTINGS["quick" if quick else "full"]
    config = TrainConfig(
        train_csv=food10_csv("train"), val_csv=food10_csv("val"),
        image_size=settings["image_size"], epochs=settings["epochs"],
        fine_tune_epochs=settings["fine_tune_epochs"], seed=seed, output=output,
        overwrite=overwrite, verbose=verbose,
    )
    started = time.perf_counter()

    def score_test_set(model, record, staging):
        test = load_food10("test", image_size=(settings["image_size"],) * 2)
        return compare_on_test_set(model, record, test, staging / REPORT_DIR / "test",
                                   verbose=verbose)

    rows = train(config, evaluation=score_test_set).extra
    seconds = time.perf_counter() - started
    write_json(Path(output) / "demo_summary.json", {"rows": rows, "seconds": seconds})
    return DemoResult(rows, seconds)


def compare_on_test_set(model, record, test, report_dir, verbose=True):
    """Scores a test set: what calibration and the prior change, and a shifted view.

    On the (balanced) test set: uncalibrated and calibrated under the training prior,
    calibrated under the prior estimated by EM, and calibrated under the uniform prior.
    Then on a subset drawn with the training prior reversed (:func:`reversed_prior_subset`;
    a deployment whose rare classes became common): calibrated under the training
    prior, under the prior EM estimates from the subset's images, and under the true
    prior of the subset (the oracle). The report (uniform prior, with the
    training-prior probabilities beside it) goes to ``report_dir``.

    Returns:
        One dict of scores per setting (``view``: "balanced" or "reversed";
        ``prior_l1``: the L1 distance of the prior used to the view's true prior).
    """
    import numpy as np

    from calibkeras.reports import evaluation_summary, write_report

    _say(verbose, f"scoring the balanced test set ({test.num_examples} images) ...")
    logits, labels = model.predict_balanced_logits(test, progress=verbose)
    subset, reversed_prior = reversed_prior_subset(labels, model.prior_shift.training_prior)
    views = {
        "balanced": (logits, labels, np.bincount(labels, minlength=model.num_classes)
                     / len(labels)),
        "reversed": (logits[subset], labels[subset], reversed_prior),
    }
    settings = [
        ("balanced", "uncalibrated, training prior", "training", False),
        ("balanced", "calibrated, training prior", "training", True),
        ("balanced", "calibrated, prior estimated by EM", "estimate", True),
        ("balanced", "calibrated, uniform prior", "uniform", True),
        ("reversed", "calibrated, training prior", "training", True),
        ("reversed", "calibrated, prior estimated by EM", "estimate", True),
        ("reversed", "calibrated, true prior (oracle)", reversed_prior, True),
    ]
    rows, by_prior = [], {}
    for view, name, prior, calibrated in settings:
        view_logits, view_labels, true_prior = views[view]
        vector = model.resolve_prior(prior, logits=view_logits)
        probs = model.probabilities(view_logits, vector, calibrated=calibrated)
        summary = evaluation_summary(view_labels, probs, model.class_names, prior_used=vector,
                                     temperature=model.temperature)
        rows.append({"view": view, "num_images": len(view_labels), "setting": name,
                     **{k: summary[k] for k in (
                         "balanced_accuracy", "accuracy", "macro_f1", "nll", "brier", "ece")},
                     "ece_perfect_mean": summary["calibration_test"]["ece_perfect_mean"],
                     "ece_p_value": summary["calibration_test"]["p_value"],
                     "prior_l1": float(np.abs(vector - true_prior).sum())})
        if view == "balanced" and calibrated and prior in ("training", "uniform"):
            by_prior[f"{'train' if prior == 'training' else prior} prior"] = probs
    uniform_prior = model.resolve_prior("uniform")
    uniform = by_prior["uniform prior"]  # scored above
    uncalibrated = model.probabilities(logits, uniform_prior, calibrated=False)
    summary = evaluation_summary(
        labels, uniform, model.class_names, uncalibrated_probs=uncalibrated,
        prior_used=uniform_prior, temperature=model.temperature,
    )
    write_report(report_dir, summary, labels, uniform, model.class_names,
                 uncalibrated_probs=uncalibrated, probs_by_prior=by_prior,
                 class_counts=record.get("class_counts"))
    return rows


def reversed_prior_subset(labels, training_prior, seed=0):
    """A subset of a labelled set whose class frequencies are the training prior reversed.

    The class with the largest training prior gets the smallest share and so on
    (``reversed[k]`` is the training prior of the class of rank ``K - 1 - rank(k)``);
    each class keeps ``floor(m * reversed[k] / max(reversed))`` of its examples (at
    least 1; ``m`` the smallest class count), chosen at random (seeded).

    Returns:
        ``(indices, prior)``: sorted row indices and the subset's class frequencies.
    """
    import numpy as np

    training_prior = np.asarray(training_prior, dtype=np.float64)
    num_classes = len(training_prior)
    order = np.argsort(training_prior, kind="stable")
    reversed_prior = np.empty(num_classes)
    reversed_prior[order] = training_prior[order[::-1]]
    counts = np.bincount(labels, minlength=num_classes)
    keep = np.maximum(np.floor(counts.min() * reversed_prior / reversed_prior.max()), 1)
    rng = np.random.default_rng(seed)
    indices = np.concatenate([
        rng.choice(np.flatnonzero(labels == k), int(keep[k]), replace=False)
        for k in range(num_classes)
    ])
    return np.sort(indices), keep / keep.sum()


def format_demo_rows(rows):
    """The demo's table of :func:`compare_on_test_set` rows, as text."""
    header = (f"{'setting':36s} {'bal.acc':>7s} {'acc':>6s} {'NLL':>6s} {'Brier':>6s} "
              f"{'ECE':>6s} {'ECE if calibrated':>17s} {'p':>5s} {'prior L1':>8s}")
    titles = {
        "balanced": "balanced food10 test set ({n} images):",
        "reversed": "the test set resampled to the reversed training prior ({n} images):",
    }
    lines, view = [], None
    for row in rows:
        if row["view"] != view:
            view = row["view"]
            lines += ["", titles[view].format(n=row["num_images"]), header, "-" * len(header)]
        lines.append(
            f"{row['setting']:36s} {row['balanced_accuracy']:7.3f} {row['accuracy']:6.3f} "
            f"{row['nll']:6.3f} {row['brier']:6.3f} {row['ece']:6.3f} "
            f"{row['ece_perfect_mean']:17.3f} {row['ece_p_value']:5.2f} {row['prior_l1']:8.3f}"
        )
    lines.append("ECE if calibrated: the mean ECE of a perfectly calibrated model with the same "
                 "confidences on this many images; p: consistency-resampling p-value; prior "
                 "L1: distance of the prior used to the view's true class frequencies.")
    return "\n".join(lines)
