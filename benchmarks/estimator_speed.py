"""Speed of GMNMRegressor: skorch overhead, MLPRegressor, and predict latency.

On a synthetic regression table (``--rows`` x ``--features``), with the estimator's
default network and batch size, all run side by side and interleaved, ``--repeats`` times:

1. fit time of ``GMNMRegressor`` against the *same* network, initialisation, optimiser,
   batch size and number of epochs trained by a bare torch loop (no skorch): the cost of
   the estimator's machinery. Target <= 1.15x.
2. fit time against ``MLPRegressor`` with one hidden layer of about the same number of
   parameters, at the same number of epochs (stopping rules off for both). Reported.
3. predict: median latency of a single-row ``predict`` (target <= 1 ms) and rows per
   second of a batch ``predict`` against ``MLPRegressor``'s (target >= 1x).

Usage::

    python benchmarks/estimator_speed.py            # about 5 minutes on 2 cores
    python benchmarks/estimator_speed.py --quick
"""

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import make_friedman1
from sklearn.neural_network import MLPRegressor

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, command_line, count_parameters, machine, median

from sklearn_gmnm import GMNMRegressor
from sklearn_gmnm._estimators import _fused_adam
from sklearn_gmnm._net import StandardizedGMNMNetwork


def bare_torch_fit(X, y, epochs, batch_size, lr, alpha, seed, dtype, device="cpu"):
    """The estimator's network and initialisation, trained by a plain torch loop."""
    torch.manual_seed(seed)
    X_t = torch.as_tensor(X, dtype=dtype)
    y_t = torch.as_tensor((y - y.mean()) / y.std(), dtype=dtype).reshape(-1, 1)
    mean, scale = X_t.mean(0), X_t.std(0, correction=0)
    defaults = GMNMRegressor().get_params()  # the estimator's default network
    module = StandardizedGMNMNetwork(
        mean,
        scale,
        1,
        n_components=defaults["n_components"],
        n_projections=defaults["n_projections"],
        embedding_dim=defaults["embedding_dim"],
        hidden_layer_sizes=defaults["hidden_layer_sizes"],
    )
    with torch.no_grad():
        module.body.init_from_data(module.standardize(X_t), random_state=seed)
    module.to(device)
    X_t, y_t = X_t.to(device), y_t.to(device)
    # the estimator's Adam: the fused kernel where this torch has one for the device
    fused = _fused_adam(torch.device(device).type, dtype)
    optimizer = torch.optim.Adam(module.parameters(), lr=lr, fused=fused)
    penalized = [p for name, p in module.named_parameters() if name.endswith("weight")]
    n = len(X_t)
    for _ in range(epochs):
        order = torch.randperm(n)
        for start in range(0, n, batch_size):
            index = order[start : start + batch_size]
            optimizer.zero_grad()
            loss = torch.nn.functional.mse_loss(module(X_t[index]), y_t[index])
            # the estimator's objective: scikit-learn MLP's L2 penalty on weight matrices
            squares = sum(p.square().sum() for p in penalized)
            loss = loss + 0.5 * alpha * squares / len(index)
            loss.backward()
            optimizer.step()
    if X_t.is_cuda:
        torch.cuda.synchronize()
    return module


# Seconds of idle before each timed fit or batch predict. After a call into OpenBLAS
# (scikit-learn's MLP), OpenBLAS's worker threads keep spinning for a while; on 2 cores
# they take a core from torch's threads, which made a GMNM batch predict timed right
# after an MLP predict 2x slower (0.6x the MLP's rows/s back to back, 1.8x after 0.25 s
# idle, measured side by side). Pausing times each library on an idle machine.
PAUSE = 0.25


def timed(fn, pause=PAUSE):
    time.sleep(pause)
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="'cpu' or a CUDA device")
    parser.add_argument("--out", default=None, help="default: results/estimator_speed")
    args = parser.parse_args()
    on_gpu = torch.device(args.device).type == "cuda"
    if args.out is None:
        args.out = str(
            RESULTS / ("estimator_speed_gpu" if on_gpu else "estimator_speed")
        )
    if args.quick:
        args.rows, args.epochs, args.repeats = 2000, 3, 2
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    X, y = make_friedman1(n_samples=args.rows, n_features=args.features, random_state=0)
    batch_size = 200  # the estimators' 'auto' batch size on these many rows
    lr, alpha = GMNMRegressor().learning_rate_init, GMNMRegressor().alpha
    no_stop = {"tol": 0.0, "n_iter_no_change": args.epochs, "max_iter": args.epochs}

    gmnm = GMNMRegressor(random_state=0, device=args.device, **no_stop)
    gmnm_params = count_parameters(gmnm.fit(X[:50], y[:50]).module_)
    hidden = round((gmnm_params - 1) / (args.features + 2))
    mlp = MLPRegressor(
        hidden_layer_sizes=(hidden,), random_state=0, batch_size=batch_size, **no_stop
    )

    rows = {"gmnm_f64": [], "bare_f64": [], "gmnm_f32": [], "bare_f32": [], "mlp": []}
    precisions = {"f64": torch.float64, "f32": torch.float32}
    for _ in range(args.repeats):
        for name, dtype in precisions.items():
            X_in = X.astype(np.float32) if dtype == torch.float32 else X
            rows[f"gmnm_{name}"].append(timed(lambda X_in=X_in: gmnm.fit(X_in, y))[0])
            bare = (X, y, args.epochs, batch_size, lr, alpha, 0, dtype, args.device)
            rows[f"bare_{name}"].append(
                timed(lambda bare=bare: bare_torch_fit(*bare))[0]
            )
        rows["mlp"].append(timed(lambda: mlp.fit(X, y))[0])
    fit = {name: median(times) for name, times in rows.items()}
    assert gmnm.n_iter_ == args.epochs and mlp.n_iter_ == args.epochs

    gmnm.fit(X, y)
    mlp.fit(X, y)
    single = {"gmnm": [], "mlp": []}
    for i in range(200 if not args.quick else 20):
        row = X[i : i + 1]
        # one row: too little work to wake OpenBLAS's threads; no pause needed
        single["gmnm"].append(timed(lambda row=row: gmnm.predict(row), pause=0)[0])
        single["mlp"].append(timed(lambda row=row: mlp.predict(row), pause=0)[0])
    big = np.tile(X, (max(1, 100_000 // len(X)), 1))
    batch = {"gmnm": [], "mlp": []}
    for _ in range(3 * args.repeats):  # cheap, and noisy: more repeats
        batch["gmnm"].append(len(big) / timed(lambda: gmnm.predict(big))[0])
        batch["mlp"].append(len(big) / timed(lambda: mlp.predict(big))[0])

    result = {
        "command": command_line(),
        "machine": machine(),
        "rows": args.rows,
        "features": args.features,
        "epochs": args.epochs,
        "gmnm_parameters": gmnm_params,
        "mlp_parameters": sum(c.size for c in mlp.coefs_)
        + sum(b.size for b in mlp.intercepts_),
        "fit_seconds": fit,
        # The overhead is the median of paired ratios (each estimator fit against the
        # bare-loop fit timed right after it), which cancels the machine's slow drift
        # better than a ratio of medians.
        "skorch_overhead_f64": median(
            [g / b for g, b in zip(rows["gmnm_f64"], rows["bare_f64"], strict=True)]
        ),
        "skorch_overhead_f32": median(
            [g / b for g, b in zip(rows["gmnm_f32"], rows["bare_f32"], strict=True)]
        ),
        "fit_vs_mlp_f64": fit["gmnm_f64"] / fit["mlp"],
        "fit_vs_mlp_f32": fit["gmnm_f32"] / fit["mlp"],
        "single_row_ms": {k: 1e3 * median(v) for k, v in single.items()},
        "batch_rows_per_s": {k: median(v) for k, v in batch.items()},
    }
    if on_gpu:
        result["machine"] = f"{torch.cuda.get_device_name()}, {result['machine']}"
    result["device"] = args.device
    write(result, args.out, args.repeats, len(big))


def write(r, out, repeats, n_big):
    overhead_ok = max(r["skorch_overhead_f64"], r["skorch_overhead_f32"]) <= 1.15
    where = "CPU" if r["device"] == "cpu" else f"GMNM on {r['device']}, MLP on the CPU"
    lines = [
        f"# GMNMRegressor speed ({where})",
        "",
        f"Command: `{r['command']}`  ",
        f"Machine: {r['machine']}  ",
        f"Data: make_friedman1, {r['rows']} rows x {r['features']} features; "
        f"{r['epochs']} epochs, batch 200, stopping rules off; medians of {repeats} "
        f"interleaved repeats ({3 * repeats} for batch predict), each fit and batch "
        f"predict timed after {PAUSE} s idle (so that OpenBLAS's spinning threads from "
        "the previous call do not compete; see PAUSE in the script). The overhead "
        "ratio is the median of paired ratios (each estimator fit over the bare-loop "
        "fit timed right after it).",
        "",
        "## Fit",
        "",
        "| model | parameters | fit seconds | ratio |",
        "|---|---|---|---|",
        f"| GMNMRegressor (float64 X) | {r['gmnm_parameters']} | {r['fit_seconds']['gmnm_f64']:.2f} | "
        f"{r['skorch_overhead_f64']:.2f}x the bare torch loop |",
        f"| same network, bare torch loop (float64) | {r['gmnm_parameters']} | {r['fit_seconds']['bare_f64']:.2f} | 1 |",
        f"| GMNMRegressor (float32 X) | {r['gmnm_parameters']} | {r['fit_seconds']['gmnm_f32']:.2f} | "
        f"{r['skorch_overhead_f32']:.2f}x the bare torch loop |",
        f"| same network, bare torch loop (float32) | {r['gmnm_parameters']} | {r['fit_seconds']['bare_f32']:.2f} | 1 |",
        f"| MLPRegressor, one hidden layer | {r['mlp_parameters']} | {r['fit_seconds']['mlp']:.2f} | "
        f"GMNM is {r['fit_vs_mlp_f64']:.2f}x (float64) / {r['fit_vs_mlp_f32']:.2f}x (float32) its time |",
        "",
        f"Estimator overhead over a bare torch loop: target <= 1.15x: "
        f"**{'met' if overhead_ok else 'NOT met'}**.",
        "",
        "## Predict",
        "",
        "| | GMNMRegressor | MLPRegressor |",
        "|---|---|---|",
        f"| single-row predict, median ms | {r['single_row_ms']['gmnm']:.3f} | {r['single_row_ms']['mlp']:.3f} |",
        f"| batch predict ({n_big} rows), rows/s | {r['batch_rows_per_s']['gmnm']:,.0f} | {r['batch_rows_per_s']['mlp']:,.0f} |",
        "",
        f"Single-row latency <= 1 ms: **{'met' if r['single_row_ms']['gmnm'] <= 1 else 'NOT met'}**; "
        f"batch throughput >= MLPRegressor's: "
        f"**{'met' if r['batch_rows_per_s']['gmnm'] >= r['batch_rows_per_s']['mlp'] else 'NOT met'}**.",
    ]
    RESULTS.mkdir(parents=True, exist_ok=True)
    Path(f"{out}.md").write_text("\n".join(lines) + "\n")
    Path(f"{out}.json").write_text(json.dumps(r, indent=1))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
