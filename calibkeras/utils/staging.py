"""Writing outputs safely: stage a folder next to its final place, then rename.

Names next to an output ``NAME`` while it is written (both hidden):

- ``.NAME.tmp-<host>-<pid>-<hex>``: the staging folder of the run with process id
  ``pid`` on ``host``.
- ``.NAME.old-<host>-<pid>-<hex>``: the previous ``NAME``, parked during an overwrite
  until the new one is in place, then deleted.

A run killed in the middle leaves them behind. The next write next to them (see
:func:`check_output_dir`) deletes the staging folders of runs that are no longer alive
on this host, and puts a parked ``.NAME.old-...`` back as ``NAME`` when ``NAME`` is
missing (a run killed between the two renames of an overwrite). A reader that finds
``NAME`` missing can do the same by hand: rename ``.NAME.old-...`` to ``NAME``.

Outputs get the permissions a plain ``mkdir``/``open`` gives under the user's umask
(0755 folders and 0644 files with umask 022), never ``tempfile.mkdtemp``'s 0700.
"""

import contextlib
import os
import re
import shutil
import socket
import uuid
from pathlib import Path

#: What each kind of calibkeras output folder holds; ``overwrite`` replaces only these.
OUTPUT_LAYOUTS = {
    # calibkeras.model_directory: model.keras + calibration.json (train, demo)
    "model": ("model folder", ("calibration.json",)),
    # calibkeras.export: <export_dir>/<version>/saved_model.pb
    "saved_model": ("SavedModel version folder", ("saved_model.pb",)),
    # calibkeras.reports.write_report (train's report/, evaluate --report)
    "report": ("report folder", ("report.html", "summary.json")),
}

_LEFTOVER = re.compile(r"\.(?P<name>.+)\.(?P<kind>tmp|old)-(?P<host>.+)-(?P<pid>\d+)-[0-9a-f]{12}")


def _host():
    return re.sub(r"[^A-Za-z0-9.-]", "_", socket.gethostname()) or "host"


def _leftover_name(final, kind):
    """``.NAME.<kind>-<host>-<pid>-<hex>`` for a staging (tmp) or parked (old) folder."""
    return f".{final.name}.{kind}-{_host()}-{os.getpid()}-{uuid.uuid4().hex[:12]}"


def _is_dead(host, pid):
    """True when process ``pid`` of this host has ended (POSIX; False when unsure)."""
    if host != _host() or os.name != "posix":
        return False
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return True
    except OSError:  # PermissionError: alive, another user's
        return False
    return False


def clean_leftovers(path):
    """Tidies what dead runs left next to ``path`` (see the module docstring).

    Deletes ``.*.tmp-<host>-<pid>-*`` staging folders in ``path``'s parent whose process
    has ended on this host; moves a dead run's ``.NAME.old-*`` back to ``path`` when
    ``path`` is missing, and deletes it when ``path`` exists. Folders of live runs, of
    other hosts and of any other name pattern are left alone.
    """
    final = Path(path)
    try:
        entries = list(final.parent.iterdir())
    except OSError:
        return
    parked = []
    for entry in entries:
        match = _LEFTOVER.fullmatch(entry.name)
        if not match or not entry.is_dir():  # rmtree never follows a symlink
            continue
        if not _is_dead(match["host"], int(match["pid"])):
            continue
        if match["kind"] == "tmp":
            shutil.rmtree(entry, ignore_errors=True)
        elif match["name"] == final.name:
            parked.append(entry)
    if parked and not final.exists():
        try:
            newest = max(parked, key=lambda entry: entry.stat().st_mtime)
            newest.rename(final)
            parked.remove(newest)
        except OSError:
            return
    for entry in parked:
        shutil.rmtree(entry, ignore_errors=True)


def output_layout(path):
    """The key of :data:`OUTPUT_LAYOUTS` that folder ``path`` matches, or None."""
    path = Path(path)
    for key, (_, files) in OUTPUT_LAYOUTS.items():
        if all((path / name).is_file() for name in files):
            return key
    return None


def check_output_dir(path, overwrite, argument="output", layout=None):
    """Checks that folder ``path`` may be written; tidies dead runs' leftovers first.

    A missing or empty folder may always be written. An existing non-empty one only
    with ``overwrite=True``, and only if calibkeras wrote it: it must match
    ``OUTPUT_LAYOUTS[layout]`` (any of them when ``layout`` is None), so that
    ``overwrite`` never deletes folders of the user's own files.

    Args:
        path: the output folder.
        overwrite: whether an existing calibkeras output may be replaced.
        argument: the argument or flag named in the messages (``"--output"``).
        layout: ``"model"``, ``"saved_model"``, ``"report"`` or None (any).

    Raises:
        FileExistsError: ``path`` is a file, or exists and may not be replaced.
    """
    path = Path(path)
    clean_leftovers(path)
    _check_replaceable(path, overwrite, argument, layout)


def _check_replaceable(path, overwrite, argument, layout):
    if path.is_file():
        raise FileExistsError(f"`{argument}` '{path}' is a file; give a folder path")
    if not path.exists() or not any(path.iterdir()):
        return
    if not overwrite:
        raise FileExistsError(
            f"`{argument}` '{path}' already exists and is not empty; choose another path or "
            "pass overwrite=True (--overwrite) to replace it"
        )
    layouts = [layout] if layout is not None else list(OUTPUT_LAYOUTS)
    if output_layout(path) not in layouts:
        expected = " or ".join(
            f"a {OUTPUT_LAYOUTS[key][0]} (with {' and '.join(OUTPUT_LAYOUTS[key][1])})"
            for key in layouts
        )
        raise FileExistsError(
            f"`{argument}` '{path}' is not {expected}, so overwrite=True (--overwrite) does "
            "not replace it: it may hold files calibkeras did not write; choose a new or "
            "empty folder, or move the files away yourself"
        )


def check_output_file(path, overwrite, argument="output"):
    """Checks that file ``path`` may be written: checked before the work, not after.

    Raises:
        IsADirectoryError: ``path`` is a folder.
        FileExistsError: ``path`` exists and ``overwrite`` is False.
        FileNotFoundError: the folder ``path`` would go into does not exist.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"`{argument}` '{path}' is a folder; give a file path")
    if path.exists() and not overwrite:
        raise FileExistsError(
            f"`{argument}` '{path}' already exists; choose another path or pass "
            "overwrite=True (--overwrite) to replace it"
        )
    if not path.parent.is_dir():
        raise FileNotFoundError(
            f"`{argument}` '{path}': the folder '{path.parent}' does not exist; create it "
            "or choose another path"
        )


@contextlib.contextmanager
def staged_directory(path, overwrite=False, argument="output", layout=None):
    """Yields a temporary folder that becomes ``path`` only if the block succeeds.

    The temporary folder, ``.NAME.tmp-<host>-<pid>-<hex>``, is created next to ``path``
    (same file system, so the final rename is atomic) with the permissions of a plain
    ``mkdir`` under the umask; on an exception it is deleted and ``path`` is left as it
    was. An existing ``path`` is replaced only with ``overwrite=True`` and only if it is
    a calibkeras output of ``layout`` (see :func:`check_output_dir`, also run first).

    The old ``path`` stays until the new one is in place: it is renamed to
    ``.NAME.old-<host>-<pid>-<hex>``, the staging folder is renamed to ``path``, then
    the old one is deleted. If the second rename fails the old folder is put back; if
    the process is killed between the renames, the next write next to ``path`` puts
    it back (:func:`clean_leftovers`).

    Example:
        >>> with staged_directory("runs/food10", layout="model") as staging:
        ...     model.save(staging / "model.keras")
    """
    final = Path(path)
    check_output_dir(final, overwrite, argument, layout)
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = final.parent / _leftover_name(final, "tmp")
    staging.mkdir()  # mode 0777 & ~umask, unlike tempfile.mkdtemp's 0700
    try:
        yield staging
        _check_replaceable(final, overwrite, argument, layout)
        if final.exists():
            retired = final.parent / _leftover_name(final, "old")
            final.rename(retired)
            try:
                staging.rename(final)
            except BaseException:
                retired.rename(final)
                raise
            shutil.rmtree(retired, ignore_errors=True)
        else:
            staging.rename(final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
