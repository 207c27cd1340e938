"""Helpers shared by the benchmark scripts."""

import json
import platform
import shlex
import subprocess
import sys
import time
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


def median(values):
    values = sorted(values)
    n = len(values)
    return values[n // 2] if n % 2 else 0.5 * (values[n // 2 - 1] + values[n // 2])


def run_json(code):
    """Run Python ``code`` in a fresh interpreter; its last printed line, as JSON."""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    return json.loads(out.strip().splitlines()[-1])
