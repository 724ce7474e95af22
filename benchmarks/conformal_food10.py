"""Conformal prediction sets of a trained food10 model: coverage and size on test.csv.

Takes a model folder written by ``calibkeras train`` (e.g. with its defaults and
``--alpha 0.1``), computes the balanced logits of food10's long-tailed validation split
(the calibration data) and of its balanced test split once, and fits every variant on
the validation logits: class-conditional, marginal and weighted marginal (for the test
view's true prior, and for the prior EM estimates from the test images), with the LAC,
APS and RAPS scores, beside top-k sets. Two test views: test.csv as it is (uniform
prior) and its reversed-prior subset (the training prior reversed, as the demo's).

    python benchmarks/conformal_food10.py --model runs/food10 [--alpha 0.1]
"""

import argparse
import platform
import time

import numpy as np

from calibkeras.conformal import fit_conformal, set_coverage
from calibkeras.datasets.food10 import food10_csv
from calibkeras.model_directory import load_model_directory
from calibkeras.workflow import load_labelled_csv, reversed_prior_subset


def top_k_sets(probs, k):
    order = np.argsort(-probs, axis=1)[:, :k]
    sets = np.zeros(probs.shape, dtype=bool)
    np.put_along_axis(sets, order, True, axis=1)
    return sets


def row(name, labels, sets, alpha, seconds=None):
    coverage = set_coverage(labels, sets)
    present = coverage.class_counts > 0
    return (f"| {name} | {coverage.marginal:.3f} | {coverage.worst_class:.3f} | "
            f"{int((coverage.per_class[present] < 1 - alpha - 0.05).sum())} | "
            f"{coverage.mean_size:.2f} | "
            + ("" if seconds is None else f"{seconds:.3f}") + " |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a model folder of calibkeras train")
    parser.add_argument("--alpha", type=float, default=0.1)
    args = parser.parse_args()

    model, record = load_model_directory(args.model)
    val_logits, val_labels = model.predict_balanced_logits(
        load_labelled_csv(record, food10_csv("val")))
    test_logits, test_labels = model.predict_balanced_logits(
        load_labelled_csv(record, food10_csv("test")))
    val_probs = model.probabilities(val_logits, "uniform")
    test_probs = model.probabilities(test_logits, "uniform")
    subset, reversed_prior = reversed_prior_subset(test_labels, model.prior_shift.training_prior)
    views = {
        "test.csv (uniform prior)": (test_probs, test_labels, np.full(10, 0.1)),
        f"reversed-prior subset ({len(subset)} images)": (
            test_probs[subset], test_labels[subset], reversed_prior),
    }
    counts = np.bincount(val_labels, minlength=model.num_classes)
    print(f"calibration data: {len(val_labels)} validation images, per class "
          f"{counts.tolist()}; alpha {args.alpha}; {platform.processor() or platform.machine()}")
    for view, (probs, labels, true_prior) in views.items():
        estimate = model.estimate_prior(test_logits if view.startswith("test")
                                        else test_logits[subset]).prior
        print(f"\n{view}\n")
        print("| sets | coverage | worst class | classes < 1 - alpha - 0.05 | mean size "
              "| seconds (fit + predict) |")
        print("|---|---|---|---|---|---|")
        for score in ("lac", "aps", "raps"):
            for name, options in (
                ("class-conditional", {"by_class": True}),
                ("marginal", {"by_class": False}),
                ("weighted, true prior", {"by_class": False, "prior": true_prior}),
                ("weighted, EM prior", {"by_class": False, "prior": estimate}),
            ):
                started = time.perf_counter()
                fit = fit_conformal(val_probs, val_labels, args.alpha, score=score, **options)
                sets = fit.predict_sets(probs)
                seconds = time.perf_counter() - started
                print(row(f"{name} {score}", labels, sets, args.alpha, seconds))
        for k in (1, 2, 3):
            print(row(f"top-{k}", labels, top_k_sets(probs, k), args.alpha))


if __name__ == "__main__":
    main()
