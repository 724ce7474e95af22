"""A trained-model folder: model.keras + calibration.json (+ saved_model/ and report/)."""

import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np

MODEL_FILE = "model.keras"
CALIBRATION_FILE = "calibration.json"
SAVED_MODEL_DIR = "saved_model"
REPORT_DIR = "report"


def _plain(value):
    """JSON-ready copies of NumPy scalars and arrays."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def write_json(path, payload):
    """Writes ``payload`` (NumPy values allowed) as indented JSON."""
    Path(path).write_text(json.dumps(_plain(payload), indent=2) + "\n")


def calibration_record(model, image_size, settings):
    """The calibration.json content: everything needed to use the model later.

    Args:
        model: a trained :class:`calibkeras.models.CalibratedClassifier`.
        image_size: ``(height, width)`` the model takes.
        settings: extra facts to keep (data columns, backbone, loss, seed, ...).

    Returns:
        A dict with ``class_names``, ``class_counts``, ``training_prior``,
        ``deployment_prior``, ``temperature``, ``calibration`` (method, per-class scale
        and bias), ``preprocessing`` and the settings.
    """
    from keras import ops

    from calibkeras._version import __version__
    from calibkeras.data.preprocessing import RESIZE_METHOD

    shift = model.prior_shift
    return {
        "calibkeras_version": __version__,
        "class_names": model.class_names,
        "class_counts": shift.class_counts,
        "training_prior": shift.training_prior,
        "deployment_prior": shift.prior,
        "temperature": model.temperature,
        "calibration": {
            "method": model.calibration.method,
            "scale": ops.convert_to_numpy(model.calibration.scale).astype(float).tolist(),
            "bias": ops.convert_to_numpy(model.calibration.bias).astype(float).tolist(),
            "source_prior": model.calibration.source_prior,
        },
        "preprocessing": {
            "image_size": list(image_size),
            "decode": "tf.io.decode_image(channels=3, expand_animations=False)",
            "resize": RESIZE_METHOD,
            "pixel_range": [0, 255],
            "normalisation": "inside the model",
        },
        **settings,
    }


def load_model_directory(path):
    """Loads ``path/model.keras`` and ``path/calibration.json``.

    Returns:
        ``(model, record)``.

    Raises:
        FileNotFoundError: when the folder or one of the two files is missing.
    """
    from calibkeras.models.classifier import load_classifier

    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(
            f"`--model` '{folder}' is not a folder; give the --output folder of "
            "`calibkeras train` or `calibkeras demo`"
        )
    for name in (MODEL_FILE, CALIBRATION_FILE):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"'{folder / name}' is missing: is '{folder}' a model folder?")
    record = json.loads((folder / CALIBRATION_FILE).read_text())
    return load_classifier(folder / MODEL_FILE), record
