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
  ECE, adaptive ECE, MCE, Brier, NLL, accuracy, balanced accuracy, macro-F1),
  beside the sum of the scikit-learn functions for the scores sklearn has
  (log_loss, brier_score_loss, accuracy_score, balanced_accuracy_score, f1_score
  macro); sklearn has no ECE.
* For information (not part of calibkeras): the same calibkeras definitions written
  with ``keras.ops.take_along_axis`` (gather ``p_y`` instead of a one-hot product over
  the whole matrix), to show what the per-sample functions could cost.

Every round calls every contender once, in an order rotated from round to round, so
that load from other processes hits all alike; medians over the rounds are reported.

Run:
    /work/venv/bin/python benchmarks/metrics_speed.py [--rounds 5] [--rows 1000000]
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


def loadavg():
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--skip-all", action="store_true",
                        help="leave out calibration_errors and the sklearn set")
    args = parser.parse_args()

    print(
        f"tensorflow {tf.__version__}, keras {keras.__version__} ({keras.backend.backend()}), "
        f"scikit-learn {sklearn.__version__}, numpy {np.__version__}, "
        f"python {platform.python_version()}, {os.cpu_count()} CPUs; load {loadavg()}"
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

    def ck_all():
        return calibration_errors(labels, probs)

    def sk_all():
        predicted = probs.argmax(axis=1)
        return {
            "nll": log_loss(labels, probs, labels=class_ids),
            "brier": brier_score_loss(labels, probs, labels=class_ids, scale_by_half=False),
            "accuracy": accuracy_score(labels, predicted),
            "balanced_accuracy": balanced_accuracy_score(labels, predicted),
            "macro_f1": f1_score(labels, predicted, average="macro"),
        }

    contenders = {
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
        contenders["sklearn log_loss+brier+accuracy+balanced_acc+macro_f1"] = sk_all

    # Values: agreement checks (also the warm-up call of each contender).
    values = {name: fn() for name, fn in contenders.items()}
    nll_ref, brier_ref = values["sklearn log_loss"], values["sklearn brier_score_loss"]
    brier_auto = brier_score_loss(labels, probs, labels=class_ids)
    brier_half = brier_score_loss(labels, probs, labels=class_ids, scale_by_half=True)
    print(f"\nsklearn brier_score_loss scale: auto {brier_auto!r}, False {brier_ref!r}, "
          f"True {brier_half!r} -> 'auto' is the unhalved [0, 2] score for 100 classes")
    assert brier_auto == brier_ref
    checks = {
        "calibkeras negative_log_likelihood": (
            values["calibkeras negative_log_likelihood"], nll_ref),
        "numpy NLL (gather p_y)": (values["numpy NLL (gather p_y)"], nll_ref),
        "keras.ops NLL take_along_axis": (
            values["keras.ops NLL with take_along_axis (not calibkeras)"], nll_ref),
        "calibkeras brier_score": (values["calibkeras brier_score"], brier_ref),
        "numpy Brier": (values["numpy Brier (sum p^2 - 2 p_y + 1)"], brier_ref),
        "keras.ops Brier take_along_axis": (
            values["keras.ops Brier with take_along_axis (not calibkeras)"], brier_ref),
    }
    if not args.skip_all:
        scores = values["calibkeras calibration_errors (all 9 scores)"]
        sk_scores = values["sklearn log_loss+brier+accuracy+balanced_acc+macro_f1"]
        for key in ("nll", "brier", "accuracy", "balanced_accuracy", "macro_f1"):
            checks[f"calibration_errors {key}"] = (scores[key], sk_scores[key])
    print("\n| value | this | sklearn | abs difference | agrees to 1e-9 |\n|---|---|---|---|---|")
    all_ok = True
    for name, (mine, ref) in checks.items():
        ok = abs(mine - ref) <= 1e-9
        all_ok &= ok
        print(f"| {name} | {mine:.15g} | {ref:.15g} | {abs(mine - ref):.2g} | "
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
    print("\n| ratio | value | target (<= 1) |\n|---|---|---|")
    ratios = {
        "NLL: calibkeras / sklearn": median["calibkeras negative_log_likelihood"]
        / median["sklearn log_loss"],
        "Brier: calibkeras / sklearn": median["calibkeras brier_score"]
        / median["sklearn brier_score_loss"],
    }
    if not args.skip_all:
        ratios["calibration_errors / sklearn set"] = (
            median["calibkeras calibration_errors (all 9 scores)"]
            / median["sklearn log_loss+brier+accuracy+balanced_acc+macro_f1"]
        )
    for name, ratio in ratios.items():
        print(f"| {name} | {ratio:.2f} | {'met' if ratio <= 1 else 'missed'} |")
    print(f"\nvalues agree to 1e-9: {'yes' if all_ok else 'NO'}")
    if not args.skip_all:
        breakdown(probs, labels, args.rounds)


def breakdown(probs, labels, rounds):
    """Times the steps calibration_errors takes, each on the full data (median).

    calibration_errors hands the NumPy ``probs`` to six calibkeras.metrics.functional functions
    (top_label_outcomes, labels_to_one_hot, bin_statistics, class_recall_counts,
    brier_score, negative_log_likelihood), each of which converts it to a tensor
    again; it builds the (N, K) one-hot three times (_scores, brier_score,
    negative_log_likelihood) and takes keras.ops.argmax of the (N, K) matrix twice
    (top_label_outcomes, class_recall_counts) plus a NumPy argmax once.
    """
    from calibkeras.calibration.errors import _adaptive_ece
    from calibkeras.utils.checks import check_labels, check_probabilities

    def checks():
        checked = check_probabilities(probs)
        return check_labels(labels, checked.shape[1], checked.shape[0])

    probs_t = ops.convert_to_tensor(probs)
    one_hot = functional.labels_to_one_hot(labels, probs_t)
    confidence, correct = functional.top_label_outcomes(labels, probs_t)
    conf_np = ops.convert_to_numpy(confidence)[:, 0]
    correct_np = ops.convert_to_numpy(correct)[:, 0]
    steps = {
        "check_probabilities + check_labels (NumPy)": (1, checks),
        f"keras.ops.convert_to_tensor(probs), {probs.nbytes / 1e6:.0f} MB": (
            6, lambda: ops.convert_to_tensor(probs)),
        "keras.ops.argmax(probs_tensor, axis=-1)": (2, lambda: ops.argmax(probs_t, axis=-1)),
        "  tf.argmax (no -0.0 fix), for comparison": (0, lambda: tf.argmax(probs_t, axis=-1)),
        "numpy probs.argmax(axis=1)": (1, lambda: probs.argmax(axis=1)),
        "labels_to_one_hot (tensor in)": (3, lambda: functional.labels_to_one_hot(labels, probs_t)),
        "bin_statistics classwise (tensors in)": (
            1, lambda: functional.bin_statistics(probs_t, one_hot, 15)),
        "bin_statistics top-label (tensors in)": (
            1, lambda: functional.bin_statistics(confidence, correct, 15)),
        "brier_score (tensor in)": (1, lambda: functional.brier_score(labels, probs_t)),
        "negative_log_likelihood (tensor in)": (
            1, lambda: functional.negative_log_likelihood(labels, probs_t)),
        "_adaptive_ece (NumPy sort)": (1, lambda: _adaptive_ece(conf_np, correct_np, 15)),
    }
    times = {name: [] for name in steps}
    for _ in range(max(3, rounds // 2)):
        for name, (_, fn) in steps.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    print("\nWhere calibration_errors spends its time (each step on the full data, median):\n")
    print("| step | s per call | calls in calibration_errors | s in total |\n|---|---|---|---|")
    total = 0.0
    for name, (calls, _) in steps.items():
        seconds = statistics.median(times[name])
        total += calls * seconds
        print(f"| {name} | {seconds:.3f} | {calls} | {calls * seconds:.2f} |")
    print(f"| sum of the steps | | | {total:.1f} |")


if __name__ == "__main__":
    main()
