"""EM prior estimation under label shift: which Dirichlet concentration to use by default.

Fully converged maximum-likelihood EM (Saerens et al. 2002) drives the classes a sample
barely shows to ~0, and their few true members then cost a large NLL. A symmetric
Dirichlet(alpha) prior on the class prior (``estimate_prior(..., dirichlet=alpha)``, the
MAP estimate) bounds that collapse. This script measures which alpha to use.

Data: the four real CIFAR records in shared/reference/calibration_records (softmax
outputs of WRN-16-4 and LeNet-5 on the 10,000 CIFAR-10 / CIFAR-100 test images). Each
record is split 50/50 (seeded) into a "validation" (source) half and a "test" half. A
temperature is fitted on the validation half (``fit_temperature`` on ``log(predictions)``),
so the test posteriors are calibrated under the source prior, the uniform prior of the
balanced CIFAR training sets.

Shifted samples: for each sample size n in {500, 2000} and shift strength
alpha_shift in {0.1, 1, 10}, 20 deployment priors pi ~ Dirichlet(alpha_shift * 1_K)
are drawn; each sample draws n labels from pi and, for each, a test-half image of that
class with replacement. For every setting EM runs on the sample's calibrated posteriors
(tol 1e-8, max_iter 1000, SQUAREM on) and is scored by

* L1: ``sum_k |estimate_k - pi_k|``, the error of the estimated prior;
* NLL: mean ``-log`` of the sample's posteriors re-weighted to the estimate, at the
  true labels (natural log).

Settings: ``dirichlet`` in {1 (maximum likelihood), 1.001, 1.01, 1.1, 1.3, 1.5, 2, 3}, and a
floor
variant ``ml+floor``: the ML estimate floored at ``1 / (2 n)`` and renormalised. For
reference: ``none`` (no adaptation, the source prior) and ``oracle`` (the true pi).
Each cell shows means over the 20 draws; the summary gives, per setting, the mean over
cells of (NLL - best NLL of the cell) and in how many cells the setting is within two
paired standard errors of the cell's best (paired over the same draws).

``calibkeras.priors.DEFAULT_DIRICHLET`` (1.1) was chosen from this table: the setting
with the lowest NLL among those that keep the prior's L1 error within a few percent of
maximum likelihood's in every cell (larger values win on NLL where the shift is mild
but shrink sparse priors toward uniform and cost L1 there). Results: BENCHMARKS.md.

Run (about 20 s on 2 CPU cores):
    python benchmarks/em_dirichlet.py [--draws 20] [--seed 0]
"""

import argparse
import glob
import os
import platform
import time
import warnings

import numpy as np
from scipy.special import softmax

from calibkeras.calibration import estimate_prior, fit_temperature

RECORDS = "/work/shared/reference/calibration_records/*.npz"
SIZES = (500, 2000)
SHIFTS = (0.1, 1.0, 10.0)
DIRICHLETS = (1.0, 1.001, 1.01, 1.1, 1.3, 1.5, 2.0, 3.0)


def load(path, rng):
    """(test posteriors calibrated under the uniform source prior, test labels)."""
    record = np.load(path)
    logits = np.log(record["predictions"].astype(np.float64))
    labels = record["ground_truth"].astype(np.int64)
    order = rng.permutation(labels.size)
    val, test = order[: labels.size // 2], order[labels.size // 2:]
    temperature = fit_temperature(logits[val], labels[val])
    return softmax(logits[test] / temperature, axis=1), labels[test], temperature


def shifted_sample(labels, by_class, prior, size, rng):
    """Indices of ``size`` test images whose labels are drawn from ``prior``."""
    drawn = rng.choice(prior.size, size=size, p=prior)
    picks = np.empty(size, dtype=np.int64)
    for k in np.unique(drawn):
        where = np.flatnonzero(drawn == k)
        picks[where] = rng.choice(by_class[k], size=where.size)
    return picks


def nll(probs, labels):
    return float(-np.log(np.clip(probs[np.arange(labels.size), labels], 1e-12, None)).mean())


def run(args):
    names = [f"a={d:g}" for d in DIRICHLETS] + ["ml+floor", "none", "oracle"]
    contenders = names[:-2]
    cells = []
    stopped = {}
    for path in sorted(glob.glob(RECORDS)):
        model = os.path.basename(path).removesuffix(".npz")
        rng = np.random.default_rng(args.seed)
        probs, labels, temperature = load(path, rng)
        num_classes = probs.shape[1]
        by_class = [np.flatnonzero(labels == k) for k in range(num_classes)]
        source = np.full(num_classes, 1.0 / num_classes)
        for size in SIZES:
            for shift in SHIFTS:
                scores = {name: ([], []) for name in names}  # (L1s, NLLs)
                for _ in range(args.draws):
                    prior = rng.dirichlet(np.full(num_classes, shift))
                    prior = np.maximum(prior, 0.0) / prior.sum()
                    rows = shifted_sample(labels, by_class, prior, size, rng)
                    sample, truth = probs[rows], labels[rows]
                    estimates = {}
                    for alpha in DIRICHLETS:
                        with warnings.catch_warnings(record=True) as caught:
                            warnings.simplefilter("always")
                            estimate = estimate_prior(sample, source, dirichlet=alpha)
                        stopped[f"a={alpha:g}"] = stopped.get(f"a={alpha:g}", 0) + len(caught)
                        estimates[f"a={alpha:g}"] = estimate.prior
                    floored = np.maximum(estimates["a=1"], 0.5 / size)
                    estimates["ml+floor"] = floored / floored.sum()
                    estimates["none"] = source
                    estimates["oracle"] = np.maximum(prior, 1e-300)
                    for name, estimate in estimates.items():
                        adapted = sample * (estimate / source)
                        adapted /= adapted.sum(axis=1, keepdims=True)
                        scores[name][0].append(np.abs(estimate - prior).sum())
                        scores[name][1].append(nll(adapted, truth))
                cells.append((model, temperature, size, shift, scores))
                print(_row(model, size, shift, scores, names), flush=True)
    print(f"\nEM runs that stopped at max_iter (warned): {stopped}")
    print("\nAll 24 cells:" + _summary(cells, contenders))
    kept = [cell for cell in cells if cell[0] != "lenet-5-cifar-100"]
    print(f"\nWithout lenet-5-cifar-100 (top-1 0.125, where EM fails), {len(kept)} cells:"
          + _summary(kept, contenders))


def _row(model, size, shift, scores, names):
    nlls = " ".join(f"{np.mean(scores[name][1]):8.4f}" for name in names)
    l1s = " ".join(f"{np.mean(scores[name][0]):8.4f}" for name in names)
    return f"{model:28s} n={size:5d} shift={shift:4g} | NLL {nlls} | L1 {l1s}"


def _summary(cells, contenders):
    """Per setting: NLL regret against each cell's best contender, and L1."""
    lines = [
        "\nsetting   mean(NLL-best)  mean((NLL-best)/best)  within 2 SE of best  "
        "mean L1  mean(L1-best)  worst L1 vs a=1"
    ]
    regret = {name: [] for name in contenders}
    relative = {name: [] for name in contenders}
    near = dict.fromkeys(contenders, 0)
    l1 = {name: [] for name in contenders}
    l1_regret = {name: [] for name in contenders}
    l1_vs_ml = {name: [] for name in contenders}
    for *_, scores in cells:
        means = {name: np.mean(scores[name][1]) for name in contenders}
        best = min(means, key=means.get)
        l1_means = {name: np.mean(scores[name][0]) for name in contenders}
        for name in contenders:
            diff = np.asarray(scores[name][1]) - np.asarray(scores[best][1])
            regret[name].append(diff.mean())
            relative[name].append(diff.mean() / means[best])
            error = diff.std(ddof=1) / np.sqrt(diff.size) if diff.size > 1 else 0.0
            near[name] += diff.mean() <= 2 * error
            l1[name].append(l1_means[name])
            l1_regret[name].append(l1_means[name] - min(l1_means.values()))
            l1_vs_ml[name].append(l1_means[name] / l1_means["a=1"] - 1)
    for name in contenders:
        lines.append(
            f"{name:9s} {np.mean(regret[name]):14.4f}  {np.mean(relative[name]):20.1%}  "
            f"{near[name]:8d} / {len(cells):<9d}{np.mean(l1[name]):8.4f}  "
            f"{np.mean(l1_regret[name]):13.4f}  {np.max(l1_vs_ml[name]):+15.1%}"
        )
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=20, help="priors drawn per cell")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(f"numpy {np.__version__}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs; columns: "
          + " ".join(f"a={d:g}" for d in DIRICHLETS) + " ml+floor none oracle")
    start = time.perf_counter()
    run(args)
    print(f"\n{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
