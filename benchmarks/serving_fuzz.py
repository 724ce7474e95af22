"""Hostile image bytes through a calibkeras SavedModel's `predict_image_bytes`,
served with TF Serving's TF1 loader (`calibkeras.export.ServingSession`).

The export is a tiny calibkeras classifier (16 x 16 input, Conv -> GAP -> Dense ->
TemperatureScaling -> PriorShift) with the default pixel limit
(`DEFAULT_MAX_IMAGE_PIXELS`). The cases are those of tests/export/test_serving_fuzz.py
(tests/serving_fuzz_cases.py), seeded, one image a request: random byte strings (half
behind a real format's magic bytes) and real 48 x 40 images in five formats,
truncated, corrupted or declaring more pixels than the limit. Every request must be
answered (finite probabilities) or refused with InvalidArgumentError; the counts, the
request times and the growth of the peak resident memory are printed.

Run:
    python benchmarks/serving_fuzz.py [--random 4000] [--damaged 1000] [--seed 2026]
"""

import argparse
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from serving_fuzz_cases import damaged_images, random_strings, real_images  # noqa: E402

from calibkeras.data.preprocessing import DEFAULT_MAX_IMAGE_PIXELS  # noqa: E402
from calibkeras.export import ServingSession, export_saved_model  # noqa: E402
from calibkeras.layers import PriorShift, TemperatureScaling  # noqa: E402


def tiny_classifier():
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(4, 3)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(3)(x)
    x = TemperatureScaling(initial_temperature=1.5)(x)
    outputs = PriorShift(prior="uniform", num_classes=3, class_names=["a", "b", "c"])(x)
    return keras.Model(inputs, outputs)


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--random", type=int, default=4000, help="random byte strings")
    parser.add_argument("--damaged", type=int, default=1000, help="damaged real images")
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    cases = [("random", data) for data in random_strings(rng, args.random)]
    cases += [(kind, data) for kind, _, data in damaged_images(rng, args.damaged,
                                                               DEFAULT_MAX_IMAGE_PIXELS)]
    with tempfile.TemporaryDirectory() as folder:
        export_saved_model(tiny_classifier(), Path(folder) / "m")
        with ServingSession(Path(folder) / "m") as session:
            session.run("predict_image_bytes",
                        image_bytes=np.array([real_images(rng)["PNG"]], object))
            baseline = peak_rss_mib()
            counts, seconds, other = {}, [], []
            for kind, data in cases:
                start = time.perf_counter()
                try:
                    out = session.run("predict_image_bytes", image_bytes=np.array([data], object))
                    result = "answered" if np.all(np.isfinite(out["probabilities"])) else "NaN"
                except tf.errors.InvalidArgumentError:
                    result = "refused"
                except Exception as error:  # noqa: BLE001 (counted: must stay 0)
                    result = "other error"
                    other.append(repr(error)[:200])
                seconds.append(time.perf_counter() - start)
                counts[kind, result] = counts.get((kind, result), 0) + 1
            growth = peak_rss_mib() - baseline
    print(f"# {time.strftime('%Y-%m-%d %H:%M')} {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, TensorFlow {tf.__version__}, load {os.getloadavg()[0]:.2f}")
    print(f"{len(cases)} requests (seed {args.seed}), limit {DEFAULT_MAX_IMAGE_PIXELS} pixels")
    print("| kind | answered | refused (InvalidArgument) | other error | NaN |")
    print("|---|---|---|---|---|")
    for kind in ("random", "truncated", "corrupted", "oversized"):
        row = [counts.get((kind, r), 0) for r in ("answered", "refused", "other error", "NaN")]
        print(f"| {kind} | " + " | ".join(map(str, row)) + " |")
    ms = np.asarray(seconds) * 1000
    print(f"request time: median {statistics.median(ms):.2f} ms, p99 "
          f"{np.percentile(ms, 99):.2f} ms, max {ms.max():.2f} ms; total {ms.sum() / 1000:.1f} s")
    print(f"peak resident memory growth: {growth:.0f} MiB")
    for line in other[:10]:
        print("other error:", line)


if __name__ == "__main__":
    main()
