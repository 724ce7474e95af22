"""Where the temperature comes from: long-tailed validation vs a balanced calibration set.

On the frozen-feature heads of ``imbalanced_food10.py`` (logit-adjusted loss, the same
features, views and epochs), fits the temperature three ways and scores ``test.csv``
under the uniform prior with each:

* on ``val_longtail.csv`` under the training prior (the calibkeras recipe; the only
  calibration data the benchmark allows);
* on a balanced pool of the same image source as the validation set: the images of
  ``train.csv`` (Food-101's train split, 375 per class) that are in neither
  ``train_longtail.csv`` nor ``val_longtail.csv``, under the uniform prior; a diagnostic,
  since the benchmark's rules do not give this data to the model;
* on ``test.csv`` itself (NLL-optimal; the best any temperature can do).

Needs ``../shared/data/food10`` (the pool is not bundled).

Usage::

    python benchmarks/temperature_source.py [--epochs 5,10,30] [--image-size 224]
"""

import argparse
import pathlib

import numpy as np
import pandas as pd
from imbalanced_food10 import epoch_list, features, softmax, train_head

from calibkeras.calibration import calibration_errors, calibration_test, fit_temperature
from calibkeras.data import dataset_from_dataframe
from calibkeras.datasets import load_food10
from calibkeras.losses import LogitAdjustedCrossentropy
from calibkeras.models import EfficientNetLite0
from calibkeras.priors import prior_from_counts

FOOD10 = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "food10"


def balanced_pool(class_names, image_size):
    """The train.csv images in neither long-tailed split, as a LabeledDataset."""
    pool = pd.read_csv(FOOD10 / "train.csv")
    used = pd.concat([pd.read_csv(FOOD10 / name)
                      for name in ("train_longtail.csv", "val_longtail.csv")])
    pool = pool[~pool.image_id.isin(used.image_id)]
    present = [name for name in class_names if name in set(pool.label)]
    data = dataset_from_dataframe(pool, image_root=FOOD10, class_names=present,
                                  image_size=image_size)
    ids = np.asarray([class_names.index(name) for name in present])
    return data, ids  # data's labels index ``present``; ids maps them to class_names


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--views", type=int, default=4)
    parser.add_argument("--epochs", type=epoch_list, default=[5, 10, 30])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    size = (args.image_size, args.image_size)
    train = load_food10("train", image_size=size)
    class_names = list(train.class_names)
    backbone = EfficientNetLite0(include_top=False, pooling="avg", input_shape=(*size, 3))
    x_train, y_train = features(backbone, train, args.views, args.seed)
    x_val, y_val = features(backbone, load_food10("val", image_size=size))
    x_test, y_test = features(backbone, load_food10("test", image_size=size))
    pool, pool_ids = balanced_pool(class_names, size)
    x_pool, y_pool = features(backbone, pool)
    y_pool = pool_ids[y_pool]
    counts = np.asarray(train.class_counts)
    training_prior = prior_from_counts(counts)
    print(f"pool: {len(y_pool)} images, per class {np.bincount(y_pool, minlength=10)}")
    print("\n| head epochs | temperature fitted on | T | test NLL | test ECE (perfect; p) |")
    print("|---|---|---|---|---|")
    for epochs in args.epochs:
        head = train_head(x_train, y_train, LogitAdjustedCrossentropy(counts), epochs,
                          args.seed)

        def logits(x, head=head):
            return head.predict(x, verbose=0).astype(np.float64)

        test_logits = logits(x_test)
        temperatures = {
            "val_longtail.csv, training prior": fit_temperature(
                logits(x_val), y_val, prior=training_prior),
            "balanced train-split pool, uniform prior": fit_temperature(logits(x_pool), y_pool),
            "test.csv itself (optimum)": fit_temperature(test_logits, y_test),
        }
        for source, temperature in temperatures.items():
            probs = softmax(test_logits / temperature)
            errors = calibration_errors(y_test, probs)
            check = calibration_test(y_test, probs, seed=args.seed)
            print(f"| {epochs} | {source} | {temperature:.3f} | {errors['nll']:.3f} | "
                  f"{errors['ece']:.3f} ({check['ece_perfect_mean']:.3f}; "
                  f"{check['p_value']:.2f}) |")


if __name__ == "__main__":
    main()
