"""Calibration metrics speed: calibkeras against scikit-learn and plain NumPy.

Data: 1,000,000 x 100 float64 probabilities (softmax of N(0, 2^2) logits, seed 0;
rows sum to 1, no entry below 1e-12, so NLL clipping at 1e-12 (calibkeras) and at
float eps (scikit-learn) changes nothing) and uniformly random labels (seed 0).

Contenders, each called on the NumPy arrays and returning a Python float:

* NLL: ``calibkeras.metrics.functional.negative_log_likelihood`` (per-sample keras.ops function,
  which takes a NumPy array this large in row blocks of 16 MB; mean with
  ``keras.ops.mean`` and ``convert_to_numpy``), ``sklearn.metrics.log_loss``
  (``labels=range(100)``), and a NumPy reference that gathers ``p_y``.
* Brier: ``calibkeras.metrics.functional.brier_score`` (mean as above) and
  ``sklearn.metrics.brier_score_loss`` with ``scale_by_half=False`` (sklearn's
  multiclass Brier is ``mean_i sum_k (p_ik - y_ik)^2`` in [0, 2]; ``"auto"`` keeps
  that for >= 3 classes and halves only binary problems; checked below), and a NumPy
  reference ``sum_k p_k^2 - 2 p_y + 1``.
* ``calibkeras.calibration.calibration_errors`` (validation plus ECE, classwise
  ECE, adaptive ECE, MCE, Brier, NLL, accuracy, balanced accuracy, macro-F1), on the
  float64 probabilities and on a float32 copy, side by side with

  - the sum of the scikit-learn functions for the five scores sklearn has (log_loss,
    brier_score_loss, accuracy_score, balanced_accuracy_score, f1_score macro);
    sklearn has no ECE;
  - plain NumPy, whole-array: the same five scores (gather ``p_y``, one argmax,
    bincounts), and all nine scores without input validation (the classwise bins by
    one ``bincount`` over the whole matrix), written here from the definitions
    without calibkeras code. calibration_errors' nine values must equal these to
    1e-9 relative; its five shared ones must equal scikit-learn's to 1e-9.
* For information (not part of calibkeras): the same calibkeras definitions written
  with ``keras.ops.take_along_axis`` (gather ``p_y`` instead of a one-hot product over
  the whole matrix), to show what the per-sample functions could cost.

Targets (issue 18): calibration_errors at most 2 s on 1,000,000 x 100, and under a fifth
of the scikit-learn set's time in the same run.

Every round calls every contender once, in an order rotated from round to round, so
that load from other processes hits all alike; medians over the rounds are reported.

Run (from the repository root; PYTHONPATH makes the working tree's calibkeras the one
imported, not an installed copy):
    PYTHONPATH=. python benchmarks/metrics_speed.py [--rounds 5] [--rows 1000000]
"""

import argparse
import os
import platform
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import sklearn  # noqa: E402
import tensorflow as tf  # noqa: E402
from keras import ops  # noqa: E402
from sklearn.metrics import (  # noqa: E402
    accuracy_score,
    balanced_accuracy_score,
    brier_score_loss,
    f1_score,
    log_loss,
)

import calibkeras  # noqa: E402
from calibkeras.calibration import calibration_errors  # noqa: E402
from calibkeras.metrics import functional  # noqa: E402

NUM_CLASSES = 100


def make_data(rows, num_classes=NUM_CLASSES, seed=0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 2.0, size=(rows, num_classes))
    logits -= logits.max(axis=1, keepdims=True)
    probs = np.exp(logits, out=logits)
    probs /= probs.sum(axis=1, keepdims=True)
    labels = rng.integers(0, num_classes, size=rows)
    return probs, labels


def cpu_model():
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def loadavg():
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--skip-all", action="store_true",
                        help="leave out calibration_errors and the sklearn set")
    parser.add_argument("--only-all", action="store_true",
                        help="leave out the per-sample NLL and Brier contenders")
    args = parser.parse_args()

    print(
        f"tensorflow {tf.__version__}, keras {keras.__version__} ({keras.backend.backend()}), "
        f"scikit-learn {sklearn.__version__}, numpy {np.__version__}, "
        f"python {platform.python_version()}, {os.cpu_count()} CPUs ({cpu_model()}); "
        f"load {loadavg()}\ncalibkeras from {calibkeras.__file__}"
    )
    start = time.perf_counter()
    probs, labels = make_data(args.rows)
    class_ids = np.arange(NUM_CLASSES)
    rows = np.arange(args.rows)
    print(
        f"data {probs.shape} {probs.dtype}: built in {time.perf_counter() - start:.1f} s; "
        f"min prob {probs.min():.3g}, max |row sum - 1| {np.abs(probs.sum(1) - 1).max():.2g}"
    )
    assert probs.min() >= 1e-12

    def ck_nll():
        return float(ops.convert_to_numpy(ops.mean(
            functional.negative_log_likelihood(labels, probs))))

    def ck_brier():
        return float(ops.convert_to_numpy(ops.mean(functional.brier_score(labels, probs))))

    def sk_nll():
        return float(log_loss(labels, probs, labels=class_ids))

    def sk_brier():
        return float(brier_score_loss(labels, probs, labels=class_ids, scale_by_half=False))

    def np_nll():
        return float(-np.log(np.maximum(probs[rows, labels], functional.LOG_CLIP)).mean())

    def np_brier():
        return float(np.einsum("ij,ij->i", probs, probs).mean()
                     - 2.0 * probs[rows, labels].mean() + 1.0)

    def gather_nll():  # keras.ops, p_y gathered (what calibkeras could do)
        p = ops.convert_to_tensor(probs)
        y = ops.expand_dims(ops.convert_to_tensor(labels), -1)
        p_y = ops.take_along_axis(p, y, axis=-1)[:, 0]
        return float(ops.convert_to_numpy(ops.mean(-ops.log(ops.maximum(p_y, 1e-12)))))

    def gather_brier():
        p = ops.convert_to_tensor(probs)
        y = ops.expand_dims(ops.convert_to_tensor(labels), -1)
        p_y = ops.take_along_axis(p, y, axis=-1)[:, 0]
        per_sample = ops.sum(ops.square(p), axis=-1) - 2.0 * p_y + 1.0
        return float(ops.convert_to_numpy(ops.mean(per_sample)))

    probs32 = None if args.skip_all else probs.astype(np.float32)
    if probs32 is not None:  # float32 rows sum to 1 within 1e-4 (the checks' tolerance)
        assert np.abs(probs32.sum(axis=1, dtype=np.float64) - 1).max() < 1e-5

    def ck_all():
        return calibration_errors(labels, probs)

    def ck_all32():
        return calibration_errors(labels, probs32)

    def np_five():
        return numpy_five_scores(labels, probs)

    def np_nine():
        return numpy_nine_scores(labels, probs)

    def sk_all():
        predicted = probs.argmax(axis=1)
        return {
            "nll": log_loss(labels, probs, labels=class_ids),
            "brier": brier_score_loss(labels, probs, labels=class_ids, scale_by_half=False),
            "accuracy": accuracy_score(labels, predicted),
            "balanced_accuracy": balanced_accuracy_score(labels, predicted),
            "macro_f1": f1_score(labels, predicted, average="macro"),
        }

    contenders = {} if args.only_all else {
        "calibkeras negative_log_likelihood": ck_nll,
        "sklearn log_loss": sk_nll,
        "numpy NLL (gather p_y)": np_nll,
        "keras.ops NLL with take_along_axis (not calibkeras)": gather_nll,
        "calibkeras brier_score": ck_brier,
        "sklearn brier_score_loss": sk_brier,
        "numpy Brier (sum p^2 - 2 p_y + 1)": np_brier,
        "keras.ops Brier with take_along_axis (not calibkeras)": gather_brier,
    }
    if not args.skip_all:
        contenders["calibkeras calibration_errors (all 9 scores)"] = ck_all
        contenders["calibkeras calibration_errors, float32 input"] = ck_all32
        contenders["sklearn log_loss+brier+accuracy+balanced_acc+macro_f1"] = sk_all
        contenders["numpy 5 scores (whole array)"] = np_five
        contenders["numpy 9 scores (whole array, no checks)"] = np_nine

    # Values: agreement checks (also the warm-up call of each contender).
    values = {name: fn() for name, fn in contenders.items()}
    checks = {}
    if not args.only_all:
        nll_ref, brier_ref = values["sklearn log_loss"], values["sklearn brier_score_loss"]
        brier_auto = brier_score_loss(labels, probs, labels=class_ids)
        brier_half = brier_score_loss(labels, probs, labels=class_ids, scale_by_half=True)
        print(f"\nsklearn brier_score_loss scale: auto {brier_auto!r}, False {brier_ref!r}, "
              f"True {brier_half!r} -> 'auto' is the unhalved [0, 2] score for 100 classes")
        assert brier_auto == brier_ref
        checks.update({
            "calibkeras negative_log_likelihood": (
                values["calibkeras negative_log_likelihood"], nll_ref),
            "numpy NLL (gather p_y)": (values["numpy NLL (gather p_y)"], nll_ref),
            "keras.ops NLL take_along_axis": (
                values["keras.ops NLL with take_along_axis (not calibkeras)"], nll_ref),
            "calibkeras brier_score": (values["calibkeras brier_score"], brier_ref),
            "numpy Brier": (values["numpy Brier (sum p^2 - 2 p_y + 1)"], brier_ref),
            "keras.ops Brier take_along_axis": (
                values["keras.ops Brier with take_along_axis (not calibkeras)"], brier_ref),
        })
    relative = {}
    if not args.skip_all:
        scores = values["calibkeras calibration_errors (all 9 scores)"]
        sk_scores = values["sklearn log_loss+brier+accuracy+balanced_acc+macro_f1"]
        for key in ("nll", "brier", "accuracy", "balanced_accuracy", "macro_f1"):
            checks[f"calibration_errors {key}"] = (scores[key], sk_scores[key])
        numpy_scores = values["numpy 9 scores (whole array, no checks)"]
        five = values["numpy 5 scores (whole array)"]
        scores32 = values["calibkeras calibration_errors, float32 input"]
        reference32 = numpy_nine_scores(labels, probs32.astype(np.float64))
        for key in numpy_scores:
            relative[f"calibration_errors {key} vs numpy"] = (scores[key], numpy_scores[key])
            relative[f"calibration_errors float32 {key} vs numpy on the float32 values"] = (
                scores32[key], reference32[key])
        for key in five:
            relative[f"numpy 5 {key} vs numpy 9"] = (five[key], numpy_scores[key])
    print("\n| value | this | sklearn | abs difference | agrees to 1e-9 |\n|---|---|---|---|---|")
    all_ok = True
    for name, (mine, ref) in checks.items():
        ok = abs(mine - ref) <= 1e-9
        all_ok &= ok
        print(f"| {name} | {mine:.15g} | {ref:.15g} | {abs(mine - ref):.2g} | "
              f"{'yes' if ok else 'NO'} |")
    if relative:
        print("\n| value | calibkeras | plain NumPy | relative difference | agrees to 1e-9 |"
              "\n|---|---|---|---|---|")
    for name, (mine, ref) in relative.items():
        difference = abs(mine - ref) / abs(ref) if ref else abs(mine - ref)
        ok = difference <= 1e-9
        all_ok &= ok
        print(f"| {name} | {mine:.15g} | {ref:.15g} | {difference:.2g} | "
              f"{'yes' if ok else 'NO'} |")

    load_before = loadavg()
    times = {name: [] for name in contenders}
    cpu = {name: [] for name in contenders}
    names = list(contenders)
    for round_index in range(args.rounds):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            start, cpu_start = time.perf_counter(), time.process_time()
            contenders[name]()
            times[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - cpu_start)
    load_after = loadavg()

    median = {name: statistics.median(t) for name, t in times.items()}
    print(f"\n{args.rows:,} x {NUM_CLASSES} float64, median of {args.rounds} interleaved "
          f"rounds; load average before {load_before}, after {load_after}\n")
    print("| function | median s | min s | max s | CPU s (median) |\n|---|---|---|---|---|")
    for name in names:
        print(f"| {name} | {median[name]:.3f} | {min(times[name]):.3f} | "
              f"{max(times[name]):.3f} | {statistics.median(cpu[name]):.3f} |")
    print("\n| ratio | value | target |\n|---|---|---|")
    ratios = {}  # name: (value, target or None)
    if not args.only_all:
        ratios["NLL: calibkeras / sklearn"] = (
            median["calibkeras negative_log_likelihood"] / median["sklearn log_loss"], 1.0)
        ratios["Brier: calibkeras / sklearn"] = (
            median["calibkeras brier_score"] / median["sklearn brier_score_loss"], 1.0)
    if not args.skip_all:
        ours = median["calibkeras calibration_errors (all 9 scores)"]
        ratios["calibration_errors / sklearn set"] = (
            ours / median["sklearn log_loss+brier+accuracy+balanced_acc+macro_f1"], 0.2)
        ratios["calibration_errors / numpy 5 scores"] = (
            ours / median["numpy 5 scores (whole array)"], None)
        ratios["calibration_errors / numpy 9 scores"] = (
            ours / median["numpy 9 scores (whole array, no checks)"], None)
        ratios["calibration_errors float32 / float64"] = (
            median["calibkeras calibration_errors, float32 input"] / ours, None)
    for name, (ratio, target) in ratios.items():
        verdict = "" if target is None else (
            f"< {target:g}: {'met' if ratio < target else 'missed'}" if target < 1
            else f"<= {target:g}: {'met' if ratio <= target else 'missed'}")
        print(f"| {name} | {ratio:.2f} | {verdict} |")
    if not args.skip_all:
        seconds = median["calibkeras calibration_errors (all 9 scores)"]
        print(f"\ncalibration_errors {seconds:.2f} s (target <= 2 s on 1,000,000 x 100: "
              f"{'met' if seconds <= 2 else 'missed'})")
    print(f"\nvalues agree to 1e-9: {'yes' if all_ok else 'NO'}")
    if not args.skip_all:
        breakdown(probs, labels, args.rounds)


def numpy_five_scores(labels, probs):
    """NLL, Brier, accuracy, balanced accuracy and macro-F1 in plain whole-array NumPy."""
    num_rows, num_classes = probs.shape
    rows = np.arange(num_rows)
    predicted = probs.argmax(axis=1)
    p_y = probs[rows, labels]
    correct = predicted == labels
    support = np.bincount(labels, minlength=num_classes)
    hits = np.bincount(labels[correct], minlength=num_classes)
    predicted_counts = np.bincount(predicted, minlength=num_classes)
    present = support > 0
    denominator = support + predicted_counts
    f1 = np.where(denominator > 0, 2.0 * hits / np.maximum(denominator, 1), 0.0)
    return {
        "nll": float(-np.log(np.maximum(p_y, 1e-12)).mean()),
        "brier": float(np.maximum(np.einsum("ij,ij->i", probs, probs) - 2 * p_y + 1, 0).mean()),
        "accuracy": float(correct.mean()),
        "balanced_accuracy": float((hits[present] / support[present]).mean()),
        "macro_f1": float(f1[denominator > 0].mean()),
    }


def numpy_nine_scores(labels, probs, num_bins=15):
    """All nine scores of calibration_errors in plain whole-array NumPy, from the
    definitions (DESIGN.md), without input validation or calibkeras code."""
    num_rows, num_classes = probs.shape
    rows = np.arange(num_rows)
    scores = numpy_five_scores(labels, probs)
    predicted = probs.argmax(axis=1)
    confidence = probs[rows, predicted]
    correct = (predicted == labels).astype(np.float64)

    def bin_of(values):  # (b/B, (b+1)/B] is bin b; 0 joins bin 0, 1.0 the last
        return np.clip(np.ceil(values * num_bins).astype(np.intp) - 1, 0, num_bins - 1)

    top = bin_of(confidence)
    counts = np.bincount(top, minlength=num_bins)
    gaps = np.abs(np.bincount(top, confidence, num_bins) - np.bincount(top, correct, num_bins))
    class_bins = bin_of(probs) + np.arange(num_classes) * num_bins
    confidence_sums = np.bincount(class_bins.ravel(), probs.ravel(), num_classes * num_bins)
    outcome_sums = np.bincount(class_bins[rows, labels], minlength=num_classes * num_bins)
    order = np.argsort(confidence, kind="stable")
    edges = np.cumsum([0] + [len(c) for c in np.array_split(order, num_bins)])[:-1]
    edges = edges[edges < num_rows]
    adaptive = np.abs(np.add.reduceat(confidence[order], edges)
                      - np.add.reduceat(correct[order], edges))
    scores.update({
        "ece": float(gaps.sum() / num_rows),
        "classwise_ece": float(np.abs(confidence_sums - outcome_sums).sum()
                               / num_rows / num_classes),
        "adaptive_ece": float(adaptive.sum() / num_rows),
        "mce": float((gaps[counts > 0] / counts[counts > 0]).max()),
    })
    return scores


def breakdown(probs, labels, rounds):
    """Times the steps of calibration_errors, each on the full data (median).

    calibration_errors validates the input (a scan in cache-sized row blocks), then
    makes one pass over the rows in such blocks (``row_statistics``: argmax, top-label
    confidence, ``p_y``, squared norm, and the bin of every entry for the classwise
    bins), then the scores from the resulting (N,) vectors and (K, B) sums, of which
    the adaptive ECE (a stable sort of the confidences) is the largest part.
    """
    from calibkeras.calibration.errors import _adaptive_ece, row_statistics
    from calibkeras.utils.checks import check_labels, check_probabilities

    def checks():
        checked = check_probabilities(probs, keep_float32=True)
        return check_labels(labels, checked.shape[1], checked.shape[0])

    ids = checks()
    pieces = row_statistics(ids, probs, 15, classwise=False)
    correct = (pieces.predicted == ids).astype(np.float64)
    steps = {
        "check_probabilities + check_labels (row blocks)": checks,
        "row_statistics without the classwise bins": lambda: row_statistics(
            ids, probs, 15, classwise=False),
        "row_statistics with the classwise bins (what calibration_errors runs)": lambda:
            row_statistics(ids, probs, 15),
        "_adaptive_ece (stable sort)": lambda: _adaptive_ece(
            pieces.confidence, correct, 15),
        "calibration_errors, whole call": lambda: calibration_errors(labels, probs),
    }
    times = {name: [] for name in steps}
    for _ in range(max(3, rounds // 2)):
        for name, fn in steps.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    print("\nWhere calibration_errors spends its time (each step on the full data, median):\n")
    print("| step | s per call |\n|---|---|")
    for name in steps:
        print(f"| {name} | {statistics.median(times[name]):.3f} |")


if __name__ == "__main__":
    main()
