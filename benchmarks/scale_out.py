"""Scale-out: a grid search in parallel workers, and predict on a million rows.

1. ``GridSearchCV(GMNMRegressor(), 4 settings, cv=3)`` with ``n_jobs=1`` and ``n_jobs=2``
   (joblib's default backend, worker processes), interleaved, ``--repeats`` times: the
   wall-clock ratio, and the torch threads each worker was allowed (a worker must not
   oversubscribe the cores).
2. ``predict`` on 1,000,000 x 20 rows in a fresh process: the peak resident memory the
   call adds, against the size of the input (predict runs in blocks, so the extra memory
   stays bounded whatever the number of rows).

Usage::

    python benchmarks/scale_out.py            # about 3 minutes on 2 cores
    python benchmarks/scale_out.py --quick
"""

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

import torch
from sklearn.datasets import make_friedman1
from sklearn.model_selection import GridSearchCV

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, command_line, machine, median, run_json

from sklearn_gmnm import GMNMRegressor
from sklearn_gmnm._estimators import PREDICT_BATCH_SIZE

GRID = {"n_components": [32, 128], "alpha": [1e-4, 1e-3]}


def torch_threads(estimator, X, y):
    return float(torch.get_num_threads())


def search_time(X, y, n_jobs, max_iter):
    search = GridSearchCV(
        GMNMRegressor(max_iter=max_iter, random_state=0),
        GRID,
        cv=3,
        n_jobs=n_jobs,
        scoring={"r2": "r2", "threads": torch_threads},
        refit=False,
    )
    start = time.perf_counter()
    search.fit(X, y)
    return time.perf_counter() - start, search.cv_results_["mean_test_threads"].max()


PREDICT_CODE = """
import json, warnings, numpy as np, torch
warnings.simplefilter("ignore")
torch.set_num_threads({threads})
from sklearn.datasets import make_friedman1
from sklearn_gmnm import GMNMRegressor
X, y = make_friedman1(n_samples=2000, n_features=20, random_state=0)
est = GMNMRegressor(max_iter=2, random_state=0).fit(X, y)
big = np.random.default_rng(0).random(({rows}, 20))
est.predict(big[:10])
status = lambda key: int([l for l in open('/proc/self/status') if l.startswith(key)][0].split()[1]) * 1024
open('/proc/self/clear_refs', 'w').write('5')
rss = status('VmRSS:')
out = est.predict(big)
print(json.dumps({{'peak_added': status('VmHWM:') - rss, 'input': big.nbytes, 'output': out.nbytes}}))
"""


def predict_memory(rows, threads):
    return run_json(PREDICT_CODE.format(rows=rows, threads=threads))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(RESULTS / "scale_out"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    rows, max_iter, repeats, big = 3000, 30, args.repeats, 1_000_000
    if args.quick:
        rows, max_iter, repeats, big = 500, 3, 1, 100_000
    X, y = make_friedman1(n_samples=rows, n_features=20, random_state=0)
    times = {1: [], 2: []}
    threads = {}
    for _ in range(repeats):
        for n_jobs in (1, 2):
            seconds, threads[n_jobs] = search_time(X, y, n_jobs, max_iter)
            times[n_jobs].append(seconds)
    t = {n: median(v) for n, v in times.items()}
    memory = predict_memory(big, args.threads)
    small = predict_memory(big // 10, args.threads)
    result = {
        "command": command_line(),
        "machine": machine(),
        "cpu_count": os.cpu_count(),
        "search_seconds": t,
        "speedup_n_jobs_2": t[1] / t[2],
        "worker_torch_threads": threads,
        "predict_rows": big,
        "predict_memory": memory,
        "predict_memory_tenth": small,
    }
    mib = 2**20
    lines = [
        "# Scale-out: parallel grid search and predict on many rows",
        "",
        f"Command: `{command_line()}`  ",
        f"Machine: {machine()}, {os.cpu_count()} cores",
        "",
        "## GridSearchCV, joblib's default backend",
        "",
        f"GMNMRegressor(max_iter={max_iter}) on make_friedman1 ({rows} x 20), "
        f"{len(GRID['n_components']) * len(GRID['alpha'])} settings x 3 folds; median of "
        f"{repeats} interleaved repeats.",
        "",
        "| n_jobs | seconds | torch threads per fit |",
        "|---|---|---|",
        f"| 1 | {t[1]:.1f} | {threads[1]:.0f} |",
        f"| 2 | {t[2]:.1f} | {threads[2]:.0f} |",
        "",
        f"n_jobs=2 is {t[1] / t[2]:.2f}x as fast as n_jobs=1; each worker's torch used at "
        f"most {threads[2]:.0f} thread(s) of {os.cpu_count()} cores (no oversubscription).",
        "",
        "## predict on a million rows",
        "",
        "Peak resident memory a `predict` call adds, in a fresh process, against the "
        "size of its float64 input:",
        "",
        "| rows | input MiB | output MiB | peak added MiB |",
        "|---|---|---|---|",
        *(
            f"| {m['input'] // 160:,} | {m['input'] / mib:.0f} | {m['output'] / mib:.1f} "
            f"| {m['peak_added'] / mib:.0f} |"
            for m in (small, memory)
        ),
        "",
        f"predict runs in blocks of {PREDICT_BATCH_SIZE['cpu']:,} rows on the CPU, so what "
        "it adds beyond the output (a few copies of the N predictions) stays bounded "
        "however many rows it is given.",
    ]
    Path(f"{args.out}.md").write_text("\n".join(lines) + "\n")
    Path(f"{args.out}.json").write_text(json.dumps(result, indent=1))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
