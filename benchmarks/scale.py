"""Scale: a 1,000,000 x 20 regression fitted with mini-batches on the CPU.

GMNMRegressor (defaults) against MLPRegressor with one hidden layer of about the same
number of parameters, both for 5 epochs of mini-batches of 200 (stopping rules off), each
in a fresh process: seconds per epoch (whole fit / epochs, initialisation included), the
peak resident memory of the process against the size of the data, and R2 on 100,000
held-out rows. ``--gmnm-batches`` adds GMNM fits with larger mini-batches (fewer, larger
steps per epoch), to show where GMNM's epoch time meets the MLP's and what that costs in
accuracy; ``--gmnm-epochs`` adds GMNM fits with fewer epochs, to compare accuracy at about
the MLP's total time. Usage::

    python benchmarks/scale.py                 # about 3 minutes on 2 cores
    python benchmarks/scale.py --gmnm-batches 1000 2000 --gmnm-epochs 2
    python benchmarks/scale.py --rows 100000   # smaller
    python benchmarks/scale.py --device cuda   # GMNM on a GPU (MLP stays on the CPU)
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, command_line, machine, run_json

CODE = """
import json, time, warnings
import numpy as np, torch
warnings.simplefilter("ignore")
torch.set_num_threads({threads})
from sklearn.datasets import make_friedman1
from sklearn.neural_network import MLPRegressor
from sklearn_gmnm import GMNMRegressor
X, y = make_friedman1(n_samples={rows}, n_features=20, random_state=0)
status = lambda key: int([l for l in open('/proc/self/status') if l.startswith(key)][0].split()[1]) * 1024
base = status('VmRSS:')
stop = dict(max_iter={epochs}, tol=0.0, n_iter_no_change={epochs})
if {model!r} == "gmnm":
    est = GMNMRegressor(random_state=0, device={device!r}, batch_size={batch!r}, **stop)
    params = lambda: sum(p.numel() for p in est.module_.parameters())
else:
    gmnm = GMNMRegressor(max_iter=1).fit(X[:100], y[:100])
    n = sum(p.numel() for p in gmnm.module_.parameters())
    est = MLPRegressor(hidden_layer_sizes=(round((n - 1) / 22),), batch_size=200,
                       random_state=0, **stop)
    params = lambda: int(sum(c.size for c in est.coefs_) + sum(b.size for b in est.intercepts_))
start = time.perf_counter()
est.fit(X, y)
seconds = time.perf_counter() - start
peak = status('VmHWM:')
X_test, y_test = make_friedman1(n_samples=100_000, n_features=20, random_state=1)
print(json.dumps({{"seconds": seconds, "epochs": est.n_iter_, "parameters": params(),
                  "peak": peak, "before_fit": base, "data": X.nbytes + y.nbytes,
                  "r2": est.score(X_test, y_test)}}))
"""


def run(model, rows, epochs, threads, device, batch="auto"):
    return run_json(
        CODE.format(
            model=model,
            rows=rows,
            epochs=epochs,
            threads=threads,
            device=device,
            batch=batch,
        )
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--gmnm-batches",
        type=int,
        nargs="*",
        default=[],
        help="also fit GMNM with these batch sizes",
    )
    parser.add_argument(
        "--gmnm-epochs",
        type=int,
        nargs="*",
        default=[],
        help="also fit GMNM (batch 200) for these numbers of epochs",
    )
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    out = args.out or str(RESULTS / ("scale" if args.device == "cpu" else "scale_gpu"))
    results = {
        m: run(m, args.rows, args.epochs, args.threads, args.device)
        for m in ("gmnm", "mlp")
    }
    for batch in args.gmnm_batches:
        results[f"gmnm_{batch}"] = run(
            "gmnm", args.rows, args.epochs, args.threads, args.device, batch
        )
    for epochs in args.gmnm_epochs:
        results[f"gmnm_{epochs}_epochs"] = run(
            "gmnm", args.rows, epochs, args.threads, args.device
        )
    mib = 2**20
    g, m = results["gmnm"], results["mlp"]
    per_epoch = {k: r["seconds"] / r["epochs"] for k, r in results.items()}
    lines = [
        "# Scale: a million-row regression, mini-batches",
        "",
        f"Command: `{command_line()}`  ",
        f"Machine: {machine()}  ",
        f"make_friedman1, {args.rows:,} x 20 (X and y: {g['data'] / mib:.0f} MiB); "
        f"{args.epochs} epochs of batches of 200 unless the table says otherwise, "
        "stopping rules off; each model in a fresh process (the first fit of a process "
        "includes torch's one-off import of its compiler stack, about 2 s here, which "
        f"any torch optimizer triggers); GMNM on {args.device}. R2 on 100,000 held-out "
        "rows.",
        "",
        "| model | parameters | batch | epochs | seconds per epoch | vs MLP | "
        "whole fit, seconds | held-out R2 | peak RSS MiB | peak above the data already "
        "loaded, MiB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    labels = [("gmnm", "GMNMRegressor (defaults)", 200), ("mlp", "MLPRegressor", 200)]
    labels += [
        (f"gmnm_{b}", f"GMNMRegressor(batch_size={b})", b) for b in args.gmnm_batches
    ]
    labels += [
        (f"gmnm_{e}_epochs", f"GMNMRegressor(max_iter={e})", 200)
        for e in args.gmnm_epochs
    ]
    for name, label, batch in labels:
        r = results[name]
        lines.append(
            f"| {label} | {r['parameters']:,} | {batch} | {r['epochs']} | "
            f"{per_epoch[name]:.2f} | {per_epoch[name] / per_epoch['mlp']:.2f}x | "
            f"{r['seconds']:.1f} | {r['r2']:.4f} | "
            f"{r['peak'] / mib:.0f} | {(r['peak'] - r['before_fit']) / mib:.0f} |"
        )
    ratio = per_epoch["gmnm"] / per_epoch["mlp"]
    lines += [
        "",
        f"GMNM's epoch takes {ratio:.2f}x MLPRegressor's (target: no slower, i.e. <= 1): "
        f"**{'met' if ratio <= 1 else 'NOT met'}**. Memory the fit adds above the loaded "
        f"data: GMNM {(g['peak'] - g['before_fit']) / g['data']:.2f}x the data, MLP "
        f"{(m['peak'] - m['before_fit']) / m['data']:.2f}x.",
    ]
    Path(f"{out}.md").write_text("\n".join(lines) + "\n")
    Path(f"{out}.json").write_text(
        json.dumps(
            {"command": command_line(), "machine": machine(), "results": results},
            indent=1,
        )
    )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
