"""Where the estimators' divergence check draws its line.

A fit whose loss stays finite can still diverge (see ``DIVERGENCE_FACTOR`` in
``sklearn_gmnm/_estimators.py``). This script fits ``GMNMRegressor`` and
``GMNMClassifier`` over a range of learning rates, on five small datasets that ship with
scikit-learn and one synthetic 30,000-row regression, in four settings (the defaults, a
strong L2 penalty, a hidden layer, small batches), and reports for each fit the two
ratios the check compares with its thresholds:

- ``end``: the loss on the training rows after training, over the yardstick (the larger
  of the loss at the start and the loss of the best constant prediction);
- ``peak``: the largest mean training loss of an epoch, over the yardstick plus the L2
  penalty at the start;

and whether the fit warned. Sensible learning rates must never warn; absurd ones must.

Usage::

    python benchmarks/divergence_check.py      # about 6 minutes on 2 cores
"""

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from sklearn.datasets import (
    load_breast_cancer,
    load_diabetes,
    load_digits,
    load_iris,
    load_wine,
)
from sklearn.exceptions import ConvergenceWarning

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, command_line, machine

from sklearn_gmnm import DivergenceWarning, GMNMClassifier, GMNMRegressor
from sklearn_gmnm import _estimators as E

LEARNING_RATES = [3e-4, 1e-2, 1e-1, 1.0, 10.0, 1e3]
SENSIBLE = 1e-2  # learning rates up to this one must not warn
ABSURD = 10.0  # learning rates from this one up must warn
SETTINGS = {
    "defaults": {},
    "alpha=10": {"alpha": 10.0},
    "hidden (64,)": {"hidden_layer_sizes": (64,)},
    "batch 32": {"batch_size": 32},
}


def synthetic(n_rows=30_000, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_rows, 3))
    return X, 3 * X[:, 0] + np.sin(X[:, 1])


def datasets():
    """name -> (X, y, estimator class, epochs)"""
    table = {
        "diabetes": (*load_diabetes(return_X_y=True), GMNMRegressor, 30),
        "iris": (*load_iris(return_X_y=True), GMNMClassifier, 30),
        "breast_cancer": (*load_breast_cancer(return_X_y=True), GMNMClassifier, 30),
        "wine": (*load_wine(return_X_y=True), GMNMClassifier, 30),
        "digits": (*load_digits(return_X_y=True), GMNMClassifier, 30),
    }
    table["synthetic 30k"] = (*synthetic(), GMNMRegressor, 5)
    return table


def fit_one(estimator_class, X, y, epochs, lr, params):
    estimator = estimator_class(
        learning_rate_init=lr, max_iter=epochs, random_state=0, **params
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.simplefilter("ignore", ConvergenceWarning)
        estimator.fit(X, y)
    warned = any(issubclass(w.category, DivergenceWarning) for w in caught)
    return {
        **estimator._divergence_check,
        "warned": warned,
        "train_score": float(estimator.score(X, y)),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(RESULTS / "divergence_check"))
    args = parser.parse_args()
    rows = []
    start = time.perf_counter()
    for name, (X, y, estimator_class, epochs) in datasets().items():
        for setting, params in SETTINGS.items():
            for lr in LEARNING_RATES:
                result = fit_one(estimator_class, X, y, epochs, lr, params)
                rows.append({"dataset": name, "setting": setting, "lr": lr, **result})
            print(name, setting, "done", flush=True)
    write(rows, args.out, time.perf_counter() - start)


def cell(row):
    flag = " **W**" if row["warned"] else ""
    return f"{row['end']:.2f} / {row['peak']:.3g}{flag}"


def write(rows, out, seconds):
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(rows, indent=1))
    sensible = [r for r in rows if r["lr"] <= SENSIBLE]
    absurd = [r for r in rows if r["lr"] >= ABSURD]
    middle = [r for r in rows if SENSIBLE < r["lr"] < ABSURD]
    lines = [
        "# The estimators' divergence check",
        "",
        f"Command: `{command_line()}`  ",
        f"Machine: {machine()}; {seconds / 60:.1f} minutes  ",
        "Each fit: `learning_rate_init` as in the column, `random_state=0`, 30 epochs (the "
        "synthetic 30,000-row regression: 5), in the setting named (other parameters "
        "at their defaults). Cells: `end / peak`, the two ratios the check compares with "
        "its thresholds (`sklearn_gmnm/_estimators.py`): `end` is the loss on the "
        "training rows after training over the yardstick (the larger of the loss at the "
        "start and the loss of the best constant prediction), `peak` the largest mean "
        "training loss of an epoch over the yardstick plus the L2 penalty at the start. "
        f"**W**: the fit warned (end > {E.DIVERGENCE_FACTOR}, or peak > "
        f"{E.DIVERGENCE_PEAK_FACTOR:g} with end > {E.DIVERGENCE_NO_BETTER}).",
        "",
        "| dataset | setting | "
        + " | ".join(f"lr {lr:g}" for lr in LEARNING_RATES)
        + " |",
        "|---|---|" + "---|" * len(LEARNING_RATES),
    ]
    keys = dict.fromkeys((r["dataset"], r["setting"]) for r in rows)
    for dataset, setting in keys:
        cells = [
            cell(r) for r in rows if (r["dataset"], r["setting"]) == (dataset, setting)
        ]
        lines.append(f"| {dataset} | {setting} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Summary",
        "",
        f"- Learning rates up to {SENSIBLE:g} ({len(sensible)} fits): "
        f"{sum(r['warned'] for r in sensible)} warned; `end` "
        f"{min(r['end'] for r in sensible):.2f}-{max(r['end'] for r in sensible):.2f}, "
        f"`peak` {min(r['peak'] for r in sensible):.2f}-"
        f"{max(r['peak'] for r in sensible):.2f}.",
        f"- Learning rates of {ABSURD:g} and more ({len(absurd)} fits): "
        f"{sum(r['warned'] for r in absurd)} warned.",
        f"- In between ({len(middle)} fits): {sum(r['warned'] for r in middle)} warned; "
        "training scores (R2, accuracy) of the fits that did not warn: "
        + ", ".join(
            f"{r['train_score']:.2f}"
            for r in sorted(middle, key=lambda r: r["train_score"])
            if not r["warned"]
        )
        + ".",
    ]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    plot(rows, out.with_suffix(".png"))
    print("\n".join(lines))


def plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5))
    colours = plt.cm.viridis(np.linspace(0, 0.9, len(LEARNING_RATES)))
    for lr, colour in zip(LEARNING_RATES, colours, strict=True):
        for warned, marker in ((False, "o"), (True, "x")):
            points = [r for r in rows if r["lr"] == lr and r["warned"] == warned]
            if points:
                ax.scatter(
                    [r["end"] for r in points],
                    [r["peak"] for r in points],
                    color=colour,
                    marker=marker,
                    label=f"lr {lr:g}" + (" (warned)" if warned else ""),
                )
    ax.axvline(E.DIVERGENCE_FACTOR, color="grey", linestyle="--", linewidth=1)
    ax.axvline(E.DIVERGENCE_NO_BETTER, color="grey", linestyle=":", linewidth=1)
    ax.axhline(E.DIVERGENCE_PEAK_FACTOR, color="grey", linestyle=":", linewidth=1)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("end: loss after training / yardstick")
    ax.set_ylabel("peak: largest epoch loss / yardstick")
    ax.set_title("Divergence check: where each fit lands (x = warned)")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
