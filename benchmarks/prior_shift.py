"""Label-shift adaptation against the peers: calibkeras' EM after each calibration, BBSE,
abstention's EM with BCTS and QuaPy's EMQ with BCTS, on the four CIFAR records.

Protocol (Alexandari, Kundaje & Shrikumar 2020). Data: the four real CIFAR records in
shared/reference/calibration_records (softmax outputs of WRN-16-4 and LeNet-5 on the
10,000 CIFAR-10 / CIFAR-100 test images). Each record is split 50/50 (seeded) into a
"validation" (source) half, with the record's own class frequencies, and a "test" half.
For each sample size n in {500, 2000} and shift strength alpha in {0.1, 1, 10}, ``--draws``
deployment priors pi ~ Dirichlet(alpha * 1_K) are drawn; each sample draws n labels from pi
and, for each, a test-half image of that class with replacement (the helpers of
``em_dirichlet.py``). Every method sees the same draws (paired comparisons).

Methods (everything fitted is fitted once, on the validation half):

* ``ck none``, ``ck temperature``, ``ck bias_corrected``, ``ck vector``, ``ck auto``:
  ``calibkeras.calibration.fit_calibration(log(p_val), y_val, method=..., prior=pi_val)``
  (``none``: the record's probabilities as they are; ``auto``: the default, which
  cross-validates temperature, bias-corrected and vector scaling and their shrinkage
  toward temperature scaling; ``ck auto l2=0``: ``auto`` without the shrinkage
  candidates), test posteriors ``softmax(fit.logits(log p) + log pi_val)``, then
  ``estimate_prior(posteriors, s)`` with its defaults (MAP EM,
  ``dirichlet=DEFAULT_DIRICHLET`` = 1.1), where the source prior ``s`` is the mean
  calibrated validation posterior ``fit.posterior_mean`` (Alexandari et al. section 3.2;
  ``pi_val`` for ``ck none``). This is what a calibkeras model does:
  ``CalibratedClassifier.calibrate`` makes its bias relative to ``s``, and its EM and
  every prior it is given then adapt from ``s``. ``ck auto, label source`` is the
  default calibration with ``pi_val``, the validation label frequencies, as EM's source
  prior instead (calibkeras before it adapted from ``s``). ``ck auto`` is the calibkeras
  default, the one the summary scores. ``ck auto a=1`` is the same with ``dirichlet=1``
  (maximum likelihood, as the peers), to separate the calibration from the Dirichlet
  prior.
* ``BBSE`` (Lipton, Wang & Smola 2018), written here: joint confusion matrix
  ``C[i, j] = P_val(argmax = i, y = j)`` of the record's hard predictions, ``mu`` = the
  sample's predicted-class frequencies, weights ``w`` solving ``C w = mu`` (least squares,
  = ``solve`` when C is invertible), clipped at 0, prior ``w * pi_val`` renormalised. BBSE
  gives no posteriors: its NLL and accuracy use the ``ck auto`` posteriors re-weighted
  from ``s`` to its estimate, so they measure its prior only.
* ``abstention EM+BCTS`` (abstention 0.1.3.1): ``TempScaling(bias_positions="all")`` fitted
  on the validation posteriors (``posterior_supplied=True``), applied to both halves, then
  ``EMImbalanceAdapter()`` (defaults: tolerance 1e-6, at most 100 iterations) on the
  calibrated posteriors; the estimate is the mean adapted posterior. This is how the
  paper's own code calls it (kundajelab/labelshiftexperiments, cifarandmnist.py):
  calibrated posteriors in, no ``calibrator_factory``. With a ``calibrator_factory``,
  abstention 0.1.3.1 runs its EM loop on the *uncalibrated* test posteriors
  (``softmax_initial_posterior_probs`` is taken before the calibrator is applied), so it
  is not used that way here. Its source prior is abstention's own: the mean calibrated
  validation posterior.
* ``QuaPy EMQ bcts`` (``quapy.method.aggregative.EMQ(calib="bcts")``, defaults otherwise:
  ``exact_train_prev=True``, i.e. the validation label frequencies, epsilon 1e-4, at most
  1000 iterations): the record's probabilities go through a pass-through "classifier"
  (``predict_proba`` returns its input), ``val_split=(p_val, y_val)``,
  ``fit_classifier=False``; ``fit`` fits the calibration (QuaPy's "bcts" is abstention's
  ``TempScaling(bias_positions="all")``, so the calibration equals the row above), and
  each draw runs ``EMQ.EM(train_prevalence, calibrated sample)``. Skipped with the error
  printed when QuaPy cannot be imported or fitted.
* references, not contenders: ``unadapted`` (``ck auto`` posteriors under pi_val) and
  ``oracle`` (``ck auto`` posteriors re-weighted from ``s`` to the true pi) and
  ``oracle, label source`` (re-weighted from pi_val instead: what the source prior
  does when the target prior is known).

Each draw is scored by the prior's L1 error ``sum_k |estimate_k - pi_k|`` and its
Jensen-Shannon distance to pi (``scipy.spatial.distance.jensenshannon``, natural log: the
square root of the JS divergence, in [0, sqrt(ln 2)]), both against the *drawn* prior pi
(the CSV also has ``l1_sample``, against the sample's realised label frequencies, which
the paper's code uses), and by the NLL (natural log, clipped at 1e-12) and top-1 accuracy
of the sample's posteriors re-weighted from the method's source prior to its estimate.
Time: ``fit s`` = the calibration fit (once per record; for QuaPy its whole ``fit``),
``EM ms`` = the mean wall time of one estimate (EM plus re-weighting the sample), on the
precomputed calibrated posteriors. Tables show means over the draws, ``± SE`` the
standard error of the mean.

Summary rule, per record and setting (n, alpha): calibkeras' default (``ck auto``) is "as
good as" a peer on a metric (L1, NLL; lower is better) when its mean is at most the peer's
mean plus one standard error, the larger of the two SEs printed in the table. A setting
counts when that holds on L1 and on NLL against both peers (abstention and QuaPy; only
those that ran). The line also gives the count under a strict paired rule, ``mean(d) <=
SE(d)`` for the per-draw differences ``d = ck - peer`` on the same draws: the methods share
the draws and nearly the same calibration, so SE(d) is tiny and this rule flags
differences in the fourth decimal as losses.

Raw rows (one per record, setting, draw and method) go to ``--out`` as CSV.

The peers come from the ``bench`` extra (``pip install -e ".[bench]"``). Run (about 40 s
on 2 AMD EPYC cores for all four records and 20 draws; the peers are fast enough to take
the same number of draws):
    python benchmarks/prior_shift.py [--draws 20] [--records NAME ...] [--seed 0]
        [--out /tmp/prior_shift.csv]

``--fit-times`` only times ``fit_calibration`` on each record's validation half (the
fastest of ``--repeats`` calls, one BLAS thread or ``--threads default``); with
``--module PATH`` it times another version of ``calibration_fit.py`` instead, e.g. one
written by ``git show COMMIT:calibkeras/calibration/calibration_fit.py > PATH``.
"""

import argparse
import glob
import os
import time
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # calibkeras imports keras

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from em_dirichlet import RECORDS, SHIFTS, SIZES, nll, shifted_sample  # noqa: E402
from machine import machine  # noqa: E402
from scipy.spatial.distance import jensenshannon  # noqa: E402
from scipy.special import softmax  # noqa: E402
from sklearn.base import BaseEstimator, ClassifierMixin  # noqa: E402

from calibkeras.calibration import estimate_prior, fit_calibration  # noqa: E402

CK_METHODS = ("temperature", "bias_corrected", "vector", "auto", "auto l2=0")
DEFAULT = "ck auto"
PEERS = ("abstention EM+BCTS", "QuaPy EMQ bcts")


def reweight(probs, source, target):
    """Posteriors under ``source`` re-weighted to ``target`` (Bayes' rule), rows summing to 1."""
    adapted = probs * (target / source)
    return adapted / adapted.sum(axis=1, keepdims=True)


def bbse_prior(confusion, source, predicted, num_classes):
    """BBSE estimate: solve ``confusion @ w = mu``, clip ``w`` at 0, ``w * source`` renormalised."""
    mu = np.bincount(predicted, minlength=num_classes) / predicted.size
    weights = np.clip(np.linalg.lstsq(confusion, mu, rcond=None)[0], 0.0, None)
    prior = weights * source
    return prior / prior.sum() if prior.sum() > 0 else source


class _Posteriors(ClassifierMixin, BaseEstimator):
    """A scikit-learn "classifier" whose ``predict_proba`` returns its input: hands
    precomputed posteriors to QuaPy."""

    def __init__(self, num_classes=2):
        self.num_classes = num_classes

    def fit(self, features=None, labels=None):
        self.classes_ = np.arange(self.num_classes)
        return self

    def predict_proba(self, features):
        return np.asarray(features, dtype=np.float64)


def _timed(function, *args, **kwargs):
    """(result, seconds, warning messages) of one call."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        start = time.perf_counter()
        result = function(*args, **kwargs)
        seconds = time.perf_counter() - start
    return result, seconds, [str(w.message) for w in caught]


def contenders(probs, labels, val, test, notes):
    """The methods of one record, the validation prior and the ``ck auto`` test posteriors.

    The methods are ``{name: (fit seconds, estimate)}``, ``estimate(rows) -> (prior,
    adapted posteriors of those rows)``, ``rows`` indexing the test half. Calibrations
    are fitted on the validation half here, once; each estimate only runs EM (or BBSE)
    on the calibrated sample.
    """
    num_classes = probs.shape[1]
    logits = np.log(probs)
    val_prior = np.bincount(labels[val], minlength=num_classes) / val.size
    methods = {}

    def calibkeras_em(test_probs, source, **options):
        def estimate(rows):
            result = estimate_prior(test_probs[rows], source, **options)
            return result.prior, result.probs
        return estimate

    methods["ck none"] = (0.0, calibkeras_em(probs[test], val_prior))
    calibrated, fits = {}, {}
    for method in CK_METHODS:
        options = {"method": "auto", "l2": 0.0} if method == "auto l2=0" else {"method": method}
        fit, seconds, caught = _timed(
            fit_calibration, logits[val], labels[val], prior=val_prior, **options
        )
        fits[method] = fit
        calibrated[method] = softmax(fit.logits(logits[test]) + np.log(val_prior), axis=1)
        # Alexandari et al. (2020), section 3.2: EM's source prior is the mean calibrated
        # validation posterior (the prior the calibrated model itself implies).
        methods[f"ck {method}"] = (seconds, calibkeras_em(calibrated[method],
                                                          fit.posterior_mean))
        if fit.cv_table is not None:
            notes.append(f"ck {method} chose {fit.method!r} (l2 = {fit.l2:.4g}, T = "
                         f"{fit.temperature:.3f}), cv NLL of each method at its best l2: "
                         + ", ".join(f"{k} {v:.4f}" for k, v in fit.cv_nll.items()))
        notes.extend(f"fit_calibration({method}) warned: {text}" for text in caught)
    auto, source = calibrated["auto"], fits["auto"].posterior_mean
    seconds = methods["ck auto"][0]
    methods["ck auto a=1"] = (seconds, calibkeras_em(auto, source, dirichlet=1.0))
    methods["ck auto, label source"] = (seconds, calibkeras_em(auto, val_prior))

    predicted = probs.argmax(axis=1)
    confusion = np.zeros((num_classes, num_classes))
    np.add.at(confusion, (predicted[val], labels[val]), 1.0 / val.size)
    predicted_test = predicted[test]

    def bbse(rows):
        prior = bbse_prior(confusion, val_prior, predicted_test[rows], num_classes)
        return prior, reweight(auto[rows], source, prior)

    methods["BBSE"] = (0.0, bbse)

    try:
        from abstention.calibration import TempScaling  # noqa: PLC0415
        from abstention.label_shift import EMImbalanceAdapter  # noqa: PLC0415

        onehot_val = np.eye(num_classes)[labels[val]]
        calibrator, seconds, caught = _timed(
            TempScaling(bias_positions="all"), valid_preacts=probs[val],
            valid_labels=onehot_val, posterior_supplied=True,
        )
        notes.extend(f"abstention TempScaling warned: {text}" for text in caught)
        abstention_val, abstention_test = calibrator(probs[val]), calibrator(probs[test])
        adapter = EMImbalanceAdapter()

        def abstention_em(rows):
            adapt = adapter(tofit_initial_posterior_probs=abstention_test[rows],
                            valid_posterior_probs=abstention_val, valid_labels=onehot_val)
            adapted = adapt(abstention_test[rows])
            return adapted.mean(axis=0), adapted

        methods[PEERS[0]] = (seconds, abstention_em)
    except Exception as error:  # noqa: BLE001 (a peer that fails is reported and skipped)
        notes.append(f"SKIPPED {PEERS[0]}: {type(error).__name__}: {error}")

    try:
        from quapy.method.aggregative import EMQ  # noqa: PLC0415

        quantifier = EMQ(classifier=_Posteriors(num_classes).fit(), fit_classifier=False,
                         val_split=(probs[val], labels[val]), calib="bcts")
        _, seconds, caught = _timed(quantifier.fit, probs[val], labels[val])
        notes.extend(f"QuaPy EMQ.fit warned: {text}" for text in caught)
        quapy_test = quantifier.calibration_function(probs[test])
        quapy_source = np.asarray(quantifier.train_prevalence, dtype=np.float64)

        def quapy_em(rows):
            prior, _ = EMQ.EM(quapy_source, quapy_test[rows])
            return prior, reweight(quapy_test[rows], quapy_source, prior)

        methods[PEERS[1]] = (seconds, quapy_em)
    except Exception as error:  # noqa: BLE001
        notes.append(f"SKIPPED {PEERS[1]}: {type(error).__name__}: {error}")

    methods["unadapted"] = (0.0, lambda rows: (val_prior, auto[rows]))
    return methods, val_prior, auto, source


def run_record(path, args):
    """Raw rows (dicts) of one record, and its notes."""
    model = os.path.basename(path).removesuffix(".npz")
    record = np.load(path)
    probs = record["predictions"].astype(np.float64)
    probs /= probs.sum(axis=1, keepdims=True)  # float32 rows sum to 1 within ~1e-7
    labels = record["ground_truth"].astype(np.int64)
    rng = np.random.default_rng(args.seed)
    order = rng.permutation(labels.size)
    val, test = order[: labels.size // 2], order[labels.size // 2:]
    notes = []
    methods, val_prior, auto, source = contenders(probs, labels, val, test, notes)
    num_classes = probs.shape[1]
    test_labels = labels[test]
    by_class = [np.flatnonzero(test_labels == k) for k in range(num_classes)]
    rows_out = []
    for size in SIZES:
        for shift in SHIFTS:
            for draw in range(args.draws):
                prior = rng.dirichlet(np.full(num_classes, shift))
                prior = np.maximum(prior, 0.0) / prior.sum()
                rows = shifted_sample(test_labels, by_class, prior, size, rng)
                truth = test_labels[rows]
                realised = np.bincount(truth, minlength=num_classes) / size
                oracle = np.maximum(prior, 1e-300)
                results = {name: _timed(estimate, rows)
                           for name, (_, estimate) in methods.items()}
                results["oracle"] = ((oracle, reweight(auto[rows], source, oracle)), 0.0, [])
                results["oracle, label source"] = (
                    (oracle, reweight(auto[rows], val_prior, oracle)), 0.0, [])
                for name, ((estimate, adapted), seconds, caught) in results.items():
                    rows_out.append({
                        "record": model, "n": size, "alpha": shift, "draw": draw,
                        "method": name,
                        "l1": float(np.abs(estimate - prior).sum()),
                        "l1_sample": float(np.abs(estimate - realised).sum()),
                        "js": float(jensenshannon(estimate, prior)),
                        "nll": nll(adapted, truth),
                        "accuracy": float(np.mean(adapted.argmax(axis=1) == truth)),
                        "em_seconds": seconds,
                        "fit_seconds": methods[name][0] if name in methods else 0.0,
                        "warnings": len(caught),
                        "warning": caught[0][:200] if caught else "",
                    })
    return rows_out, notes


def _se(values):
    return float(np.std(values, ddof=1) / np.sqrt(len(values))) if len(values) > 1 else 0.0


def table(frame):
    """Markdown table of one record: a row per setting and method, means over draws."""
    lines = ["| n | alpha | method | L1 ± SE | JS | NLL ± SE | acc | fit s | EM ms |",
             "|---:|---:|---|---|---:|---|---:|---:|---:|"]
    order = list(dict.fromkeys(frame["method"]))
    for (size, shift), cell in frame.groupby(["n", "alpha"], sort=True):
        for name in order:
            part = cell[cell["method"] == name]
            mark = "**" if name == DEFAULT else ""
            lines.append(
                f"| {size} | {shift:g} | {mark}{name}{mark} | "
                f"{part.l1.mean():.4f} ± {_se(part.l1):.4f} | {part.js.mean():.4f} | "
                f"{part.nll.mean():.4f} ± {_se(part.nll):.4f} | {part.accuracy.mean():.4f} | "
                f"{part.fit_seconds.iloc[0]:.2f} | {1000 * part.em_seconds.mean():.1f} |"
            )
    return "\n".join(lines)


def summary(frame):
    """The summary line of one record (rules in the module docstring)."""
    peers = [peer for peer in PEERS if peer in set(frame["method"])]
    if not peers:
        return "no peer ran: nothing to compare"
    wins = paired_wins = cells = 0
    losses = []
    for (size, shift), cell in frame.groupby(["n", "alpha"], sort=True):
        cells += 1
        ours = cell[cell["method"] == DEFAULT].sort_values("draw")
        failed, paired_failed = [], False
        for peer in peers:
            theirs = cell[cell["method"] == peer].sort_values("draw")
            for metric in ("l1", "nll"):
                a, b = ours[metric].to_numpy(), theirs[metric].to_numpy()
                margin = max(_se(a), _se(b))
                if a.mean() - b.mean() > margin:
                    failed.append(f"{metric.upper()} vs {peer.split()[0]} "
                                  f"{a.mean():.4f} vs {b.mean():.4f} (SE {margin:.4f})")
                paired_failed |= (a - b).mean() > _se(a - b)
        wins += not failed
        paired_wins += not paired_failed
        if failed:
            losses.append(f"n={size} alpha={shift:g}: " + ", ".join(failed))
    text = (f"ck auto (default dirichlet) at least as good as {' and '.join(peers)} on L1 "
            f"and NLL in {wins} / {cells} settings (strict paired rule: {paired_wins} / "
            f"{cells})")
    return text + ("; worse in " + "; ".join(losses) if losses else "")



def fit_times(paths, args):
    """``--fit-times``: the fastest of ``--repeats`` calls of ``fit_calibration`` per
    record and method on the validation half (the split and prior of a full run), with
    ``--module`` (a copy of another version of ``calibration_fit.py``) in place of the
    installed one, under one BLAS thread or the default threads (``--threads``)."""
    import contextlib  # noqa: PLC0415
    import importlib.util  # noqa: PLC0415

    import threadpoolctl  # noqa: PLC0415

    fit = fit_calibration
    if args.module:
        spec = importlib.util.spec_from_file_location("calibration_fit_under_test", args.module)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        fit = module.fit_calibration
    limit = (contextlib.nullcontext() if args.threads == "default"
             else threadpoolctl.threadpool_limits(1, user_api="blas"))
    options = {"bias_corrected": {"method": "bias_corrected"}, "vector": {"method": "vector"},
               "auto": {"method": "auto"}, "auto l2=0": {"method": "auto", "l2": 0.0}}
    if args.module:  # an older version may not know `l2=0` or None
        options.pop("auto l2=0")
    print(f"fit_calibration from {args.module or 'calibkeras'}, BLAS threads: {args.threads}, "
          f"fastest of {args.repeats}\n")
    print("| record | " + " | ".join(options) + " | chosen by auto |")
    print("|---|" + "---:|" * len(options) + "---|")
    with limit, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit(np.eye(3), [0, 1, 2], method="temperature")  # the first call loads TensorFlow
        for name in args.records:
            record = np.load(paths[name])
            probs = record["predictions"].astype(np.float64)
            probs /= probs.sum(axis=1, keepdims=True)
            labels = record["ground_truth"].astype(np.int64)
            order = np.random.default_rng(args.seed).permutation(labels.size)
            val = order[: labels.size // 2]
            logits, truth = np.log(probs[val]), labels[val]
            prior = np.bincount(truth, minlength=probs.shape[1]) / truth.size
            cells, chosen = [], ""
            for label, option in options.items():
                best = np.inf
                for _ in range(args.repeats):
                    start = time.perf_counter()
                    result = fit(logits, truth, prior=prior, **option)
                    best = min(best, time.perf_counter() - start)
                cells.append(f"{best:.3f} s")
                if label == "auto":
                    chosen = f"{result.method}, l2 = {getattr(result, 'l2', 0.0):.4g}"
            print(f"| {name} | " + " | ".join(cells) + f" | {chosen} |")


def main():
    paths = {os.path.basename(p).removesuffix(".npz"): p for p in sorted(glob.glob(RECORDS))}
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=20, help="priors drawn per setting")
    parser.add_argument("--records", nargs="+", choices=sorted(paths), default=sorted(paths))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="/tmp/prior_shift.csv", help="CSV of the raw rows")
    parser.add_argument("--fit-times", action="store_true",
                        help="only time fit_calibration on each validation half")
    parser.add_argument("--module", help="with --fit-times: path of a calibration_fit.py "
                        "to time instead of the installed one")
    parser.add_argument("--threads", choices=("one", "default"), default="one",
                        help="with --fit-times: BLAS threads")
    parser.add_argument("--repeats", type=int, default=3, help="with --fit-times")
    args = parser.parse_args()
    if args.fit_times:
        print(machine(("calibkeras", "numpy", "scipy")))
        fit_times(paths, args)
        return
    if args.draws < 2:
        parser.error(f"`--draws` must be at least 2 (for standard errors), got {args.draws}")
    print(machine(("calibkeras", "numpy", "scipy", "abstention", "quapy")))
    start = time.perf_counter()
    frames = []
    for name in args.records:
        record_start = time.perf_counter()
        rows, notes = run_record(paths[name], args)
        frame = pd.DataFrame(rows)
        frames.append(frame)
        print(f"\n### {name} ({args.draws} draws per setting, "
              f"{time.perf_counter() - record_start:.0f} s)\n")
        for note in notes:
            print(f"- {note}")
        warned = frame[frame.warnings > 0].groupby("method").warnings.agg(["count"])
        for method, count in warned["count"].items():
            example = frame[(frame.method == method) & (frame.warnings > 0)].warning.iloc[0]
            print(f"- {method}: {count} estimates warned, e.g. {example!r}")
        print()
        print(table(frame))
        print(f"\nSummary {name}: {summary(frame)}")
    pd.concat(frames).to_csv(args.out, index=False)
    print("\nSummary rule: a setting counts when mean(ck auto) <= mean(peer) + max(SE ck, SE "
          "peer) on L1 and on NLL against every peer that ran (strict: mean(ck - peer) <= "
          f"SE(ck - peer), paired over draws).\nRaw rows: {args.out}. "
          f"Total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
