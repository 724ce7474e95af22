"""Hostile image bytes through `predict_image_bytes`, served by TF Serving's TF1 loader.

Every request is answered (probabilities of the right shape, finite) or refused with an
InvalidArgumentError; none crashes the process, hangs or makes it grow past a bound.
Seeded; 300 random byte strings plus 60 real images truncated, corrupted or declaring
more pixels than the export allows (benchmarks/serving_fuzz.py runs 5,000).
"""

import resource
import time

import numpy as np
import pytest
import tensorflow as tf
from serving_fuzz_cases import damaged_images, declaring, random_strings, real_images

from calibkeras.data.preprocessing import DEFAULT_MAX_IMAGE_PIXELS

pytestmark = pytest.mark.slow

#: Bounds of the whole run: seconds, and growth of the peak resident memory. Each image
#: decodes to at most 48 x 40 pixels here; the oversized ones must be refused unread.
SECONDS = 120
GROWTH_BYTES = 300 * 2**20


def peak_rss_bytes():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def outcome(serving, data):
    try:
        out = serving.run("predict_image_bytes", image_bytes=np.array([data], object))
    except tf.errors.InvalidArgumentError as error:
        return "refused", error.message
    assert out["probabilities"].shape == (1, 3)
    assert np.all(np.isfinite(out["probabilities"]))
    return "answered", None


def test_hostile_image_bytes_are_answered_or_refused(serving):
    rng = np.random.default_rng(2026)
    cases = [("random", "-", data) for data in random_strings(rng, 300)]
    cases += damaged_images(rng, 60, DEFAULT_MAX_IMAGE_PIXELS)
    outcome(serving, real_images(rng)["PNG"])  # warm up before the memory baseline
    baseline, start = peak_rss_bytes(), time.monotonic()
    counts = {}
    for kind, name, data in cases:
        result, message = outcome(serving, data)
        counts[kind, result] = counts.get((kind, result), 0) + 1
        if kind == "oversized":
            assert result == "refused" and "is too large" in message, (name, message)
        assert time.monotonic() - start < SECONDS, "the fuzz run took too long"
    assert peak_rss_bytes() - baseline < GROWTH_BYTES
    assert counts.get(("random", "refused"), 0) >= 290  # random bytes are not images
    assert sum(n for (kind, _), n in counts.items() if kind != "random") == 60


@pytest.mark.parametrize("name", ["PNG", "JPEG", "GIF", "BMP", "WEBP"])
def test_every_format_declaring_too_many_pixels_is_refused(serving, name):
    data = declaring(name, real_images(np.random.default_rng(0))[name], 20000, 20000)
    result, message = outcome(serving, data)
    assert result == "refused"
    assert "image_bytes[0] is too large: it declares 20000 x 20000 pixels" in message


@pytest.mark.parametrize("name", ["PNG", "JPEG", "GIF", "BMP", "WEBP"])
def test_every_format_is_served(serving, name):
    assert outcome(serving, real_images(np.random.default_rng(0))[name])[0] == "answered"
