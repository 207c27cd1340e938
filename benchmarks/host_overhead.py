"""The host's time per call: the layer of this working tree against the same layer at
another git revision of the package, side by side in one process.

Changes to the Python code that every forward pass runs (the module's ``forward``,
:func:`functional.gmnm` and how it picks its form) cost or save microseconds per call:
too little to see across separate runs of ``layer_speed.py`` on a noisy machine, but a
few percent of a training step at small batches. This script copies the package as it is
at ``--base`` (by default the commit before ``HEAD``) under another name
(``sklearn_gmnm_base``), builds the same layer from both, and times in interleaved rounds:

- a training step (forward, a mean-square loss, backward) of one layer, for the default
  layer (``centres``: explicit centres) and the fused one (``fused``: learnt offsets),
  at the estimators' sizes and at ``layer_speed.py``'s at batch 256 and 4,096, with a
  Linear+ReLU block of the same parameter count for scale;
- the same layer's custom autograd node called directly (``node``: no module, no
  dispatch), the floor that the Python around it sits on;
- ``GMNMRegressor`` fits at their defaults (``max_iter=10``) from both copies.

Ratios are the median over rounds of each round's time ratio (a round runs every
variant back to back, in a new order each round). Usage::

    python benchmarks/host_overhead.py --base HEAD~1 --out benchmarks/results/NAME

Writes NAME.md, .json and .png (``--quick``: a small smoke run, NAME_quick.*;
``--replot``: redraws NAME.png from NAME.json).
"""

import argparse
import importlib
import json
import random
import re
import subprocess
import sys
import tempfile
from functools import partial
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    RESULTS,
    command_line,
    count_parameters,
    machine,
    median,
    paired_ratios,
    ratio_summary,
    relu_block,
    save_results,
    timed,
    timed_fit,
    training_step,
)

REPO = Path(__file__).resolve().parent.parent

# (rows, in_features, n_components, n_projections, out_features): the estimators' layer
# (k=1, 128 Gaussians, one output) at small batches, and the layer-speed benchmark's
# (k=2, 256 Gaussians, d -> d) at batch 256 and 4,096
SIZES = [
    (1, 20, 128, 1, 1),
    (32, 20, 128, 1, 1),
    (200, 20, 128, 1, 1),
    (256, 2, 256, 2, 2),
    (256, 16, 256, 2, 16),
    (256, 64, 256, 2, 64),
    (4096, 2, 256, 2, 2),
    (4096, 64, 256, 2, 64),
]


def import_base(revision, into):
    """The package as it is at ``revision``, imported as ``sklearn_gmnm_base``."""
    archive = subprocess.run(
        ["git", "archive", revision, "sklearn_gmnm"],
        cwd=REPO,
        check=True,
        capture_output=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    package = Path(into) / "sklearn_gmnm_base"
    (Path(into) / "sklearn_gmnm").rename(package)
    for source in package.rglob("*.py"):
        text = source.read_text()
        source.write_text(re.sub(r"\bsklearn_gmnm\b", "sklearn_gmnm_base", text))
    sys.path.insert(0, str(into))
    importlib.import_module("sklearn_gmnm_base.nn")
    return importlib.import_module("sklearn_gmnm_base")


def node_forward(F, layer, x):
    """The layer's custom autograd node, called without the module and dispatch."""
    if layer.explicit_centers:
        node, offsets_or_centres = F._FusedGMNMFromCenters, layer.centers
    else:
        node, offsets_or_centres = F._FusedGMNM, layer.offset
    return node.apply(
        x,
        layer.weight,
        offsets_or_centres,
        layer.mixture_weight,
        layer.bias,
        layer.n_projections,
    )


def layer_rows(base, repeats):
    import sklearn_gmnm.nn as new_nn
    from sklearn_gmnm.nn import functional as F

    rows = []
    for n, d, m, k, out in SIZES:
        for form in ("centres", "fused"):
            explicit = form == "centres"
            layers = {}
            for name, nn in (("base", base.nn), ("new", new_nn)):
                torch.manual_seed(0)
                layers[name] = nn.GMNM(
                    d, out, n_components=m, n_projections=k, explicit_centers=explicit
                )
            relu = relu_block(d, out, count_parameters(layers["new"]))
            x = torch.randn(n, d)
            steps = {
                "base": (layers["base"], layers["base"]),
                "new": (layers["new"], layers["new"]),
                "node": (layers["new"], partial(node_forward, F, layers["new"])),
                "relu": (relu, relu),
            }
            inner = max(20, 40_000 // (n + 100))  # about 0.1 s per timing
            times = {name: [] for name in steps}
            for _ in range(repeats):
                order = list(steps)
                random.shuffle(order)
                for name in order:
                    model, forward = steps[name]
                    step = partial(training_step, model, forward, x)
                    times[name].append(timed(step, inner))
            rows.append(
                {
                    "size": {"N": n, "d": d, "m": m, "k": k, "out": out},
                    "form": form,
                    **{f"us {name}": median(t) for name, t in times.items()},
                    **ratio_summary(times["new"], times["base"]),
                    "relu speed base": median(
                        paired_ratios(times["relu"], times["base"])
                    ),
                    "relu speed new": median(
                        paired_ratios(times["relu"], times["new"])
                    ),
                    "node / new": median(paired_ratios(times["node"], times["new"])),
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    return rows


def fit_rows(base, repeats):
    from sklearn.datasets import make_regression

    import sklearn_gmnm

    X, y = make_regression(10_000, 20, noise=1.0, random_state=0)
    estimators = {"base": base.GMNMRegressor, "new": sklearn_gmnm.GMNMRegressor}
    times = {name: [] for name in estimators}
    scores = {}
    for Estimator in estimators.values():  # warm-up: the first fit's one-time costs
        timed_fit(Estimator(max_iter=1, random_state=0), X, y)
    for round_ in range(repeats):
        order = list(estimators) if round_ % 2 else list(estimators)[::-1]
        for name in order:
            estimator = estimators[name](max_iter=10, random_state=0)
            times[name].append(timed_fit(estimator, X, y))
            scores[name] = estimator.score(X, y)
    row = {
        "case": "GMNMRegressor, 10,000 x 20 synthetic, max_iter=10",
        **{f"s {name}": median(t) for name, t in times.items()},
        **ratio_summary(times["new"], times["base"]),
        **{f"score {name}": s for name, s in scores.items()},
    }
    print(json.dumps(row), flush=True)
    return [row]


def write_results(layers, fits, args, base_commit):
    lines = [
        "# The host's time per call: this tree's layer against another revision's",
        "",
        f"Command: `{command_line()}`  ",
        f"Machine: {machine()}  ",
        f"`base`: the package at `{args.base}` ({base_commit}); `new`: the working "
        "tree. `ratio`: new's time over base's, the median over rounds of each "
        "round's ratio [min, max]; < 1 means the working tree is faster. `node`: the "
        "layer's custom autograd node called directly, without the module and "
        "dispatch; `node / new`: its time over new's. `speed / ReLU`: a Linear+ReLU "
        "block's step time over the layer's (same parameter count), as in "
        f"`layer_speed.md`. {args.repeats} interleaved rounds, each in a new order.",
        "",
        "## One layer, a training step (forward, mean-square loss, backward)",
        "",
        "| N | d | m | k | out | layer | us base | us new | ratio new / base "
        "| us node | node / new | speed / ReLU base | speed / ReLU new |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in layers:
        s = row["size"]
        lines.append(
            f"| {s['N']} | {s['d']} | {s['m']} | {s['k']} | {s['out']} | {row['form']} "
            f"| {row['us base']:.1f} | {row['us new']:.1f} "
            f"| {row['ratio']:.3f} [{row['ratio min']:.3f}, {row['ratio max']:.3f}] "
            f"| {row['us node']:.1f} | {row['node / new']:.3f} "
            f"| {row['relu speed base']:.2f}x | {row['relu speed new']:.2f}x |"
        )
    lines += [
        "",
        "## Estimator fits",
        "",
        "| case | s base | s new | ratio new / base | R2 base | R2 new |",
        "|---|---|---|---|---|---|",
    ]
    for row in fits:
        lines.append(
            f"| {row['case']} | {row['s base']:.2f} | {row['s new']:.2f} "
            f"| {row['ratio']:.3f} [{row['ratio min']:.3f}, {row['ratio max']:.3f}] "
            f"| {row['score base']:.4f} | {row['score new']:.4f} |"
        )
    save_results(
        Path(args.out),
        lines,
        base=args.base,
        base_commit=base_commit,
        layers=layers,
        fits=fits,
    )


def plot(layers, fits, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [
        "N={N} d={d}\nm={m} k={k}\n".format(**r["size"]) + r["form"] for r in layers
    ] + ["fit"]
    rows = layers + fits
    # medians only: single rounds on a noisy host scatter far wider than the few
    # percent a change to the host's code moves (their range is in the table)
    ratios = [r["ratio"] for r in rows]
    fig, ax = plt.subplots(figsize=(13, 4))
    ax.plot(range(len(rows)), ratios, "o", color="tab:blue")
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_ylim(min(0.85, min(ratios) - 0.02), max(1.1, max(ratios) + 0.02))
    ax.set_xticks(range(len(rows)), labels, fontsize=6)
    ax.set_ylabel("time: new / base (median over rounds)")
    ax.set_title("GMNM layer on the CPU: this tree against another revision")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", default="HEAD~1", help="git revision to compare with")
    parser.add_argument("--repeats", type=int, default=25)
    parser.add_argument("--fit-repeats", type=int, default=6)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(RESULTS / "host_overhead"))
    parser.add_argument("--quick", action="store_true", help="a small smoke run")
    parser.add_argument(
        "--replot", action="store_true", help="redraw NAME.png from NAME.json"
    )
    args = parser.parse_args()
    if args.replot:
        saved = json.loads(Path(args.out).with_suffix(".json").read_text())
        plot(saved["layers"], saved["fits"], Path(args.out).with_suffix(".png"))
        return
    if args.quick:
        SIZES[:] = [SIZES[0], SIZES[3]]
        args.repeats, args.fit_repeats = 2, 1
        args.out = f"{args.out}_quick"
    torch.set_num_threads(args.threads)
    base_commit = subprocess.run(
        ["git", "rev-parse", "--short", args.base],
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    with tempfile.TemporaryDirectory() as into:
        base = import_base(args.base, into)
        layers = layer_rows(base, args.repeats)
        fits = fit_rows(base, args.fit_repeats)
    write_results(layers, fits, args, base_commit)
    plot(layers, fits, Path(args.out).with_suffix(".png"))


if __name__ == "__main__":
    main()
