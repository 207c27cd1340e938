"""Speed and memory of one GMNM layer against a Linear+ReLU block of the same size.

For each ``in_features`` d and batch size N, a GMNM layer d -> d (m Gaussians, k
projections) is timed forward+backward against ``Linear(d, h) -> ReLU -> Linear(h, d)``
with h chosen so both have the same number of trainable parameters. Variants of GMNM:

- ``fused``: the library's layer with learnt offsets (``explicit_centers=False``); on
  the CPU it trains through the custom autograd node,
- ``centres``: the library's default layer (explicit centres, offsets formed in forward),
- ``custom``: the fused layer forced through the custom autograd node at every size,
- ``autograd``: the fused layer forced through plain autograd ops at every size,
- ``unfused``: the explicit formula that builds the (N, m, d) tensor ``x - mu``,
- CPU only: ``cpu_kernel`` and ``centres_cpu_kernel``, the ``fused`` and ``centres``
  layers with the compiled CPU kernel on (``functional.USE_CPU_KERNEL``: the Gaussian
  responses and the projections' gradient in one C++ loop each; built once, before the
  timings; left out, with a message, where it can't be built),
- ``compiled``: the ``fused`` layer wrapped in the library's ``CompiledOrEager``
  (``torch.compile``, eager where compile is unavailable),
- on a GPU, ``fused`` and ``centres`` are the library's default path, which runs
  float32 inputs through the Triton kernels of ``sklearn_gmnm.nn._triton`` where they
  apply (in_features <= 128; the table says where they ran), while ``custom`` and
  ``autograd`` stay the torch forms,
- ``compiled_autograd``: ``torch.compile`` of the plain-autograd form, which leaves
  fusion and recomputation to Inductor. On a GPU the library's layer gives Inductor
  that form itself (``functional._leave_to_inductor``), so there ``compiled`` is the
  same model and this variant is left out,
- GPU only: ``relu_compiled`` (the ReLU block compiled too, for a like-for-like ratio),
- GPU only: ``hybrid`` and ``hybrid_graphed``, the fused layer through
  ``_triton.TritonResponsesGMNM``: torch's matrix products (cuBLAS) with the Gaussian
  responses and their gradient in one Triton kernel each, eagerly and as CUDA graphs
  (a candidate for the default path at 64 inputs and more; no setting picks it yet;
  ``--no-hybrid`` leaves them out),
- GPU only: ``fused_graphed`` and ``relu_graphed``, the ``fused`` layer and the ReLU
  block with their forward and backward captured as CUDA graphs
  (``torch.cuda.make_graphed_callables``): a step replays two graphs instead of
  launching every operation from Python, so these two compare the GPU's work without
  the host's cost per launch (``--no-graphs`` leaves them out),
- GPU only, with ``--reduce-overhead``: ``compiled_graphed`` and
  ``relu_compiled_graphed``, ``compiled`` and ``relu_compiled`` compiled with
  ``mode="reduce-overhead"``, which runs Inductor's fused kernels as CUDA graphs: fused
  elementwise work and no host cost per launch.

Every timing is the median over ``--repeats`` rounds, models interleaved within a round
so drifts in machine speed hit all of them alike (on the CPU in a new, seeded order each
round, so that no model always runs right after another; each timing lasts at least
about 10 ms); ratios are samples/s of the variant
over samples/s of the ReLU block (higher is better for GMNM). Memory: bytes autograd
saves for backward (exact, per step) and the peak resident memory a training step adds
(measured in a fresh subprocess per model). Usage::

    python benchmarks/layer_speed.py            # full table (about 15 minutes on 2 cores)
    python benchmarks/layer_speed.py --quick    # a small smoke run
    python benchmarks/layer_speed.py --steady-malloc   # glibc keeps freed memory
    python benchmarks/layer_speed.py --device cuda   # the GPU table (layer_speed_gpu.*)

On a GPU every step is timed between ``torch.cuda.synchronize()`` calls, and memory is
the peak of ``torch.cuda.max_memory_allocated`` during a step above what was allocated
before it, at the row's own batch size; matrix products run in full float32 (torch's
default: TF32 off). A second table says where a step's time goes for the ReLU block,
the library's default path and torch's custom node (and the first two as CUDA graphs):
wall time, the time the GPU is busy and the GPU operations launched per step (torch's
profiler). ``--dims``, ``--batches``
and ``--no-compile`` pick a part of the table, e.g. a million rows::

    python benchmarks/layer_speed.py --device cuda --dims 2 16 --batches 1048576 --no-compile
"""

import argparse
import json
import os
import random
import subprocess
import sys
import time
import warnings
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, command_line, count_parameters, machine, median

from sklearn_gmnm.nn import GMNM, CompiledOrEager, _cpu_kernel, _triton
from sklearn_gmnm.nn import functional as F


class ThroughForm(nn.Module):
    """The fused layer computed by one form of the library at every size: ``form``
    takes (x, weight, offset, mixture_weight, bias, n_projections).

    The forms: ``functional._gmnm_autograd`` (plain autograd operations, the library's
    path for inference), ``functional._FusedGMNM.apply`` (the custom autograd node)
    and ``_triton.TritonResponsesGMNM.apply`` (the hybrid form, float32 CUDA only).
    """

    def __init__(self, layer, form):
        super().__init__()
        self.layer = layer
        self.form = form

    def forward(self, x):
        g = self.layer
        args = (x, g.weight, g.offsets(), g.mixture_weight, g.bias, g.n_projections)
        # (== not is: each access to a Function's apply gives a new bound method)
        if self.form == _triton.TritonResponsesGMNM.apply and not (
            _triton.supports_responses(*args)
        ):
            raise RuntimeError("the hybrid form needs float32 CUDA tensors and Triton")
        return self.form(*args)


class WithCPUKernel(nn.Module):
    """A layer run with the compiled CPU kernel on (``functional.USE_CPU_KERNEL``). The
    custom node picks its form in forward, for backward too."""

    def __init__(self, layer):
        super().__init__()
        self.layer = layer

    def forward(self, x):
        before = F.USE_CPU_KERNEL
        F.USE_CPU_KERNEL = True
        try:
            return self.layer(x)
        finally:
            F.USE_CPU_KERNEL = before


class UnfusedGMNM(nn.Module):
    """The explicit formula with the (N, m, d) tensor x - mu."""

    def __init__(self, layer):
        super().__init__()
        self.layer = layer
        g = layer.gaussians()
        self.projections = nn.Parameter(g["projections"])
        self.centers = nn.Parameter(g["centers"])

    def forward(self, x):
        g = self.layer
        return F.gmnm_reference(
            x, self.projections, self.centers, g.mixture_weight, g.bias
        )


def build(name, d, m, k, device="cpu"):
    """The model called ``name`` for inputs of width d (same seed for every variant)."""
    return _build(name, d, m, k).to(device)


def _build(name, d, m, k):
    torch.manual_seed(0)
    fused = GMNM(d, d, n_components=m, n_projections=k, explicit_centers=False)
    if name.startswith("relu"):
        budget = count_parameters(fused)
        hidden = max(1, round((budget - d) / (2 * d + 1)))
        relu = nn.Sequential(nn.Linear(d, hidden), nn.ReLU(), nn.Linear(hidden, d))
        if name == "relu_compiled":
            return CompiledOrEager(relu, dynamic=False)
        if name == "relu_compiled_graphed":
            return CompiledOrEager(relu, dynamic=False, mode="reduce-overhead")
        if name in ("relu", "relu_graphed"):  # main_cuda captures the graphed one
            return relu
        raise ValueError(name)
    if name in ("fused", "fused_graphed"):  # main_cuda captures the graphed ones
        return fused
    if name == "centres":
        return GMNM(d, d, n_components=m, n_projections=k, explicit_centers=True)
    if name == "cpu_kernel":
        return WithCPUKernel(fused)
    if name == "centres_cpu_kernel":
        return WithCPUKernel(
            GMNM(d, d, n_components=m, n_projections=k, explicit_centers=True)
        )
    if name == "autograd":
        return ThroughForm(fused, F._gmnm_autograd)
    if name == "custom":
        return ThroughForm(fused, F._FusedGMNM.apply)
    if name in ("hybrid", "hybrid_graphed"):  # main_cuda captures the graphed one
        return ThroughForm(fused, _triton.TritonResponsesGMNM.apply)
    if name == "unfused":
        return UnfusedGMNM(fused)
    if name == "compiled":
        return CompiledOrEager(fused, dynamic=False)
    if name == "compiled_autograd":
        return CompiledOrEager(ThroughForm(fused, F._gmnm_autograd), dynamic=False)
    if name == "compiled_graphed":
        return CompiledOrEager(fused, dynamic=False, mode="reduce-overhead")
    raise ValueError(name)


def train_step(model, x):
    model.zero_grad(set_to_none=True)
    model(x).square().mean().backward()


def saved_bytes(model, x):
    """Bytes of the distinct tensors autograd keeps for backward in one step."""
    storages = {}

    def pack(t):
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model(x).square().mean()
    del out
    return sum(storages.values())


MEMORY_BATCH = 32768


def minor_page_faults():
    """This process's minor page faults so far (first touches of fresh memory); 0 where
    the system does not count them (no ``resource`` module: Windows)."""
    try:
        import resource
    except ImportError:
        return 0
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


# glibc's malloc can return large blocks to the kernel when they are freed (mmap for
# blocks above a threshold that it adapts, heap trimming), so that a training step
# touches fresh memory again. In a process that trains one model at 4,096 rows, as a
# training script does, a probe on this 2-core machine saw 1,000-6,000 page faults a
# step and 1.8-2.5x the step time, for both models; in this benchmark's interleaved
# rounds there are far fewer (the faults columns). With these settings (read by glibc
# at start-up) freed blocks stay in the process: the steady state that a caching
# allocator (jemalloc, tcmalloc) gives.
STEADY_MALLOC = {
    "MALLOC_MMAP_THRESHOLD_": str(2**30),
    "MALLOC_TRIM_THRESHOLD_": str(2**30),
}


def peak_step_memory(name, d, m, k, threads, n=MEMORY_BATCH):
    """Peak resident memory one training step adds, in MiB, in a fresh process.

    The process makes the model and a batch of ``n`` rows and runs one step on 8 rows
    (which loads the libraries and thread pools a step needs). It then resets the
    kernel's high-water mark of its resident memory (``/proc/self/clear_refs``), runs
    one step on the full batch, and reports the new high-water mark minus the resident
    size before the step: what the step itself holds at its peak (activations,
    temporaries and gradients).
    """
    code = (
        "import sys, json, torch; sys.path.insert(0, 'benchmarks');"
        "import layer_speed as L;"
        f"torch.set_num_threads({threads});"
        f"model = L.build({name!r}, {d}, {m}, {k}); x = torch.randn({n}, {d});"
        "L.train_step(model, x[:8]); model.zero_grad(set_to_none=True);"
        "status = lambda key: int([l for l in open('/proc/self/status')"
        " if l.startswith(key)][0].split()[1]) * 1024;"
        "open('/proc/self/clear_refs', 'w').write('5');"
        "rss = status('VmRSS:');"
        "L.train_step(model, x);"
        "print(json.dumps({'rss': rss, 'peak': status('VmHWM:')}))"
    )
    root = Path(__file__).resolve().parent.parent
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=root,
    ).stdout
    result = json.loads(out.strip().splitlines()[-1])
    return max(result["peak"] - result["rss"], 0) / 2**20


def cuda_step_memory(model, x):
    """Peak GPU memory one training step allocates above what was allocated before, MiB."""
    model.zero_grad(set_to_none=True)
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    train_step(model, x)
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - before) / 2**20


def cuda_graphed(model, x):
    """``model`` with its forward and backward captured as CUDA graphs for inputs like
    ``x`` (``torch.cuda.make_graphed_callables``), and whether capture worked: where it
    fails, the model comes back as it was (and runs eagerly) and the run goes on.

    A kernel that failed during capture would have sent the library to torch's
    operations for the rest of the process (``_triton._run_or_fall_back``): that is
    undone, and the capture counts as failed.
    """
    failure_before = _triton._failure
    try:
        graphed = torch.cuda.make_graphed_callables(model, (x,))
        torch.cuda.synchronize()
    except Exception as error:
        print(f"no CUDA graph ({type(error).__name__}: {error})", flush=True)
        graphed = None
    if _triton._failure is not failure_before:
        print(f"a kernel failed during capture: {_triton._failure!r}", flush=True)
        _triton._failure, graphed = failure_before, None
    return (model, False) if graphed is None else (graphed, True)


PROFILE_STEPS = 5
# The models whose steps are profiled (those of them in the run): the ReLU block, the
# library's default path, torch's custom node and the hybrid form, then the ReLU block,
# the default path and the hybrid form as CUDA graphs, and the compiled ReLU block and
# GMNM layer as CUDA graphs (``--reduce-overhead``).
PROFILED = (
    *("relu", "fused", "custom", "hybrid"),
    *("relu_graphed", "fused_graphed", "hybrid_graphed"),
    *("relu_compiled_graphed", "compiled_graphed"),
)
# The models main_cuda captures as CUDA graphs itself (torch.cuda.make_graphed_callables);
# the compiled "_graphed" ones are graphed by torch.compile's mode="reduce-overhead"
CAPTURED = ("relu_graphed", "fused_graphed", "hybrid_graphed")


def cuda_step_profile(model, x):
    """What the GPU does in a training step, from torch's profiler (CUPTI): the GPU
    operations launched (kernels, copies, fills) and the time they keep the GPU busy,
    per step, over PROFILE_STEPS steps; None where the profiler cannot trace CUDA.

    A step whose GPU busy time is well below its wall time is bound by the host:
    Python, autograd and one launch per operation, not by the GPU's work.
    """
    activities = [torch.profiler.ProfilerActivity.CPU]
    activities.append(torch.profiler.ProfilerActivity.CUDA)
    try:
        torch.cuda.synchronize()
        with torch.profiler.profile(activities=activities) as prof:
            for _ in range(PROFILE_STEPS):
                train_step(model, x)
            torch.cuda.synchronize()
        on_gpu = [
            e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA
        ]
    except Exception as error:  # a profiler without CUPTI: report, do not stop
        print(f"no GPU profile ({type(error).__name__}: {error})", flush=True)
        return None
    if not on_gpu:
        return None
    busy_us = sum(e.time_range.elapsed_us() for e in on_gpu)
    return {
        "gpu_ops_per_step": len(on_gpu) / PROFILE_STEPS,
        "gpu_busy_ms_per_step": busy_us / 1e3 / PROFILE_STEPS,
    }


# The GMNM forms a user can pick, for "fastest GMNM / fastest ReLU"
GMNM_CHOICES = ("fused", "fused_graphed", "compiled", "compiled_graphed")
# (GMNM, ReLU) variants compared like with like: compiled with compiled, graphed with
# graphed (the row's key: speed_{GMNM}_vs_{ReLU})
LIKE_PAIRS = [
    ("compiled", "relu_compiled"),
    ("compiled_autograd", "relu_compiled"),
    ("fused_graphed", "relu_graphed"),
    ("hybrid_graphed", "relu_graphed"),
    ("compiled_graphed", "relu_compiled_graphed"),
]


def main_cuda(args):
    """The GPU table: same layers, batches that fill a GPU, compiled variants."""
    device = torch.device(args.device)
    m, k = args.n_components, args.n_projections
    dims = args.dims or ([2, 16] if args.quick else [2, 16, 64, 256])
    batches = args.batches or ([4096] if args.quick else [65536, 4096])
    repeats = 3 if args.quick else args.repeats
    names = ["relu", "relu_compiled", "relu_graphed", "fused", "centres", "custom"]
    names += ["autograd", "fused_graphed", "compiled"]
    if _triton.available() and not args.no_hybrid:
        names.insert(names.index("custom") + 1, "hybrid")
        names.insert(names.index("fused_graphed") + 1, "hybrid_graphed")
    if args.reduce_overhead:
        names.insert(names.index("relu_graphed") + 1, "relu_compiled_graphed")
        names.append("compiled_graphed")
    if args.no_compile:
        names = [name for name in names if "compiled" not in name]
    if args.no_graphs:
        names = [name for name in names if "graphed" not in name]
    relus = [name for name in names if name.startswith("relu")]
    gmnms = [name for name in GMNM_CHOICES if name in names]

    def timed(model, x, inner):
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(inner):
            train_step(model, x)
        torch.cuda.synchronize()
        return (time.perf_counter() - start) / inner

    rows = []
    for n in batches:
        for d in dims:
            torch._dynamo.reset()  # compile afresh: no recompile limit, no stale cache
            x = torch.randn(n, d, device=device)
            models = {name: build(name, d, m, k, device) for name in names}
            graphed_in_use = {}
            for name in names:
                if name in CAPTURED:
                    models[name], graphed_in_use[name] = cuda_graphed(models[name], x)
            for model in models.values():  # warm up (and compile)
                for _ in range(3):
                    train_step(model, x)
            inner = max(1, 2**18 // n)  # steps per timing, so each lasts > ~1 ms
            times = {name: [] for name in names}
            for _ in range(repeats):
                for name, model in models.items():
                    times[name].append(timed(model, x, inner))
            t = {name: median(v) for name, v in times.items()}
            # (a graph keeps its memory in a pool of its own, allocated at capture: the
            # graphed models' steps are left out of the memory columns)
            peak = {
                name: cuda_step_memory(model, x)
                for name, model in models.items()
                if "graphed" not in name
            }
            profile = {
                name: cuda_step_profile(models[name], x)
                for name in PROFILED
                if name in names
            }
            g = models["fused"]
            layer_args = (x, g.weight, g.offsets(), g.mixture_weight, g.bias)
            best_relu = min(t[name] for name in ("relu", "relu_compiled") if name in t)
            fastest_relu = min(relus, key=t.get)
            fastest_gmnm = min(gmnms, key=t.get)
            row = {
                "d": d,
                "N": n,
                "relu_hidden": models["relu"][0].out_features,
                "params_gmnm": count_parameters(models["fused"]),
                "params_relu": count_parameters(models["relu"]),
                "relu_samples_per_s": n / t["relu"],
                "triton_in_use": F._use_triton((*layer_args, k)),
                "triton_tiles": _triton.chosen_tiles(),
                "speed_fused_vs_best_relu": best_relu / t["fused"],
                "fastest_relu": fastest_relu,
                "fastest_gmnm": fastest_gmnm,
                "speed_fastest_gmnm_vs_fastest_relu": t[fastest_relu] / t[fastest_gmnm],
                "graphed_in_use": graphed_in_use,
                "compiled_in_use": {
                    name: models[name].compiled
                    for name in names
                    if isinstance(models[name], CompiledOrEager)
                },
                **{f"speed_{name}": t["relu"] / t[name] for name in names[1:]},
                **{
                    f"speed_{gmnm}_vs_{relu}": t[relu] / t[gmnm]
                    for gmnm, relu in LIKE_PAIRS
                    if gmnm in t
                },
                "ms_per_step": {name: t[name] * 1e3 for name in names},
                "profile": profile,
                "peak_mib": peak,
                **{
                    f"peak_{name}": peak[name] / peak["relu"]
                    for name in peak
                    if name != "relu"
                },
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
            # the files after every row: a run stopped at a time limit leaves its table
            write_results_cuda(rows, names, args, m, k, echo=False)
            del models, x
            torch.cuda.empty_cache()
    write_results_cuda(rows, names, args, m, k)


def write_results_cuda(rows, names, args, m, k, echo=True):
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = args.out if args.out != DEFAULT_OUT else DEFAULT_OUT + "_gpu"
    variants = names[1:]
    in_memory = [v for v in variants if "graphed" not in v]
    # (variant, the ReLU block it is compared with, the row's key)
    pairs = [
        (
            gmnm,
            relu.replace("relu", "ReLU", 1).replace("_", " "),
            f"speed_{gmnm}_vs_{relu}",
        )
        for gmnm, relu in LIKE_PAIRS
        if gmnm in names
    ]
    profiled = [v for v in PROFILED if v in names]
    choices = ", ".join(f"`{name}`" for name in GMNM_CHOICES if name in names)
    device = torch.cuda.get_device_name(torch.device(args.device))
    lines = [
        "# GMNM layer speed and memory vs a Linear+ReLU block (GPU)",
        "",
        f"Command: `{command_line()}`  ",
        f"Machine: {device}, {machine()}  ",
        f"GMNM d -> d with m={m} Gaussians, k={k} projections; the ReLU block "
        "`Linear(d, h) -> ReLU -> Linear(h, d)` has the same number of trainable "
        "parameters as the `fused` layer. Speed: samples/s of a forward+backward step "
        "(float32, TF32 off), as a multiple of the eager ReLU block's (median of "
        f"{args.repeats} interleaved repeats; > 1 means GMNM is faster); the `/ ReLU "
        "compiled` and `/ ReLU graphed` columns compare like with like, `fused / best "
        "ReLU` compares the library's default path with the faster of the eager and "
        "compiled ReLU block, and `fastest GMNM / fastest ReLU` the fastest of the "
        f"GMNM forms a user can pick ({choices}) with the "
        "fastest ReLU block, naming both. `_graphed`: forward and backward captured as "
        "CUDA graphs (the compiled ones by `torch.compile(mode='reduce-overhead')`). "
        "`Triton`: whether `fused` and `centres` ran through the "
        "library's Triton kernels (`custom` and `autograd` are the torch forms; "
        "`hybrid`: torch's matrix products with Triton kernels for the Gaussian "
        "responses, `_triton.TritonResponsesGMNM`). "
        "Memory: peak GPU memory a training step allocates, as a multiple of the eager "
        "ReLU block's (the graphed models are left out: a graph allocates its memory "
        "at capture).",
        "",
        "| d | N | Triton | fused / best ReLU | fastest GMNM / fastest ReLU | "
        "ReLU samples/s | "
        + " | ".join(f"speed {v}" for v in variants)
        + "".join(f" | {v} / {relu}" for v, relu, _ in pairs)
        + " | "
        + " | ".join(f"memory {v}" for v in in_memory)
        + " | ReLU MiB |",
        "|" + "---|" * (6 + len(variants) + len(pairs) + len(in_memory) + 1),
    ]
    for r in rows:
        lines.append(
            f"| {r['d']} | {r['N']} | {'yes' if r['triton_in_use'] else 'no'} | "
            f"{r['speed_fused_vs_best_relu']:.2f}x | "
            f"{r['speed_fastest_gmnm_vs_fastest_relu']:.2f}x "
            f"({r['fastest_gmnm']} / {r['fastest_relu']}) | "
            f"{r['relu_samples_per_s']:,.0f} | "
            + " | ".join(f"{r[f'speed_{v}']:.2f}x" for v in variants)
            + "".join(f" | {r[key]:.2f}x" for _, _, key in pairs)
            + " | "
            + " | ".join(f"{r[f'peak_{v}']:.2f}x" for v in in_memory)
            + f" | {r['peak_mib']['relu']:.0f} |"
        )
    in_use = {v for r in rows for v, used in r["compiled_in_use"].items() if not used}
    if "compiled" not in names:
        compile_note = "No compiled variants (`--no-compile`)."
    elif not in_use:
        compile_note = "Every compiled variant ran compiled."
    else:
        compile_note = (
            f"torch.compile was unavailable for {sorted(in_use)}: they ran eagerly."
        )
    not_graphed = {
        v for r in rows for v, used in r["graphed_in_use"].items() if not used
    }
    if not any(name in names for name in CAPTURED):
        graph_note = "No graphed variants (`--no-graphs`)."
    elif not not_graphed:
        graph_note = "Every graphed variant ran as CUDA graphs."
    else:
        graph_note = (
            f"CUDA graph capture failed for {sorted(not_graphed)} (the log says why): "
            "they ran eagerly."
        )
    lines += ["", compile_note, graph_note]
    lines += [
        "",
        "## Where a step's time goes",
        "",
        "Wall time of a training step (the median of the timings above), the time the "
        "GPU spends running its operations in a step, and the number of GPU operations "
        "(kernels, copies, fills) a step launches, from torch's profiler over "
        f"{PROFILE_STEPS} steps. Where the GPU is busy for much less than the wall time, "
        "the step is bound by the host (Python, autograd, one launch per operation), "
        "and fewer launches, not less arithmetic, make it faster.",
        "",
        "| d | N | "
        + " | ".join(
            f"{v} ms/step | {v} GPU busy ms | {v} GPU ops/step" for v in profiled
        )
        + " |",
        "|" + "---|" * (2 + 3 * len(profiled)),
    ]
    for r in rows:
        cells = []
        for v in profiled:
            p = r["profile"][v]
            cells.append(f"{r['ms_per_step'][v]:.3f}")
            cells += (
                [f"{p['gpu_busy_ms_per_step']:.3f}", f"{p['gpu_ops_per_step']:.0f}"]
                if p
                else ["n/a", "n/a"]
            )
        lines.append(f"| {r['d']} | {r['N']} | " + " | ".join(cells) + " |")
    with open(f"{out}.md", "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(f"{out}.json", "w") as f:
        json.dump(
            {
                "command": command_line(),
                "machine": f"{device}, {machine()}",
                "rows": rows,
            },
            f,
            indent=1,
        )
    plot(rows, variants, out)
    if echo:
        print("\n".join(lines))


DEFAULT_OUT = str(RESULTS / "layer_speed")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a small smoke run")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--n-components", type=int, default=256)
    parser.add_argument("--n-projections", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="'cpu' or a CUDA device")
    parser.add_argument(
        "--dims", type=int, nargs="+", help="in_features to run (default: 2 16 64 256)"
    )
    parser.add_argument(
        "--batches",
        type=int,
        nargs="+",
        help="batch sizes to run (default: 256 1024 4096; on a GPU 65536 4096)",
    )
    parser.add_argument(
        "--no-compile", action="store_true", help="leave out the torch.compile variants"
    )
    parser.add_argument(
        "--no-cpu-kernel",
        action="store_true",
        help="on the CPU, leave out the variants with the compiled CPU kernel",
    )
    parser.add_argument(
        "--no-graphs",
        action="store_true",
        help="on a GPU, leave out the CUDA-graph variants",
    )
    parser.add_argument(
        "--no-hybrid",
        action="store_true",
        help="on a GPU, leave out the hybrid variants",
    )
    parser.add_argument(
        "--reduce-overhead",
        action="store_true",
        help="on a GPU, add the ReLU block and the autograd form compiled with "
        "mode='reduce-overhead' (Inductor's kernels as CUDA graphs)",
    )
    parser.add_argument("--out", default=DEFAULT_OUT)
    parser.add_argument(
        "--steady-malloc",
        action="store_true",
        help="run under glibc settings that keep freed memory (see STEADY_MALLOC); "
        "writes results/layer_speed_steady_malloc by default",
    )
    args = parser.parse_args()
    if args.steady_malloc and any(
        os.environ.get(k) != v for k, v in STEADY_MALLOC.items()
    ):
        # glibc reads the settings at start-up: start again with them
        os.execve(
            sys.executable, [sys.executable, *sys.argv], os.environ | STEADY_MALLOC
        )
    if args.steady_malloc and args.out == DEFAULT_OUT:
        args.out = DEFAULT_OUT + "_steady_malloc"
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    if torch.device(args.device).type == "cuda":
        return main_cuda(args)
    m, k = args.n_components, args.n_projections
    dims = args.dims or ([2, 16] if args.quick else [2, 16, 64, 256])
    batches = args.batches or ([256] if args.quick else [256, 1024, 4096])
    repeats = 3 if args.quick else args.repeats
    names = ["relu", "fused", "centres", "cpu_kernel", "centres_cpu_kernel"]
    names += ["custom", "autograd", "unfused", "compiled", "compiled_autograd"]
    if args.quick or args.no_compile:
        names = [name for name in names if "compiled" not in name]
    if args.no_cpu_kernel or _cpu_kernel.load() is None:
        if not args.no_cpu_kernel:
            print(
                "The compiled CPU kernel could not be built: its variants are left out."
            )
        names = [name for name in names if "cpu_kernel" not in name]

    rows = []
    shuffler = random.Random(0)
    for d in dims:
        for n in batches:
            torch._dynamo.reset()  # compile afresh: no recompile limit, no stale cache
            x = torch.randn(n, d)
            models = {name: build(name, d, m, k) for name in names}
            for model in models.values():  # warm up (and compile)
                for _ in range(3):
                    train_step(model, x)
            times = {name: [] for name in names}
            faults = dict.fromkeys(names, 0)
            inner = max(1, 16384 // n)  # steps per timing, so each lasts > ~10 ms
            order = list(names)
            for _ in range(repeats):
                # A new order each round, so that no model always runs right after
                # another one.
                shuffler.shuffle(order)
                for name in order:
                    model = models[name]
                    before = minor_page_faults()
                    start = time.perf_counter()
                    for _ in range(inner):
                        train_step(model, x)
                    times[name].append((time.perf_counter() - start) / inner)
                    faults[name] += minor_page_faults() - before
            t = {name: median(v) for name, v in times.items()}
            saved = {
                name: saved_bytes(models[name], x)
                for name in names
                if "compiled" not in name
            }
            peak = (
                {
                    name: peak_step_memory(name, d, m, k, args.threads)
                    for name in ["relu", "fused", "centres", "custom", "autograd"]
                    + [name for name in names if name == "cpu_kernel"]
                }
                if n == batches[0]  # one memory figure per d, at MEMORY_BATCH rows
                else rows[-1]["peak_mib"]
            )
            row = {
                "d": d,
                "N": n,
                "relu_hidden": models["relu"][0].out_features,
                "params_gmnm": count_parameters(models["fused"]),
                "params_relu": count_parameters(models["relu"]),
                "params_centres": count_parameters(models["centres"]),
                "relu_samples_per_s": n / t["relu"],
                "faults_per_step": {
                    name: faults[name] / (repeats * inner) for name in ("relu", "fused")
                },
                **{
                    f"speed_{name}": t["relu"] / t[name]
                    for name in names
                    if name != "relu"
                },
                **{f"saved_{name}": saved[name] / saved["relu"] for name in saved},
                "peak_mib": peak,
                **{
                    f"peak_{name}": peak[name] / max(peak["relu"], 1e-9)
                    for name in peak
                },
            }
            rows.append(row)
            print(json.dumps(row), flush=True)

    write_results(rows, names, args, m, k)


def write_results(rows, names, args, m, k):
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = args.out
    variants = [n for n in names if n != "relu"]
    peaks = [n for n in ("fused", "cpu_kernel", "custom", "autograd") if n in names]
    lines = [
        "# GMNM layer speed and memory vs a Linear+ReLU block (CPU)",
        "",
        f"Command: `{command_line()}`  ",
        f"Machine: {machine()}  ",
        f"GMNM d -> d with m={m} Gaussians, k={k} projections; the ReLU block "
        "`Linear(d, h) -> ReLU -> Linear(h, d)` has the same number of trainable "
        "parameters as the `fused` layer. Speed: samples/s of a forward+backward step, "
        "as a multiple of the ReLU block's (median of interleaved repeats; > 1 means "
        "GMNM is faster). Memory: bytes autograd saves for backward, and the peak resident "
        f"memory a training step adds at batch {MEMORY_BATCH} (one figure per d, measured "
        "in a fresh process per model), as multiples of the ReLU block's (< 1 means GMNM "
        "uses less). Faults: minor page faults per training step (first touches of "
        "fresh memory) during the timings. "
        + (
            "Run with glibc's malloc keeping freed memory (`--steady-malloc`: "
            + ", ".join(f"{k}={v}" for k, v in STEADY_MALLOC.items())
            + ")."
            if args.steady_malloc
            else "Run with glibc's default malloc settings."
        ),
        "",
        "| d | N | params (GMNM / ReLU h) | ReLU samples/s | "
        + " | ".join(f"speed {v}" for v in variants)
        + " | saved fused | saved custom | saved autograd | saved unfused | "
        + " | ".join(f"peak {name}" for name in peaks)
        + " | ReLU peak MiB | faults ReLU | faults fused |",
        "|" + "---|" * (4 + len(variants) + 7 + len(peaks)),
    ]
    for r in rows:
        lines.append(
            f"| {r['d']} | {r['N']} | {r['params_gmnm']} / h={r['relu_hidden']} | "
            f"{r['relu_samples_per_s']:,.0f} | "
            + " | ".join(f"{r[f'speed_{v}']:.2f}x" for v in variants)
            + f" | {r['saved_fused']:.2f}x | {r['saved_custom']:.2f}x"
            f" | {r['saved_autograd']:.2f}x | {r['saved_unfused']:.2f}x | "
            + " | ".join(f"{r[f'peak_{name}']:.2f}x" for name in peaks)
            + f" | {r['peak_mib']['relu']:.0f}"
            f" | {r['faults_per_step']['relu']:.0f} | {r['faults_per_step']['fused']:.0f} |"
        )
    lines.append("")
    lines.append(
        "`centres` carries m*(d-k) more parameters than the ReLU block it is compared "
        "with (the explicit centres); its ratios are against the same ReLU block."
    )
    with open(f"{out}.md", "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(f"{out}.json", "w") as f:
        json.dump(
            {"command": command_line(), "machine": machine(), "rows": rows}, f, indent=1
        )
    plot(rows, variants, out)
    print("\n".join(lines))


def plot(rows, variants, out):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot (pip install '.[bench]').")
        return
    batches = sorted({r["N"] for r in rows})
    fig, axes = plt.subplots(
        1, len(batches), figsize=(5 * len(batches), 4), squeeze=False
    )
    for ax, n in zip(axes[0], batches, strict=True):
        sub = [r for r in rows if r["N"] == n]
        dims = [r["d"] for r in sub]
        for v in variants:
            ax.plot(dims, [r[f"speed_{v}"] for r in sub], marker="o", label=v)
        ax.axhline(1.0, color="k", lw=0.8)
        ax.axhline(0.8, color="k", lw=0.8, ls="--")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("in_features d")
        ax.set_ylabel("samples/s relative to Linear+ReLU")
        ax.set_title(f"batch {n}")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(f"{out}.png", dpi=110)


if __name__ == "__main__":
    main()
