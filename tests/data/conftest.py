"""Helpers for the data tests: tiny images and CSVs written into tmp_path."""

import numpy as np
import pytest
from PIL import Image


def _write_image(path, color=(255, 0, 0), size=(8, 8), image_format=None, seed=None):
    """Writes a small image file with PIL and returns its path.

    With `seed`, the pixels are random (seeded); otherwise a flat `color`.
    `size` is (height, width). The format follows the file ending unless given.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    height, width = size
    if seed is None:
        pixels = np.zeros((height, width, 3), np.uint8) + np.array(color, np.uint8)
    else:
        pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), np.uint8)
    Image.fromarray(pixels).save(path, format=image_format)
    return path


def _write_csv(path, header, rows):
    """Writes a CSV with the given header line and rows (lists of cells)."""
    lines = [",".join(header)] + [",".join(str(cell) for cell in row) for row in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def write_image():
    """The function `write_image(path, color=..., size=(h, w), image_format=None, seed=None)`."""
    return _write_image


@pytest.fixture
def write_csv():
    """The function `write_csv(path, header, rows)`."""
    return _write_csv


@pytest.fixture
def image_table(tmp_path):
    """A CSV with three classes (4, 2, 1 images, 8x8 PNG) and an irrelevant column.

    Returns (csv_path, rows) where rows are (filepath, label, note) in file order.
    """
    rows = []
    colors = {"cat": (200, 10, 10), "dog": (10, 200, 10), "eel": (10, 10, 200)}
    for label, count in (("cat", 4), ("dog", 2), ("eel", 1)):
        for i in range(count):
            relative = f"images/{label}/{i}.png"
            _write_image(tmp_path / relative, color=colors[label])
            rows.append((relative, label, f"note {i}"))
    order = [0, 4, 1, 6, 2, 5, 3]
    rows = [rows[i] for i in order]
    csv_path = _write_csv(tmp_path / "train.csv", ["filepath", "label", "note"], rows)
    return csv_path, rows
