"""Conformal prediction sets on the CIFAR records: calibkeras against top-k, MAPIE, crepes.

Data: the four shared CIFAR softmax records (shared/reference/calibration_records: WRN-16-4
and LeNet-5 on the 10,000 CIFAR-10 / CIFAR-100 test images), rows renormalised in
float64 and used as they are (networks trained on balanced CIFAR: balanced posteriors,
not recalibrated). Each record is split 50/50 (seeded) into calibration and test halves.

Two test views:

* ``exchangeable``: the test half as it is.
* ``shifted``: a seeded subsample of the test half with a reversed, geometric prior
  (``--shift reversed``, default): the classes ranked by calibration count, rarest
  first, get shares ``ratio ** (-j / (K - 1))`` for rank ``j`` (``--ratio`` 10: the
  largest share is ten times the smallest), so the class rarest in calibration is the
  most frequent. The CIFAR test sets are balanced, so the calibration counts differ by
  sampling noise only and this order is close to arbitrary. ``--shift hardest``: the same
  shares, ranked by the mean calibration ``p_y`` of the class, lowest first (the hard
  classes frequent: a stress test of unweighted marginal sets). ``--shift dirichlet``:
  shares drawn from Dirichlet(1). Class ``k`` keeps ``floor(m * share_k / max(share))``
  of its test images (at least 1; ``m`` the smallest class count of the test half).

Methods (alpha = ``--alpha``, 0.1), fitted on the calibration half for each view:

* calibkeras ``fit_conformal`` with scores LAC, APS and RAPS (defaults: APS/RAPS
  calibration scores with a seeded random ``u``, non-randomised sets; RAPS penalty 0.01,
  k_reg 1): class-conditional (``by_class=True``), marginal (``by_class=False``),
  weighted marginal with the *oracle* prior (the view's true class frequencies) and with
  an EM estimate (``calibkeras.priors.estimate_prior(test probs, calibration label
  frequencies).prior``, defaults; its time is included).
* top-k: the k most probable classes, k = the class-conditional LAC sets' mean size on
  the view, rounded (at least 1).
* MAPIE ``SplitConformalClassifier`` (prefit, ``random_state=0``) with "lac" and "aps"
  (marginal), on a pass-through classifier whose inputs are the probabilities.
* crepes ``ConformalClassifier`` Mondrian by label (hinge score = LAC, ``smoothing=False``),
  called as crepes' ``WrapClassifier(class_cond=True)`` does: one ``predict_p`` per class
  over every column. Sets at crepes' rule ``p >= 1 - confidence``. crepes loops in Python
  (K * K score comparisons per row): for K > ``--crepes-max-k`` it runs on a seeded subset of
  ``--crepes-rows`` test rows, marked in the table.

Columns: marginal coverage; worst-class coverage and the number of classes below
``1 - alpha - 0.05``, both among classes with at least ``--min-count`` (10) test images of the
view; mean set size; seconds (fit + predict; after a warm-up pass, so TensorFlow's start-up
is not counted). Agreement (fraction of equal (row, class) entries): ours class-conditional LAC
against crepes (at crepes' ``p >= 0.1`` and at ``p > 0.1``, the rule of the conformal set that
fit_conformal uses), ours marginal LAC/APS against MAPIE's.

Run (about 100 s on 2 AMD EPYC cores, 90 of them crepes on CIFAR-100):

    python benchmarks/conformal_sets.py [--records NAME ...] [--alpha 0.1] [--seed 0]
        [--shift reversed|hardest|dirichlet] [--ratio 10] [--crepes-rows 500]

TODO (lead): food10 (test.csv and its reversed-prior subset) needs a trained model folder;
see benchmarks/conformal_food10.py. This script takes only the CIFAR records.
"""

import argparse
import glob
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
from machine import machine  # noqa: E402
from scipy.stats import binom  # noqa: E402

from calibkeras.conformal import fit_conformal, set_coverage  # noqa: E402
from calibkeras.priors import estimate_prior  # noqa: E402

RECORDS = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "reference",
                       "calibration_records", "*.npz")
SCORES = ("lac", "aps", "raps")


def load(path):
    record = np.load(path)
    probs = record["predictions"].astype(np.float64)
    return probs / probs.sum(axis=1, keepdims=True), record["ground_truth"].astype(np.int64)


def shifted_subset(labels, rank_key, shift, ratio, rng):
    """Seeded row indices of a label-shifted subsample of ``labels``, and its prior; the
    class of the smallest ``rank_key`` gets the largest share (geometric shifts)."""
    num_classes = len(rank_key)
    share = rng.dirichlet(np.ones(num_classes))
    if shift != "dirichlet":
        share[np.argsort(rank_key, kind="stable")] = ratio ** (
            -np.arange(num_classes) / (num_classes - 1))
    counts = np.bincount(labels, minlength=num_classes)
    keep = np.maximum(np.floor(counts.min() * share / share.max()), 1).astype(int)
    rows = np.concatenate([rng.choice(np.flatnonzero(labels == k), keep[k], replace=False)
                           for k in range(num_classes)])
    return np.sort(rows), keep / keep.sum()


def top_k_sets(probs, k):
    sets = np.zeros(probs.shape, dtype=bool)
    np.put_along_axis(sets, np.argsort(-probs, axis=1)[:, :k], True, axis=1)
    return sets


def mapie_sets(cal_probs, cal_labels, test_probs, score, alpha):
    from mapie.classification import SplitConformalClassifier  # noqa: PLC0415
    from sklearn.base import BaseEstimator, ClassifierMixin  # noqa: PLC0415

    class Probabilities(ClassifierMixin, BaseEstimator):
        """A prefit "classifier" whose inputs are its probabilities."""

        def fit(self, X, y):
            self.classes_ = np.arange(X.shape[1])
            return self

        def predict_proba(self, X):
            return X

        def predict(self, X):
            return X.argmax(axis=1)

    mapie = SplitConformalClassifier(
        Probabilities().fit(cal_probs, cal_labels), confidence_level=1 - alpha,
        conformity_score=score, prefit=True, random_state=0)
    mapie.conformalize(cal_probs, cal_labels)
    return mapie.predict_set(test_probs)[1][:, :, 0]


def crepes_p_values(cal_probs, cal_labels, test_probs):
    """Non-smoothed Mondrian (by label) p-values of every class, as crepes'
    WrapClassifier(class_cond=True) computes them: one call per class."""
    from crepes import ConformalClassifier  # noqa: PLC0415
    from crepes.extras import hinge  # noqa: PLC0415

    classes = np.arange(cal_probs.shape[1])
    mondrian = ConformalClassifier().fit(hinge(cal_probs, classes, cal_labels),
                                         bins=cal_labels)
    scores = hinge(test_probs)
    return np.stack([mondrian.predict_p(scores, np.full(len(test_probs), k),
                                        smoothing=False)[:, k] for k in classes], axis=1)


def timed(function, *args, **kwargs):
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - start


def run_view(cal_probs, cal_labels, probs, labels, true_prior, args, rng):
    """Rows ``(method, labels, sets, seconds)`` of one view, and its agreement notes."""
    alpha, rows, notes = args.alpha, [], []
    train_prior = np.bincount(cal_labels, minlength=probs.shape[1]) / len(cal_labels)
    estimate, em_seconds = timed(estimate_prior, probs, train_prior)
    variants = {"class-conditional": ({"by_class": True}, 0.0),
                "marginal": ({"by_class": False}, 0.0),
                "weighted, oracle prior": ({"by_class": False, "prior": true_prior}, 0.0),
                "weighted, EM prior": ({"by_class": False, "prior": estimate.prior},
                                       em_seconds)}
    ours = {}
    for score in SCORES:
        for name, (options, extra) in variants.items():
            fit, seconds = timed(fit_conformal, cal_probs, cal_labels, alpha, score=score,
                                 **options)
            sets, predict_seconds = timed(fit.predict_sets, probs)
            ours[name, score] = sets
            rows.append((f"ck {name} {score.upper()}", labels, sets,
                         extra + seconds + predict_seconds))
    notes.append(f"EM prior L1 error {np.abs(estimate.prior - true_prior).sum():.3f} "
                 f"({em_seconds:.2f} s, in the EM rows' seconds)")
    target = set_coverage(labels, ours["class-conditional", "lac"]).mean_size
    k = max(1, int(round(target)))
    sets, seconds = timed(top_k_sets, probs, k)
    rows.append(("top-k, k = round(class-cond. LAC size)", labels, sets, seconds))
    notes.append(f"top-k: k = {k} (class-conditional LAC size {target:.2f})")
    for score in ("lac", "aps"):
        try:
            sets, seconds = timed(mapie_sets, cal_probs, cal_labels, probs, score, alpha)
        except Exception as error:  # noqa: BLE001 (a peer that fails is reported)
            notes.append(f"MAPIE {score} skipped: {type(error).__name__}: {error}")
            continue
        rows.append((f"MAPIE {score.upper()} (marginal)", labels, sets, seconds))
        agree = (sets == ours["marginal", score]).mean()
        notes.append(f"ck marginal {score.upper()} = MAPIE {score.upper()} on {agree:.5f} of "
                     f"entries")
    subset, name = np.arange(len(labels)), "crepes Mondrian hinge"
    if probs.shape[1] > args.crepes_max_k:
        name += f" (on {args.crepes_rows} seeded test rows)"
        if len(labels) > args.crepes_rows:
            subset = np.sort(rng.choice(len(labels), args.crepes_rows, replace=False))
    try:
        p_values, seconds = timed(crepes_p_values, cal_probs, cal_labels, probs[subset])
    except Exception as error:  # noqa: BLE001
        notes.append(f"crepes skipped: {type(error).__name__}: {error}")
        return rows, notes
    sets = p_values >= 1 - (1 - alpha)  # crepes' predict_set: p >= 1 - confidence
    part = "" if len(subset) == len(labels) else f", {len(subset)} of {len(labels)} rows"
    rows.append((name, labels[subset], sets, seconds))
    mine = ours["class-conditional", "lac"][subset]
    notes.append(f"ck class-conditional LAC = crepes on {(mine == sets).mean():.5f} of entries "
                 f"(crepes p >= {alpha:g}), {(mine == (p_values > alpha)).mean():.5f} (p > "
                 f"{alpha:g}){part}")
    return rows, notes


def summarise(labels, sets, alpha, min_count):
    coverage = set_coverage(labels, sets)
    enough = coverage.class_counts >= min_count
    per_class = coverage.per_class[enough]
    return (coverage.marginal, per_class.min() if enough.any() else np.nan,
            int((per_class < 1 - alpha - 0.05).sum()), coverage.mean_size)


def expected_below(labels, num_classes, alpha, min_count):
    """Expected number of classes (with >= min_count rows) below 1 - alpha - 0.05 for
    sets that cover every class with probability exactly 1 - alpha (binomial noise)."""
    counts = np.bincount(labels, minlength=num_classes)
    counts = counts[counts >= min_count]
    level = 1 - alpha - 0.05
    below = np.array([np.flatnonzero(np.arange(n + 1) / n < level).max() for n in counts])
    return float(binom.cdf(below, counts, 1 - alpha).sum()), len(counts)


def run_record(path, args):
    probs, labels = load(path)
    num_classes = probs.shape[1]
    rng = np.random.default_rng(args.seed)
    order = rng.permutation(len(labels))
    cal, test = order[: len(labels) // 2], order[len(labels) // 2:]
    if args.shift == "hardest":  # the mean calibration probability of the true class
        key = np.bincount(labels[cal], probs[cal, labels[cal]], num_classes)
        key /= np.bincount(labels[cal], minlength=num_classes)
    else:
        key = np.bincount(labels[cal], minlength=num_classes)
    rows, shifted_prior = shifted_subset(labels[test], key, args.shift, args.ratio, rng)
    views = {
        "exchangeable": (probs[test], labels[test],
                         np.bincount(labels[test], minlength=num_classes) / len(test)),
        "shifted": (probs[test][rows], labels[test][rows], shifted_prior),
    }
    results, lines = {}, []
    for view, (view_probs, view_labels, prior) in views.items():
        rows_out, notes = run_view(probs[cal], labels[cal], view_probs, view_labels, prior,
                                   args, rng)
        results[view] = {name: (*summarise(y, s, args.alpha, args.min_count), seconds)
                         for name, y, s, seconds in rows_out}
        expected, present = expected_below(view_labels, num_classes, args.alpha,
                                           args.min_count)
        lines.append(f"- {view} ({len(view_labels)} test images, prior max/min "
                     f"{prior.max() / prior.min():.1f}; {present} classes with >= "
                     f"{args.min_count} images; exact per-class coverage {1 - args.alpha:g} "
                     f"would leave {expected:.1f} of them below {1 - args.alpha - 0.05:g} by "
                     "binomial noise alone): " + "; ".join(notes))
    return results, lines


def table(results, alpha):
    head = f"coverage | worst class | classes < {1 - alpha - 0.05:g} | mean size | s"
    out = ["| method | " + " | ".join(head for _ in results) + " |",
           "|---|" + "---:|" * 5 * len(results)]
    for name in next(iter(results.values())):
        cells = []
        for view in results.values():
            marginal, worst, below, size, seconds = view[name]
            worst = "n/a" if np.isnan(worst) else f"{worst:.3f}"
            cells.append(f"{marginal:.3f} | {worst} | {below} | {size:.2f} | "
                         f"{seconds:.2f}")
        out.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(out)



def main():
    paths = {os.path.basename(p).removesuffix(".npz"): p for p in sorted(glob.glob(RECORDS))}
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", nargs="+", choices=sorted(paths), default=sorted(paths))
    parser.add_argument("--alpha", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--shift", choices=("reversed", "hardest", "dirichlet"),
                        default="reversed")
    parser.add_argument("--ratio", type=float, default=10.0,
                        help="largest / smallest share of the geometric shifts")
    parser.add_argument("--min-count", type=int, default=10,
                        help="test images a class needs to count in the per-class columns")
    parser.add_argument("--crepes-max-k", type=int, default=10,
                        help="above this many classes crepes runs on a subset of rows")
    parser.add_argument("--crepes-rows", type=int, default=500)
    args = parser.parse_args()
    if not paths:
        parser.error(f"no records found at {RECORDS}")
    print("`python " + " ".join(["benchmarks/conformal_sets.py", *sys.argv[1:]]) + "`")
    print(machine(("calibkeras", "numpy", "keras", "tensorflow", "mapie", "crepes")))
    print(f"alpha {args.alpha}, seed {args.seed}, shift {args.shift}"
          + ("" if args.shift == "dirichlet" else f" (geometric, ratio {args.ratio:g})"))
    probs, labels = load(paths[args.records[0]])  # warm-up: imports and traced functions
    run_view(probs[:500], labels[:500], probs[500:520], labels[500:520],
             np.full(probs.shape[1], 1 / probs.shape[1]), args, np.random.default_rng(0))
    start = time.perf_counter()
    for name in args.records:
        record_start = time.perf_counter()
        results, lines = run_record(paths[name], args)
        print(f"\n### {name} ({time.perf_counter() - record_start:.0f} s)\n")
        print("Columns: " + " | ".join(f"{view} (5 columns)" for view in results) + "\n")
        print(table(results, args.alpha))
        print()
        print("\n".join(lines))
    print(f"\nTotal {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
