"""The layout of the projections' gradient in the custom node's backward: the evidence
for ``functional.CONTIGUOUS_GRAD_WEIGHT_MIN_FEATURES`` (and ``..._FEW_ROWS``).

The node's backward computes the gradient of the projection matrix ``weight`` (k*m, d)
from ``grad_h`` (N, k*m) and the input ``x`` (N, d) in one of two forms:

- ``transposed``: ``(x.t() @ grad_h).t()``, a (d, k*m) product seen transposed. Its
  matrix product is the faster one for few input features, but the gradient is not laid
  out as ``weight`` is, so autograd copies it before storing it in ``weight.grad``;
- ``contiguous``: ``grad_h.t() @ x``, laid out as ``weight``: no copy.

For each size, a training step (forward, a mean-square loss, backward) of a layer in both
forms, for the default layer (explicit centres) and the fused one, interleaved in
``--repeats`` rounds; then ``GMNMClassifier`` fits on digits (64 features) in both forms,
alternating which goes first. Ratios are the median over rounds of each round's ratio of
the contiguous form's time to the transposed form's (< 1: contiguous is faster).
Usage::

    python benchmarks/grad_weight_layout.py      # about 5 minutes on 2 cores
    python benchmarks/grad_weight_layout.py --dims 32 64 --batches 256 512 1024 2048 \
        --out benchmarks/results/grad_weight_layout_rows   # other sizes

Writes benchmarks/results/grad_weight_layout.md, .json and .png (or ``--out``'s).
"""

import argparse
import json
import sys
import time
import warnings
from functools import partial
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    RESULTS,
    command_line,
    machine,
    median,
    save_results,
    scores_cell,
    timed,
)

from sklearn_gmnm import GMNMClassifier
from sklearn_gmnm.nn import GMNM
from sklearn_gmnm.nn import functional as F

DIMS = [2, 16, 32, 64, 128, 256]
BATCHES = [256, 1024, 4096]
# The settings' values that make every layer take each form: (the least features,
# the least features on few rows).
FORMS = {"transposed": (2**62, 2**62), "contiguous": (0, 0)}
SETTINGS = (
    "CONTIGUOUS_GRAD_WEIGHT_MIN_FEATURES",
    "CONTIGUOUS_GRAD_WEIGHT_MIN_FEATURES_FEW_ROWS",
)


def training_step(layer, x):
    layer.zero_grad(set_to_none=True)
    layer(x).square().mean().backward()


def with_form(form, fn):
    """Run fn with the node's backward in ``form``."""
    defaults = [getattr(F, name) for name in SETTINGS]
    for name, value in zip(SETTINGS, FORMS[form], strict=True):
        setattr(F, name, value)
    try:
        return fn()
    finally:
        for name, value in zip(SETTINGS, defaults, strict=True):
            setattr(F, name, value)


def summary(times):
    ratios = [
        c / t for c, t in zip(times["contiguous"], times["transposed"], strict=True)
    ]
    return {
        **{f"us {form}": median(t) for form, t in times.items()},
        "ratio": median(ratios),
        "ratio min": min(ratios),
        "ratio max": max(ratios),
    }


def layer_rows(repeats, dims, batches):
    rows = []
    for d in dims:
        for n in batches:
            for explicit_centers in (True, False):
                torch.manual_seed(0)
                layer = GMNM(
                    d, d, n_components=256, n_projections=2,
                    explicit_centers=explicit_centers,
                )  # fmt: skip
                x = torch.randn(n, d)
                step = partial(training_step, layer, x)
                inner = max(10, 25_600 // n)
                times = {form: [] for form in FORMS}
                for _ in range(repeats):
                    for form in FORMS:
                        times[form].append(with_form(form, partial(timed, step, inner)))
                rows.append(
                    {
                        "d": d,
                        "N": n,
                        "layer": "centres" if explicit_centers else "fused",
                        **summary(times),
                    }
                )
                print(json.dumps(rows[-1]), flush=True)
    return rows


def fit_rows(repeats):
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    times = {form: [] for form in FORMS}
    scores = {}
    for round_ in range(repeats):
        order = list(FORMS) if round_ % 2 else list(FORMS)[::-1]
        for form in order:
            estimator = GMNMClassifier(max_iter=10, random_state=0)

            def fit(estimator=estimator):
                start = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # max_iter=10: not converged
                    estimator.fit(X, y)
                return time.perf_counter() - start

            times[form].append(with_form(form, fit))
            scores[form] = estimator.score(X, y)
    row = {
        "case": "GMNMClassifier, digits (1,797 x 64), max_iter=10",
        **summary({form: [t * 1e6 for t in ts] for form, ts in times.items()}),
        **{f"score {form}": s for form, s in scores.items()},
    }
    print(json.dumps(row), flush=True)
    return [row]


def write_results(layers, fits, args):
    lines = [
        "# The projections' gradient: transposed, or laid out as the weight",
        "",
        f"Command: `{command_line()}`  ",
        f"Machine: {machine()}  ",
        "A training step (forward, mean-square loss, backward) of a GMNM layer d -> d "
        "(m=256, k=2) with the projections' gradient computed as `(x.t() @ "
        "grad_h).t()` (`transposed`: autograd then copies it into the weight's "
        "layout) or as `grad_h.t() @ x` (`contiguous`). `centres`: the default layer "
        "(explicit centres); `fused`: `explicit_centers=False`. `ratio`: contiguous "
        "over transposed time, the median over rounds of each round's ratio [min, "
        f"max]; < 1 means contiguous is faster. {args.repeats} interleaved rounds.",
        "",
        "| d | N | layer | us transposed | us contiguous | ratio |",
        "|---|---|---|---|---|---|",
    ]
    for r in layers:
        lines.append(
            f"| {r['d']} | {r['N']} | {r['layer']} | {r['us transposed']:.0f} "
            f"| {r['us contiguous']:.0f} "
            f"| {r['ratio']:.3f}x [{r['ratio min']:.2f}, {r['ratio max']:.2f}] |"
        )
    lines += [
        "",
        "## An estimator fit",
        "",
        "| fit | s transposed | s contiguous | ratio | score, both forms |",
        "|---|---|---|---|---|",
    ]
    for r in fits:
        lines.append(
            f"| {r['case']} | {r['us transposed'] / 1e6:.3f} "
            f"| {r['us contiguous'] / 1e6:.3f} "
            f"| {r['ratio']:.3f}x [{r['ratio min']:.2f}, {r['ratio max']:.2f}] "
            f"| {scores_cell(r['score transposed'], r['score contiguous'])} |"
        )
    out = Path(args.out)
    save_results(out, lines, layers=layers, fits=fits)
    plot(layers, args.batches, out.with_suffix(".png"))


def plot(layers, batches, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(
        1, len(batches), figsize=(3 + 3 * len(batches), 3.6), sharey=True, squeeze=False
    )
    axes = axes[0]
    for ax, n in zip(axes, batches, strict=True):
        for layer, marker in (("centres", "o"), ("fused", "s")):
            rows = [r for r in layers if r["N"] == n and r["layer"] == layer]
            ax.errorbar(
                [r["d"] for r in rows],
                [r["ratio"] for r in rows],
                yerr=[
                    [r["ratio"] - r["ratio min"] for r in rows],
                    [r["ratio max"] - r["ratio"] for r in rows],
                ],
                marker=marker,
                capsize=3,
                label=layer,
            )
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("in_features d")
        ax.set_title(f"batch {n}")
    axes[0].set_ylabel("step time: contiguous / transposed")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=11)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dims", type=int, nargs="+", default=DIMS)
    parser.add_argument("--batches", type=int, nargs="+", default=BATCHES)
    parser.add_argument(
        "--out",
        default=str(RESULTS / "grad_weight_layout"),
        help="results path without suffix",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    layers = layer_rows(args.repeats, args.dims, args.batches)
    write_results(layers, fit_rows(args.repeats), args)


if __name__ == "__main__":
    main()
