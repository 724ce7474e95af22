"""calibkeras.utils.staging: output permissions, what overwrite may replace, safe swaps."""

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

import calibkeras.utils.staging as staging_module
from calibkeras.utils.staging import check_output_dir, staged_directory

STAGING_FILE = staging_module.__file__


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def umask():
    """Sets the process umask for one test, then puts the old one back."""
    old = os.umask(0o022)
    os.umask(old)
    yield lambda value: os.umask(value)
    os.umask(old)


def model_folder(path, content="old"):
    path.mkdir(parents=True)
    (path / "calibration.json").write_text(content)
    (path / "model.keras").write_text(content)
    return path


def dead_pid():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def leftover(parent, name, kind, pid, host=None):
    host = staging_module._host() if host is None else host
    folder = parent / f".{name}.{kind}-{host}-{pid}-0123456789ab"
    folder.mkdir()
    (folder / "calibration.json").write_text(f"{kind} of {pid}")
    return folder


@pytest.mark.parametrize("mask, folder_mode, file_mode", [
    (0o022, 0o755, 0o644),
    (0o077, 0o700, 0o600),
])
@pytest.mark.parametrize("existing", [False, True])
def test_outputs_get_the_permissions_of_a_plain_mkdir(tmp_path, umask, mask, folder_mode,
                                                      file_mode, existing):
    umask(mask)
    final = tmp_path / "run"
    if existing:
        model_folder(final)
    with staged_directory(final, overwrite=existing) as staging:
        (staging / "calibration.json").write_text("{}")
        (staging / "saved_model" / "1").mkdir(parents=True)
        (staging / "saved_model" / "1" / "saved_model.pb").write_bytes(b"pb")
    assert mode(final) == folder_mode
    assert mode(final / "saved_model" / "1") == folder_mode
    assert mode(final / "calibration.json") == file_mode
    assert mode(final / "saved_model" / "1" / "saved_model.pb") == file_mode


def test_overwrite_refuses_a_folder_calibkeras_did_not_write(tmp_path):
    folder = tmp_path / "D"
    folder.mkdir()
    (folder / "train.csv").write_text("filepath,label\n")
    (folder / "notes.txt").write_text("my notes")
    with pytest.raises(FileExistsError, match=r"overwrite=True \(--overwrite\) does not "
                                              r"replace it"):
        with staged_directory(folder, overwrite=True) as staging:  # any calibkeras layout
            (staging / "calibration.json").write_text("new")
    with pytest.raises(FileExistsError, match=r"`--output` '.*D' is not a model folder "
                                              r"\(with calibration.json\), so"):
        check_output_dir(folder, True, argument="--output", layout="model")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["D"]
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt", "train.csv"]


def test_overwrite_replaces_only_the_layout_asked_for(tmp_path):
    report = tmp_path / "report"
    report.mkdir()
    (report / "report.html").write_text("<html>")
    (report / "summary.json").write_text("{}")
    version = tmp_path / "exports" / "1"
    version.mkdir(parents=True)
    (version / "saved_model.pb").write_bytes(b"pb")
    model = model_folder(tmp_path / "run")
    check_output_dir(report, True, layout="report")
    check_output_dir(version, True, layout="saved_model")
    check_output_dir(model, True, layout="model")
    for path in (report, version, model):
        check_output_dir(path, True)  # any calibkeras output
    with pytest.raises(FileExistsError, match=r"is not a SavedModel version folder \(with "
                                              r"saved_model.pb\)"):
        check_output_dir(model, True, argument="export_dir/<version>", layout="saved_model")
    with pytest.raises(FileExistsError, match="already exists and is not empty"):
        check_output_dir(model, False, layout="model")
    with staged_directory(model, overwrite=True, layout="model") as staging:
        (staging / "calibration.json").write_text("new")
    assert [p.name for p in model.iterdir()] == ["calibration.json"]
    assert (model / "calibration.json").read_text() == "new"


def test_check_output_file_refuses_existing_files_without_overwrite(tmp_path):
    check_output_file = staging_module.check_output_file
    existing = tmp_path / "scores.json"
    existing.write_text("earlier scores")
    with pytest.raises(FileExistsError, match=r"`--json` '.*scores.json' already exists; "
                                              r"choose another path or pass overwrite=True"):
        check_output_file(existing, False, argument="--json")
    check_output_file(existing, True, argument="--json")
    check_output_file(tmp_path / "new.json", False, argument="--json")
    with pytest.raises(IsADirectoryError, match=r"`--predictions` '.*' is a folder"):
        check_output_file(tmp_path, True, argument="--predictions")
    with pytest.raises(FileNotFoundError, match=r"the folder '.*missing' does not exist"):
        check_output_file(tmp_path / "missing" / "p.csv", True, argument="--predictions")
    assert existing.read_text() == "earlier scores"


KILLED_BETWEEN_RENAMES = """
import importlib.util, os, sys
spec = importlib.util.spec_from_file_location("staging", sys.argv[1])
staging = importlib.util.module_from_spec(spec)
spec.loader.exec_module(staging)
real_rename = os.rename

def rename(source, target):
    real_rename(source, target)
    if ".old-" in os.fspath(target):
        os._exit(9)  # killed after parking the old folder, before the new one moves in

os.rename = rename
with staging.staged_directory(sys.argv[2], overwrite=True) as folder:
    (folder / "calibration.json").write_text("new")
"""


def test_an_overwrite_killed_between_the_renames_is_recovered(tmp_path):
    final = model_folder(tmp_path / "run")
    result = subprocess.run([sys.executable, "-c", KILLED_BETWEEN_RENAMES, STAGING_FILE,
                             str(final)], timeout=60)
    assert result.returncode == 9
    names = sorted(p.name for p in tmp_path.iterdir())
    assert [n.split("-")[0] for n in names] == [".run.old", ".run.tmp"]  # what the kill left
    # The next write there puts the old folder back (so it is refused without overwrite)
    # and deletes the dead run's staging folder.
    with pytest.raises(FileExistsError, match="already exists and is not empty"):
        check_output_dir(final, False)
    assert [p.name for p in tmp_path.iterdir()] == ["run"]
    assert (final / "calibration.json").read_text() == "old"


def test_a_failed_second_rename_puts_the_old_folder_back(tmp_path, monkeypatch):
    final = model_folder(tmp_path / "run")
    real_rename = os.rename

    def rename(source, target):
        if ".tmp-" in os.fspath(source):
            raise OSError("rename failed")
        real_rename(source, target)

    monkeypatch.setattr(os, "rename", rename)
    with pytest.raises(OSError, match="rename failed"):
        with staged_directory(final, overwrite=True) as staging:
            (staging / "calibration.json").write_text("new")
    assert [p.name for p in tmp_path.iterdir()] == ["run"]
    assert (final / "calibration.json").read_text() == "old"


def test_staging_names_carry_the_pid_and_dead_runs_leftovers_are_cleaned(tmp_path):
    host = staging_module._host()
    pid = dead_pid()
    final = model_folder(tmp_path / "run", content="current")
    dead_staging = leftover(tmp_path, "run", "tmp", pid)
    dead_other = leftover(tmp_path, "3", "tmp", pid)  # another output's staging, same parent
    dead_parked = leftover(tmp_path, "run", "old", pid)  # "run" exists: a finished swap
    live = leftover(tmp_path, "run", "tmp", os.getpid())
    other_host = leftover(tmp_path, "run", "tmp", pid, host=host + "-elsewhere")
    old_style = tmp_path / ".run.tmp-k2j4h6g8"  # tempfile.mkdtemp's name: no pid, kept
    old_style.mkdir()
    with staged_directory(final, overwrite=True) as staging:
        assert staging.name.startswith(f".run.tmp-{host}-{os.getpid()}-")
        assert staging.parent == tmp_path
        (staging / "calibration.json").write_text("new")
    for gone in (dead_staging, dead_other, dead_parked):
        assert not gone.exists(), gone.name
    for kept in (live, other_host, old_style):
        assert kept.exists(), kept.name
    assert (final / "calibration.json").read_text() == "new"


def test_a_parked_folder_of_a_live_run_is_not_restored(tmp_path):
    parked = leftover(tmp_path, "run", "old", os.getpid())
    check_output_dir(tmp_path / "run", False)
    assert parked.exists() and not (tmp_path / "run").exists()


def test_the_staging_folder_becomes_path_and_leaves_nothing_behind(tmp_path):
    with staged_directory(tmp_path / "a" / "b" / "run") as staging:
        assert isinstance(staging, Path)
        (staging / "x.txt").write_text("x")
    assert sorted(os.listdir(tmp_path / "a" / "b")) == ["run"]
