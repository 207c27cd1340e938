"""Tile sizes of the GMNM Triton kernels: forward+backward time per setting (GPU only).

The kernels in ``sklearn_gmnm.nn._triton`` use fixed tiles (``_triton._Config``: 64 rows,
64 Gaussians, 4 warps, or 8 when in_features or out_features is 64 or more). This script
times one training step of the layer (float32, m Gaussians, k projections, d -> d) under
a few alternatives, so that the defaults rest on a measurement. Usage::

    python benchmarks/triton_tiles.py [--repeats 5]

Writes benchmarks/results/triton_tiles_gpu.md and .json.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, command_line, machine, median

from sklearn_gmnm.nn import GMNM, _triton

# (rows per tile, Gaussians per block, warps); None: the library's default. The last
# setting keeps the default tiles but computes the matrix products in "tf32x3" (three
# TF32 tensor-core products that together give about float32 accuracy) instead of IEEE
# float32: for information, the library does not use it.
SETTINGS = [None, (128, 64, 8), (64, 32, 4), "tf32x3"]


def use_setting(setting):
    """Make the kernels use these tiles (the library's own rule for None)."""
    original = _triton._Config.__init__

    def init(self, n, d, m, out):
        original(self, n, d, m, out)
        if isinstance(setting, tuple):
            self.block_n, self.block_m, self.num_warps = setting
            self.block_m = min(self.block_m, _triton._block(m))

    return init


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--n", type=int, default=65536)
    parser.add_argument("--n-components", type=int, default=256)
    parser.add_argument("--n-projections", type=int, default=2)
    args = parser.parse_args()
    m, k, n = args.n_components, args.n_projections, args.n
    default_init, default_precision = _triton._Config.__init__, _triton._precision
    rows = []
    for d in (2, 16, 64):
        torch.manual_seed(0)
        layer = GMNM(d, d, n_components=m, n_projections=k).cuda()
        x = torch.randn(n, d, device="cuda")
        assert _triton.supports(x, layer.weight, layer.offsets(), layer.mixture_weight,
                                layer.bias, k)  # fmt: skip
        times = {}
        for setting in SETTINGS:
            _triton._Config.__init__ = use_setting(setting)
            _triton._precision = (
                (lambda: "tf32x3") if setting == "tf32x3" else default_precision
            )
            for _ in range(3):  # compile and warm up
                layer(x).square().mean().backward()
            samples = []
            for _ in range(args.repeats):
                torch.cuda.synchronize()
                start = time.perf_counter()
                for _ in range(10):
                    layer(x).square().mean().backward()
                torch.cuda.synchronize()
                samples.append((time.perf_counter() - start) / 10)
            times[str(setting or "default")] = median(samples)
        _triton._Config.__init__ = default_init
        _triton._precision = default_precision
        row = {"d": d, "N": n, "ms": {s: 1e3 * t for s, t in times.items()}}
        rows.append(row)
        print(json.dumps(row), flush=True)

    names = list(rows[0]["ms"])
    lines = [
        "# Tile sizes of the GMNM Triton kernels (GPU)",
        "",
        f"Command: `{command_line()}`  ",
        f"Machine: {torch.cuda.get_device_name()}, {machine()}  ",
        f"One forward+backward step of GMNM d -> d, m={m}, k={k}, float32, N={n}: "
        f"milliseconds, median of {args.repeats} repeats of 10 steps. A setting is "
        "(rows per tile, Gaussians per block, warps); `default` is the library's rule; "
        "`tf32x3` is the default tiles with the products in three TF32 tensor-core "
        "passes instead of IEEE float32 (for information: the library follows torch's "
        "float32 matmul precision, IEEE at its default).",
        "",
        "| d | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for r in rows:
        lines.append(
            f"| {r['d']} | " + " | ".join(f"{r['ms'][s]:.3f}" for s in names) + " |"
        )
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "triton_tiles_gpu"
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    out.with_suffix(".json").write_text(
        json.dumps({"command": command_line(), "rows": rows}, indent=1)
    )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
