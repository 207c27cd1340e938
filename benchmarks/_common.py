"""Helpers shared by the benchmark scripts."""

import json
import platform
import shlex
import subprocess
import sys
import time
import warnings
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results"


def command_line():
    """The exact command that produced a result, for the results files."""
    return "python " + " ".join(shlex.quote(a) for a in sys.argv)


def machine():
    cpu = platform.processor() or platform.machine()
    return (
        f"{cpu}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"python {platform.python_version()}"
    )


def count_parameters(module):
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def timed(fn, inner):
    """Microseconds per call of ``fn()``, over ``inner`` calls after a warm-up."""
    for _ in range(max(1, inner // 10)):  # warm up
        fn()
    start = time.perf_counter()
    for _ in range(inner):
        fn()
    return (time.perf_counter() - start) / inner * 1e6


def relu_block(d, out, n_parameters):
    """Linear(d, h) -> ReLU -> Linear(h, out) with about n_parameters parameters."""
    h = max(1, round((n_parameters - out) / (d + out + 1)))
    return torch.nn.Sequential(
        torch.nn.Linear(d, h), torch.nn.ReLU(), torch.nn.Linear(h, out)
    )


def training_step(model, forward, x):
    """One training step's work: ``forward(x)``, a mean-square loss, its backward."""
    model.zero_grad(set_to_none=True)
    forward(x).square().mean().backward()


def paired_ratios(a, b):
    """a[i] / b[i]: each round's ratio (the two timings ran back to back)."""
    return [x / y for x, y in zip(a, b, strict=True)]


def ratio_summary(a, b):
    """The median, min and max over rounds of a[i] / b[i] (each round's timings ran
    back to back), as the keys "ratio", "ratio min" and "ratio max" of a table row."""
    ratios = paired_ratios(a, b)
    return {"ratio": median(ratios), "ratio min": min(ratios), "ratio max": max(ratios)}


def timed_fit(estimator, X, y):
    """Seconds an estimator's ``fit(X, y)`` takes, its convergence warnings silenced
    (benchmarks fit for a fixed number of epochs)."""
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        estimator.fit(X, y)
    return time.perf_counter() - start


def estimator_fit_cases():
    """The fits the side-by-side benchmarks time, by name: (estimator class, X, y).

    A GMNMRegressor on 10,000 x 20 synthetic rows and a GMNMClassifier on digits."""
    from sklearn.datasets import load_digits, make_regression

    from sklearn_gmnm import GMNMClassifier, GMNMRegressor

    X, y = make_regression(10_000, 20, noise=1.0, random_state=0)
    X_digits, y_digits = load_digits(return_X_y=True)
    return {
        "GMNMRegressor, 10,000 x 20 synthetic": (GMNMRegressor, X, y),
        "GMNMClassifier, digits (1,797 x 64)": (GMNMClassifier, X_digits, y_digits),
    }


def plot_ratio_bars(path, labels, rows, ylabel, title, colors="tab:blue", **figure):
    """A bar per row at its median ratio (``row["ratio"]``), whiskers from
    ``"ratio min"`` to ``"ratio max"``, a line at 1; saved to ``path``. ``figure``:
    ``figsize`` (default (11, 4)) and ``fontsize`` of the labels (default 7)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ratios = [r["ratio"] for r in rows]
    low = [r["ratio"] - r["ratio min"] for r in rows]
    high = [r["ratio max"] - r["ratio"] for r in rows]
    fig, ax = plt.subplots(figsize=figure.get("figsize", (11, 4)))
    ax.bar(range(len(rows)), ratios, yerr=[low, high], capsize=3, color=colors)
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(rows)), labels, fontsize=figure.get("fontsize", 7))
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def median(values):
    values = sorted(values)
    n = len(values)
    return values[n // 2] if n % 2 else 0.5 * (values[n // 2 - 1] + values[n // 2])


def save_results(out, lines, **data):
    """Write a result: ``out`` .md (the table ``lines``) and .json (``data`` with the
    command and machine), then print the table."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    payload = {"command": command_line(), "machine": machine(), **data}
    out.with_suffix(".json").write_text(json.dumps(payload, indent=1))
    print("\n".join(lines))


def scores_cell(first, second):
    """A table cell for the scores of two forms of one fit: one value if equal."""
    if first == second:
        return f"{second:.4f} (equal)"
    return f"{first:.4f} / {second:.4f}"


def run_json(code):
    """Run Python ``code`` in a fresh interpreter; its last printed line, as JSON."""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    return json.loads(out.strip().splitlines()[-1])
