"""Shared data of the report tests: a slice of the real WRN-16-4 CIFAR-10 record."""

import numpy as np
import pytest

CIFAR10_NAMES = [
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
]


def sharpen(probs, temperature):
    """Probabilities with their log divided by ``temperature`` (< 1 sharpens), renormalised."""
    logits = np.log(np.clip(probs, 1e-300, 1.0)) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    out = np.exp(logits)
    return out / out.sum(axis=1, keepdims=True)


@pytest.fixture
def cifar(small_record):
    """(probs, labels, names, uncalibrated_probs): the first 2000 rows of the record."""
    probs, labels = small_record
    probs, labels = probs[:2000], labels[:2000]
    return probs, labels, CIFAR10_NAMES, sharpen(probs, 0.6)
