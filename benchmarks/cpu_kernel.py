"""The opt-in compiled CPU kernel against torch's operations, side by side: the evidence
for ``functional.USE_CPU_KERNEL``.

With the kernel on (``sklearn_gmnm/nn/_cpu_kernel.cpp``), the Gaussian responses are one
C++ loop instead of k + 2 torch operations, and the projections' gradient one loop
instead of two. Part 1 times a training step (forward, a mean-square loss, backward) of
one layer, the default (``centres``: explicit centres) and the fused one (``fused``:
learnt offsets), with the kernel off and on and a Linear+ReLU block of the same
parameter count, at the estimators' sizes and at ``layer_speed.py``'s. Part 2 times
``GMNMRegressor`` and ``GMNMClassifier`` fits at their defaults (``max_iter=10``) with
the kernel off and on, alternating which goes first, after one untimed fit. Ratios are
the median over rounds of each round's time ratio (a round runs every variant back to
back, in a new order each round). The kernel is built before the timings. Usage::

    python benchmarks/cpu_kernel.py             # about 5 minutes on 2 cores

Writes benchmarks/results/cpu_kernel.md, .json and .png (``--replot``: redraws the
.png from the .json).
"""

import argparse
import json
import random
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

from sklearn_gmnm.nn import GMNM, _cpu_kernel
from sklearn_gmnm.nn import functional as F

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
    (256, 256, 256, 2, 256),
    (4096, 2, 256, 2, 2),
    (4096, 16, 256, 2, 16),
    (4096, 64, 256, 2, 64),
]
LAYERS = {"centres": True, "fused": False}  # name: explicit_centers


def with_kernel(on, forward, x):
    """``forward(x)`` with the kernel on or off (the node keeps its forward's choice
    for backward)."""
    before = F.USE_CPU_KERNEL
    F.USE_CPU_KERNEL = on
    try:
        return forward(x)
    finally:
        F.USE_CPU_KERNEL = before


def layer_rows(repeats, shuffler):
    rows = []
    for n, d, m, k, out in SIZES:
        x = torch.randn(n, d)
        steps = {}
        for name, explicit_centers in LAYERS.items():
            torch.manual_seed(0)
            layer = GMNM(
                d,
                out,
                n_components=m,
                n_projections=k,
                explicit_centers=explicit_centers,
            )
            for on in (False, True):
                forward = partial(with_kernel, on, layer)
                steps[name, on] = partial(training_step, layer, forward, x)
        relu = relu_block(d, out, count_parameters(layer))  # the fused layer's count
        steps["relu"] = partial(training_step, relu, relu, x)
        inner = max(10, 2_000 // n)  # steps per timing
        times = {key: [] for key in steps}
        order = list(steps)
        for _ in range(repeats):
            shuffler.shuffle(order)
            for key in order:
                times[key].append(timed(steps[key], inner))
        for name in LAYERS:
            off, on = times[name, False], times[name, True]
            rows.append(
                {
                    "size": {"N": n, "d": d, "m": m, "k": k, "out": out},
                    "layer": name,
                    "us off": median(off),
                    "us on": median(on),
                    **ratio_summary(on, off),
                    "relu speed off": median(paired_ratios(times["relu"], off)),
                    "relu speed on": median(paired_ratios(times["relu"], on)),
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    return rows


def fit_rows(repeats):
    cases = estimator_fit_cases()
    rows = []
    before = F.USE_CPU_KERNEL
    for case, (Estimator, X_case, y_case) in cases.items():
        timed_fit(Estimator(max_iter=1, random_state=0), X_case, y_case)  # warm up
        times = {False: [], True: []}
        scores = {}
        for round_ in range(repeats):
            for on in (False, True) if round_ % 2 else (True, False):
                F.USE_CPU_KERNEL = on
                try:
                    estimator = Estimator(max_iter=10, random_state=0)
                    times[on].append(timed_fit(estimator, X_case, y_case))
                    scores[on] = estimator.score(X_case, y_case)
                finally:
                    F.USE_CPU_KERNEL = before
        rows.append(
            {
                "case": case,
                "s off": median(times[False]),
                "s on": median(times[True]),
                **ratio_summary(times[True], times[False]),
                "score off": scores[False],
                "score on": scores[True],
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    return rows


def write_results(layers, fits, args):
    lines = [
        "# The compiled CPU kernel against torch's operations",
        "",
        f"Command: `{command_line()}`  ",
        f"Machine: {machine()}  ",
        "`on`: `functional.USE_CPU_KERNEL = True`, the Gaussian responses and the "
        "projections' gradient computed by `sklearn_gmnm/nn/_cpu_kernel.cpp` (one loop "
        "each); `off`: torch's operations (the default). `ratio`: the time with the "
        "kernel over the time without, the median over rounds of each round's ratio "
        f"[min, max]; < 1 means the kernel is faster. {args.repeats} interleaved rounds, "
        "each in a new order.",
        "",
        "## One layer, a training step (forward, mean-square loss, backward)",
        "",
        "`speed / ReLU`: a Linear+ReLU block's step time over the layer's (the block "
        "has the `fused` layer's parameter count), as in `layer_speed.md`.",
        "",
        "| N | d | m | k | out | layer | us off | us on | ratio on / off "
        "| speed / ReLU off | speed / ReLU on |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in layers:
        s = r["size"]
        lines.append(
            f"| {s['N']} | {s['d']} | {s['m']} | {s['k']} | {s['out']} | {r['layer']} "
            f"| {r['us off']:.1f} | {r['us on']:.1f} "
            f"| {r['ratio']:.3f} [{r['ratio min']:.3f}, {r['ratio max']:.3f}] "
            f"| {r['relu speed off']:.2f}x | {r['relu speed on']:.2f}x |"
        )
    lines += [
        "",
        "## Estimator fits at their defaults (max_iter=10)",
        "",
        "| fit | s off | s on | ratio on / off | score, off / on |",
        "|---|---|---|---|---|",
    ]
    for r in fits:
        lines.append(
            f"| {r['case']} | {r['s off']:.3f} | {r['s on']:.3f} "
            f"| {r['ratio']:.3f} [{r['ratio min']:.3f}, {r['ratio max']:.3f}] "
            f"| {scores_cell(r['score off'], r['score on'])} |"
        )
    out = Path(args.out)
    save_results(out, lines, layers=layers, fits=fits)
    plot(layers, fits, out.with_suffix(".png"))


def plot(layers, fits, path):
    labels = [
        "{layer}\nN={N} d={d}".format(layer=r["layer"], **r["size"]) for r in layers
    ] + [r["case"].split(",")[0] + "\nfit" for r in fits]
    rows = layers + fits
    colors = ["tab:blue" if r.get("layer") == "centres" else "tab:orange" for r in rows]
    plot_ratio_bars(
        path,
        labels,
        rows,
        "time: kernel on / off (median, min-max)",
        "GMNM on the CPU: the compiled kernel against torch's operations",
        colors=colors,
        figsize=(18, 4.5),
        fontsize=6,
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--fit-repeats", type=int, default=6)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(RESULTS / "cpu_kernel"))
    parser.add_argument(
        "--replot", action="store_true", help="redraw NAME.png from NAME.json"
    )
    args = parser.parse_args()
    if args.replot:
        saved = json.loads(Path(args.out).with_suffix(".json").read_text())
        plot(saved["layers"], saved["fits"], Path(args.out).with_suffix(".png"))
        return
    torch.set_num_threads(args.threads)
    if _cpu_kernel.load() is None:
        sys.exit("The compiled CPU kernel could not be built (see the warning).")
    shuffler = random.Random(0)
    write_results(layer_rows(args.repeats, shuffler), fit_rows(args.fit_repeats), args)


if __name__ == "__main__":
    main()
