"""The default GMNM layer's offsets formed inside its autograd node, or left to autograd:
the evidence for ``functional.gmnm_from_centers``.

``GMNM(explicit_centers=True)``, the default layer (and the estimators'), forms its
offsets ``c_i = -A_i mu_i`` from its centres in every forward pass. Two forms compute the
same layer on the CPU:

- ``offsets by autograd``: :func:`functional.gaussian_offsets` differentiated by
  autograd (five operations, five backward nodes), then the custom node of
  :func:`functional.gmnm` (the library's form before ``gmnm_from_centers``),
- ``centres node``: ``gmnm_from_centers``'s node, which forms the offsets inside and
  carries their gradient to the projections and centres in its own backward.

Part 1 times a training step (forward, a mean-square loss, backward) of one layer for
each size, both forms and a Linear+ReLU block of the same parameter count, interleaved
in ``--repeats`` rounds. Part 2 times ``GMNMRegressor`` and ``GMNMClassifier`` fits at
their defaults (``max_iter=10``) with the layer's forward pass switched between the two
forms, alternating which goes first. Ratios are the median over rounds of each round's
time ratio (a round runs both forms back to back). Usage::

    python benchmarks/centres_node.py           # about 4 minutes on 2 cores

Writes benchmarks/results/centres_node.md, .json and .png.
"""

import argparse
import json
import sys
from functools import partial
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    RESULTS,
    command_line,
    count_parameters,
    estimator_fit_cases,
    machine,
    median,
    paired_ratios,
    plot_ratio_bars,
    ratio_summary,
    relu_block,
    save_results,
    scores_cell,
    timed,
    timed_fit,
    training_step,
)

from sklearn_gmnm.nn import GMNM
from sklearn_gmnm.nn import functional as F

# (rows, in_features, n_components, n_projections, out_features): the estimators' layer
# (k=1, 128 Gaussians, one output) at small batches, and the layer-speed benchmark's
# (k=2, 256 Gaussians, d -> d).
SIZES = [
    (1, 20, 128, 1, 1),
    (32, 20, 128, 1, 1),
    (200, 20, 128, 1, 1),
    (1, 2, 256, 2, 2),
    (256, 2, 256, 2, 2),
    (256, 16, 256, 2, 16),
    (256, 64, 256, 2, 64),
    (4096, 16, 256, 2, 16),
    (4096, 64, 256, 2, 64),
]
FORMS = ["offsets by autograd", "centres node"]


def offsets_by_autograd(layer, x):
    """The layer's forward pass with its offsets left to autograd."""
    projections = layer.projections()
    offsets = F.gaussian_offsets(projections, layer.centers, layer.n_projections)
    return F.gmnm(
        x, projections, offsets, layer.mixture_weight, layer.bias, layer.n_projections
    )


def layer_rows(repeats):
    rows = []
    for n, d, m, k, out in SIZES:
        torch.manual_seed(0)
        layer = GMNM(d, out, n_components=m, n_projections=k)
        relu = relu_block(d, out, count_parameters(layer))
        x = torch.randn(n, d)
        steps = {
            "offsets by autograd": (layer, partial(offsets_by_autograd, layer)),
            "centres node": (layer, layer),
            "relu": (relu, relu),
        }
        inner = max(20, 4_000 // n)  # at least about 1 s per timing at one row
        times = {name: [] for name in steps}
        for _ in range(repeats):
            for name, (model, forward) in steps.items():
                step = partial(training_step, model, forward, x)
                times[name].append(timed(step, inner))
        rows.append(
            {
                "size": {"N": n, "d": d, "m": m, "k": k, "out": out},
                **{f"us {name}": median(t) for name, t in times.items()},
                **ratio_summary(times["centres node"], times["offsets by autograd"]),
                "relu speed old": median(
                    paired_ratios(times["relu"], times["offsets by autograd"])
                ),
                "relu speed new": median(
                    paired_ratios(times["relu"], times["centres node"])
                ),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    return rows


def fit_rows(repeats):
    cases = estimator_fit_cases()
    node_forward = GMNM.forward
    forwards = {
        "offsets by autograd": offsets_by_autograd,
        "centres node": node_forward,
    }
    rows = []
    for case, (Estimator, X_case, y_case) in cases.items():
        times = {form: [] for form in FORMS}
        scores = {}
        for round_ in range(repeats):
            order = FORMS if round_ % 2 else FORMS[::-1]
            for form in order:
                GMNM.forward = forwards[form]
                try:
                    estimator = Estimator(max_iter=10, random_state=0)
                    times[form].append(timed_fit(estimator, X_case, y_case))
                finally:
                    GMNM.forward = node_forward
                scores[form] = estimator.score(X_case, y_case)
        rows.append(
            {
                "case": case,
                **{f"s {form}": median(t) for form, t in times.items()},
                **ratio_summary(times["centres node"], times["offsets by autograd"]),
                **{f"score {form}": s for form, s in scores.items()},
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    return rows


def write_results(layers, fits, args):
    lines = [
        "# The default layer's offsets: formed inside the node, or left to autograd",
        "",
        f"Command: `{command_line()}`  ",
        f"Machine: {machine()}  ",
        "`centres node`: `functional.gmnm_from_centers`, the offsets c_i = -A_i mu_i "
        "formed inside the custom autograd node and their gradient carried to the "
        "projections and centres in its backward. `offsets by autograd`: the offsets "
        "from `functional.gaussian_offsets`, differentiated by autograd, then "
        "`functional.gmnm`'s node (the form before). `ratio`: the centres node's time "
        "over the other's, the median over rounds of each round's ratio "
        f"[min, max]; < 1 means the centres node is faster. {args.repeats} interleaved "
        "rounds.",
        "",
        "## One layer, a training step (forward, mean-square loss, backward)",
        "",
        "`speed / ReLU`: the Linear+ReLU block's step time over the layer's (same "
        "parameter count), as in `layer_speed.md`.",
        "",
        "| N | d | m | k | out | us offsets by autograd | us centres node | ratio "
        "| speed / ReLU before | speed / ReLU now |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in layers:
        s = r["size"]
        lines.append(
            f"| {s['N']} | {s['d']} | {s['m']} | {s['k']} | {s['out']} "
            f"| {r['us offsets by autograd']:.0f} | {r['us centres node']:.0f} "
            f"| {r['ratio']:.2f}x [{r['ratio min']:.2f}, {r['ratio max']:.2f}] "
            f"| {r['relu speed old']:.2f}x | {r['relu speed new']:.2f}x |"
        )
    lines += [
        "",
        "## Estimator fits at their defaults (max_iter=10)",
        "",
        "| fit | s offsets by autograd | s centres node | ratio | score, both forms |",
        "|---|---|---|---|---|",
    ]
    for r in fits:
        score = scores_cell(r["score offsets by autograd"], r["score centres node"])
        lines.append(
            f"| {r['case']} | {r['s offsets by autograd']:.3f} "
            f"| {r['s centres node']:.3f} "
            f"| {r['ratio']:.2f}x [{r['ratio min']:.2f}, {r['ratio max']:.2f}] "
            f"| {score} |"
        )
    out = RESULTS / "centres_node"
    save_results(out, lines, layers=layers, fits=fits)
    plot(layers, fits, out.with_suffix(".png"))


def plot(layers, fits, path):
    labels = ["N={N} d={d}\nm={m} k={k}".format(**r["size"]) for r in layers] + [
        r["case"].split(",")[0] + "\nfit" for r in fits
    ]
    plot_ratio_bars(
        path,
        labels,
        layers + fits,
        "time: centres node / offsets by autograd",
        "Default GMNM layer on the CPU: offsets formed inside the node",
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    write_results(layer_rows(args.repeats), fit_rows(args.repeats), args)


if __name__ == "__main__":
    main()
