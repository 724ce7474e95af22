"""The ``calibkeras`` command: train, evaluate, predict, export and demo.

Exit status: 0 on success, 1 for a data or file problem (missing file, bad CSV row,
existing output folder), 2 for a usage error (unknown flag, bad value). Errors are
one line on stderr, without a traceback.
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

EXIT_DATA = 1
EXIT_USAGE = 2
PRIOR_CHOICES = "model, train, uniform, estimate or a JSON file"
_OVERWRITE_MODEL_HELP = (
    "replace an existing --output folder, but only a model folder that calibkeras wrote "
    "(one with calibration.json; any other folder is refused before training); the old "
    "folder stays until the new one is in place"
)

#: Settings of ``calibkeras demo`` (full) and ``calibkeras demo --quick``.
DEMO_SETTINGS = {
    "full": {"image_size": 224, "epochs": 5, "fine_tune_epochs": 6},
    "quick": {"image_size": 96, "epochs": 3, "fine_tune_epochs": 0},
}


class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose usage errors are one line and exit with status 2."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def _int_at_least(minimum, description):
    """An argparse type: an integer >= ``minimum``."""

    def parse(text):
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"expected {description}, got {text!r}")
        return value

    return parse


_positive_int = _int_at_least(1, "a positive integer")
_non_negative_int = _int_at_least(0, "an integer >= 0")


def _fraction(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {text!r}") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {text!r}")
    return value


def _add_data_flags(parser, csv_flag, help_text, required=True):
    parser.add_argument(csv_flag, required=required, metavar="CSV", help=help_text)
    parser.add_argument("--image-root", metavar="DIR",
                        help="folder that relative image paths start from (default: the CSV's)")
    parser.add_argument("--image-column", default=None, metavar="NAME",
                        help="CSV column of image paths (default: filepath, or the model's)")
    parser.add_argument("--label-column", default=None, metavar="NAME",
                        help="CSV column of labels (default: label, or the model's)")


def _add_prior_flag(parser):
    parser.add_argument(
        "--prior", default="model", metavar="PRIOR",
        help="class prior to predict under: model (the one saved with the model, default), "
             "train (the training prior), uniform, estimate (EM on the given images) or a "
             'JSON file {"prior": [...]} or {"class name": probability, ...}',
    )


def build_parser():
    """The argument parser of the ``calibkeras`` command."""
    parser = _Parser(prog="calibkeras", description=(
        "Calibrated, prior-aware, cost-sensitive image classification with Keras."))
    parser.add_argument("--version", action="version", version=_version())
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    train = commands.add_parser("train", help="train, calibrate, export and report")
    _add_data_flags(train, "--train-csv", "CSV of training images and labels")
    train.add_argument("--val-csv", metavar="CSV",
                       help="validation CSV for the temperature (default: a stratified "
                            "split of --train-csv, see --val-fraction)")
    train.add_argument("--val-fraction", type=_fraction, default=0.2,
                       help="share of each class held out without --val-csv (default 0.2)")
    _add_training_flags(train)
    train.add_argument("--output", required=True, metavar="DIR", help="folder to write")
    train.set_defaults(handler=_train_command)

    evaluate = commands.add_parser("evaluate", help="score a trained model on labelled images")
    evaluate.add_argument("--model", required=True, metavar="DIR", help="a trained model folder")
    _add_data_flags(evaluate, "--csv", "CSV of images and labels to score")
    _add_prior_flag(evaluate)
    evaluate.add_argument("--json", metavar="OUT", help="write the scores as JSON here")
    evaluate.add_argument("--report", metavar="DIR", help="write plots and report.html here")
    evaluate.add_argument("--predictions", metavar="FILE.csv",
                          help="write one row per image: path, label, prediction, probabilities")
    evaluate.add_argument("--overwrite", action="store_true",
                          help="replace existing --json and --predictions files and a "
                               "--report folder that calibkeras wrote (one with "
                               "report.html and summary.json; any other folder is refused)")
    evaluate.add_argument("--quiet", action="store_true", help="no progress bars")
    evaluate.set_defaults(handler=_evaluate_command)

    predict = commands.add_parser("predict", help="calibrated probabilities and decisions")
    predict.add_argument("--model", required=True, metavar="DIR", help="a trained model folder")
    predict.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    predict.add_argument("--costs", metavar="FILE.json",
                         help='decision costs: {"cost_matrix": [[...]], "abstain_cost": x, '
                              '"action_names": [...]} (default: 0-1 loss, i.e. argmax)')
    _add_prior_flag(predict)
    predict.add_argument("--top-k", type=_positive_int, default=3, help="classes to show")
    predict.add_argument("--json", action="store_true", help="print JSON instead of a table")
    predict.set_defaults(handler=_predict_command)

    export = commands.add_parser("export", help="write a SavedModel for TF Serving")
    export.add_argument("--model", required=True, metavar="DIR", help="a trained model folder")
    export.add_argument("--output", required=True, metavar="EXPORT_DIR",
                        help="base folder; the export goes to EXPORT_DIR/<version>/")
    export.add_argument("--version", type=_positive_int, default=1, dest="export_version",
                        help="numeric version folder (default 1)")
    export.add_argument("--costs", metavar="FILE.json", help="cost matrix for `decide`")
    _add_prior_flag(export)
    export.add_argument("--overwrite", action="store_true",
                        help="replace an existing EXPORT_DIR/<version> that is a SavedModel "
                             "(holds saved_model.pb; any other folder is refused); the old "
                             "version stays until the new one is in place")
    export.set_defaults(handler=_export_command)

    demo = commands.add_parser("demo", help="the whole job on the bundled food10 data")
    demo.add_argument("--output", default="calibkeras_demo", metavar="DIR",
                      help="folder to write (default ./calibkeras_demo)")
    demo.add_argument("--quick", action="store_true",
                      help=f"smaller and shorter ({DEMO_SETTINGS['quick']}), under 3 minutes")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    demo.add_argument("--overwrite", action="store_true", help=_OVERWRITE_MODEL_HELP)
    demo.add_argument("--quiet", action="store_true", help="no progress bars")
    demo.set_defaults(handler=_demo_command)
    return parser


def _add_training_flags(parser):
    from_models = ("efficientnet_lite0, efficientnet_b0..b7, efficientnet_v2_b0..b3/s/m/l")
    parser.add_argument("--backbone", default="efficientnet_lite0", help=from_models)
    parser.add_argument("--weights", default="imagenet",
                        help="imagenet (default), none, or a local .weights.h5 file")
    parser.add_argument("--image-size", type=_positive_int, default=224,
                        help="square image size in pixels (default 224, Lite0's ImageNet "
                             "size: it beats the images' own 160 px, see BENCHMARKS.md)")
    parser.add_argument("--batch-size", type=_positive_int, default=32,
                        help="global batch size, split across replicas and workers (default 32)")
    parser.add_argument("--epochs", type=_non_negative_int, default=5,
                        help="epochs of head training, backbone frozen (default 5)")
    parser.add_argument("--fine-tune-epochs", type=_non_negative_int, default=6,
                        help="at most this many epochs of fine-tuning the backbone, stopped "
                             "early when the validation NLL stops improving (default 6)")
    parser.add_argument("--fine-tune-fraction", type=_fraction, default=1.0,
                        help="share of backbone layers to fine-tune, from the top; BatchNorm "
                             "stays frozen (default 1.0)")
    parser.add_argument("--learning-rate", type=float, default=1e-3,
                        help="head learning rate; fine-tuning uses a tenth (default 1e-3)")
    parser.add_argument("--loss", choices=("logit_adjusted", "crossentropy", "focal"),
                        default="logit_adjusted",
                        help="logit_adjusted (default) learns balanced logits; the others "
                             "learn the training prior, removed after training")
    parser.add_argument("--sampling", choices=("natural", "balanced"), default="natural",
                        help="batch sampling (default natural; balanced changes the prior "
                             "the model sees, which calibkeras then corrects)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--strategy", choices=("default", "mirrored", "multi_worker"),
                        default="default",
                        help="tf.distribute strategy (multi_worker reads TF_CONFIG)")
    parser.add_argument("--overwrite", action="store_true", help=_OVERWRITE_MODEL_HELP)
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def _version():
    from calibkeras import __version__

    return f"calibkeras {__version__}"


# --------------------------------------------------------------------------- helpers


class CommandError(Exception):
    """A problem with the user's files or data: reported in one line, exit status 1."""


def _say(args, text):
    if not getattr(args, "quiet", False):
        print(text, flush=True)


def _read_json(path, flag):
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise CommandError(f"{flag} file '{path}' does not exist") from None
    except json.JSONDecodeError as error:
        raise CommandError(f"{flag} file '{path}' is not valid JSON: {error}") from None


def _read_costs(path):
    if path is None:
        return None, None, None
    costs = _read_json(path, "--costs")
    if not isinstance(costs, dict) or "cost_matrix" not in costs:
        raise CommandError(
            f"--costs file '{path}' must hold an object with a \"cost_matrix\" entry, e.g. "
            '{"cost_matrix": [[0, 1], [5, 0]], "abstain_cost": 0.5}'
        )
    return costs["cost_matrix"], costs.get("abstain_cost"), costs.get("action_names")


def _resolve_prior(argument, model, record, balanced_logits=None):
    """Returns ``(prior vector, description)`` for a --prior value."""
    import numpy as np

    from calibkeras.calibration import estimate_prior
    from calibkeras.models.inference import posterior_probabilities

    shift = model.get_layer("prior_shift")
    class_names = record["class_names"]
    if argument == "model":
        return shift.prior, "model (saved with the model)"
    if argument in ("train", "training"):
        if shift.training_prior is None:
            raise CommandError("--prior train: the model has no training class counts")
        return shift.training_prior, "train"
    if argument == "uniform":
        return np.full(len(class_names), 1.0 / len(class_names)), "uniform"
    if argument == "estimate":
        if balanced_logits is None:
            raise CommandError("--prior estimate needs labelled or unlabelled images to run on")
        if shift.training_prior is None:
            raise CommandError("--prior estimate: the model has no training class counts")
        training = shift.training_prior
        probs = posterior_probabilities(model, balanced_logits, training)
        estimate = estimate_prior(probs, training)
        return estimate.prior, f"estimate (EM, {estimate.n_iter} iterations)"
    if not argument.endswith(".json"):
        raise CommandError(f"--prior must be {PRIOR_CHOICES}, got {argument!r}")
    payload = _read_json(argument, "--prior")
    if isinstance(payload, dict) and "prior" in payload:
        values = payload["prior"]
    elif isinstance(payload, dict):
        unknown = sorted(set(payload) - set(class_names))
        missing = [name for name in class_names if name not in payload]
        if unknown or missing:
            raise CommandError(
                f"--prior file '{argument}': unknown classes {unknown}, missing {missing}; "
                f"the classes are {class_names}"
            )
        values = [payload[name] for name in class_names]
    else:
        values = payload
    from calibkeras._checks import check_prior

    return check_prior(values, len(class_names), name="prior"), argument


def _load_labelled_csv(args, record, csv_path):
    from calibkeras.data import dataset_from_csv

    return dataset_from_csv(
        csv_path,
        image_column=args.image_column or record.get("image_column", "filepath"),
        label_column=args.label_column or record.get("label_column", "label"),
        image_root=args.image_root,
        class_names=record["class_names"],
        image_size=tuple(record["preprocessing"]["image_size"]),
    )


# --------------------------------------------------------------------------- training


def _training_data(args, image_size):
    """Training and validation LabeledDatasets from the --train-csv / --val-csv flags."""
    from calibkeras.data import dataset_from_csv, dataset_from_dataframe, stratified_split

    common = {
        "image_column": args.image_column or "filepath",
        "label_column": args.label_column or "label",
        "image_size": image_size,
        "batch_size": args.batch_size,
    }
    training = {"shuffle": True, "augment": True, "seed": args.seed,
                "sampling": args.sampling, "cache": True}
    if args.val_csv:
        train = dataset_from_csv(args.train_csv, image_root=args.image_root,
                                 **common, **training)
        val = dataset_from_csv(args.val_csv, image_root=args.image_root,
                               class_names=train.class_names, cache=True, **common)
        return train, val
    # Check every row once with the CSV's line numbers, then split without re-checking.
    whole = dataset_from_csv(args.train_csv, image_root=args.image_root, **common)
    root = args.image_root or os.path.dirname(os.path.abspath(args.train_csv))
    train_rows, val_rows = stratified_split(
        args.train_csv, val_fraction=args.val_fraction, seed=args.seed,
        label_column=common["label_column"],
    )
    split = {"image_root": root, "class_names": whole.class_names, "validate_images": False}
    train = dataset_from_dataframe(train_rows, **split, **common, **training)
    val = dataset_from_dataframe(val_rows, **split, cache=True, **common)
    return train, val


def train_model(args, evaluation=None):
    """Trains, calibrates, exports and reports into ``args.output``.

    Args:
        args: parsed ``train`` flags (the demo builds the same namespace).
        evaluation: optional callable ``(model, record, staging_dir) -> dict`` run
            before the folder is moved into place (the demo scores the test set).

    Returns:
        ``(model, record, extra)`` where ``extra`` is what ``evaluation`` returned.
    """
    import keras

    from calibkeras._staging import check_output_dir
    from calibkeras.distribute import is_chief, make_strategy, validate_tf_config

    keras.utils.set_random_seed(args.seed)
    # The strategy comes first: MultiWorkerMirroredStrategy must exist before TF runs ops.
    strategy = make_strategy(args.strategy)
    chief = args.strategy != "multi_worker" or is_chief(validate_tf_config())
    if chief:
        check_output_dir(args.output, args.overwrite, argument="--output", layout="model")
        output = Path(args.output)
    else:  # other workers train in step with the chief but write to a scratch folder
        output = Path(tempfile.mkdtemp(prefix="calibkeras-worker-")) / "run"
    try:
        return _train_and_write(args, strategy, output, evaluation)
    finally:
        if not chief:
            shutil.rmtree(output.parent, ignore_errors=True)


def _train_and_write(args, strategy, output, evaluation):
    """The body of :func:`train_model`, writing to ``output``."""
    from calibkeras._staging import staged_directory
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

    image_size = (args.image_size, args.image_size)
    started = time.perf_counter()
    train, val = _training_data(args, image_size)
    _say(args, f"training data: {train.num_examples} images, {train.num_classes} classes, "
               f"counts {dict(zip(train.class_names, train.class_counts.tolist()))}")
    weights = None if str(args.weights).lower() == "none" else args.weights
    with strategy.scope():
        model = build_classifier(
            train.num_classes, backbone=args.backbone, weights=weights, image_size=image_size,
            class_counts=train.class_counts, class_names=train.class_names,
        )
        sampling_counts = train.prior * train.num_examples
        steps = train.steps_per_epoch if args.sampling == "balanced" else None
        history = fit_calibrated(
            model, train, val, sampling_counts, head_epochs=args.epochs,
            fine_tune_epochs=args.fine_tune_epochs, loss=args.loss,
            head_learning_rate=args.learning_rate,
            fine_tune_learning_rate=args.learning_rate / 10,
            fine_tune_fraction=args.fine_tune_fraction, steps_per_epoch=steps,
            verbose=0 if args.quiet else 2,
        )
    training_seconds = time.perf_counter() - started
    _say(args, f"temperature T = {history['temperature']:.4f} (fitted on "
               f"{val.num_examples} validation images)")
    record = calibration_record(model, image_size, {
        "image_column": args.image_column or "filepath",
        "label_column": args.label_column or "label",
        "backbone": args.backbone,
        "loss": args.loss,
        "sampling": args.sampling,
        "epochs": args.epochs,
        "fine_tune_epochs": args.fine_tune_epochs,
        "seed": args.seed,
        "train_csv": os.path.abspath(args.train_csv),
        "val_csv": os.path.abspath(args.val_csv) if args.val_csv else None,
        "validation_images": val.num_examples,
        "training_seconds": round(training_seconds, 1),
    })
    with staged_directory(output, args.overwrite, argument="--output",
                          layout="model") as staging:
        model.save(staging / MODEL_FILE)
        write_json(staging / CALIBRATION_FILE, record)
        _say(args, "exporting the SavedModel and checking it with TF Serving's loader ...")
        export_saved_model(model, staging / SAVED_MODEL_DIR, version=1)
        check = verify_saved_model(staging / SAVED_MODEL_DIR, model=model)
        _say(args, f"SavedModel verified: {', '.join(check['signatures'])}")
        _write_evaluation(args, model, record, val, staging / REPORT_DIR, "train",
                          title="validation data, training prior")
        extra = evaluation(model, record, staging) if evaluation else None
    _say(args, f"wrote {output}/ ({MODEL_FILE}, {CALIBRATION_FILE}, "
               f"{SAVED_MODEL_DIR}/1/, {REPORT_DIR}/)")
    return model, record, extra


def _write_evaluation(args, model, record, data, report_dir, prior_argument, title,
                      probs_by_prior=None):
    """Scores ``data`` under a prior, writes the report; returns (summary, probs, labels)."""
    from calibkeras.models.inference import posterior_probabilities, predict_balanced_logits
    from calibkeras.reports import evaluation_summary, write_report

    _say(args, f"scoring {data.num_examples} images ({title}) ...")
    logits, labels = predict_balanced_logits(model, data, progress=not args.quiet)
    prior, prior_name = _resolve_prior(prior_argument, model, record, logits)
    probs = posterior_probabilities(model, logits, prior)
    uncalibrated = posterior_probabilities(model, logits, prior, calibrated=False)
    summary = evaluation_summary(
        probs, labels, record["class_names"], uncalibrated_probs=uncalibrated,
        prior_used=prior, temperature=model.get_layer("temperature").temperature,
    )
    summary["prior_name"] = prior_name
    if report_dir is not None:
        write_report(report_dir, summary, probs, labels, record["class_names"],
                     uncalibrated_probs=uncalibrated, probs_by_prior=probs_by_prior,
                     class_counts=record.get("class_counts"),
                     overwrite=getattr(args, "overwrite", False))
    return summary, probs, labels


def _train_command(args):
    train_model(args)


# --------------------------------------------------------------------------- evaluate


def _evaluate_command(args):
    import numpy as np

    from calibkeras._staging import check_output_dir, check_output_file
    from calibkeras.model_directory import load_model_directory, write_json
    from calibkeras.reports import format_summary_table

    # Every output is checked before any scoring: one rule, refused without --overwrite.
    for flag, path in (("--json", args.json), ("--predictions", args.predictions)):
        if path is not None:
            check_output_file(path, args.overwrite, argument=flag)
    if args.report is not None:
        check_output_dir(args.report, args.overwrite, argument="--report", layout="report")
    model, record = load_model_directory(args.model)
    data = _load_labelled_csv(args, record, args.csv)
    summary, probs, labels = _write_evaluation(
        args, model, record, data, args.report, args.prior, title=f"prior: {args.prior}"
    )
    print(format_summary_table(summary))
    if args.json:
        write_json(args.json, summary)
    if args.predictions:
        import pandas as pd

        table = pd.DataFrame(probs, columns=record["class_names"])
        names = np.asarray(record["class_names"])
        table.insert(0, "predicted", names[probs.argmax(axis=1)])
        table.insert(0, "label", names[labels])
        table.insert(0, "path", list(data.file_paths))
        table.to_csv(args.predictions, index=False)


# --------------------------------------------------------------------------- predict


def _predict_command(args):
    import numpy as np
    import tensorflow as tf

    from calibkeras.calibration.decisions import bayes_decisions, check_cost_matrix
    from calibkeras.data.preprocessing import load_image
    from calibkeras.model_directory import load_model_directory
    from calibkeras.models import logits_model
    from calibkeras.models.inference import posterior_probabilities

    for path in args.images:
        if not os.path.isfile(path):
            raise CommandError(f"image '{path}' does not exist")
    model, record = load_model_directory(args.model)
    class_names = record["class_names"]
    image_size = tuple(record["preprocessing"]["image_size"])
    images = []
    for path in args.images:
        try:
            images.append(load_image(path, image_size))
        except tf.errors.InvalidArgumentError as error:
            raise CommandError(f"image '{path}' does not decode: {error.message}") from None
    logits = logits_model(model).predict(tf.stack(images), verbose=0)
    prior, prior_name = _resolve_prior(args.prior, model, record, logits)
    probs = posterior_probabilities(model, logits, prior)
    cost_matrix, abstain_cost, action_names = _read_costs(args.costs)
    if cost_matrix is None:
        cost_matrix = 1.0 - np.eye(len(class_names))
        action_names = class_names
    cost_matrix = check_cost_matrix(cost_matrix, len(class_names))
    decisions = bayes_decisions(probs, cost_matrix, abstain_cost)
    actions = list(action_names or [str(a) for a in range(cost_matrix.shape[0])])
    if abstain_cost is not None:
        actions.append("abstain")
    results = []
    for path, row, decision in zip(args.images, probs, decisions):
        top = np.argsort(-row)[: args.top_k]
        results.append({
            "image": path,
            "top_k": [{"class": class_names[k], "probability": float(row[k])} for k in top],
            "decision": actions[int(decision)],
            "probabilities": dict(zip(class_names, map(float, row))),
        })
    if args.json:
        print(json.dumps({"prior": prior_name, "predictions": results}, indent=2))
        return
    print(f"prior: {prior_name}")
    for result in results:
        shown = ", ".join(f"{t['class']} {t['probability']:.3f}" for t in result["top_k"])
        print(f"{result['image']}: {shown} -> decision: {result['decision']}")


# --------------------------------------------------------------------------- export


def _export_command(args):
    from calibkeras._staging import check_output_dir
    from calibkeras.export import export_saved_model, verify_saved_model
    from calibkeras.model_directory import load_model_directory

    check_output_dir(Path(args.output) / str(args.export_version), args.overwrite,
                     argument="--output/--version", layout="saved_model")
    model, record = load_model_directory(args.model)
    prior, prior_name = _resolve_prior(args.prior, model, record)
    cost_matrix, abstain_cost, action_names = _read_costs(args.costs)
    path = export_saved_model(
        model, args.output, version=args.export_version, cost_matrix=cost_matrix,
        abstain_cost=abstain_cost, prior=prior, action_names=action_names,
        overwrite=args.overwrite,
    )
    check = verify_saved_model(path, model=None)
    print(f"exported {path} (prior: {prior_name}); verified signatures with TF Serving's "
          f"loader: {', '.join(check['signatures'])}")


# --------------------------------------------------------------------------- demo


def _demo_command(args):
    from calibkeras.datasets import food10_csv, load_food10
    from calibkeras.model_directory import REPORT_DIR, write_json

    settings = DEMO_SETTINGS["quick" if args.quick else "full"]
    train_args = argparse.Namespace(
        train_csv=food10_csv("train"), val_csv=food10_csv("val"), val_fraction=0.2,
        image_root=None, image_column=None, label_column=None, backbone="efficientnet_lite0",
        weights="imagenet", image_size=settings["image_size"], batch_size=32,
        epochs=settings["epochs"], fine_tune_epochs=settings["fine_tune_epochs"],
        fine_tune_fraction=1.0, learning_rate=1e-3, loss="logit_adjusted",
        sampling="natural", seed=args.seed, strategy="default", output=args.output,
        overwrite=args.overwrite, quiet=args.quiet,
    )
    started = time.perf_counter()

    def score_test_set(model, record, staging):
        test = load_food10("test", image_size=(settings["image_size"],) * 2)
        return _demo_comparison(args, model, record, test, staging / REPORT_DIR / "test")

    _, _, rows = train_model(train_args, evaluation=score_test_set)
    seconds = time.perf_counter() - started
    write_json(Path(args.output) / "demo_summary.json", {"rows": rows, "seconds": seconds})
    print(_format_demo_rows(rows))
    print(f"demo finished in {seconds / 60:.1f} min; open {args.output}/{REPORT_DIR}/test/"
          "report.html")


def _demo_comparison(args, model, record, test, report_dir):
    """Scores the balanced test set four ways: what calibration and the prior change."""
    from calibkeras.models.inference import posterior_probabilities, predict_balanced_logits
    from calibkeras.reports import evaluation_summary, write_report

    _say(args, f"scoring the balanced test set ({test.num_examples} images) ...")
    logits, labels = predict_balanced_logits(model, test, progress=not args.quiet)
    settings = [
        ("uncalibrated, training prior", "train", False),
        ("calibrated, training prior", "train", True),
        ("calibrated, prior estimated by EM", "estimate", True),
        ("calibrated, uniform prior", "uniform", True),
    ]
    rows, by_prior = [], {}
    for name, prior_argument, calibrated in settings:
        prior, _ = _resolve_prior(prior_argument, model, record, logits)
        probs = posterior_probabilities(model, logits, prior, calibrated=calibrated)
        summary = evaluation_summary(probs, labels, record["class_names"], prior_used=prior,
                                     temperature=model.get_layer("temperature").temperature)
        rows.append({"setting": name, **{k: summary[k] for k in (
            "balanced_accuracy", "accuracy", "macro_f1", "nll", "brier", "ece")},
            "ece_perfect_mean": summary["calibration_test"]["ece_perfect_mean"],
            "ece_p_value": summary["calibration_test"]["p_value"]})
        if calibrated and prior_argument in ("train", "uniform"):
            by_prior[f"{prior_argument} prior"] = probs
    uniform_prior, _ = _resolve_prior("uniform", model, record)
    uniform = posterior_probabilities(model, logits, uniform_prior)
    uncalibrated = posterior_probabilities(model, logits, uniform_prior, calibrated=False)
    summary = evaluation_summary(
        uniform, labels, record["class_names"], uncalibrated_probs=uncalibrated,
        prior_used=uniform_prior, temperature=model.get_layer("temperature").temperature,
    )
    write_report(report_dir, summary, uniform, labels, record["class_names"],
                 uncalibrated_probs=uncalibrated, probs_by_prior=by_prior,
                 class_counts=record.get("class_counts"))
    return rows


def _format_demo_rows(rows):
    header = (f"{'setting':36s} {'bal.acc':>7s} {'acc':>6s} {'NLL':>6s} {'Brier':>6s} "
              f"{'ECE':>6s} {'ECE if calibrated':>17s} {'p':>5s}")
    lines = ["", "balanced food10 test set (750 images, 75 per class):", header,
             "-" * len(header)]
    for row in rows:
        lines.append(
            f"{row['setting']:36s} {row['balanced_accuracy']:7.3f} {row['accuracy']:6.3f} "
            f"{row['nll']:6.3f} {row['brier']:6.3f} {row['ece']:6.3f} "
            f"{row['ece_perfect_mean']:17.3f} {row['ece_p_value']:5.2f}"
        )
    lines.append("ECE if calibrated: the mean ECE of a perfectly calibrated model with the same "
                 "confidences on this many images; p: consistency-resampling p-value.")
    return "\n".join(lines)


# --------------------------------------------------------------------------- entry point


def main(argv=None):
    """Runs the ``calibkeras`` command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        args.handler(args)
    except (CommandError, OSError, ValueError) as error:  # OSError: files, ports, timeouts
        message = " ".join(line.strip() for line in str(error).splitlines()) or repr(error)
        print(f"calibkeras {args.command}: error: {message}", file=sys.stderr)
        return EXIT_DATA
    except KeyboardInterrupt:
        print(f"calibkeras {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:
        # TensorFlow's OpErrors (a worker that died, an image that fails mid-epoch).
        if not type(error).__module__.startswith("tensorflow") or not hasattr(error, "message"):
            raise
        message = " ".join(line.strip() for line in error.message.splitlines())
        print(f"calibkeras {args.command}: error: {type(error).__name__}: {message}",
              file=sys.stderr)
        return EXIT_DATA
    return 0


if __name__ == "__main__":
    sys.exit(main())
