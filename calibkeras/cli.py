"""The ``calibkeras`` command: train, evaluate, predict, export and demo.

Exit status: 0 on success, 1 for a data or file problem (missing file, bad CSV row,
existing output folder), 2 for a usage error (unknown flag, bad value). Errors are
one line on stderr, without a traceback.

TensorFlow is imported only by the commands that run a model: ``--version``,
``--help`` and usage errors answer at once (the choices come from
:mod:`calibkeras.choices`, and :mod:`calibkeras.workflow` imports TensorFlow inside
its functions).
"""

import argparse
import dataclasses
import json
import os
import re
import sys
import textwrap
import warnings

from calibkeras import workflow
from calibkeras.choices import CONFORMAL_MODES, CONFORMITY_SCORES, SCHEDULES
from calibkeras.utils.checks import check_zoom
from calibkeras.workflow import CALIBRATIONS, DEMO_SETTINGS, LOSSES, SAMPLINGS, STRATEGIES

EXIT_DATA = 1
EXIT_USAGE = 2
#: Flags that read a CSV; refused when only folders of class subfolders are given.
_CSV_FLAGS = {"image_root": "--image-root", "image_column": "--image-column",
              "label_column": "--label-column", "keep_columns": "--keep-columns"}
#: The library's Python spellings in messages, and the flags they are in the command.
_PYTHON_TERMS = {
    "pass on_bad_image='skip'": "pass --skip-bad-images",
    "(on_bad_image='skip')": "(--skip-bad-images)",
    "pass overwrite=True (--overwrite)": "pass --overwrite",
    "backbone='efficientnet_lite0'": "--backbone efficientnet_lite0",
    "weights=None": "--weights none",
    "must be 'imagenet', None or the path of a weights file":
        "must be imagenet, none or the path of a .weights.h5 file",
    "expected directory/<class_name>/<image files>": "expected DIR/<class name>/<images>",
}
_OVERWRITE_MODEL_HELP = (
    "replace an existing --output folder, but only a model folder that calibkeras wrote "
    "(one with calibration.json; any other folder is refused before training); the old "
    "folder stays until the new one is in place"
)


class _HelpFormatter(argparse.HelpFormatter):
    """argparse's help layout, without breaking a flag at its hyphens (``--val-`` /
    ``csv``)."""

    def _split_lines(self, text, width):
        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)


class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose usage errors are one line and exit with status 2."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


class _UsageError(Exception):
    """A usage error found after parsing (flags that do not go together): exit 2."""


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


def _open_fraction(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1), got {text!r}") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1), got {text!r}")
    return value


#: What ``--early-stopping-patience none`` parses to: no early stopping (None would
#: mean "flag not given", i.e. the default patience).
NO_EARLY_STOPPING = "none"


def _patience(text):
    """An argparse type: an integer >= 0, or ``none``."""
    if text.strip().lower() == NO_EARLY_STOPPING:
        return NO_EARLY_STOPPING
    try:
        return _non_negative_int(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"expected an integer >= 0 or 'none', got {text!r}") from None


def _zoom(text):
    """An argparse type: a number in [0, 1)."""
    try:
        return check_zoom(float(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}") from None


def _fraction(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {text!r}") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {text!r}")
    return value


def _column_names(text):
    """An argparse type: comma-separated column names (``id,name``)."""
    names = [name.strip() for name in text.split(",")]
    if not all(names):
        raise argparse.ArgumentTypeError(
            f"expected column names separated by commas (id,name), got {text!r}")
    return names


def _add_data_flags(parser, flags, help_texts, *, columns_default):
    """A CSV or a folder of class subfolders (exactly one), the CSV's flags and
    --skip-bad-images.

    Args:
        parser: the sub-command's parser.
        flags: ``(CSV flag, folder flag, the folder flag's dest)``.
        help_texts: the helps of the two.
        columns_default: what --image-column and --label-column default to, in words.
    """
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(flags[0], metavar="CSV", help=help_texts[0])
    source.add_argument(flags[1], metavar="DIR", dest=flags[2], help=help_texts[1])
    parser.add_argument("--image-root", metavar="DIR",
                        help="folder that a CSV's relative image paths start from "
                             "(default: the CSV's)")
    parser.add_argument("--image-column", default=None, metavar="NAME",
                        help=f"CSV column of image paths (default: {columns_default[0]})")
    parser.add_argument("--label-column", default=None, metavar="NAME",
                        help=f"CSV column of labels (default: {columns_default[1]})")
    parser.add_argument("--skip-bad-images", nargs="?", const=True, metavar="REPORT.csv",
                        help="leave out missing, unreadable and undecodable images instead "
                             "of stopping, and list them in REPORT.csv (default: "
                             "<CSV name>.skipped.csv beside the CSV, <DIR>.skipped.csv "
                             "beside the folder)")


def _add_prior_flag(parser, estimate=True):
    """--prior; without ``estimate`` (export: no images to estimate from) it is refused."""
    parser.add_argument(
        "--prior", default="model", metavar="PRIOR",
        type=str if estimate else _prior_without_estimate,
        help="class prior to predict under: model (the one saved with the model, default), "
             "train (the training prior), uniform, "
             + ("estimate (EM on the given images), " if estimate else "")
             + 'or a JSON file {"prior": [...]} or {"class name": probability, ...}',
    )


def _prior_without_estimate(text):
    if text == "estimate":
        raise argparse.ArgumentTypeError(
            "export has no images to estimate a prior from: give a prior here, and let the "
            "deployment estimate its own with the export's estimate_prior signature (or run "
            "evaluate/predict --prior estimate on your images and pass the result as a JSON "
            "file)"
        )
    return text


def build_parser():
    """The argument parser of the ``calibkeras`` command."""
    parser = _Parser(prog="calibkeras", description=(
        "Calibrated, prior-aware, cost-sensitive image classification with Keras."))
    parser.add_argument("--version", action="version", version=_version())
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    train = commands.add_parser("train", help="train, calibrate, export and report")
    _add_data_flags(train, ("--train-csv", "--train-dir", "train_dir"), (
        "CSV of training images and labels",
        "folder of training images, one subfolder per class (DIR/<class>/<images>)",
    ), columns_default=("filepath", "label"))
    validation = train.add_mutually_exclusive_group()
    validation.add_argument("--val-csv", metavar="CSV",
                            help="validation CSV for the calibration, with images of every "
                                 "training class (default: a stratified split of the training "
                                 "data, see --val-fraction)")
    validation.add_argument("--val-dir", metavar="DIR",
                            help="validation folder, one subfolder per class (with "
                                 "--skip-bad-images REPORT.csv its report is REPORT.val.csv)")
    train.add_argument("--val-fraction", type=_fraction, default=0.2, metavar="F",
                       help="share of each class held out without --val-csv/--val-dir "
                            "(default 0.2)")
    train.add_argument("--class-names", metavar="FILE|a,b,c",
                       help="the classes in id order (label k is the k-th name): a file with "
                            "one name per line, or the names separated by commas; names "
                            "integer labels, and with --train-dir reads only these "
                            "subfolders (default: the sorted labels or subfolders)")
    _add_training_flags(train)
    train.add_argument("--output", required=True, metavar="DIR", help="folder to write")
    train.set_defaults(handler=_train_command)

    evaluate = commands.add_parser("evaluate", help="score a trained model on labelled images")
    evaluate.add_argument("--model", required=True, metavar="DIR", help="a trained model folder")
    _add_data_flags(evaluate, ("--csv", "--dir", "directory"), (
        "CSV of images and labels to score (it may lack some of the model's classes: the "
        "classes present are scored)",
        "folder of images to score, one subfolder per class named as the model's classes "
        "(some may be missing)",
    ), columns_default=("the model's", "the model's"))
    _add_prior_flag(evaluate)
    evaluate.add_argument("--json", metavar="OUT", dest="json_path",
                          help="write the scores as JSON here")
    evaluate.add_argument("--report", metavar="DIR", help="write plots and report.html here")
    evaluate.add_argument("--predictions", metavar="FILE.csv",
                          help="write one row per image: path, label, prediction, probabilities")
    evaluate.add_argument("--keep-columns", type=_column_names, metavar="NAME,...",
                          help="columns of --csv to copy into --predictions, first (e.g. an "
                               "id to join the results back on)")
    evaluate.add_argument("--overwrite", action="store_true",
                          help="replace existing --json and --predictions files and a "
                               "--report folder that calibkeras wrote (one with "
                               "report.html and summary.json; any other folder is refused)")
    evaluate.add_argument("--quiet", action="store_true",
                          help="no progress output (the scores are still printed)")
    evaluate.set_defaults(handler=_evaluate_command)

    predict = commands.add_parser("predict", help="calibrated probabilities and decisions")
    predict.add_argument("--model", required=True, metavar="DIR", help="a trained model folder")
    predict.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    predict.add_argument("--costs", metavar="FILE.json",
                         help='decision costs: {"cost_matrix": [[...]], "abstain_cost": x, '
                              '"action_names": [...]} (default: 0-1 loss, i.e. argmax)')
    _add_prior_flag(predict)
    predict.add_argument("--top-k", type=_positive_int, default=3, metavar="K",
                         help="classes to show (default 3)")
    predict.add_argument("--json", action="store_true", help="print JSON instead of a table")
    predict.set_defaults(handler=_predict_command)

    export = commands.add_parser("export", help="write a SavedModel for TF Serving")
    export.add_argument("--model", required=True, metavar="DIR", help="a trained model folder")
    export.add_argument("--output", required=True, metavar="EXPORT_DIR",
                        help="base folder; the export goes to EXPORT_DIR/<version>/")
    export.add_argument("--version", type=_positive_int, default=1, dest="version", metavar="N",
                        help="numeric version folder (default 1)")
    export.add_argument("--costs", metavar="FILE.json", help="cost matrix for `decide`")
    _add_prior_flag(export, estimate=False)
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
    demo.add_argument("--seed", type=int, default=0, metavar="N", help="random seed (default 0)")
    demo.add_argument("--overwrite", action="store_true", help=_OVERWRITE_MODEL_HELP)
    demo.add_argument("--quiet", action="store_true",
                      help="no progress output (the results are still printed)")
    demo.set_defaults(handler=_demo_command)
    return parser


def _add_training_flags(parser):
    from_models = ("efficientnet_lite0..lite2, efficientnet_b0..b7, efficientnet_v2_b0..b3/s/m/l")
    parser.add_argument("--backbone", default="efficientnet_lite0", metavar="NAME",
                        help=from_models + " (default efficientnet_lite0, offline)")
    parser.add_argument("--weights", default="imagenet", metavar="WEIGHTS",
                        help="imagenet (default), none, or a local .weights.h5 file")
    parser.add_argument("--image-size", type=_positive_int, default=None, metavar="PX",
                        help="square image size in pixels (default: the backbone's ImageNet "
                             "size, 224 for Lite0, 240 Lite1, 260 Lite2; 224 beats food10's "
                             "own 160 px for Lite0, see BENCHMARKS.md)")
    parser.add_argument("--batch-size", type=_positive_int, default=32, metavar="N",
                        help="global batch size, split across replicas and workers (default 32)")
    parser.add_argument("--epochs", type=_non_negative_int, default=5, metavar="N",
                        help="epochs of head training, backbone frozen (default 5)")
    parser.add_argument("--fine-tune-epochs", type=_non_negative_int, default=6, metavar="N",
                        help="at most this many epochs of fine-tuning the backbone, stopped "
                             "early when the validation NLL stops improving (default 6)")
    parser.add_argument("--fine-tune-fraction", type=_fraction, default=1.0, metavar="F",
                        help="share of backbone layers to fine-tune, from the top; BatchNorm "
                             "stays frozen (default 1.0)")
    parser.add_argument("--fine-tune-schedule", choices=SCHEDULES, default="constant",
                        help="fine-tuning learning rate: constant (default) or cosine, "
                             "decaying to 0 over the fine-tuning epochs")
    parser.add_argument("--fine-tune-ema-momentum", type=_open_fraction, default=None,
                        metavar="M", help="fine-tune with a moving average of the weights at "
                                          "this momentum, e.g. 0.99 (default: none)")
    parser.add_argument("--early-stopping-patience", type=_patience, default=None,
                        metavar="N|none",
                        help="stop fine-tuning after N epochs without a better validation "
                             "NLL, keeping the best epoch; none: run every epoch (default 2)")
    parser.add_argument("--zoom", type=_zoom, default=None, metavar="Z",
                        help="also zoom training images in by up to Z, in [0, 1) (0.4: 36-100%% "
                             "of the area; default 0: none). The stronger recipe of "
                             "BENCHMARKS.md: --fine-tune-epochs 12 --zoom 0.4 "
                             "--fine-tune-schedule cosine --fine-tune-ema-momentum 0.99 "
                             "--early-stopping-patience none")
    parser.add_argument("--learning-rate", type=float, default=1e-3, metavar="LR",
                        help="head learning rate; fine-tuning uses a tenth (default 1e-3)")
    parser.add_argument("--calibration", choices=CALIBRATIONS, default="auto",
                        help="auto (default: temperature, bias_corrected or vector scaling, "
                             "chosen by cross-validated NLL on the validation data; the "
                             "simplest within one standard error) or one of them")
    parser.add_argument("--alpha", type=_open_fraction, default=None, metavar="A",
                        help="fit conformal prediction sets on the validation data: each "
                             "set holds the true class with probability at least 1 - A "
                             "(e.g. 0.1; default: no sets)")
    parser.add_argument("--conformal", choices=CONFORMAL_MODES, default="by_class",
                        help="with --alpha: by_class (default; the coverage holds for every "
                             "class, under any prior) or marginal (overall, weighted for the "
                             "deployment prior)")
    parser.add_argument("--set-score", choices=CONFORMITY_SCORES, default="lac",
                        help="with --alpha: the sets' conformity score, lac (default; "
                             "smallest sets), aps or raps (sets that grow with uncertainty)")
    parser.add_argument("--loss", choices=LOSSES, default="logit_adjusted",
                        help="logit_adjusted (default) learns balanced logits; the others "
                             "learn the training prior, removed after training")
    parser.add_argument("--sampling", choices=SAMPLINGS, default="natural",
                        help="batch sampling (default natural; balanced changes the prior "
                             "the model sees, which calibkeras then corrects)")
    parser.add_argument("--seed", type=int, default=0, metavar="N", help="random seed (default 0)")
    parser.add_argument("--strategy", choices=STRATEGIES, default="default",
                        help="tf.distribute strategy (multi_worker reads TF_CONFIG)")
    parser.add_argument("--overwrite", action="store_true", help=_OVERWRITE_MODEL_HELP)
    parser.add_argument("--quiet", action="store_true",
                        help="no progress output (the final \"wrote ...\" line is still printed)")


def _version():
    from calibkeras._version import __version__

    return f"calibkeras {__version__}"


# --------------------------------------------------------------------------- commands


def _train_command(args):
    from calibkeras.model_directory import CALIBRATION_FILE, MODEL_FILE, REPORT_DIR, SAVED_MODEL_DIR

    result = workflow.train(_train_config(args))
    if result.output is not None:
        print(f"wrote {result.output}/ ({MODEL_FILE}, {CALIBRATION_FILE}, "
              f"{SAVED_MODEL_DIR}/1/, {REPORT_DIR}/)")


def _train_config(args):
    """The :class:`calibkeras.workflow.TrainConfig` of parsed ``train`` flags.

    Raises:
        _UsageError: flags that do not go together, or a bad value.
        FileNotFoundError, ValueError: a ``--class-names`` file that is missing or
            holds no names.
    """
    _refuse_csv_flags(args, {"train_csv": "--train-csv", "val_csv": "--val-csv"})
    fields = {field.name for field in dataclasses.fields(workflow.TrainConfig)}
    # Flags left unset (None) take the config's defaults.
    values = {name: value for name, value in vars(args).items()
              if name in fields and value is not None}
    if args.class_names is not None:
        values["class_names"] = _class_names(args.class_names)
    if values.get("early_stopping_patience") == NO_EARLY_STOPPING:
        values["early_stopping_patience"] = None
    try:
        return workflow.TrainConfig(**values, verbose=not args.quiet)
    except ValueError as error:
        raise _UsageError(str(error)) from None


def _class_names(text):
    """The names of ``--class-names``: ``a,b,c``, or a file with one name per line."""
    if "," in text:
        names = [name.strip() for name in text.split(",")]
        if not all(names):
            raise _UsageError(f"`--class-names` {text!r} has an empty name; give the names "
                              "separated by commas (a,b,c), or a file with one per line")
        return names
    if not os.path.isfile(text):
        raise FileNotFoundError(
            f"`--class-names` file '{text}' does not exist; give a file with one class name "
            "per line, or the names separated by commas (a,b,c)")
    with open(text, encoding="utf-8-sig") as file:
        names = [line.strip() for line in file if line.strip()]
    if not names:
        raise ValueError(f"`--class-names` file '{text}' holds no class names; write one "
                         "name per line, in id order")
    return names


def _refuse_csv_flags(args, csv_flags):
    """Refuses the flags that read a CSV when the command has no CSV (only folders).

    Args:
        args: the parsed flags.
        csv_flags: ``{dest: flag}`` of the command's CSV inputs.
    """
    if any(getattr(args, dest) is not None for dest in csv_flags):
        return
    given = [flag for dest, flag in _CSV_FLAGS.items() if getattr(args, dest, None) is not None]
    if given:
        raise _UsageError(
            f"{given[0]} applies to CSV files ({', '.join(csv_flags.values())}), and none is "
            f"given: a folder of class subfolders holds its own images; leave {given[0]} out")


def _evaluate_command(args):
    from calibkeras.reports import format_summary_table

    _refuse_csv_flags(args, {"csv": "--csv"})
    if args.keep_columns is not None and args.predictions is None:
        raise _UsageError("--keep-columns copies columns into --predictions: give "
                          "--predictions FILE.csv too")
    result = workflow.evaluate(
        args.model, args.csv, directory=args.directory, prior=args.prior,
        image_root=args.image_root, image_column=args.image_column,
        label_column=args.label_column, skip_bad_images=args.skip_bad_images or False,
        json_path=args.json_path, report=args.report, predictions=args.predictions,
        keep_columns=args.keep_columns, overwrite=args.overwrite, verbose=not args.quiet,
    )
    print(workflow.format_prior_report(result.summary["prior"]))
    print(format_summary_table(result.summary))
    if "conformal" in result.summary:
        print(workflow.format_conformal_summary(result.summary["conformal"]))
    for path in (args.json_path, args.predictions):
        if path is not None:
            print(f"wrote {path}")
    if args.report is not None:
        print(f"wrote {args.report}/ (report.html, summary.json and plots)")


def _predict_command(args):
    result = workflow.predict(args.model, args.images, prior=args.prior, costs=args.costs,
                              top_k=args.top_k)
    if args.json:
        print(json.dumps({"prior": result.prior, "predictions": result.predictions},
                         indent=2))
        return
    print(workflow.format_prior_report(result.prior))
    for row in result.predictions:
        shown = ", ".join(f"{t['class']} {t['probability']:.3f}" for t in row["top_k"])
        line = f"{row['image']}: {shown} -> decision: {row['decision']}"
        if row["prediction_set"] is not None:
            line += f"; set: {{{', '.join(row['prediction_set'])}}}"
        print(line)


def _export_command(args):
    path, prior_name, check = workflow.export(
        args.model, args.output, version=args.version, costs=args.costs, prior=args.prior,
        overwrite=args.overwrite,
    )
    print(f"exported {path} (prior: {prior_name}); verified signatures with TF Serving's "
          f"loader: {', '.join(check['signatures'])}")


def _demo_command(args):
    from calibkeras.model_directory import REPORT_DIR

    result = workflow.demo(args.output, quick=args.quick, seed=args.seed,
                           overwrite=args.overwrite, verbose=not args.quiet)
    print(workflow.format_demo_rows(result.rows))
    print(f"demo finished in {result.seconds / 60:.1f} min; open {args.output}/{REPORT_DIR}/"
          "test/report.html")


# --------------------------------------------------------------------------- entry point


def _flag_names(parser, command):
    """``{dest: flag}`` of a sub-command (``{"image_root": "--image-root", ...}``)."""
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    flags = {}
    for action in subparsers.choices[command]._actions:
        if action.option_strings:
            flags[action.dest] = action.option_strings[0]
    flags["output/version"] = "--output/--version"
    return flags


def _in_flags(message, flags):
    """``message`` with the library's argument names (`image_root`) as flags (`--image-root`)."""
    return re.sub(r"`([\w/]+)`", lambda m: f"`{flags.get(m.group(1), m.group(1))}`", message)


def _in_user_terms(message, flags):
    """``message`` as one line, in the command's terms: flags for argument names
    (:func:`_in_flags`) and for the library's Python spellings (``weights=None``)."""
    message = " ".join(line.strip() for line in str(message).splitlines())
    for python, flag in _PYTHON_TERMS.items():
        message = message.replace(python, flag)
    return _in_flags(message, flags)


def _quiet_tensorflow():
    """Keeps TensorFlow's C++ logs below ``TF_CPP_MIN_LOG_LEVEL`` off stderr (default
    2: errors only); must run before TensorFlow loads."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


#: A TensorFlow C++ log line ("I0000 00:00:... port.cc:153] oneDNN ..."): its severity.
_TF_LOG_LINE = re.compile(r"^([IWEF])\d{4} \d\d:\d\d:")
_TF_SEVERITIES = "IWEF"  # index = the TF_CPP_MIN_LOG_LEVEL that shows it


def _import_tensorflow():
    """Imports TensorFlow, holding back the start-up lines that its C++ libraries write
    before their logging reads ``TF_CPP_MIN_LOG_LEVEL`` (oneDNN, CUDA and CPU-feature
    notes, twice, which the variable alone does not hide in TF 2.21): lines below
    that level are dropped, every other line it writes is passed on to stderr."""
    if "tensorflow" in sys.modules:
        return
    try:
        level = int(os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0"))
    except ValueError:
        level = 0
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no stderr file descriptor to hold back
        import tensorflow  # noqa: F401

        return
    import tempfile

    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow  # noqa: F401
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            lines = captured.read().decode("utf-8", "replace").splitlines()
            sys.stderr.write("".join(f"{line}\n" for line in _shown_log_lines(lines, level)))


def _shown_log_lines(lines, level):
    """The ``lines`` that ``TF_CPP_MIN_LOG_LEVEL`` ``level`` shows; a line without a
    severity prefix shares the fate of the log line before it."""
    shown = True
    for line in lines:
        match = _TF_LOG_LINE.match(line)
        if match:
            shown = _TF_SEVERITIES.index(match.group(1)) >= level
        elif line.startswith("WARNING: All log messages before absl::InitializeLog()"):
            shown = level < 1
        if shown:
            yield line


def main(argv=None):
    """Runs the ``calibkeras`` command; returns the exit status."""
    _quiet_tensorflow()
    parser = build_parser()
    args = parser.parse_args(argv)
    flags = _flag_names(parser, args.command)
    # Warnings (too few images for an estimate, skipped images) as one line, in flags.
    warnings.formatwarning = (
        lambda message, *_, **__: f"calibkeras: warning: {_in_user_terms(message, flags)}\n")
    prefix = f"calibkeras {args.command}: error:"
    try:
        _import_tensorflow()  # every command runs a model
        args.handler(args)
    except _UsageError as error:
        print(f"{prefix} {_in_user_terms(error, flags)} (see --help)", file=sys.stderr)
        return EXIT_USAGE
    except (OSError, ValueError) as error:  # OSError: files, ports, timeouts
        print(f"{prefix} {_in_user_terms(error, flags) or repr(error)}", file=sys.stderr)
        return EXIT_DATA
    except KeyboardInterrupt:
        print(f"calibkeras {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:
        from calibkeras.models.efficientnet_lite import MissingWeightsPackageError

        if isinstance(error, MissingWeightsPackageError):  # names what to install
            print(f"{prefix} {_in_user_terms(error, flags)}", file=sys.stderr)
            return EXIT_DATA
        # TensorFlow's OpErrors (a worker that died, an image that fails mid-epoch).
        if not type(error).__module__.startswith("tensorflow") or not hasattr(error, "message"):
            raise
        message = " ".join(line.strip() for line in error.message.splitlines())
        print(f"{prefix} {type(error).__name__}: {message}", file=sys.stderr)
        return EXIT_DATA
    return 0


if __name__ == "__main__":
    sys.exit(main())
