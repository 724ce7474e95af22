"""Writing a folder all at once: stage it next to its final place, then rename."""

import contextlib
import os
import shutil
import tempfile
import uuid
from pathlib import Path


def check_output_dir(path, overwrite, argument="output"):
    """Raises FileExistsError when ``path`` exists, is not empty and ``overwrite`` is False."""
    path = Path(path)
    if path.is_file():
        raise FileExistsError(f"`{argument}` '{path}' is a file; give a folder path")
    if path.exists() and any(path.iterdir()) and not overwrite:
        raise FileExistsError(
            f"`{argument}` '{path}' already exists and is not empty; choose another path or "
            "pass overwrite=True (--overwrite) to replace it"
        )


@contextlib.contextmanager
def staged_directory(path, overwrite=False, argument="output"):
    """Yields a temporary folder that becomes ``path`` only if the block succeeds.

    The temporary folder is created next to ``path`` (same file system, so the final
    rename is atomic); on an exception it is deleted and ``path`` is left as it was.
    An existing ``path`` is replaced only with ``overwrite=True``.

    Example:
        >>> with staged_directory("runs/food10") as staging:
        ...     model.save(staging / "model.keras")
    """
    final = Path(path)
    check_output_dir(final, overwrite, argument)
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    try:
        yield staging
        check_output_dir(final, overwrite, argument)
        if final.exists():
            retired = final.parent / f".{final.name}.old-{uuid.uuid4().hex}"
            final.rename(retired)
            staging.rename(final)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            staging.rename(final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def fspath(path):
    """``os.fspath`` that also accepts None (returns None)."""
    return None if path is None else os.fspath(path)
