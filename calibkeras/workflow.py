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

import contextlib
import dataclasses
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

from calibkeras.choices import (
    CALIBRATIONS,
    CONFORMAL_MODES,
    CONFORMITY_SCORES,
    LOSSES,
    STRATEGIES,
)
from calibkeras.choices import SAMPLING_MODES as SAMPLINGS
from calibkeras.utils.checks import (
    MISCOVERAGE,
    check_choice,
    check_class_names,
    check_fine_tune_options,
    check_fraction,
    check_nonnegative_int,
    check_open_fraction,
    check_positive_float,
    check_positive_int,
    check_zoom,
    listing,
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
    "format_conformal_summary",
    "format_demo_rows",
    "format_prior_report",
    "load_labelled_csv",
    "load_labelled_data",
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
        train_csv: CSV of training images and labels; or give ``train_dir``.
        train_dir: folder of training images, one subfolder per class
            (:func:`calibkeras.data.dataset_from_directory`); or give ``train_csv``.
        output: the model folder to write.
        val_csv, val_dir: validation data for the calibration, a CSV or a folder of
            class subfolders (at most one; default: a stratified split of the
            training data, see ``val_fraction``).
        val_fraction: share of each class held out without ``val_csv``/``val_dir``,
            in (0, 1].
        class_names: the classes in id order (label id ``k`` is ``class_names[k]``),
            or None (default): the sorted labels, the sorted subfolders of
            ``train_dir``, or "0", "1", ... for integer labels.
        image_root: folder relative image paths of the CSVs start from (default: each
            CSV's folder).
        image_column, label_column: CSV columns (default ``filepath`` and ``label``).
        skip_bad_images: False (default: a missing, unreadable or undecodable image
            stops with an error naming it), True (leave such images out and write a
            report at each loader's default place) or the path of the report CSV;
            with separate validation data, its report goes beside it as
            ``<name>.val.csv``.
        backbone: ``efficientnet_lite0`` (default) or a keras.applications EfficientNet.
        weights: ``"imagenet"`` (default), None (random) or a ``.weights.h5`` file.
        image_size: square image size in pixels; default None: the backbone's
            ImageNet size (224 for efficientnet_lite0, 240 for efficientnet_lite1, 260 for
            efficientnet_lite2; ``calibkeras.models.backbones.NATIVE_IMAGE_SIZES``).
        batch_size: global batch size (default 32).
        epochs: epochs of head training, backbone frozen (default 5).
        fine_tune_epochs: at most this many epochs of fine-tuning (default 6), stopped
            early when the validation NLL stops improving.
        fine_tune_fraction: share of backbone layers to fine-tune, from the top.
        fine_tune_schedule: the fine-tuning learning rate, ``"constant"`` (default) or
            ``"cosine"`` (decaying to 0 over ``fine_tune_epochs``).
        fine_tune_ema_momentum: fine-tune with Keras' moving average of the weights at
            this momentum (e.g. 0.99); default None: no averaging.
        early_stopping_patience: stop fine-tuning after this many epochs without a
            better validation NLL and restore the best epoch (default 2); None: run
            every epoch.
        zoom: with the training augmentation, also zoom each image in by up to this
            factor (e.g. 0.4: 36% to 100% of the area; ``LoaderOptions.zoom``); default
            0.0: none. ``zoom=0.4, fine_tune_schedule="cosine",
            fine_tune_ema_momentum=0.99, early_stopping_patience=None`` with 12
            fine-tuning epochs is the stronger recipe of BENCHMARKS.md.
        learning_rate: head learning rate; fine-tuning uses a tenth (default 1e-3).
        calibration: ``"auto"`` (default: temperature, bias-corrected or vector scaling,
            chosen by cross-validated NLL on the validation data) or one of them.
        alpha: fit conformal prediction sets on the validation data at this
            miscoverage level (e.g. 0.1: each set holds the true class 90 % of the
            time); default None: no sets.
        conformal: ``"by_class"`` (default: the coverage holds for every class, under
            any prior) or ``"marginal"`` (overall, weighted for the model's
            deployment prior); see :func:`calibkeras.conformal.fit_conformal`.
        set_score: the sets' conformity score, ``"lac"`` (default: smallest sets),
            ``"aps"`` or ``"raps"``.
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

    output: str
    train_csv: str | None = None
    train_dir: str | None = None
    val_csv: str | None = None
    val_dir: str | None = None
    val_fraction: float = 0.2
    class_names: tuple | None = None
    image_root: str | None = None
    image_column: str = "filepath"
    label_column: str = "label"
    backbone: str = "efficientnet_lite0"
    weights: str | None = "imagenet"
    image_size: int | None = None
    batch_size: int = 32
    epochs: int = 5
    fine_tune_epochs: int = 6
    fine_tune_fraction: float = 1.0
    fine_tune_schedule: str = "constant"
    fine_tune_ema_momentum: float | None = None
    early_stopping_patience: int | None = 2
    zoom: float = 0.0
    learning_rate: float = 1e-3
    calibration: str = "auto"
    alpha: float | None = None
    conformal: str = "by_class"
    set_score: str = "lac"
    loss: str = "logit_adjusted"
    sampling: str = "natural"
    seed: int = 0
    strategy: str = "default"
    skip_bad_images: bool | str = False
    overwrite: bool = False
    verbose: bool = True

    def __post_init__(self):
        _check_one_source(("train_csv", self.train_csv), ("train_dir", self.train_dir),
                          required=True)
        _check_one_source(("val_csv", self.val_csv), ("val_dir", self.val_dir))
        object.__setattr__(self, "class_names", check_class_names(self.class_names))
        _bad_image_options(self.skip_bad_images)
        if self.image_size is not None:
            check_positive_int(self.image_size, "image_size")
        check_positive_int(self.batch_size, "batch_size")
        check_nonnegative_int(self.epochs, "epochs")
        check_nonnegative_int(self.fine_tune_epochs, "fine_tune_epochs")
        check_fraction(self.val_fraction, "val_fraction")
        check_fraction(self.fine_tune_fraction, "fine_tune_fraction")
        check_fine_tune_options(self.fine_tune_schedule, self.fine_tune_ema_momentum,
                                prefix="fine_tune_",
                                early_stopping_patience=self.early_stopping_patience)
        object.__setattr__(self, "zoom", check_zoom(self.zoom))
        check_positive_float(self.learning_rate, "learning_rate")
        check_choice(self.loss, "loss", LOSSES)
        check_choice(self.calibration, "calibration", CALIBRATIONS)
        if self.alpha is not None:
            check_open_fraction(self.alpha, "alpha", MISCOVERAGE)
        check_choice(self.conformal, "conformal", CONFORMAL_MODES)
        check_choice(self.set_score, "set_score", CONFORMITY_SCORES)
        check_choice(self.sampling, "sampling", SAMPLINGS)
        check_choice(self.strategy, "strategy", STRATEGIES)


def _check_one_source(*sources, required=False):
    """Refuses two data sources given for one set (and none, when ``required``)."""
    given = [name for name, value in sources if value is not None]
    names = " or ".join(f"`{name}`" for name, _ in sources)
    if len(given) > 1:
        raise ValueError(f"give {names}, not both: a CSV of image paths and labels, or a "
                         "folder with one subfolder of images per class")
    if required and not given:
        raise ValueError(f"give {names}: a CSV of image paths and labels, or a folder "
                         "with one subfolder of images per class")


def _bad_image_options(skip_bad_images, suffix=""):
    """The loader options of a ``skip_bad_images`` value (False, True or a report path);
    ``suffix`` goes before the report's extension (``".val"``: ``bad.val.csv``)."""
    if skip_bad_images is False:
        return {}
    if skip_bad_images is True:
        return {"on_bad_image": "skip"}
    if not isinstance(skip_bad_images, (str, os.PathLike)) or not os.fspath(skip_bad_images):
        raise ValueError("`skip_bad_images` must be False, True or the path of the report "
                         f"CSV, got {skip_bad_images!r}")
    report = os.fspath(skip_bad_images)
    if suffix:
        stem, extension = os.path.splitext(report)
        report = f"{stem}{suffix}{extension}"
    return {"on_bad_image": "skip", "bad_image_report": report}


class TrainResult(NamedTuple):
    """What :func:`train` returns: the model, its calibration.json record, whatever
    the ``evaluation`` callable returned (None without one), and the model folder
    written (None on a multi-worker worker other than the chief: it writes nothing)."""

    model: object
    record: dict
    extra: object
    output: str | None = None


class Evaluation(NamedTuple):
    """What :func:`evaluate` returns: the summary (scores), probabilities, labels, the
    data scored and the model's prediction sets (``(N, K)`` booleans; None when the
    model has none)."""

    summary: dict
    probs: object
    labels: object
    data: object
    sets: object = None


class Prediction(NamedTuple):
    """What :func:`predict` returns: the prior (:func:`prior_report`) and one dict per
    image (``image``, ``top_k``, ``decision``, ``expected_costs`` of every action,
    ``probabilities``, ``prediction_set``: the class names in the image's conformal set,
    or None for a model without sets)."""

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


#: Fewer images per class (on average) than this make an estimated prior, or a
#: calibration fitted on validation data, too uncertain to trust: both warn.
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
    source = model.source_prior
    test = prior_shift_test(model.probabilities(logits, source), source)
    name = (f"estimate (EM on {num_images} images; against the calibration data's prior: "
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
    from calibkeras.data import dataset_from_dataframe

    common = {
        "image_root": config.image_root,
        "image_column": config.image_column,
        "label_column": config.label_column,
        "image_size": image_size,
        "batch_size": config.batch_size,
    }
    training = {"shuffle": True, "augment": True, "zoom": config.zoom, "seed": config.seed,
                "sampling": config.sampling, "cache": True}
    train_source = _source(config.train_csv, config.train_dir, "train")
    if config.val_csv or config.val_dir:
        train = load_labelled_data(*train_source, class_names=config.class_names,
                                   **_bad_image_options(config.skip_bad_images),
                                   **common, **training)
        val_source = _source(config.val_csv, config.val_dir, "val")
        with _named_in_errors({"`class_names`": "the training data's classes"}):
            val = load_labelled_data(*val_source, class_names=train.class_names, cache=True,
                                     allow_missing_classes=True,
                                     **_bad_image_options(config.skip_bad_images, ".val"),
                                     **common)
        _refuse_missing_validation_classes(val, val_source)
        return train, val
    # Check every image once (with its CSV line), then split the good ones unchecked.
    whole = load_labelled_data(*train_source, class_names=config.class_names,
                               **_bad_image_options(config.skip_bad_images), **common)
    train_rows, val_rows = _validation_split(whole, config, train_source)
    split = {"class_names": whole.class_names, "validate_images": False,
             "image_size": image_size, "batch_size": config.batch_size}
    train = dataset_from_dataframe(train_rows, **split, **training)
    val = dataset_from_dataframe(val_rows, **split, cache=True)
    return train, val


def _refuse_missing_validation_classes(val, source):
    """Refuses validation data without images of some training classes: the
    calibration (and any prediction sets) is fitted on every class."""
    missing = [name for name, count in zip(val.class_names, val.class_counts, strict=True)
               if count == 0]
    if not missing:
        return
    path, argument = (source[0], source[2]) if source[0] is not None else (source[1], source[3])
    listed = listing(repr(name) for name in missing)
    these = f"classes {listed}" if len(missing) > 1 else f"class {listed}"
    raise ValueError(
        f"`{argument}` '{path}' has no images of the training {these}, and the calibration "
        f"is fitted on every class: add images of {'them' if len(missing) > 1 else 'it'} "
        f"to `{argument}`, or leave `{argument}` out to hold out `val_fraction` of each "
        "training class instead"
    )


def _source(csv, directory, prefix):
    """``(csv, directory, csv argument, directory argument)`` of one data set."""
    return csv, directory, f"{prefix}_csv", f"{prefix}_dir"


def _validation_split(whole, config, source):
    """The stratified split of checked training data (:func:`stratified_split`) into
    training and validation rows, refusing a class that validation would lack."""
    import numpy as np
    import pandas as pd

    from calibkeras.data import stratified_split

    names = np.asarray(whole.class_names, dtype=object)
    rows = pd.DataFrame({"filepath": list(whole.file_paths), "label": names[whole.labels]})
    train_rows, val_rows = stratified_split(rows, val_fraction=config.val_fraction,
                                            seed=config.seed)
    missing = [name for name in whole.class_names if name not in set(val_rows["label"])]
    if missing:
        argument = source[2] if source[0] is not None else source[3]
        listed = ", ".join(repr(name) for name in missing[:10])
        these = f"classes {listed} have" if len(missing) > 1 else f"class {listed} has"
        raise ValueError(
            f"{these} a single image in `{argument}`, too few for the "
            "validation split of `val_fraction` (which keeps one image of each class in "
            "training and holds out a share of the others): add images of them, or give "
            "validation data with `val_csv` or `val_dir`"
        )
    return train_rows, val_rows


def load_labelled_data(csv=None, directory=None, csv_argument="csv",
                       directory_argument="directory", *, image_root=None,
                       image_column="filepath", label_column="label", **loader_options):
    """A LabeledDataset of a CSV or of a folder with one subfolder per class.

    Messages name the data by ``csv_argument`` or ``directory_argument`` (the
    command's flags without the dashes), and a CSV given as a folder, or a folder
    given as a file, is told which argument takes it.

    Args:
        csv: CSV of image paths and labels (:func:`calibkeras.data.dataset_from_csv`);
            or give ``directory``.
        directory: folder ``directory/<class>/<images>``
            (:func:`calibkeras.data.dataset_from_directory`).
        csv_argument, directory_argument: the names of the two in messages.
        image_root, image_column, label_column: for a CSV.
        **loader_options: ``class_names``, ``allow_missing_classes`` and
            :class:`calibkeras.data.LoaderOptions` fields.

    Returns:
        A :class:`calibkeras.data.LabeledDataset`.
    """
    from calibkeras.data import dataset_from_csv, dataset_from_directory

    _check_one_source((csv_argument, csv), (directory_argument, directory), required=True)
    if csv is not None:
        if os.path.isdir(csv):
            raise ValueError(
                f"`{csv_argument}` '{csv}' is a folder, not a CSV file; for a folder with "
                f"one subfolder of images per class use `{directory_argument}`"
            )
        with _named_in_errors({"`csv_path`": f"`{csv_argument}`"}):
            return dataset_from_csv(csv, image_column, label_column, image_root=image_root,
                                    **loader_options)
    if os.path.isfile(directory):
        raise ValueError(
            f"`{directory_argument}` '{directory}' is a file, not a folder; for a CSV of "
            f"image paths and labels use `{csv_argument}`"
        )
    with _named_in_errors({"`directory`": f"`{directory_argument}`"}):
        return dataset_from_directory(directory, **loader_options)


@contextlib.contextmanager
def _named_in_errors(names):
    """Re-raises a loader's ValueError or FileNotFoundError with each ``old`` name in
    its message replaced by ``new`` (``{"`csv_path`": "`train_csv`"}``)."""
    try:
        yield
    except (ValueError, FileNotFoundError) as error:
        message = str(error)
        for old, new in names.items():
            message = message.replace(old, new)
        if message == str(error):
            raise
        raise type(error)(message) from None


def _check_bad_image_reports(config):
    """Refuses, before any work, report files of ``skip_bad_images`` that exist."""
    from calibkeras.utils.staging import check_output_file

    suffixes = ["", ".val"] if config.val_csv or config.val_dir else [""]
    for suffix in suffixes:
        report = _bad_image_options(config.skip_bad_images, suffix).get("bad_image_report")
        if report is not None:
            check_output_file(report, config.overwrite, argument="skip_bad_images")


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

    from calibkeras.distribute import (
        describe_strategy,
        is_chief,
        make_strategy,
        validate_tf_config,
    )
    from calibkeras.utils.staging import check_output_dir

    keras.utils.set_random_seed(config.seed)
    # The strategy comes first: MultiWorkerMirroredStrategy must exist before TF runs ops.
    strategy = make_strategy(config.strategy)
    if config.strategy != "default":
        _say_strategy(config, *describe_strategy(config.strategy, strategy))
    chief = config.strategy != "multi_worker" or is_chief(validate_tf_config())
    if chief:
        check_output_dir(config.output, config.overwrite, argument="output", layout="model")
        _check_bad_image_reports(config)
        output = Path(config.output)
    else:  # other workers train in step with the chief but write to a scratch folder
        output = Path(tempfile.mkdtemp(prefix="calibkeras-worker-")) / "run"
    try:
        result = _train_and_write(config, strategy, output, evaluation)
        return result._replace(output=os.fspath(config.output) if chief else None)
    finally:
        if not chief:
            shutil.rmtree(output.parent, ignore_errors=True)


def _say_strategy(config, line, on_gpu):
    """Prints what the strategy runs on; a warning (shown even when quiet) when
    ``"mirrored"`` found no GPU to mirror over."""
    import warnings

    if config.strategy == "mirrored" and not on_gpu:
        warnings.warn(f"{line}: no GPU found, so nothing is mirrored; it trains as "
                      "`strategy` 'default' would", UserWarning, stacklevel=3)
    else:
        _say(config.verbose, line)


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
    from calibkeras.models.backbones import native_image_size
    from calibkeras.utils.staging import staged_directory

    say = config.verbose
    image_size = ((config.image_size,) * 2 if config.image_size is not None
                  else native_image_size(config.backbone))
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
            early_stopping_patience=config.early_stopping_patience,
            fine_tune_schedule=config.fine_tune_schedule,
            fine_tune_ema_momentum=config.fine_tune_ema_momentum,
        )
    training_seconds = time.perf_counter() - started
    selection = calibration_selection(history["calibration"], config.calibration)
    _say(say, f"calibration: {selection['why']} (fitted on {val.num_examples} validation "
              "images)")
    _warn_if_few_for_calibration(val, history["calibration"])
    sets = None
    if config.alpha is not None:
        sets = _fit_prediction_sets(model, val, config, say)
    record = calibration_record(model, image_size, {
        **_recipe_settings(config),
        "validation_images": val.num_examples,
        "training_seconds": round(training_seconds, 1),
        "calibration_selection": selection,
        "prediction_sets": sets,
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
    return TrainResult(model, record, extra)


#: The :class:`TrainConfig` fields calibration.json records as they were given.
_RECORDED_SETTINGS = (
    "image_column", "label_column", "backbone", "loss", "sampling", "epochs",
    "fine_tune_epochs", "fine_tune_fraction", "fine_tune_schedule", "fine_tune_ema_momentum",
    "early_stopping_patience", "zoom", "learning_rate", "seed",
)


def _recipe_settings(config):
    """The settings of a :class:`TrainConfig` that calibration.json records: the
    :data:`_RECORDED_SETTINGS` and the data sources as absolute paths (None if not given)."""
    return {
        **{name: getattr(config, name) for name in _RECORDED_SETTINGS},
        **{name: os.path.abspath(getattr(config, name)) if getattr(config, name) else None
           for name in ("train_csv", "train_dir", "val_csv", "val_dir")},
    }


def _warn_if_few_for_calibration(val, fit):
    """Warns, in one line, when the calibration was fitted on fewer than
    ``MIN_IMAGES_PER_CLASS`` validation images per class on average."""
    import warnings

    per_class = val.num_examples / val.num_classes
    if per_class >= MIN_IMAGES_PER_CLASS:
        return
    warnings.warn(
        f"the calibration ({fit.method}, T = {fit.temperature:.3g}) was fitted on "
        f"{val.num_examples} validation images for {val.num_classes} classes ({per_class:.1f} "
        f"per class on average, fewer than {MIN_IMAGES_PER_CLASS}): the fit is uncertain; "
        "give more validation images (`val_csv` or `val_dir`, or a larger `val_fraction`)",
        UserWarning, stacklevel=3,
    )


def _fit_prediction_sets(model, val, config, say):
    """Fits the model's prediction sets on the validation data; their JSON record."""
    import warnings

    by_class = config.conformal == "by_class"
    fit = model.fit_prediction_sets(val, alpha=config.alpha, by_class=by_class,
                                    score=config.set_score,
                                    prior=None if by_class else "model")
    names = model.class_names
    _say(say, f"prediction sets: {config.conformal}, {config.set_score}, alpha "
              f"{config.alpha:g}, fitted on {val.num_examples} validation images")
    if len(fit.always_included):
        always = ", ".join(repr(names[k]) for k in fit.always_included)
        warnings.warn(
            f"classes {always} have fewer than {fit.min_class_count} validation images, "
            f"too few for a threshold at alpha {config.alpha:g}: they are in every "
            "prediction set. Add validation images of them, or raise --alpha",
            UserWarning, stacklevel=2,
        )
    return fit.as_dict(names)


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
               f"error of the best)"
               + (f", shrunk toward temperature scaling with l2 = {fit.l2:.4g}" if fit.l2 else "")
               + f", T = {fit.temperature:.4f}")
    return {
        "requested": requested,
        "method": fit.method,
        "l2": fit.l2,
        "cv_nll": fit.cv_nll,
        "cv_se": fit.cv_se,
        "cv_table": fit.cv_table,
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
    sets = None
    if model.prediction_set.fitted:
        sets = model.prediction_sets(logits)
        summary["conformal"] = _conformal_summary(model, labels, sets, prior_vector)
    if report_dir is not None:
        write_report(report_dir, summary, labels, probs, model.class_names,
                     uncalibrated_probs=uncalibrated, class_counts=record.get("class_counts"),
                     overwrite=overwrite, sets=sets)
    return Evaluation(summary, probs, labels, data, sets)


def format_conformal_summary(section):
    """One paragraph of the ``conformal`` section of an evaluation, for the terminal."""
    lines = [
        f"prediction sets ({section['mode']}, {section['score']}, alpha {section['alpha']:g}):"
        f" coverage {section['marginal_coverage']:.3f} (target {1 - section['alpha']:.2f}), "
        f"mean size {section['mean_set_size']:.2f}",
        "  coverage by class: " + ", ".join(
            f"{name} {'-' if value is None else format(value, '.2f')}"
            for name, value in section["per_class_coverage"].items()),
    ]
    if section["classes_below_target"]:
        lines.append("  below the target: " + ", ".join(section["classes_below_target"]))
    if section["always_included"]:
        lines.append("  in every set (too few calibration images): "
                     + ", ".join(section["always_included"]))
    return "\n".join(lines)


def _conformal_summary(model, labels, sets, prior):
    """The ``conformal`` section of an evaluation: the sets' settings, their coverage
    (marginal, under ``prior``, per class) and sizes, and the classes below target."""
    import numpy as np

    from calibkeras.conformal import set_coverage

    layer = model.prediction_set
    names = model.class_names
    coverage = set_coverage(labels, sets, prior=prior)
    always = np.isinf(layer.thresholds.numpy())
    return {
        "alpha": layer.alpha,
        "mode": layer.mode,
        "score": layer.score,
        **coverage.as_dict(names),
        "always_included": [name for name, a in zip(names, always, strict=True) if a],
        "classes_below_target": [names[k] for k in coverage.classes_below(1 - layer.alpha)],
    }


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


def evaluate(model, csv=None, *, directory=None, prior="model", image_root=None,
             image_column=None, label_column=None, skip_bad_images=False, json_path=None,
             report=None, predictions=None, keep_columns=None, overwrite=False,
             verbose=True):
    """Scores a trained model folder on labelled images: a CSV or a folder of classes.

    The images need not show every class of the model: a warning names the classes
    without images, the summary lists them as ``absent_classes``, they have no
    recall, and balanced accuracy is the mean recall of the classes present (as
    :func:`calibkeras.calibration.calibration_errors` defines it).

    Args:
        model: a trained model folder.
        csv: CSV of images and labels; or give ``directory``.
        directory: folder ``directory/<class>/<images>`` whose subfolders are named
            after the model's classes (a class without a subfolder has no images).
        prior: see :func:`deployment_prior` (default ``"model"``).
        image_root, image_column, label_column: as for :class:`TrainConfig` (the
            columns default to the model's).
        skip_bad_images: as for :class:`TrainConfig`.
        json_path: write the summary as JSON here.
        report: write plots and report.html into this folder.
        predictions: write one row per image here (path, label, prediction,
            probabilities).
        keep_columns: columns of ``csv`` to copy into ``predictions``, first and in
            this order (an id to join the results back on).
        overwrite: replace existing outputs (a report folder only if calibkeras
            wrote it). Every output is checked before any scoring.
        verbose: print progress.

    Returns:
        An :class:`Evaluation`.
    """
    from calibkeras.model_directory import load_model_directory, write_json
    from calibkeras.utils.staging import check_output_dir, check_output_file

    _check_one_source(("csv", csv), ("directory", directory), required=True)
    bad_images = _bad_image_options(skip_bad_images)
    outputs = (("json_path", json_path), ("predictions", predictions),
               ("skip_bad_images", bad_images.get("bad_image_report")))
    for argument, path in outputs:
        if path is not None:
            check_output_file(path, overwrite, argument=argument)
    if report is not None:
        check_output_dir(report, overwrite, argument="report", layout="report")
    classifier, record = load_model_directory(model)
    if keep_columns is not None:
        _check_keep_columns(keep_columns, csv, predictions, record["class_names"])
    image_column = image_column or record.get("image_column", "filepath")
    with _named_in_errors({"`class_names`": "the model's classes"}):
        data = load_labelled_data(
            csv, directory, image_root=image_root, image_column=image_column,
            label_column=label_column or record.get("label_column", "label"),
            class_names=record["class_names"], allow_missing_classes=True,
            image_size=tuple(record["preprocessing"]["image_size"]), **bad_images,
        )
    _note_absent_classes(data, "csv" if csv is not None else "directory")
    kept = None
    if keep_columns is not None:  # lined up with the images before the long scoring pass
        kept = _rows_of(_read_kept_columns(csv, keep_columns, image_root=image_root,
                                           image_column=image_column), data)
    result = _score(classifier, record, data, prior, title=f"prior: {prior}",
                    report_dir=report, verbose=verbose, overwrite=overwrite)
    if json_path:
        write_json(json_path, result.summary)
    if predictions:
        _write_predictions(predictions, result, record["class_names"], kept)
    return result


def _note_absent_classes(data, argument):
    """Warns, in one line, that ``data`` lacks some of the model's classes."""
    import warnings

    absent = [name for name, count in zip(data.class_names, data.class_counts, strict=True)
              if count == 0]
    if not absent:
        return
    listed = listing(repr(name) for name in absent)
    present = data.num_classes - len(absent)
    warnings.warn(
        f"`{argument}` has no images of {len(absent)} of the model's {data.num_classes} "
        f"classes ({listed}): scored on the {present} present (balanced accuracy is their "
        "mean recall; the absent classes have no recall)",
        UserWarning, stacklevel=3,
    )


def _write_predictions(path, result, class_names, kept=None):
    """One row per image: ``kept`` columns (a DataFrame, or None), then path, label,
    predicted, the prediction set (class names joined by ``"|"``, when the model has
    sets) and one probability column per class."""
    import numpy as np
    import pandas as pd

    from calibkeras.export.saved_model import SET_SEPARATOR

    table = pd.DataFrame(result.probs, columns=class_names)
    names = np.asarray(class_names)
    if result.sets is not None:
        table.insert(0, "prediction_set", [SET_SEPARATOR.join(names[row]) for row in result.sets])
    table.insert(0, "predicted", names[result.probs.argmax(axis=1)])
    table.insert(0, "label", names[result.labels])
    table.insert(0, "path", list(result.data.file_paths))
    if kept is not None:
        table = pd.concat([kept.drop(columns="_path").reset_index(drop=True), table], axis=1)
    table.to_csv(path, index=False)


def _check_keep_columns(keep_columns, csv, predictions, class_names):
    """Refuses ``keep_columns`` that cannot go into ``predictions``."""
    if predictions is None:
        raise ValueError("`keep_columns` copies columns into `predictions`: give "
                         "`predictions` too")
    if csv is None:
        raise ValueError("`keep_columns` copies CSV columns, and `directory` has none: "
                         "evaluate a CSV (`csv`) to keep its columns")
    columns = list(keep_columns) if not isinstance(keep_columns, str) else []
    if not columns or not all(isinstance(name, str) and name for name in columns):
        raise ValueError("`keep_columns` must be a list of column names of `csv`, got "
                         f"{keep_columns!r}")
    written = {"path", "label", "predicted", "prediction_set", "_path", *class_names}
    clashes = [name for name in columns if name in written]
    if clashes:
        raise ValueError(
            f"`keep_columns` {clashes} would repeat columns that `predictions` writes "
            "(path, label, predicted, prediction_set and one per class); leave them out")


def _read_kept_columns(csv, keep_columns, *, image_root, image_column):
    """The ``keep_columns`` of ``csv`` and each row's resolved image path (``_path``),
    read as the CSV loader reads them (text cells, rows of empty cells dropped)."""
    import pandas as pd

    from calibkeras.data.labels import cell_text

    columns = list(keep_columns)
    table = pd.read_csv(csv, dtype=str, keep_default_na=False, na_filter=False,
                        index_col=False, encoding="utf-8-sig")
    missing = [name for name in columns if name not in table.columns]
    if missing:
        raise ValueError(f"`keep_columns` {missing} not found in `csv` '{csv}'; columns "
                         f"are: {', '.join(map(str, table.columns))}")
    table = table[(table != "").any(axis=1)]
    root = os.path.abspath(image_root or os.path.dirname(os.path.abspath(csv)))
    paths = [cell_text(value) for value in table[image_column]]
    kept = table[columns].copy()
    kept["_path"] = [path if os.path.isabs(path) else os.path.normpath(os.path.join(root, path))
                     for path in paths]
    return kept


def _rows_of(kept, data):
    """The rows of :func:`_read_kept_columns` that ``data`` holds (all but skipped
    images: a path is skipped or kept wherever it appears), in its order."""
    rows = kept[kept["_path"].isin(set(data.file_paths))]
    if list(rows["_path"]) != list(data.file_paths):
        raise ValueError("`keep_columns`: the rows of `csv` did not line up with the images "
                         "read from it; pass the columns in a CSV without blank rows")
    return rows


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
        if os.path.isdir(path):
            raise IsADirectoryError(f"image '{path}' is a folder, not an image file; give "
                                    f"its images (e.g. {os.path.join(path, '*.jpg')})")
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
    sets = classifier.prediction_sets(logits) if classifier.prediction_set.fitted else None
    results = []
    for index, (path, row, decision, costs) in enumerate(
            zip(images, probs, decisions, expected, strict=True)):
        top = np.argsort(-row)[:top_k]
        results.append({
            "image": path,
            "top_k": [{"class": class_names[k], "probability": float(row[k])} for k in top],
            "decision": actions[int(decision)],
            "expected_costs": dict(zip(actions, map(float, costs), strict=True)),
            "probabilities": dict(zip(class_names, map(float, row), strict=True)),
            "prediction_set": (None if sets is None else
                               [name for name, k in zip(class_names, sets[index], strict=True)
                                if k]),
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
