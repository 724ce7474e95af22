"""The ``calibkeras`` command: train, evaluate, predict, export and demo.

Exit status: 0 on success, 1 for a data or file problem (missing file, bad CSV row,
existing output folder), 2 for a usage error (unknown flag, bad value). Errors are
one line on stderr, without a traceback.
"""

import argparse
import dataclasses
import json
import os
import re
import sys
import warnings

from calibkeras import workflow
from calibkeras.workflow import CALIBRATIONS, DEMO_SETTINGS, LOSSES, SAMPLINGS, STRATEGIES

EXIT_DATA = 1
EXIT_USAGE = 2
_OVERWRITE_MODEL_HELP = (
    "replace an existing --output folder, but only a model folder that calibkeras wrote "
    "(one with calibration.json; any other folder is refused before training); the old "
    "folder stays until the new one is in place"
)


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
    _add_data_flags(train, "--train-csv", "CSV of training images and labels")
    train.add_argument("--val-csv", metavar="CSV",
                       help="validation CSV for the calibration (default: a stratified "
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
    evaluate.add_argument("--json", metavar="OUT", dest="json_path",
                          help="write the scores as JSON here")
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
    export.add_argument("--version", type=_positive_int, default=1, dest="version",
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
    parser.add_argument("--calibration", choices=CALIBRATIONS, default="auto",
                        help="auto (default: temperature, bias_corrected or vector scaling, "
                             "chosen by cross-validated NLL on the validation data; the "
                             "simplest within one standard error) or one of them")
    parser.add_argument("--loss", choices=LOSSES, default="logit_adjusted",
                        help="logit_adjusted (default) learns balanced logits; the others "
                             "learn the training prior, removed after training")
    parser.add_argument("--sampling", choices=SAMPLINGS, default="natural",
                        help="batch sampling (default natural; balanced changes the prior "
                             "the model sees, which calibkeras then corrects)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--strategy", choices=STRATEGIES, default="default",
                        help="tf.distribute strategy (multi_worker reads TF_CONFIG)")
    parser.add_argument("--overwrite", action="store_true", help=_OVERWRITE_MODEL_HELP)
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def _version():
    from calibkeras._version import __version__

    return f"calibkeras {__version__}"


# --------------------------------------------------------------------------- commands


def _train_command(args):
    workflow.train(_train_config(args))


def _train_config(args):
    """The :class:`calibkeras.workflow.TrainConfig` of parsed ``train`` flags."""
    fields = {field.name for field in dataclasses.fields(workflow.TrainConfig)}
    # Flags left unset (None) take the config's defaults.
    values = {name: value for name, value in vars(args).items()
              if name in fields and value is not None}
    return workflow.TrainConfig(**values, verbose=not args.quiet)


def _evaluate_command(args):
    from calibkeras.reports import format_summary_table

    result = workflow.evaluate(
        args.model, args.csv, prior=args.prior, image_root=args.image_root,
        image_column=args.image_column, label_column=args.label_column,
        json_path=args.json_path, report=args.report, predictions=args.predictions,
        overwrite=args.overwrite, verbose=not args.quiet,
    )
    print(workflow.format_prior_report(result.summary["prior"]))
    print(format_summary_table(result.summary))


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
        print(f"{row['image']}: {shown} -> decision: {row['decision']}")


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


def main(argv=None):
    """Runs the ``calibkeras`` command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # Warnings (too few images for an estimate, an unfitted calibration) as one line.
    warnings.formatwarning = lambda message, *_, **__: f"calibkeras: warning: {message}\n"
    try:
        args.handler(args)
    except (OSError, ValueError) as error:  # OSError: files, ports, timeouts
        message = " ".join(line.strip() for line in str(error).splitlines()) or repr(error)
        message = _in_flags(message, _flag_names(parser, args.command))
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
