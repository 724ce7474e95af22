"""Mistaken `calibkeras` invocations, as a newcomer makes them, and a start without TensorFlow.

Each mistake runs through the command's entry point, ``calibkeras.cli:main``, in this
process (fast: TensorFlow is imported once); a few run as the real console command in
a subprocess. For each: the exit status (2 usage, 1 data or file), exactly one line on
stderr that names the flag or the file, and no traceback.
"""

import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pandas as pd
import pytest

from calibkeras import cli
from calibkeras.datasets import food10_csv, food10_dir

REPOSITORY = Path(__file__).resolve().parents[2]


def food_images(count, label="apple_pie"):
    """Paths of ``count`` food10 training images of one class."""
    rows = pd.read_csv(food10_csv("train"))
    return [Path(food10_dir()) / path for path in rows[rows["label"] == label]["filepath"][:count]]


def class_folder(root, counts):
    """``root/<class>/<n>.jpg``: ``counts[class]`` real JPEGs per class (0: an empty folder)."""
    for label, count in counts.items():
        (root / label).mkdir(parents=True)
        for k, image in enumerate(food_images(count)):
            shutil.copyfile(image, root / label / f"{k}.jpg")
    return root


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Good and bad inputs in one folder; their names are the catalogue's placeholders."""
    root = tmp_path_factory.mktemp("mistakes")
    class_folder(root / "classes", {"cake": 3, "soup": 3})
    class_folder(root / "one_image", {"cake": 3, "soup": 1})
    class_folder(root / "empty_class", {"cake": 2, "soup": 0})
    (root / "no_classes").mkdir()
    images = food_images(4)
    good = pd.DataFrame({"filepath": list(map(str, images)), "label": ["cake", "soup"] * 2})
    good.to_csv(root / "good.csv", index=False)
    good.rename(columns={"filepath": "image_file"}).to_csv(root / "renamed.csv", index=False)
    good[good["label"] == "cake"].to_csv(root / "cake_only.csv", index=False)
    (root / "broken.jpg").write_text("not a JPEG")
    bad = good.copy()
    bad.loc[2, "filepath"] = str(root / "broken.jpg")
    bad.to_csv(root / "bad_image.csv", index=False)
    (root / "empty.csv").write_bytes(b"")
    (root / "header_only.csv").write_text("filepath,label\n")
    (root / "latin1.csv").write_bytes("filepath,label\ncr\xe8me.jpg,cake\n".encode("latin-1"))
    (root / "commas.csv").write_text(f"filepath,label\n{images[0]},cake,extra\n")
    (root / "no_names.txt").write_text("\n\n")
    (root / "taken").mkdir()
    (root / "taken" / "notes.txt").write_text("earlier work")
    (root / "report.csv").write_text("an earlier report")
    (root / "scores.json").write_text("{}")
    (root / "costs.json").write_text("{not json")
    return root


def run_main(arguments, data, capsys, monkeypatch):
    """``(status, stderr lines)`` of ``cli.main`` on ``arguments`` (``DATA/`` is the
    ``data`` folder); argparse's exits count as statuses."""
    monkeypatch.setattr(warnings, "formatwarning", warnings.formatwarning)
    arguments = [a.replace("DATA/", f"{data}/") for a in arguments]
    capsys.readouterr()
    try:
        status = cli.main(arguments)
    except SystemExit as exit_:
        status = exit_.code
    return status, capsys.readouterr().err.splitlines()


TRAIN = ["train", "--output", "DATA/out", "--image-size", "32", "--epochs", "0",
         "--fine-tune-epochs", "0", "--weights", "none"]
FOLDERS = [*TRAIN, "--train-dir", "DATA/classes"]

USAGE = 2
DATA = 1

# (arguments, exit status, text the one line on stderr must hold)
CATALOGUE = [
    # --- usage: flags, values, combinations (exit 2, before anything is read)
    ([], USAGE, "the following arguments are required: COMMAND"),
    (["trian"], USAGE, "invalid choice: 'trian'"),
    ([*FOLDERS, "--bogus"], USAGE, "unrecognized arguments: --bogus"),
    (TRAIN, USAGE, "one of the arguments --train-csv --train-dir is required"),
    (["train", "--train-dir", "DATA/classes"], USAGE, "required: --output"),
    ([*TRAIN, "--train-csv", "DATA/good.csv", "--train-dir", "DATA/classes"], USAGE,
     "argument --train-dir: not allowed with argument --train-csv"),
    ([*FOLDERS, "--val-csv", "DATA/good.csv", "--val-dir", "DATA/classes"], USAGE,
     "argument --val-dir: not allowed with argument --val-csv"),
    ([*FOLDERS, "--epochs", "-1"], USAGE, "argument --epochs: expected an integer >= 0"),
    ([*FOLDERS, "--val-fraction", "1.5"], USAGE, "argument --val-fraction: expected a number"),
    ([*FOLDERS, "--image-size", "0"], USAGE, "argument --image-size: expected a positive"),
    ([*FOLDERS, "--loss", "hinge"], USAGE, "argument --loss: invalid choice: 'hinge'"),
    ([*FOLDERS, "--learning-rate", "fast"], USAGE, "argument --learning-rate: invalid float"),
    ([*FOLDERS, "--learning-rate", "0"], USAGE, "`--learning-rate` must be a positive finite"),
    ([*FOLDERS, "--image-column", "image_file"], USAGE,
     "--image-column applies to CSV files (--train-csv, --val-csv)"),
    ([*FOLDERS, "--class-names", "cake,,soup"], USAGE, "`--class-names` 'cake,,soup' has an "
                                                        "empty name"),
    ([*FOLDERS, "--class-names", "cake,soup,cake"], USAGE,
     "`--class-names` must be distinct, got duplicates: ['cake']"),
    (["evaluate", "--csv", "DATA/good.csv"], USAGE, "required: --model"),
    (["evaluate", "--model", "DATA/classes", "--csv", "DATA/good.csv", "--dir", "DATA/classes"],
     USAGE, "argument --dir: not allowed with argument --csv"),
    (["evaluate", "--model", "DATA/classes", "--dir", "DATA/classes", "--keep-columns", "id",
      "--predictions", "DATA/p.csv"], USAGE, "--keep-columns applies to CSV files (--csv)"),
    (["evaluate", "--model", "DATA/classes", "--csv", "DATA/good.csv", "--keep-columns", "id"],
     USAGE, "--keep-columns copies columns into --predictions"),
    (["evaluate", "--model", "DATA/classes", "--csv", "DATA/good.csv", "--keep-columns", "id,",
      "--predictions", "DATA/p.csv"], USAGE, "argument --keep-columns: expected column names"),
    (["predict", "--model", "DATA/classes"], USAGE, "required: IMAGE"),
    (["predict", "--model", "DATA/classes", "x.jpg", "--top-k", "0"], USAGE,
     "argument --top-k: expected a positive integer"),
    (["export", "--model", "M", "--output", "DATA/e", "--prior", "estimate"], USAGE,
     "export has no images to estimate a prior from"),
    (["export", "--model", "M", "--output", "DATA/e", "--version", "v1"], USAGE,
     "argument --version: expected a positive integer"),
    (["demo", "--seed", "zero"], USAGE, "argument --seed: invalid int value: 'zero'"),
    # --- data and files (exit 1): the flag and the file
    ([*TRAIN, "--train-csv", "DATA/missing.csv"], DATA, "`--train-csv` 'DATA/missing.csv' "
                                                         "does not exist"),
    ([*TRAIN, "--train-csv", "DATA/classes"], DATA,
     "`--train-csv` 'DATA/classes' is a folder, not a CSV file; for a folder with one "
     "subfolder of images per class use `--train-dir`"),
    ([*TRAIN, "--train-dir", "DATA/missing"], DATA, "`--train-dir` 'DATA/missing' is not an "
                                                     "existing folder"),
    ([*TRAIN, "--train-dir", "DATA/good.csv"], DATA,
     "`--train-dir` 'DATA/good.csv' is a file, not a folder; for a CSV of image paths and "
     "labels use `--train-csv`"),
    ([*TRAIN, "--train-dir", "DATA/no_classes"], DATA, "`--train-dir` 'DATA/no_classes' has "
                                                        "no class subfolders"),
    ([*TRAIN, "--train-dir", "DATA/empty_class"], DATA,
     "classes 'soup' (id 1) have no examples in 'DATA/empty_class'"),
    ([*FOLDERS, "--class-names", "cake,soup,pie"], DATA,
     "`--class-names` ['pie'] have no subfolder in 'DATA/classes'"),
    ([*FOLDERS, "--class-names", "DATA/names.txt"], DATA,
     "`--class-names` file 'DATA/names.txt' does not exist"),
    ([*FOLDERS, "--class-names", "DATA/no_names.txt"], DATA,
     "`--class-names` file 'DATA/no_names.txt' holds no class names"),
    ([*TRAIN, "--train-dir", "DATA/one_image"], DATA,
     "class 'soup' has a single image in `--train-dir`, too few for the validation split of "
     "`--val-fraction`"),
    ([*FOLDERS, "--val-dir", "DATA/no_classes"], DATA,
     "the training data's classes ['cake', 'soup'] have no subfolder in 'DATA/no_classes'"),
    ([*FOLDERS, "--val-dir", "DATA/empty_class"], DATA,
     "`--val-dir` 'DATA/empty_class' has no images of the training class 'soup', and the "
     "calibration is fitted on every class: add images of it to `--val-dir`, or leave "
     "`--val-dir` out to hold out `--val-fraction` of each training class instead"),
    ([*FOLDERS, "--val-csv", "DATA/cake_only.csv"], DATA,
     "`--val-csv` 'DATA/cake_only.csv' has no images of the training class 'soup'"),
    ([*TRAIN, "--train-csv", "DATA/renamed.csv"], DATA,
     "`--image-column` 'filepath' not found in renamed.csv; columns are: image_file, label"),
    ([*TRAIN, "--train-csv", "DATA/bad_image.csv"], DATA,
     "line 4: DATA/broken.jpg: does not decode"),
    ([*TRAIN, "--train-csv", "DATA/bad_image.csv"], DATA, "or pass --skip-bad-images to skip"),
    ([*TRAIN, "--train-csv", "DATA/empty.csv"], DATA, "`--train-csv` 'DATA/empty.csv' is empty"),
    ([*TRAIN, "--train-csv", "DATA/header_only.csv"], DATA, "header_only.csv has a header but "
                                                             "no rows"),
    ([*TRAIN, "--train-csv", "DATA/latin1.csv"], DATA, "`--train-csv` 'DATA/latin1.csv' is not "
                                                        "UTF-8 text: line 2, column 3"),
    ([*TRAIN, "--train-csv", "DATA/commas.csv"], DATA, "line 2 of 'DATA/commas.csv' has 3 cells "
                                                        "but the header has 2 columns"),
    ([*TRAIN, "--train-csv", "DATA/good.csv", "--val-csv", "DATA/missing.csv"], DATA,
     "`--val-csv` 'DATA/missing.csv' does not exist"),
    ([*FOLDERS, "--weights", "DATA/missing.weights.h5"], DATA,
     "`--weights` must be imagenet, none or the path of a .weights.h5 file; "
     "'DATA/missing.weights.h5' does not exist"),
    (["train", "--train-dir", "DATA/classes", "--output", "DATA/taken"], DATA,
     "`--output` 'DATA/taken' already exists and is not empty"),
    ([*FOLDERS, "--skip-bad-images", "DATA/report.csv"], DATA,
     "`--skip-bad-images` 'DATA/report.csv' already exists; choose another path or pass "
     "--overwrite"),
    (["evaluate", "--model", "DATA/missing", "--csv", "DATA/good.csv"], DATA,
     "`--model` 'DATA/missing' is not a folder"),
    (["evaluate", "--model", "DATA/classes", "--csv", "DATA/good.csv", "--json",
      "DATA/scores.json"], DATA, "`--json` 'DATA/scores.json' already exists"),
    (["evaluate", "--model", "DATA/classes", "--csv", "DATA/good.csv", "--predictions",
      "DATA/nowhere/p.csv"], DATA, "the folder 'DATA/nowhere' does not exist"),
    (["evaluate", "--model", "DATA/classes", "--csv", "DATA/good.csv", "--report",
      "DATA/taken"], DATA, "`--report` 'DATA/taken' already exists and is not empty"),
    (["predict", "--model", "DATA/classes", "DATA/classes"], DATA,
     "image 'DATA/classes' is a folder, not an image file"),
    (["predict", "--model", "DATA/classes", "DATA/missing.jpg"], DATA,
     "image 'DATA/missing.jpg' does not exist"),
    (["export", "--model", "DATA/missing", "--output", "DATA/e"], DATA,
     "`--model` 'DATA/missing' is not a folder"),
]


@pytest.mark.parametrize("arguments, status, message", CATALOGUE,
                         ids=[" ".join(case[0])[:70] for case in CATALOGUE])
def test_a_mistake_is_one_line_naming_the_flag_or_file(arguments, status, message, data,
                                                       capsys, monkeypatch):
    got, lines = run_main(arguments, data, capsys, monkeypatch)
    assert got == status, lines
    assert len(lines) == 1, lines
    assert "Traceback" not in lines[0]
    assert lines[0].startswith("calibkeras"), lines
    assert message.replace("DATA/", f"{data}/") in lines[0], lines
    if status == USAGE:
        assert lines[0].endswith("(see --help)"), lines
    assert not (data / "out").exists()


def test_a_bad_absolute_image_path_is_not_explained_as_a_relative_one(data, capsys,
                                                                      monkeypatch):
    # bad_image.csv lists absolute paths: nothing was resolved against a folder.
    status, lines = run_main([*TRAIN, "--train-csv", "DATA/bad_image.csv"], data, capsys,
                             monkeypatch)
    assert status == DATA and len(lines) == 1
    assert f"line 4: {data}/broken.jpg: does not decode" in lines[0]
    assert "Relative image paths" not in lines[0] and "--image-root" not in lines[0]


def test_the_catalogue_is_long_enough():
    assert len(CATALOGUE) >= 30
    assert {status for _, status, _ in CATALOGUE} == {USAGE, DATA}


def test_an_offline_backbone_is_one_line_with_the_offline_options(data, capsys, monkeypatch):
    from keras.src.utils import file_utils

    def offline(*_, **__):
        raise Exception("URL fetch failure on https://storage.googleapis.com/...: None -- "
                        "[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(file_utils, "get_file", offline)
    status, lines = run_main([*TRAIN, "--train-dir", "DATA/classes", "--weights", "imagenet",
                              "--backbone", "efficientnet_b0"], data, capsys, monkeypatch)
    assert status == DATA
    assert len(lines) == 1 and lines[0].startswith("calibkeras train: error: could not "
                                                   "download the ImageNet weights")
    assert "--backbone efficientnet_lite0" in lines[0] and "--weights none" in lines[0]


def test_messages_and_warnings_are_in_the_commands_terms():
    flags = cli._flag_names(cli.build_parser(), "train")
    assert cli._in_user_terms(
        "Skipped 2 rows of train.csv with bad images (on_bad_image='skip'); see\n  it",
        flags) == "Skipped 2 rows of train.csv with bad images (--skip-bad-images); see it"
    assert cli._in_user_terms("add the missing names to `class_names`", flags) == (
        "add the missing names to `--class-names`")


def test_tensorflow_start_up_lines_are_held_back_below_the_log_level():
    lines = [
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
        "I0000 00:00:1796235297.602673    4863 cpu_feature_guard.cc:227] This TensorFlow binary",
        "To enable the following instructions: AVX2 FMA, in other operations, rebuild",
        "W0000 00:00:1796235297.602673    4863 some.cc:1] a warning",
        "E0000 00:00:1796235297.602673    4863 cuda_platform.cc:52] failed call to cuInit",
        "a line of the user's own",
    ]
    assert list(cli._shown_log_lines(lines, 0)) == lines
    assert list(cli._shown_log_lines(lines, 2)) == lines[4:]
    assert list(cli._shown_log_lines(lines, 3)) == []  # the last line continues the E line


# --------------------------------------------------------------------------- subprocesses


def python_command(code):
    """Runs ``code`` with the working tree's calibkeras; ``(status, stdout, stderr)``."""
    env = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPOSITORY), env.get("PYTHONPATH", "")])
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=env, cwd=REPOSITORY, timeout=120)
    return result.returncode, result.stdout, result.stderr


@pytest.mark.parametrize("arguments, status", [
    (["--version"], 0),
    (["--help"], 0),
    (["train", "--help"], 0),
    (["evaluate", "--help"], 0),
    (["train", "--train-dir", "d"], 2),
    (["export", "--model", "M", "--output", "E", "--prior", "estimate"], 2),
])
def test_help_version_and_usage_errors_do_not_import_tensorflow(arguments, status):
    code = (
        "import sys\n"
        "from importlib.metadata import entry_points\n"
        "main = next(e for e in entry_points(group='console_scripts') "
        "if e.name == 'calibkeras').load()\n"
        f"try:\n    code = main({arguments!r})\n"
        "except SystemExit as exit_:\n    code = exit_.code\n"
        "loaded = sorted(m for m in ('tensorflow', 'keras', 'pandas') if m in sys.modules)\n"
        "print('loaded:', loaded, file=sys.stderr)\n"
        "sys.exit(code)\n"
    )
    got, stdout, stderr = python_command(code)
    assert got == status, stderr
    assert stderr.splitlines()[-1] == "loaded: []"
    if status == 0:
        assert stdout.startswith("calibkeras ") or stdout.startswith("usage: calibkeras")
    else:
        assert len(stderr.splitlines()) == 2  # the one error line, then ours


def test_the_console_command_gives_one_line_after_loading_tensorflow(tmp_path):
    # The real script, with TensorFlow imported, and TF_CPP_MIN_LOG_LEVEL left unset.
    script = Path(sys.executable).parent / "calibkeras"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "calibkeras.cli"]
    env = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPOSITORY), env.get("PYTHONPATH", "")])
    result = subprocess.run(
        [*command, "evaluate", "--model", str(tmp_path / "missing"), "--csv", "x.csv"],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"calibkeras evaluate: error: `--model` '{tmp_path / 'missing'}' is not a folder; give "
        "the --output folder of `calibkeras train` or `calibkeras demo`"]
