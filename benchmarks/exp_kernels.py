"""exp or exp2 for the Gaussian responses on the CPU: the evidence for
``functional._HALF_LOG2E``.

The torch forms of the GMNM layer compute ``phi = exp(-0.5 * y2)`` as
``exp2(-0.5 * log2(e) * y2)``, the factor folded into the multiply-adds that form the
exponent. This benchmark measures, side by side in one run:

1. the two kernels alone: microseconds of ``torch.exp`` and ``torch.exp2`` on an
   (N, 256) tensor, float32 and float64, on 1 and 2 threads;
2. their accuracy: the relative error of phi computed each way, in float32, against
   float64, over random projections h spread from 0 to 12 standard units;
3. a training step (``layer_speed.train_step``) and a forward pass without gradients
   of the layer-speed benchmark's layer (d -> d, 256 Gaussians, k=2), and a forward pass
   of the estimators' default layer, with the responses through ``exp`` (the form the
   library used before) and through ``exp2`` (its form now); and a training step of the
   Linear+ReLU block of the same size. Interleaved rounds in a new, seeded order each
   round; ratios are medians of the rounds' paired ratios.

Usage::

    python benchmarks/exp_kernels.py            # a few minutes on 2 cores
    python benchmarks/exp_kernels.py --quick    # a small smoke run

Writes benchmarks/results/exp_kernels.md and .json.
"""

import argparse
import json
import math
import random
import statistics
import sys
from functools import partial
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, command_line, machine, median, timed
from layer_speed import build, train_step

from sklearn_gmnm.nn import GMNM
from sklearn_gmnm.nn import functional as F

SIZES = [(d, n) for d in (2, 16, 64, 256) for n in (256, 1024, 4096)]
# The estimators' layer at its defaults (20 features, 128 Gaussians, k=1, one output)
# predicting 10,000 rows: inference only.
INFERENCE_ONLY = [(20, 10_000)]


def responses_exp(h, n_projections):
    """The Gaussian responses through ``exp``: the library's form before ``exp2``."""
    slices = h.chunk(n_projections, dim=1)
    y = torch.addcmul(h.new_zeros(()), slices[0], slices[0], value=-0.5)
    for h_j in slices[1:]:
        y.addcmul_(h_j, h_j, value=-0.5)
    return y.clamp_(min=F._exponent_floor(h.dtype)).exp_()


RESPONSES = {"gmnm exp": responses_exp, "gmnm exp2": F._gaussian_responses}


def inference(model, x):
    with torch.no_grad():
        model(x)


def kernel_times(repeats):
    rows = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        for dtype in (torch.float32, torch.float64):
            for n in (256, 4096):
                y = -20 * torch.rand(n, 256, dtype=dtype)
                out = torch.empty_like(y)
                kernels = {
                    "exp": partial(torch.exp, y, out=out),
                    "exp2": partial(torch.exp2, y, out=out),
                }
                inner = max(20, 400_000 // n)
                times = {name: [] for name in kernels}
                for _ in range(repeats):
                    for name, fn in kernels.items():
                        times[name].append(timed(fn, inner))
                row = {"threads": threads, "dtype": str(dtype).split(".")[-1], "N": n}
                row.update({name: median(t) for name, t in times.items()})
                rows.append(row)
                print(json.dumps(row), flush=True)
    return rows


def accuracy():
    """Relative error of phi (float32, k=2) through exp and exp2, against float64."""
    torch.manual_seed(0)
    h = torch.randn(1_000_000, 2) * torch.rand(1_000_000, 1) * 12  # (N, k*m), m=1
    exact = torch.exp(-0.5 * h.double().square().sum(1, keepdim=True))
    keep = exact > 1e-30  # away from the exponent floor
    result = {}
    for name, responses in RESPONSES.items():
        phi = responses(h, 2).double()
        error = ((phi - exact) / exact)[keep].abs()
        result[name] = {"mean": error.mean().item(), "max": error.max().item()}
    return result


def paired(times, a, b):
    """Median and quartiles of the per-round ratios times[a] / times[b]."""
    ratios = [x / y for x, y in zip(times[a], times[b], strict=True)]
    q1, _, q3 = statistics.quantiles(ratios, n=4)
    return {"median": median(ratios), "q1": q1, "q3": q3}


def step_times(sizes, repeats, threads):
    """Training steps, and forward passes without gradients, through exp and exp2."""
    torch.set_num_threads(threads)
    rng = random.Random(0)
    rows = []
    for d, n in sizes + INFERENCE_ONLY:
        torch.manual_seed(0)
        train = (d, n) in sizes
        layer = (
            build("fused", d, 256, 2)
            if train
            else GMNM(d, 1, n_components=128, n_projections=1)
        )
        relu = build("relu", d, 256, 2) if train else None
        x = torch.randn(n, d)
        inner = max(3, 8_000 // n)
        names = ("relu", "train exp", "train exp2", "infer exp", "infer exp2")
        times = {name: [] for name in names}
        for _ in range(repeats):
            order = [name for name in times if train or name.startswith("infer")]
            rng.shuffle(order)
            for name in order:
                mode, _, form = name.partition(" ")
                if name == "relu":
                    step = partial(train_step, relu, x)
                else:
                    F._gaussian_responses = RESPONSES[f"gmnm {form}"]
                    work = train_step if mode == "train" else inference
                    step = partial(work, layer, x)
                times[name].append(timed(step, inner))
        F._gaussian_responses = RESPONSES["gmnm exp2"]
        row = {"d": d, "N": n, "layer": "layer_speed" if train else "estimator"}
        row["infer exp2 / exp"] = paired(times, "infer exp2", "infer exp")
        if train:
            row["train exp2 / exp"] = paired(times, "train exp2", "train exp")
            row["relu us"] = median(times["relu"])
            for form in ("exp", "exp2"):
                row[f"speed {form}"] = paired(times, "relu", f"train {form}")["median"]
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="a small smoke run")
    parser.add_argument("--out", default=None, help="default: results/exp_kernels")
    args = parser.parse_args()
    if args.quick:
        args.repeats = 3
    sizes = SIZES[:1] if args.quick else SIZES
    kernels = kernel_times(args.repeats)
    errors = accuracy()
    steps = step_times(sizes, args.repeats, args.threads)

    lines = [
        "# exp or exp2 for the Gaussian responses (CPU)",
        "",
        f"Command: `{command_line()}`  ",
        f"Machine: {machine()}  ",
        f"Medians of {args.repeats} interleaved rounds.",
        "",
        "## The kernels alone",
        "",
        "Microseconds for `torch.exp` and `torch.exp2` on an (N, 256) tensor.",
        "",
        "| threads | dtype | N | exp us | exp2 us | exp / exp2 |",
        "|---|---|---|---|---|---|",
    ]
    for r in kernels:
        lines.append(
            f"| {r['threads']} | {r['dtype']} | {r['N']} | {r['exp']:.1f} | "
            f"{r['exp2']:.1f} | {r['exp'] / r['exp2']:.2f}x |"
        )
    lines += [
        "",
        "## Accuracy",
        "",
        "Relative error of float32 phi = exp(-0.5 (h_1^2 + h_2^2)) against float64, over "
        "a million random projections 0-12 standard units from the centre (where phi "
        "> 1e-30).",
        "",
        "| form | mean relative error | largest relative error |",
        "|---|---|---|",
    ]
    for name, e in errors.items():
        lines.append(f"| {name} | {e['mean']:.2e} | {e['max']:.2e} |")
    lines += [
        "",
        "## The layer: a training step and a forward pass",
        "",
        f"{args.threads} threads. Rows `layer_speed`: the layer d -> d with 256 "
        "Gaussians and k=2 of layer_speed.py (fused form); row `estimator`: the "
        "estimators' default layer (128 Gaussians, k=1, one output) predicting. "
        "Time through exp2 over time through exp, the median (and quartiles) of the "
        "rounds' paired ratios (< 1: exp2 faster), for a training step (forward, "
        "mean-square loss, backward) and a forward pass without gradients; and the "
        "training step's speed as a multiple of the Linear+ReLU block's (> 1: GMNM "
        "faster), measured in the same rounds.",
        "",
        "| layer | d | N | train: exp2 / exp | inference: exp2 / exp | ReLU step us "
        "| speed vs ReLU, exp | speed vs ReLU, exp2 |",
        "|---|---|---|---|---|---|---|---|",
    ]

    def ratio(r):
        return f"{r['median']:.2f} ({r['q1']:.2f}-{r['q3']:.2f})"

    for r in steps:
        train = "train exp2 / exp" in r
        lines.append(
            f"| {r['layer']} | {r['d']} | {r['N']} | "
            + (ratio(r["train exp2 / exp"]) if train else "-")
            + f" | {ratio(r['infer exp2 / exp'])} | "
            + (
                f"{r['relu us']:.0f} | {r['speed exp']:.2f}x | {r['speed exp2']:.2f}x |"
                if train
                else "- | - | - |"
            )
        )

    def geo(values):
        return math.exp(sum(map(math.log, values)) / len(values))

    train = [r["train exp2 / exp"]["median"] for r in steps if "train exp2 / exp" in r]
    infer = [r["infer exp2 / exp"]["median"] for r in steps]
    lines += [
        "",
        f"Time through exp2 over time through exp, geometric mean over the rows: "
        f"training steps {geo(train):.2f} (range {min(train):.2f}-{max(train):.2f}), "
        f"forward passes {geo(infer):.2f} (range {min(infer):.2f}-{max(infer):.2f}).",
    ]
    quick = "_quick" if args.quick else ""
    out = Path(args.out) if args.out else RESULTS / f"exp_kernels{quick}"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    out.with_suffix(".json").write_text(
        json.dumps(
            {
                "command": command_line(),
                "machine": machine(),
                "kernels": kernels,
                "accuracy": errors,
                "steps": steps,
            }
        )
    )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
