"""The Poisson equation in 2-D: GMNM-PINN vs MLP-PINN.

The paper claims a GMNM network solves the Poisson equation with lower error and faster
convergence than a PINN MLP. Problem: ``-laplace(u) = f`` on the unit square with
Dirichlet boundary values, for two known solutions:

- ``smooth``: ``u = sin(pi x) sin(pi y)``;
- ``oscillating``: the smooth mode plus a faster one, so that both scales must be
  found: ``u = sin(pi x) sin(pi y) + 0.2 sin(4 pi x) sin(4 pi y)``.

Models: a tanh MLP ``2 -> 32 -> 32 -> 32 -> 1`` (the usual PINN, 2,241 parameters) and
one wide GMNM layer (``sklearn_gmnm.nn.GMNMMLP``, k = 2, 128 Gaussians: 897 parameters,
Gaussians placed on the collocation points with ``init_from_data``). At the MLP's full
budget (320 Gaussians) a GMNM step costs about 4x the MLP's here, too slow for this
benchmark's CPU time; ``--n-components 0`` runs it. Both
train with ``sklearn_gmnm.nn.pinn.fit_pinn``: full-batch Adam on the same 1,024 interior
and 256 boundary points (redrawn per seed), the same loss (boundary weight 100) and
steps; learning rate per model from a grid by the final *training loss* of seed 0 (the
exact solution is never used for a choice). Relative L2 error on a 101 x 101 grid.

Usage::

    python benchmarks/paper/poisson.py            # writes benchmarks/results/poisson.*
    python benchmarks/paper/poisson.py --quick    # smoke test
    # Gaussians also on the square's edge (init_from_data(..., boundary='reflect')):
    python benchmarks/paper/poisson.py --boundary reflect --out poisson_reflect
"""

import argparse
import json
import math
import time

import _paper
import numpy as np
import torch
from _paper import (
    add_run_arguments,
    command_line,
    configure,
    count_parameters,
    fmt,
    largest_components,
    machine,
    output,
    spread,
    write_json,
)
from torch import nn

from sklearn_gmnm.nn import GMNMMLP
from sklearn_gmnm.nn.pinn import fit_pinn, laplacian

BOUNDARY_WEIGHT = 100.0


def smooth(p):
    return torch.sin(math.pi * p[:, :1]) * torch.sin(math.pi * p[:, 1:])


def smooth_source(p):  # f = -laplace(u)
    return 2 * math.pi**2 * smooth(p)


def oscillating(p):
    fast = torch.sin(4 * math.pi * p[:, :1]) * torch.sin(4 * math.pi * p[:, 1:])
    return smooth(p) + 0.2 * fast


def oscillating_source(p):
    fast = torch.sin(4 * math.pi * p[:, :1]) * torch.sin(4 * math.pi * p[:, 1:])
    return smooth_source(p) + 0.2 * 32 * math.pi**2 * fast


PROBLEMS = {
    "smooth": (smooth, smooth_source),
    "oscillating": (oscillating, oscillating_source),
}


def tanh_mlp():
    return nn.Sequential(
        nn.Linear(2, 32),
        nn.Tanh(),
        nn.Linear(32, 32),
        nn.Tanh(),
        nn.Linear(32, 32),
        nn.Tanh(),
        nn.Linear(32, 1),
    )


def gmnm(n_components):
    return GMNMMLP(2, 1, n_components=n_components, n_projections=2)


def points(seed):
    generator = torch.Generator().manual_seed(seed)
    interior = torch.rand(1024, 2, generator=generator)
    t = torch.rand(4, 64, generator=generator)
    zeros, ones = torch.zeros(64), torch.ones(64)
    boundary = torch.cat(
        [
            torch.stack([t[0], zeros], 1),
            torch.stack([t[1], ones], 1),
            torch.stack([zeros, t[2]], 1),
            torch.stack([ones, t[3]], 1),
        ]
    )
    return interior, boundary


def grid():
    t = torch.linspace(0, 1, 101)
    return torch.cartesian_prod(t, t)


def run(name, problem, seed, learning_rate, steps, n_components, init_boundary=None):
    exact, source = PROBLEMS[problem]
    interior, boundary = points(seed)
    torch.manual_seed(seed)
    if name == "tanh_mlp":
        model = tanh_mlp()
    else:
        model = gmnm(n_components)
        model.init_from_data(
            interior, overlap=1.0, boundary=init_boundary, random_state=seed
        )
    device = _paper.DEVICE  # set from --device by configure()
    model.to(device)
    interior, boundary = interior.to(device), boundary.to(device)
    test = grid().to(device)
    truth = exact(test)
    errors = []

    def error():
        with torch.no_grad():
            return ((model(test) - truth).norm() / truth.norm()).item()

    def callback(step, loss):
        if step % max(steps // 50, 1) == 0:
            errors.append((step, error()))

    def residual(model, x):
        return laplacian(model(x), x) + source(x)

    start = time.perf_counter()
    try:
        losses = fit_pinn(
            model,
            residual,
            interior,
            boundary,
            exact(boundary),
            max_iter=steps,
            learning_rate=learning_rate,
            boundary_weight=BOUNDARY_WEIGHT,
            callback=callback,
        )
    except FloatingPointError:
        return {"final_loss": math.inf, "error": math.inf, "diverged": True}
    seconds = time.perf_counter() - start
    # the error evaluations in the callback are excluded from the time per step
    return {
        "final_loss": losses[-1],
        "error": error(),
        "curve": errors,
        "ms_per_step": 1000 * seconds / steps,
        "params": count_parameters(model),
        "diverged": False,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--learning-rates", type=float, nargs="+", default=[3e-3, 1e-2])
    parser.add_argument(
        "--n-components",
        type=int,
        default=128,
        help="Gaussians in the GMNM network (default 128: 897 parameters, 0.4x the "
        "MLP's; 0 = the largest within the MLP's parameters)",
    )
    parser.add_argument(
        "--boundary",
        choices=["none", "reflect"],
        default="none",
        help="init_from_data's boundary for the GMNM network ('reflect': Gaussians "
        "also on the square's edge)",
    )
    add_run_arguments(parser)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default="poisson")
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="rewrite the markdown table and plot from the JSON results of --out",
    )
    args = parser.parse_args()
    if args.report_only:
        saved = json.loads(output(args.out, ".json").read_text())
        args.seeds, args.steps = saved["seeds"], saved["steps"]
        args.learning_rates = saved.get("learning_rates", args.learning_rates)
        args.boundary = saved.get("boundary", "none")
        write_markdown(args, saved["results"], command=saved["command"])
        plot(args, saved["results"])
        return
    if args.quick:
        args.seeds, args.steps, args.learning_rates = 1, 20, [1e-2]
        if args.out == "poisson":  # keep the full results; an explicit --out wins
            args.out = "poisson_quick"
    configure(args)

    budget = count_parameters(tanh_mlp())
    m = args.n_components or largest_components(lambda m: gmnm(m), budget)
    init_boundary = None if args.boundary == "none" else args.boundary
    if count_parameters(gmnm(m)) > budget:
        parser.error(f"--n-components {m} has more parameters than the MLP ({budget})")
    results = {}
    for problem in PROBLEMS:
        for name in ("tanh_mlp", "gmnm"):
            scores = {
                lr: run(name, problem, 0, lr, args.steps, m, init_boundary)[
                    "final_loss"
                ]
                for lr in args.learning_rates
            }
            lr = min(scores, key=scores.get)
            runs = [
                run(name, problem, seed, lr, args.steps, m, init_boundary)
                for seed in range(args.seeds)
            ]
            key = f"{problem}/{name}"
            results[key] = {
                "learning_rate": lr,
                "training_loss_by_lr": scores,
                "n_components": m if name == "gmnm" else None,
                "params": runs[0].get("params"),
                "runs": runs,
                "error": spread([r["error"] for r in runs]),
                "ms_per_step": spread([r.get("ms_per_step", math.nan) for r in runs]),
            }
            print(key, results[key]["error"]["mean"], flush=True)
    write_json(
        args.out,
        {
            "steps": args.steps,
            "seeds": args.seeds,
            "learning_rates": args.learning_rates,
            "boundary": args.boundary,
            "results": results,
        },
    )
    write_markdown(args, results)
    plot(args, results)


def steps_to_reach(run, target):
    """First logged step whose error is at most ``target`` (None if never)."""
    return next((step for step, e in run.get("curve", []) if e <= target), None)


def convergence(results, problem):
    """Median steps each model needs to reach a common target: the larger of the two
    models' final mean errors (a seed that never reaches it counts as never).

    Returns (target, {model: median step or None})."""
    names = ("tanh_mlp", "gmnm")
    target = max(results[f"{problem}/{n}"]["error"]["mean"] for n in names)
    steps = {}
    for name in names:
        runs = results[f"{problem}/{name}"]["runs"]
        reach = sorted(
            (s for s in (steps_to_reach(r, target) for r in runs)),
            key=lambda s: math.inf if s is None else s,
        )
        steps[name] = reach[len(reach) // 2]
    return target, steps


def write_markdown(args, results, command=None):
    lines = [
        "# Poisson equation in 2-D: GMNM-PINN vs MLP-PINN",
        "",
        f"Command: `{command or command_line()}`  ",
        f"Machine: {machine()}  ",
        f"{args.seeds} seeds (each its own collocation points and initialisation), "
        f"{args.steps} full-batch Adam steps; learning rate per model from "
        f"{args.learning_rates} by seed 0's final training loss. Relative L2 error on "
        "a 101 x 101 grid, mean ± std [min, max] over seeds. *Steps to target*: the "
        "median over seeds of the first logged step (every 2% of training) at which "
        "the error is at most the target, the larger of the two models' final mean "
        "errors; the same target for both models, a measure of convergence speed."
        + (
            " GMNM's Gaussians placed with `init_from_data(..., boundary='reflect')`: "
            "also on the square's edge."
            if args.boundary == "reflect"
            else ""
        ),
        "",
        "| problem | model | n_components | params | lr | relative L2 error | "
        "error ratio vs MLP | steps to target | ms / step |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for key, r in results.items():
        problem, name = key.split("/")
        target, steps = convergence(results, problem)
        mlp_error = results[f"{problem}/tanh_mlp"]["error"]["mean"]
        lines.append(
            f"| {problem} | {name} | {r['n_components'] or '-'} | {r['params']} | "
            f"{r['learning_rate']:g} | {fmt(r['error'], 3)} | "
            f"{r['error']['mean'] / mlp_error:.3f} | "
            f"{steps[name] or 'never'} (target {target:.3g}) | "
            f"{r['ms_per_step']['mean']:.1f} |"
        )
    lines += [
        "",
        "tanh MLP 2-32-32-32-1; GMNM: one GMNM layer, k = 2, explicit centres placed on "
        "the collocation points (k-means, overlap 1.0). Loss: mean squared PDE residual "
        f"+ {BOUNDARY_WEIGHT:g} x mean squared boundary error. Error curves: "
        f"`{args.out}.png`.",
    ]
    output(args.out, ".md").write_text("\n".join(lines) + "\n")


def plot(args, results):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(PROBLEMS), figsize=(10, 4))
    for ax, problem in zip(axes, PROBLEMS, strict=True):
        for name in ("tanh_mlp", "gmnm"):
            r = results[f"{problem}/{name}"]
            for i, run in enumerate(r["runs"]):
                if not run.get("curve"):
                    continue
                steps, errors = np.array(run["curve"]).T
                ax.semilogy(
                    steps,
                    errors,
                    color="C0" if name == "gmnm" else "C1",
                    alpha=0.8,
                    label=name if i == 0 else None,
                )
        ax.set_title(problem)
        ax.set_xlabel("Adam step")
        ax.set_ylabel("relative L2 error")
        ax.legend()
    fig.suptitle("Poisson equation: error vs training step (each line one seed)")
    fig.tight_layout()
    fig.savefig(output(args.out, ".png"), dpi=110)


if __name__ == "__main__":
    main()
