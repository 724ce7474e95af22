"""calibkeras against what users try first, on the long-tailed food10 data.

Every row uses the same frozen EfficientNet-Lite0 backbone (offline ImageNet weights),
the same image size, the same augmented training views and the same head (dropout +
Dense) trained for the same number of epochs with Adam; only the way the imbalance is
handled and the way probabilities become predictions differ:

* plain cross-entropy, argmax;
* random oversampling (every class repeated up to the largest class), argmax;
* ``class_weight="balanced"`` (weights N / (K n_k)), argmax;
* focal loss (gamma 2), argmax;
* calibkeras: logit-adjusted loss (balanced logits), temperature fitted on the
  validation set under the training prior, then the uniform prior for the balanced
  test set, and the EM-estimated prior for the reversed-prior test subset (also shown
  with the uniform prior there: balanced accuracy does not depend on the class prior,
  so its Bayes rule is the uniform-prior decision on any test set, while the estimated
  prior is the one that maximises accuracy and improves Brier and NLL);
* calibkeras post hoc: plain cross-entropy, then the training prior removed from the
  logits, the temperature and the prior as above.

Scores on ``test.csv`` (balanced, 75 images per class) and on a subset of it whose
class prior is the reverse of the training prior. Every ECE stands beside the ECE a
perfectly calibrated model would show with the same confidences on the same number of
images (consistency resampling), and its p-value.

The backbone is frozen so that six trainings fit in a few minutes of a 2-core CPU: the
features of ``--views`` augmented copies of each training image are computed once.

Usage::

    python benchmarks/imbalanced_food10.py [--image-size 224] [--views 4] [--epochs 30]
    python benchmarks/imbalanced_food10.py --epochs 5,10,30  # one run, three head budgets
"""

import argparse
import itertools
import json
import time

import keras
import numpy as np

from calibkeras.calibration import (
    adjust_to_prior,
    calibration_errors,
    calibration_test,
    estimate_prior,
    fit_temperature,
)
from calibkeras.data import build_augmentation
from calibkeras.datasets import load_food10
from calibkeras.losses import FocalCrossentropy, LogitAdjustedCrossentropy
from calibkeras.models import EfficientNetLite0
from calibkeras.priors import prior_from_counts


def features(backbone, data, views=1, seed=0):
    """Pooled backbone features of ``views`` copies (the first plain, the rest augmented)."""
    augment = build_augmentation(seed=seed)
    outputs = []
    for view in range(views):
        dataset = data.dataset
        if view:
            dataset = dataset.map(lambda x, y: (augment(x, training=True), y))
        outputs.append(backbone.predict(dataset, verbose=0))
    return np.concatenate(outputs), np.tile(np.asarray(data.labels), views)


def train_head(x, y, loss, epochs, seed, class_weight=None):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((x.shape[1],))
    hidden = keras.layers.Dropout(0.2)(inputs)
    head = keras.Model(inputs, keras.layers.Dense(10)(hidden))
    head.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss)
    head.fit(x, y, batch_size=64, epochs=epochs, verbose=0, shuffle=True,
             class_weight=class_weight)
    return head


def scores(probs, labels, smallest, seed=0):
    errors = calibration_errors(labels, probs)
    test = calibration_test(labels, probs, n_resamples=1000, seed=seed)
    predicted = probs.argmax(axis=1)
    recalls = [float(np.mean(predicted[labels == k] == k)) for k in smallest]
    return {
        "accuracy": errors["accuracy"],
        "balanced_accuracy": errors["balanced_accuracy"],
        "macro_f1": errors["macro_f1"],
        "recall_smallest_3": recalls,
        "ece": errors["ece"],
        "ece_perfect_mean": test["ece_perfect_mean"],
        "ece_p_value": test["p_value"],
        "classwise_ece": errors["classwise_ece"],
        "brier": errors["brier"],
        "nll": errors["nll"],
    }


def softmax(logits):
    return keras.ops.convert_to_numpy(keras.ops.softmax(logits.astype(np.float64), axis=1))


def reversed_prior_subset(labels, training_prior, seed):
    """Indices of a test subset whose class prior is the reverse of the training prior."""
    order = np.argsort(training_prior)
    reverse = np.empty_like(training_prior)
    reverse[order] = training_prior[order[::-1]]
    per_class = np.bincount(labels).min()
    wanted = np.maximum(1, np.round(per_class * reverse / reverse.max())).astype(int)
    rng = np.random.default_rng(seed)
    return np.sort(np.concatenate([
        rng.choice(np.flatnonzero(labels == k), wanted[k], replace=False) for k in range(10)
    ])), reverse


def epoch_list(text):
    """``--epochs`` as a list of ints: "30" or "5,10,30"."""
    return [int(epochs) for epochs in text.split(",")]


def run_row(name, head, val, test, training_prior, subset, smallest, seed):
    """Scores of one trained head on the test set and on the reversed-prior subset."""
    (x_val, y_val), (x_test, y_test) = val, test
    test_logits = head.predict(x_test, verbose=0).astype(np.float64)
    temperature = None
    if name.startswith("calibkeras"):
        val_logits = head.predict(x_val, verbose=0).astype(np.float64)
        if "post hoc" in name:  # the head learned f + log(prior): remove the prior
            val_logits -= np.log(training_prior)
            test_logits -= np.log(training_prior)
        temperature = fit_temperature(val_logits, y_val, prior=training_prior)
        balanced = softmax(test_logits / temperature)
        uniform_probs = balanced  # balanced logits + log(uniform) = balanced posterior
        under_training = adjust_to_prior(balanced, np.full(10, 0.1), training_prior)
        estimate = estimate_prior(under_training[subset], training_prior)
        shifted_probs = estimate.probs
        subset_prior = np.bincount(y_test[subset], minlength=10) / len(subset)
        oracle = adjust_to_prior(balanced[subset], np.full(10, 0.1), subset_prior)
        print(f"{name}: T {temperature:.3f} (NLL-optimal on test: "
              f"{fit_temperature(test_logits, y_test):.3f}); EM prior L1 error "
              f"{np.abs(estimate.prior - subset_prior).sum():.3f} ({estimate.n_iter} "
              f"iterations; uniform: {np.abs(0.1 - subset_prior).sum():.3f}); with the true "
              f"subset prior: {scores(oracle, y_test[subset], smallest, seed)}", flush=True)
    else:
        uniform_probs = softmax(test_logits)
        shifted_probs = uniform_probs[subset]
    result = {
        "row": name,
        "temperature": temperature,
        "test": scores(uniform_probs, y_test, smallest, seed),
        "reversed_prior_subset": scores(shifted_probs, y_test[subset], smallest, seed),
    }
    if temperature is not None:  # the uniform prior is the Bayes rule for balanced accuracy
        result["reversed_prior_subset, uniform prior"] = scores(
            uniform_probs[subset], y_test[subset], smallest, seed)
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--views", type=int, default=4)
    parser.add_argument("--epochs", type=epoch_list, default=[30],
                        help="head epochs; a comma list runs each setting on the same "
                        "features, e.g. 5,10,30")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args()
    started = time.perf_counter()
    size = (args.image_size, args.image_size)
    train = load_food10("train", image_size=size)
    val = load_food10("val", image_size=size)
    test = load_food10("test", image_size=size)
    backbone = EfficientNetLite0(include_top=False, pooling="avg", input_shape=(*size, 3))
    x_train, y_train = features(backbone, train, args.views, args.seed)
    x_val, y_val = features(backbone, val)
    x_test, y_test = features(backbone, test)
    feature_seconds = time.perf_counter() - started

    counts = np.asarray(train.class_counts)
    training_prior = prior_from_counts(counts)
    smallest = np.argsort(counts)[:3]
    subset, reverse_prior = reversed_prior_subset(y_test, training_prior, args.seed)
    weights = {k: float(counts.sum() / (10 * counts[k])) for k in range(10)}
    repeat = np.concatenate([
        np.random.default_rng(args.seed).choice(
            np.flatnonzero(y_train == k), counts.max() * args.views, replace=True)
        for k in range(10)
    ])
    crossentropy = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    heads = {
        "plain cross-entropy, argmax": (crossentropy, x_train, y_train, None),
        "random oversampling, argmax": (crossentropy, x_train[repeat], y_train[repeat], None),
        'class_weight="balanced", argmax': (crossentropy, x_train, y_train, weights),
        "focal loss (gamma 2), argmax": (FocalCrossentropy(gamma=2.0), x_train, y_train, None),
        "calibkeras: logit-adjusted loss + T + prior": (
            LogitAdjustedCrossentropy(counts), x_train, y_train, None),
        "calibkeras post hoc: cross-entropy - log prior + T + prior": (
            crossentropy, x_train, y_train, None),
    }
    results = {}
    for epochs in args.epochs:
        results[epochs] = []
        for name, (loss, x, y, class_weight) in heads.items():
            results[epochs].append(run_row(
                name, train_head(x, y, loss, epochs, args.seed, class_weight),
                (x_val, y_val), (x_test, y_test), training_prior, subset, smallest,
                args.seed))
            print(f"trained: {name}, {epochs} epochs", flush=True)

    seconds = time.perf_counter() - started
    print(f"\nfood10, Lite0 frozen at {args.image_size} px, {args.views} training views, "
          f"{args.epochs} head epochs; features {feature_seconds:.0f} s, total {seconds:.0f} s")
    print(f"smallest training classes: {[train.class_names[k] for k in smallest]}")
    parts = (("test", f"test.csv ({len(y_test)} images, balanced)"),
             ("reversed_prior_subset", f"reversed-prior subset ({len(subset)} images; "
              "calibkeras uses the EM-estimated prior)"))
    for epochs, (part, size_text) in itertools.product(args.epochs, parts):
        print(f"\n### {size_text}, {epochs} head epochs\n")
        print("| row | accuracy | bal. acc | macro-F1 | recall 3 smallest | ECE (perfect; p) "
              "| classwise ECE | Brier | NLL |")
        print("|---|---|---|---|---|---|---|---|---|")
        for result in results[epochs]:
            variants = [(result["row"], result[part])]
            if f"{part}, uniform prior" in result:
                variants.append((f"{result['row']}, uniform prior instead of the estimate",
                                 result[f"{part}, uniform prior"]))
            for row, s in variants:
                recall = "/".join(f"{r:.2f}" for r in s["recall_smallest_3"])
                print(f"| {row} | {s['accuracy']:.3f} | {s['balanced_accuracy']:.3f} | "
                      f"{s['macro_f1']:.3f} | {recall} | {s['ece']:.3f} "
                      f"({s['ece_perfect_mean']:.3f}; {s['ece_p_value']:.2f}) | "
                      f"{s['classwise_ece']:.4f} | {s['brier']:.3f} | {s['nll']:.3f} |")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"args": vars(args), "seconds": seconds, "results": results}, handle,
                      indent=2)


if __name__ == "__main__":
    main()
