"""Shared test set-up: quiet TensorFlow, the calibration records, a reference loop."""

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures"
SHARED = Path(__file__).resolve().parents[1].parent / "shared"
SHARED_RECORDS = SHARED / "reference" / "calibration_records"


def _load(path):
    data = np.load(path)
    probs = data["predictions"].astype(np.float64)
    return probs / probs.sum(axis=1, keepdims=True), data["ground_truth"].astype(np.int64)


def record_paths():
    """Bundled records, plus the full shared ones when ../shared is present."""
    paths = sorted(FIXTURES.glob("*cifar*.npz"))
    if SHARED_RECORDS.is_dir():
        paths += sorted(SHARED_RECORDS.glob("*.npz"))
    return paths


@pytest.fixture(params=record_paths(), ids=lambda p: f"{p.parent.name}/{p.stem}")
def record(request):
    """(probs, labels) of one real CIFAR network; rows renormalised in float64."""
    return _load(request.param)


@pytest.fixture
def small_record():
    """The bundled WRN-16-4 CIFAR-10 record, (probs, labels)."""
    return _load(FIXTURES / "wideresnet-16-4-cifar-10.npz")
