"""Temperature fitting: calibkeras.calibration.fit_temperature against the common
recipes, on the four real CIFAR records in shared/reference/calibration_records.

Each record holds ``predictions`` (N, K) softmax outputs (float32) and
``ground_truth`` (N,); the logits are ``log(predictions)`` in float64 (every entry is
positive, so they are finite). Contenders, each fitting one temperature ``T`` on the
whole record:

* ``calibkeras fit_temperature``: exact 1-D convex minimisation (bracketed Newton on
  beta = 1/T).
* ``gpleiss recipe (torch LBFGS port)``: the widely copied ``ModelWithTemperature``
  of gpleiss/temperature_scaling: ``T = 1.5``, ``torch.optim.LBFGS([T], lr=0.01,
  max_iter=50)``, one ``optimizer.step(closure)`` on the mean NLL of ``logits / T``.
  torch is not installed, so ``torch_lbfgs_step`` below is a line-by-line NumPy port
  of ``torch.optim.LBFGS.step`` with its defaults (no line search: fixed step
  ``t = lr`` after the first, ``t = min(1, 1/|g|_1) * lr`` on the first;
  tolerance_grad 1e-7, tolerance_change 1e-9, history_size 100, max_eval 62). The
  closure returns the NLL and its exact gradient dNLL/dT in float64 (torch would use
  float32 autograd; the iterates are the same up to rounding).
* ``scipy L-BFGS-B``: ``scipy.optimize.minimize(method="L-BFGS-B", x0=1.5,
  jac=True, options={"maxiter": 50})`` on T with the same closure, a reading of the
  same recipe with scipy. It is NOT equivalent to the torch recipe: scipy's L-BFGS-B
  takes Wolfe line-search steps, so there is no ``lr`` and it converges, while
  torch's LBFGS without ``line_search_fn`` moves 1% (lr = 0.01) of the quasi-Newton
  step per iteration.
* ``sklearn CalibratedClassifierCV(method="temperature")`` (scikit-learn >= 1.8):
  the public API on a ``FrozenEstimator`` of a prefit classifier whose
  ``decision_function`` returns its input (X are the logits), so ``cv`` is not used
  for refitting (ensemble="auto" -> False; ``cross_val_predict`` only calls
  ``decision_function``). Inside, ``_TemperatureScaling`` runs
  ``minimize_scalar(bounds=(-10, 10))`` on log(beta) with xatol = 64 eps; its time
  alone is shown for information.

Every contender's NLL is computed afterwards the same way: the float64 mean of
``-log_softmax(logits / T)[y]`` (scipy.special.log_softmax). Times are medians over
rounds that call every contender once, in an order rotated from round to round.

Run:
    /work/venv/bin/python benchmarks/temperature_fitting.py [--rounds 5]
"""

import argparse
import glob
import os
import platform
import statistics
import time

import numpy as np
import scipy
import sklearn
from scipy.optimize import minimize
from scipy.special import log_softmax, softmax
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.calibration import CalibratedClassifierCV, _TemperatureScaling
from sklearn.frozen import FrozenEstimator

import calibkeras.calibration.temperature as ck_temperature
from calibkeras.calibration import fit_temperature

RECORDS = "/work/shared/reference/calibration_records/*.npz"


def nll(logits, labels, temperature):
    """Mean NLL of softmax(logits / T), float64: the one score every contender gets."""
    rows = np.arange(logits.shape[0])
    return float(-log_softmax(logits / temperature, axis=1)[rows, labels].mean())


def nll_and_grad_t(logits, labels):
    """Closure: T -> (mean NLL of logits / T, dNLL/dT), what torch autograd returns."""
    rows = np.arange(logits.shape[0])
    label_logits = logits[rows, labels]

    def closure(temperature):
        scaled = logits / temperature
        log_probs = log_softmax(scaled, axis=1)
        loss = -log_probs[rows, labels].mean()
        mean_logit = np.einsum("ij,ij->i", np.exp(log_probs), logits)
        grad = -np.mean(mean_logit - label_logits) / temperature**2
        return float(loss), float(grad)

    return closure


def torch_lbfgs_step(closure, x0, lr=0.01, max_iter=50, max_eval=None, tolerance_grad=1e-7,
                     tolerance_change=1e-9, history_size=100):
    """One ``torch.optim.LBFGS(...).step(closure)`` with ``line_search_fn=None``.

    A port of torch/optim/lbfgs.py (torch 2.x) for one parameter vector ``x``;
    ``closure(x)`` returns ``(loss, flat_grad)``. Returns ``(x, evaluations)``.
    """
    if max_eval is None:
        max_eval = max_iter * 5 // 4
    x = np.array(x0, dtype=np.float64)
    loss, flat_grad = closure(x)
    flat_grad = np.asarray(flat_grad, dtype=np.float64)
    current_evals = 1
    if np.abs(flat_grad).max() <= tolerance_grad:
        return x, current_evals
    d = t = prev_flat_grad = None
    old_dirs, old_stps, ro = [], [], []
    h_diag = 1.0
    al = [None] * history_size
    n_iter = 0
    while n_iter < max_iter:
        n_iter += 1
        if n_iter == 1:
            d = -flat_grad
            old_dirs, old_stps, ro = [], [], []
            h_diag = 1.0
        else:
            y = flat_grad - prev_flat_grad
            s = d * t
            ys = float(y @ s)
            if ys > 1e-10:
                if len(old_dirs) == history_size:
                    old_dirs.pop(0)
                    old_stps.pop(0)
                    ro.pop(0)
                old_dirs.append(y)
                old_stps.append(s)
                ro.append(1.0 / ys)
                h_diag = ys / float(y @ y)
            num_old = len(old_dirs)
            q = -flat_grad
            for i in range(num_old - 1, -1, -1):
                al[i] = float(old_stps[i] @ q) * ro[i]
                q = q - al[i] * old_dirs[i]
            d = r = q * h_diag
            for i in range(num_old):
                be_i = float(old_dirs[i] @ r) * ro[i]
                r = r + (al[i] - be_i) * old_stps[i]
            d = r
        prev_flat_grad = flat_grad.copy()
        prev_loss = loss
        t = min(1.0, 1.0 / np.abs(flat_grad).sum()) * lr if n_iter == 1 else lr
        gtd = float(flat_grad @ d)
        if gtd > -tolerance_change:
            break
        ls_func_evals = 0
        x = x + t * d
        if n_iter != max_iter:
            loss, flat_grad = closure(x)
            flat_grad = np.asarray(flat_grad, dtype=np.float64)
            opt_cond = np.abs(flat_grad).max() <= tolerance_grad
            ls_func_evals = 1
        current_evals += ls_func_evals
        if n_iter == max_iter:
            break
        if current_evals >= max_eval:
            break
        if opt_cond:
            break
        if np.abs(d * t).max() <= tolerance_change:
            break
        if abs(loss - prev_loss) < tolerance_change:
            break
    return x, current_evals


class LogitsAsDecision(ClassifierMixin, BaseEstimator):
    """A prefit classifier whose decision_function returns its input (the logits)."""

    def fit(self, X, y):
        self.classes_ = np.unique(y)
        return self

    def decision_function(self, X):
        return np.asarray(X)

    def predict_proba(self, X):
        return softmax(np.asarray(X), axis=1)

    def predict(self, X):
        return self.classes_[np.asarray(X).argmax(axis=1)]


def gpleiss(logits, labels):
    closure = nll_and_grad_t(logits, labels)
    evals = [0]

    def torch_closure(x):
        evals[0] += 1
        loss, grad = closure(float(x[0]))
        return loss, np.array([grad])

    x, _ = torch_lbfgs_step(torch_closure, np.array([1.5]), lr=0.01, max_iter=50)
    return float(x[0]), evals[0]


def scipy_lbfgsb(logits, labels):
    closure = nll_and_grad_t(logits, labels)
    result = minimize(lambda x: closure(float(x[0])), x0=np.array([1.5]), jac=True,
                      method="L-BFGS-B", options={"maxiter": 50})
    return float(result.x[0]), int(result.nfev)


def sklearn_public(logits, labels):
    frozen = FrozenEstimator(LogitsAsDecision().fit(logits, labels))
    calibrated = CalibratedClassifierCV(frozen, method="temperature").fit(logits, labels)
    (calibrator,) = calibrated.calibrated_classifiers_[0].calibrators
    return 1.0 / float(calibrator.beta_), None


def sklearn_core(logits, labels):
    calibrator = _TemperatureScaling().fit(logits, labels)
    return 1.0 / float(calibrator.beta_), None


def calibkeras_fit(logits, labels):
    return fit_temperature(logits, labels), None


CONTENDERS = {
    "calibkeras fit_temperature": calibkeras_fit,
    "gpleiss recipe (torch LBFGS lr=0.01, max_iter=50, port)": gpleiss,
    "scipy L-BFGS-B (x0=1.5, maxiter=50)": scipy_lbfgsb,
    "sklearn CalibratedClassifierCV(method='temperature')": sklearn_public,
    "  sklearn _TemperatureScaling.fit alone (private, info)": sklearn_core,
}


def count_calibkeras_evaluations(logits, labels):
    """Passes over the data that fit_temperature makes (evaluations of its objective)."""
    original = ck_temperature._Objective
    calls = [0]

    class Counted(original):
        def __call__(self, beta):
            calls[0] += beta not in self.cache
            return super().__call__(beta)

    ck_temperature._Objective = Counted
    try:
        fit_temperature(logits, labels)
    finally:
        ck_temperature._Objective = original
    return calls[0]


def per_evaluation(logits, labels, rounds):
    """Seconds of one pass over the data: calibkeras' and two leaner ones (medians)."""
    num = logits.shape[0]
    weights = np.full(num, 1.0 / num)
    offset = np.zeros(logits.shape[1])
    rows = np.arange(num)
    squares = logits**2
    label_logits = logits[rows, labels]

    def lean(beta):  # the same three numbers with one log_softmax, logits**2 hoisted
        log_probs = log_softmax(beta * logits, axis=1)
        probs = np.exp(log_probs)
        mean_logit = np.einsum("ij,ij->i", probs, logits)
        curvature = np.einsum("ij,ij->i", probs, squares) - mean_logit**2
        return (weights @ -log_probs[rows, labels], weights @ (mean_logit - label_logits),
                weights @ curvature)

    closure = nll_and_grad_t(logits, labels)
    beta = 0.9
    objective = ck_temperature._Objective(logits, labels, offset, weights)

    def one_pass():  # the objective caches by beta: clear it to time a real pass
        objective.cache.clear()
        return objective(beta)

    assert np.allclose(lean(beta), one_pass(), rtol=1e-10, atol=1e-13)
    functions = {
        "calibkeras _Objective (NLL, gradient, curvature)": one_pass,
        "same three, one log_softmax, logits**2 hoisted (benchmark code)": lambda: lean(beta),
        "closure of the recipes (NLL, dNLL/dT)": lambda: closure(1.0 / beta),
    }
    times = {name: [] for name in functions}
    for _ in range(rounds):
        for name, fn in functions.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def loadavg():
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print(
        f"scikit-learn {sklearn.__version__}, scipy {scipy.__version__}, numpy "
        f"{np.__version__}, python {platform.python_version()}, {os.cpu_count()} CPUs"
    )
    results = []
    evaluation_times = {}
    load_before = loadavg()
    for path in sorted(glob.glob(RECORDS)):
        record = np.load(path)
        labels = record["ground_truth"].astype(np.int64)
        logits = np.log(record["predictions"].astype(np.float64))
        name = os.path.basename(path)[:-4]
        fitted = {key: fn(logits, labels) for key, fn in CONTENDERS.items()}  # warm-up
        times = {key: [] for key in CONTENDERS}
        keys = list(CONTENDERS)
        for round_index in range(args.rounds):
            shift = round_index % len(keys)
            for key in keys[shift:] + keys[:shift]:
                start = time.perf_counter()
                CONTENDERS[key](logits, labels)
                times[key].append(time.perf_counter() - start)
        evaluations = count_calibkeras_evaluations(logits, labels)
        evaluation_times[name] = per_evaluation(logits, labels, 3 * args.rounds)
        for key in keys:
            temperature, evals = fitted[key]
            if key == "calibkeras fit_temperature":
                evals = evaluations
            results.append((name, logits.shape, key, temperature,
                            nll(logits, labels, temperature), evals,
                            statistics.median(times[key]), min(times[key]),
                            max(times[key])))
        print(f"{name}: done (load {loadavg()})", flush=True)
    load_after = loadavg()

    print(f"\nmedian of {args.rounds} interleaved rounds; load average before {load_before}, "
          f"after {load_after}\n")
    print("| record (N x K) | method | T | NLL (float64) | NLL - calibkeras NLL | passes over data "
          "| median ms | min-max ms |")
    print("|---|---|---|---|---|---|---|---|")
    by_record = {}
    for name, shape, key, temperature, loss, evals, med, low, high in results:
        by_record.setdefault(name, {})[key] = (loss, med)
        ours = next(r[4] for r in results if r[0] == name and r[2] == "calibkeras fit_temperature")
        print(f"| {name} ({shape[0]} x {shape[1]}) | {key} | {temperature:.6f} | {loss:.10f} | "
              f"{loss - ours:+.2e} | {'' if evals is None else evals} | {1e3 * med:.1f} | "
              f"{1e3 * low:.1f}-{1e3 * high:.1f} |")

    print("\nTarget: fit_temperature reaches at least as good an NLL (within 1e-12) in less time "
          "than each recipe\n")
    print("| record | vs | NLL at least as good | time ratio calibkeras / other | target |")
    print("|---|---|---|---|---|")
    all_met = True
    for name, rows in by_record.items():
        our_loss, our_time = rows["calibkeras fit_temperature"]
        for key in keys[1:4]:
            loss, med = rows[key]
            good = our_loss <= loss + 1e-12
            faster = our_time < med
            all_met &= good and faster
            print(f"| {name} | {key} | {'yes' if good else 'NO'} ({our_loss - loss:+.1e}) | "
                  f"{our_time / med:.2f} | {'met' if good and faster else 'missed'} |")
    print(f"\ntarget met on every record and recipe: {'yes' if all_met else 'NO'}")

    print("\nCost of one pass over the data (median ms; fit_temperature makes the number of "
          "passes shown above, the recipes one closure call per evaluation):\n")
    names = list(next(iter(evaluation_times.values())))
    print("| record | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for record, row in evaluation_times.items():
        print(f"| {record} | " + " | ".join(f"{1e3 * row[n]:.2f}" for n in names) + " |")


if __name__ == "__main__":
    main()
