"""Which torch form of the GMNM layer is fastest on the CPU, by size: the evidence for
``functional.FUSED_MIN_ELEMENTS`` and ``functional.SAVE_PHI_MAX_ELEMENTS``.

Three forms compute the same layer:

- ``autograd``: plain operations, differentiated op by op by autograd,
- ``node, recompute``: the custom autograd node, which recomputes ``phi`` from ``h`` in
  backward (its form above ``SAVE_PHI_MAX_ELEMENTS``),
- ``node, keep phi``: the custom node keeping ``phi`` for backward (its form up to it).

For each size, the time of a training step (forward, a mean-square loss, backward) and
of a forward pass without gradients, median over ``--repeats`` interleaved rounds.
Usage::

    python benchmarks/autograd_paths.py            # about 2 minutes on 2 cores

Writes benchmarks/results/autograd_paths.md and .json.
"""

import argparse
import json
import sys
from functools import partial
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, command_line, machine, median, timed

from sklearn_gmnm.nn import functional as F

# (rows, in_features, n_components, n_projections, out_features): the estimators' layer
# at its defaults (k=1, 128 Gaussians, one output) for small batches, and the layer-speed
# benchmark's layer (k=2, 256 Gaussians, d -> d), from one row up.
SIZES = [
    (1, 20, 128, 1, 1),
    (8, 20, 128, 1, 1),
    (32, 20, 128, 1, 1),
    (200, 20, 128, 1, 1),
    (1, 2, 256, 2, 2),
    (32, 16, 256, 2, 16),
    (256, 2, 256, 2, 2),
    (256, 16, 256, 2, 16),
    (256, 64, 256, 2, 64),
    (1024, 16, 256, 2, 16),
]
FORMS = ["autograd", "node, recompute", "node, keep phi"]


def layer_tensors(n, d, m, k, out, requires_grad):
    torch.manual_seed(0)
    shapes = [(n, d), (k * m, d), (k * m,), (out, m), (out,)]
    return [torch.randn(*s).requires_grad_(requires_grad) for s in shapes]


def run_form(form, tensors, k):
    if form == "autograd":
        return F._gmnm_autograd(*tensors, k)
    keep = F.SAVE_PHI_MAX_ELEMENTS
    F.SAVE_PHI_MAX_ELEMENTS = 2**62 if form == "node, keep phi" else 0
    try:
        return F._FusedGMNM.apply(*tensors, k)
    finally:
        F.SAVE_PHI_MAX_ELEMENTS = keep


def training_step(form, tensors, k):
    run_form(form, tensors, k).square().mean().backward()


def inference(form, tensors, k):
    with torch.no_grad():
        run_form(form, tensors, k)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for n, d, m, k, out in SIZES:
        train = layer_tensors(n, d, m, k, out, requires_grad=True)
        infer = layer_tensors(n, d, m, k, out, requires_grad=False)
        inner = max(20, 40_000 // n)
        times = {(f, mode): [] for f in FORMS for mode in ("train", "infer")}
        for _ in range(args.repeats):
            for form in FORMS:
                step = partial(training_step, form, train, k)
                times[(form, "train")].append(timed(step, inner))
                forward = partial(inference, form, infer, k)
                times[(form, "infer")].append(timed(forward, inner))
        row = {
            "size": {"N": n, "d": d, "m": m, "k": k, "out": out},
            **{f"{mode} {f}": median(times[(f, mode)]) for (f, mode) in times},
        }
        rows.append(row)
        print(json.dumps(row), flush=True)

    lines = [
        "# The torch forms of the GMNM layer on the CPU, by size",
        "",
        f"Command: `{command_line()}`  ",
        f"Machine: {machine()}  ",
        "Microseconds per training step (forward, mean-square loss, backward) and per "
        f"forward pass without gradients; median of {args.repeats} interleaved rounds. "
        "`node, recompute` is the custom autograd node recomputing phi in backward, "
        "`node, keep phi` the same node keeping phi from the forward pass; `autograd` "
        "the plain operations.",
        "",
        "| N | d | m | k | out | "
        + " | ".join(f"train: {f}" for f in FORMS)
        + " | "
        + " | ".join(f"inference: {f}" for f in FORMS)
        + " |",
        "|" + "---|" * (5 + 2 * len(FORMS)),
    ]
    for r in rows:
        s = r["size"]
        lines.append(
            f"| {s['N']} | {s['d']} | {s['m']} | {s['k']} | {s['out']} | "
            + " | ".join(f"{r[f'train {f}']:.0f}" for f in FORMS)
            + " | "
            + " | ".join(f"{r[f'infer {f}']:.0f}" for f in FORMS)
            + " |"
        )
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "autograd_paths"
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    out.with_suffix(".json").write_text(
        json.dumps({"command": command_line(), "machine": machine(), "rows": rows})
    )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
