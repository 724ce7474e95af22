"""Figure helpers shared by the plots: pyplot-free Figures and PNG bytes.

The plots build ``matplotlib.figure.Figure`` objects directly, never through
``matplotlib.pyplot``: no global figure state, no backend selection, so they work on a
headless server and leave a user's interactive backend alone. ``Figure.savefig``
renders PNG with the Agg renderer whatever backend is active.
"""

import io

import numpy as np
from matplotlib.figure import Figure

#: Resolution of the PNGs that the reports write.
PNG_DPI = 110

#: The 8 bytes every PNG file starts with.
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def new_figure(width, height):
    """Returns an empty ``Figure`` of ``width`` x ``height`` inches, constrained layout."""
    return Figure(figsize=(width, height), layout="constrained")


def figure_to_png(figure, dpi=PNG_DPI):
    """Renders ``figure`` to PNG; returns the file's bytes."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def class_order(class_counts, num_classes):
    """Class ids in descending order of ``class_counts`` (ties keep id order), or 0..K-1."""
    if class_counts is None:
        return np.arange(num_classes)
    counts = np.asarray(class_counts, dtype=np.float64)
    if counts.shape != (num_classes,) or not np.all(np.isfinite(counts)) or np.any(counts < 0):
        raise ValueError(
            f"`class_counts` must be {num_classes} non-negative counts (one per class), "
            f"got {np.asarray(class_counts).tolist()}"
        )
    return np.argsort(-counts, kind="stable")
