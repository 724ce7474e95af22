"""Training speed of the recipe on food10: the head phase with and without cached
features, and fine-tuning with and without XLA, beside a plain ``model.fit``.

Every row trains the same EfficientNet-Lite0 classifier (offline ImageNet weights) on
the first ``--steps`` batches of the shuffled, augmented ``train_longtail.csv``
pipeline (the loader's cache is filled by one pass before any timing), without
validation data, and reports images/s:

* head, plain ``model.fit``: backbone frozen, ``model.compile(Adam,
  SparseCategoricalCrossentropy)``, ``model.fit`` over the images;
* head, ``train_head(feature_views=None)``: the recipe without the cache (its loss
  and metric: logit-adjusted cross-entropy, BalancedAccuracy), over the images;
* head, ``train_head(feature_views=V)``: features of V passes cached, then the head
  on them; its whole-phase rate counts the feature passes;
* fine-tune, plain ``model.fit`` and ``fine_tune``: the whole backbone but BatchNorm.

Each row with ``jit_compile=False`` and ``True`` (XLA). "first epoch" includes tracing
and (XLA) compilation; "steady" is the median images/s of the later epochs; "whole
phase" is the wall time of the call, features included, and its images/s is the
epochs times the images of an epoch over that time (the cost per epoch, amortised).

``--quality`` instead compares the held-out scores after the head phase alone, on the
whole training set: uncached against cached with each of ``--quality-views``, the same
epochs and seed; balanced accuracy and NLL on ``test.csv`` under the uniform prior, raw
and after the recipe's calibration (``model.calibrate`` on ``val_longtail.csv``).

Usage::

    python benchmarks/training_speed.py                      # 224 px, 8 steps of 32
    python benchmarks/training_speed.py --image-size 96 --steps 4 --fine-tune-epochs 2
    python benchmarks/training_speed.py --quality --image-size 128 --head-epochs 5
"""

import argparse
import statistics
import time

import keras
from machine import machine

from calibkeras.calibration import calibration_errors
from calibkeras.datasets import load_food10
from calibkeras.models import build_classifier, fine_tune, train_head
from calibkeras.models.training import unfreeze_top
from calibkeras.priors import prior_from_counts


class EpochTimes(keras.callbacks.Callback):
    """Wall seconds of every epoch."""

    def on_train_begin(self, logs=None):
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)


def load_train(args):
    train = load_food10("train", shuffle=True, augment=True, seed=args.seed, cache=True,
                        image_size=(args.image_size,) * 2, batch_size=args.batch_size)
    for _ in train.dataset:  # fill the loader's cache: no decoding in the timed passes
        pass
    return train


def run_row(name, call, images_per_epoch, epochs):
    """Times ``call(callbacks)``; returns the row's numbers."""
    times = EpochTimes()
    started = time.perf_counter()
    model = call([times])
    whole = time.perf_counter() - started
    later = times.seconds[1:] or times.seconds
    row = {
        "row": name,
        "first_epoch_s": times.seconds[0],
        "steady_images_per_s": statistics.median(images_per_epoch / s for s in later),
        "whole_s": whole,
        "whole_images_per_s": epochs * images_per_epoch / whole,
        "jit": getattr(model, "jit_compile", None),
    }
    print(f"{name}: first epoch {row['first_epoch_s']:.1f} s, steady "
          f"{row['steady_images_per_s']:.1f} images/s, whole {whole:.1f} s "
          f"({row['whole_images_per_s']:.1f} images/s); model.jit_compile = {row['jit']}",
          flush=True)
    return row


def speed(args):
    keras.utils.set_random_seed(args.seed)
    size = (args.image_size,) * 2
    train = load_train(args)
    data = train.dataset.take(args.steps)
    images = args.steps * args.batch_size
    counts = train.class_counts
    model = build_classifier(10, image_size=size, class_counts=counts,
                             class_names=train.class_names)
    rows = []
    head, tune = args.head_epochs, args.fine_tune_epochs
    for jit in (False, True):
        def plain_head(callbacks, jit=jit):
            model.backbone.trainable = False
            model.compile(keras.optimizers.Adam(1e-3),
                          keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                          jit_compile=jit)
            model.fit(data, epochs=head, callbacks=callbacks, verbose=0, shuffle=False)
            return model

        def recipe_head(callbacks, views, jit=jit):
            train_head(model, data, counts, head, callbacks=callbacks, verbose=0,
                       feature_views=views, jit_compile=jit)
            return model

        rows.append(run_row(f"head, plain model.fit, jit_compile={jit}", plain_head,
                            images, head))
        rows.append(run_row(f"head, train_head(feature_views=None), jit_compile={jit}",
                            lambda c: recipe_head(c, None), images, head))
        rows.append(run_row(
            f"head, train_head(feature_views={args.views}) incl. features, "
            f"jit_compile={jit}", lambda c: recipe_head(c, args.views), images, head))
    for jit in (False, True):
        def plain_tune(callbacks, jit=jit):
            unfreeze_top(model, 1.0)
            model.compile(keras.optimizers.Adam(1e-4),
                          keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                          jit_compile=jit)
            model.fit(data, epochs=tune, callbacks=callbacks, verbose=0, shuffle=False)
            return model

        def recipe_tune(callbacks, jit=jit):
            fine_tune(model, data, counts, tune, callbacks=callbacks, verbose=0,
                      jit_compile=jit)
            return model

        rows.append(run_row(f"fine-tune, plain model.fit, jit_compile={jit}", plain_tune,
                            images, tune))
        rows.append(run_row(f"fine-tune, fine_tune, jit_compile={jit}", recipe_tune,
                            images, tune))
    model.compile("adam", "sparse_categorical_crossentropy")  # jit_compile="auto"
    auto = model.jit_compile
    print(f"\nfood10 train_longtail.csv, Lite0 imagenet at {args.image_size} px, "
          f"{args.steps} steps of {args.batch_size} images an epoch ({images} images), "
          f"{head} head / {tune} fine-tuning epochs; jit_compile='auto' resolves to {auto}")
    print(f"ran on: {machine(['tensorflow', 'keras'])}\n")
    print("| row | first epoch s | steady images/s | whole phase s | whole-phase images/s |")
    print("|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['row']} | {row['first_epoch_s']:.1f} | "
              f"{row['steady_images_per_s']:.1f} | {row['whole_s']:.1f} | "
              f"{row['whole_images_per_s']:.1f} |")


def quality(args):
    size = (args.image_size,) * 2
    val = load_food10("val", cache=True, image_size=size, batch_size=args.batch_size)
    test = load_food10("test", cache=True, image_size=size, batch_size=args.batch_size)
    rows = []
    for views in [None, *args.quality_views]:
        keras.utils.set_random_seed(args.seed)
        train = load_food10("train", shuffle=True, augment=True, seed=args.seed,
                            cache=True, image_size=size, batch_size=args.batch_size)
        model = build_classifier(10, image_size=size, class_counts=train.class_counts,
                                 class_names=train.class_names)
        started = time.perf_counter()
        train_head(model, train, train.class_counts, args.head_epochs, val, verbose=0,
                   feature_views=views)
        seconds = time.perf_counter() - started
        logits, labels = model.predict_balanced_logits(test)
        raw = calibration_errors(labels, model.probabilities(logits, "uniform",
                                                             calibrated=False))
        fit = model.calibrate(val)
        calibrated = calibration_errors(labels, model.probabilities(logits, "uniform"))
        rows.append((views, seconds, raw, calibrated, fit.method))
        print(f"feature_views={views}: {seconds:.0f} s; raw bal. acc "
              f"{raw['balanced_accuracy']:.3f} NLL {raw['nll']:.3f}; calibrated "
              f"({fit.method}) {calibrated['balanced_accuracy']:.3f} / "
              f"{calibrated['nll']:.3f}", flush=True)
    prior = prior_from_counts(train.class_counts)
    print(f"\nfood10, head phase only ({args.head_epochs} epochs, Adam 1e-3, "
          f"logit-adjusted loss, seed {args.seed}), Lite0 imagenet at {args.image_size} px, "
          f"batch {args.batch_size}; test.csv under the uniform prior (training prior "
          f"max/min {prior.max() / prior.min():.0f})")
    print(f"ran on: {machine(['tensorflow', 'keras'])}\n")
    print("| feature_views | head phase s (incl. validation) | bal. acc | NLL | "
          "calibrated: method | bal. acc | NLL | Brier |")
    print("|---|---|---|---|---|---|---|---|")
    for views, seconds, raw, cal, method in rows:
        print(f"| {views} | {seconds:.0f} | {raw['balanced_accuracy']:.3f} | "
              f"{raw['nll']:.3f} | {method} | {cal['balanced_accuracy']:.3f} | "
              f"{cal['nll']:.3f} | {cal['brier']:.3f} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=8, help="batches of an epoch")
    parser.add_argument("--head-epochs", type=int, default=5)
    parser.add_argument("--fine-tune-epochs", type=int, default=3)
    parser.add_argument("--views", type=int, default=2, help="cached views (speed rows)")
    parser.add_argument("--quality", action="store_true",
                        help="compare held-out scores after the head phase instead")
    parser.add_argument("--quality-views", type=lambda text: [int(v) for v in text.split(",")],
                        default=[1, 2, 5], help="cached views to compare, e.g. 1,2,5")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    (quality if args.quality else speed)(args)


if __name__ == "__main__":
    main()
