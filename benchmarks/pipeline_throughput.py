"""Input pipeline throughput: calibkeras.data.dataset_from_csv against
keras.utils.image_dataset_from_directory on the same food10 JPEGs.

Both pipelines read the same files, decode them, resize to 160x160 (bilinear) and
batch 32, in file order (shuffle=False: the evaluation pipeline; training adds a
shuffle of file paths only). Each pipeline is built once (calibkeras' eager image
validation is timed separately, it is not part of a pass), warmed up with one full
pass, then timed over full passes that alternate between the two pipelines, A-B
then B-A (so that load from other processes and position effects hit both
alike); the median of the timed passes
is reported, with the process CPU time per image (less sensitive to other
load on the machine than wall time). For information, the calibkeras training
configuration (shuffle + augmentation) is timed afterwards.

Images: /work/shared/data/food10/train.csv (3,750 images) when present, else the
bundled train_longtail.csv (1,021). For image_dataset_from_directory, a temporary
folder holds symlinks <class>/<file>.jpg to exactly those files.

Run:
    /work/venv/bin/python benchmarks/pipeline_throughput.py [--passes 3]
"""

import argparse
import os
import platform
import statistics
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import pandas as pd  # noqa: E402
import tensorflow as tf  # noqa: E402

from calibkeras.data import dataset_from_csv  # noqa: E402
from calibkeras.datasets import food10_csv  # noqa: E402

SHARED_CSV = "/work/shared/data/food10/train.csv"
IMAGE_SIZE = (160, 160)
BATCH_SIZE = 32


def full_pass(dataset):
    """Iterates one epoch; returns (number of images, wall seconds, CPU seconds)."""
    start, cpu_start = time.perf_counter(), time.process_time()
    count = 0
    for images, _ in dataset:
        count += int(images.shape[0])
    return count, time.perf_counter() - start, time.process_time() - cpu_start


def symlink_tree(csv_path, folder):
    """Links every image of the CSV into folder/<label>/<file>; returns the count."""
    table = pd.read_csv(csv_path)
    root = os.path.dirname(os.path.abspath(csv_path))
    for path, label in zip(table["filepath"], table["label"], strict=True):
        os.makedirs(os.path.join(folder, label), exist_ok=True)
        os.symlink(os.path.join(root, path), os.path.join(folder, label, os.path.basename(path)))
    return len(table)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--passes", type=int, default=3, help="timed passes per pipeline")
    args = parser.parse_args()

    csv_path = SHARED_CSV if os.path.isfile(SHARED_CSV) else food10_csv("train")
    print(
        f"tensorflow {tf.__version__}, keras {keras.__version__}, "
        f"python {platform.python_version()}, {os.cpu_count()} CPUs"
    )
    print(f"images: {csv_path}")

    # Eager validation cost on the bundled long-tailed training split (1,021 images).
    start = time.perf_counter()
    bundled = dataset_from_csv(food10_csv("train"), image_size=IMAGE_SIZE, validate_images=True)
    with_validation = time.perf_counter() - start
    start = time.perf_counter()
    dataset_from_csv(food10_csv("train"), image_size=IMAGE_SIZE, validate_images=False)
    without_validation = time.perf_counter() - start
    print(
        f"build dataset_from_csv on {bundled.num_examples} images: "
        f"{with_validation:.2f} s with validate_images=True, "
        f"{without_validation:.2f} s without (validation = "
        f"{with_validation - without_validation:.2f} s)"
    )

    training = dataset_from_csv(
        csv_path,
        image_size=IMAGE_SIZE,
        batch_size=BATCH_SIZE,
        shuffle=True,
        augment=True,
        seed=0,
        validate_images=False,
    )
    start = time.perf_counter()
    ours = dataset_from_csv(csv_path, image_size=IMAGE_SIZE, batch_size=BATCH_SIZE)
    print(
        f"build dataset_from_csv on {ours.num_examples} images (with validation): "
        f"{time.perf_counter() - start:.2f} s"
    )

    with tempfile.TemporaryDirectory() as folder:
        count = symlink_tree(csv_path, folder)
        theirs = keras.utils.image_dataset_from_directory(
            folder,
            image_size=IMAGE_SIZE,
            batch_size=BATCH_SIZE,
            shuffle=False,
            label_mode="int",
            interpolation="bilinear",
        )
        pipelines = {
            "calibkeras dataset_from_csv": ours.dataset,
            "keras image_dataset_from_directory": theirs,
        }
        times = {name: [] for name in pipelines}
        cpu_times = {name: [] for name in pipelines}
        for name, dataset in pipelines.items():  # warm-up epoch
            seen, seconds, _ = full_pass(dataset)
            assert seen == count, (name, seen, count)
            print(f"warm-up {name}: {seen / seconds:.0f} images/s")
        for round_index in range(args.passes):
            # A-B, then B-A, ...: neither pipeline always runs first.
            order = list(pipelines.items())
            if round_index % 2:
                order.reverse()
            for name, dataset in order:
                _, seconds, cpu_seconds = full_pass(dataset)
                times[name].append(seconds)
                cpu_times[name].append(cpu_seconds)

    print(
        f"\n{count} images, {IMAGE_SIZE[0]}x{IMAGE_SIZE[1]}, batch {BATCH_SIZE}, "
        f"median of {args.passes} passes:"
    )
    rates = {}
    for name, seconds in times.items():
        rates[name] = count / statistics.median(seconds)
        passes = ", ".join(f"{count / s:.0f}" for s in seconds)
        cpu_ms = 1000 * statistics.median(cpu_times[name]) / count
        print(
            f"  {name:36s} {rates[name]:7.0f} images/s   {cpu_ms:.3f} CPU ms/image   "
            f"(passes: {passes})"
        )
    ratio = rates["calibkeras dataset_from_csv"] / rates["keras image_dataset_from_directory"]
    print(f"  ratio calibkeras / keras: {ratio:.2f}")

    # For information: the training configuration (shuffle + augmentation), which
    # image_dataset_from_directory has no counterpart for.
    full_pass(training.dataset)
    seconds = [full_pass(training.dataset)[1] for _ in range(args.passes)]
    print(
        f"  calibkeras training pipeline (shuffle=True, augment=True): "
        f"{count / statistics.median(seconds):.0f} images/s"
    )


if __name__ == "__main__":
    main()
