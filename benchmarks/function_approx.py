"""2-D function approximation: GMNM against tanh and ReLU MLPs and KANs (pykan).

Every model gets the same data, the same full-batch Adam loop with cosine learning-rate
decay, the same number of steps and about the same number of *effective* parameters
(trainable parameters that receive a gradient: pykan's KAN also holds a symbolic branch
whose parameters never do). The learning rate of each model is chosen from ``--lrs`` by
the geometric mean of *validation* MSE over all functions with seed 0; the chosen rate is
then run with every seed, and *test* MSE is reported (median, min, max over seeds). In
the targets, each family (GMNM, MLP, KAN) is represented by its model with the lowest
validation MSE at its chosen rate (median over seeds, geometric mean over functions).

Usage::

    python benchmarks/function_approx.py             # full run (about an hour, 2 cores)
    python benchmarks/function_approx.py --quick     # smoke run
    # explicit centres against learnt (fused) offsets:
    python benchmarks/function_approx.py --models gmnm_data gmnm_fused \
        --out benchmarks/results/function_approx_parametrisation
    # how the budget is spent: triangular projections and more Gaussians, or a
    # linear term:
    python benchmarks/function_approx.py --models gmnm_zero gmnm_zero_triangular \
        gmnm_zero_triangular32 gmnm_zero_linear --lrs 0.03 --seeds 3 \
        --out benchmarks/results/function_approx_budget
"""

import argparse
import json
import math
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, command_line, machine, median

from sklearn_gmnm.nn import GMNM, GMNMMLP

# --- the functions, on [-1, 1]^2 ------------------------------------------------------


def franke(x, y):  # smooth, a classic interpolation test (rescaled to [0, 1]^2)
    x, y = (x + 1) / 2, (y + 1) / 2
    return (
        0.75 * torch.exp(-((9 * x - 2) ** 2) / 4 - (9 * y - 2) ** 2 / 4)
        + 0.75 * torch.exp(-((9 * x + 1) ** 2) / 49 - (9 * y + 1) / 10)
        + 0.5 * torch.exp(-((9 * x - 7) ** 2) / 4 - (9 * y - 3) ** 2 / 4)
        - 0.2 * torch.exp(-((9 * x - 4) ** 2) - (9 * y - 7) ** 2)
    )


FUNCTIONS = {
    # smooth
    "franke": franke,
    "exp_sin": lambda x, y: torch.exp(torch.sin(math.pi * x) + y**2),  # the KAN paper's
    "product": lambda x, y: x * y,
    # oscillating
    "oscillating": lambda x, y: torch.sin(3 * math.pi * x) * torch.sin(3 * math.pi * y),
    "radial_wave": lambda x, y: torch.cos(8 * torch.sqrt(x**2 + y**2)),
    # sharp ridge
    "sharp_ridge": lambda x, y: torch.exp(
        -50 * (y - 0.5 * torch.sin(math.pi * x)) ** 2
    ),
    # discontinuous
    "disc": lambda x, y: ((x**2 + y**2) < 0.5).to(x.dtype),
    "step_diagonal": lambda x, y: torch.sign(x + y - 0.2),
}
KIND = {
    "franke": "smooth",
    "exp_sin": "smooth",
    "product": "smooth",
    "oscillating": "oscillating",
    "radial_wave": "oscillating",
    "sharp_ridge": "sharp ridge",
    "disc": "discontinuous",
    "step_diagonal": "discontinuous",
}


# The test grid is GRID x GRID points. Those with max(|x|, |y|) < INTERIOR are the
# interior; the rest, a band 0.1 wide along the edge of [-1, 1]^2, are about a fifth of it.
GRID = 100
INTERIOR = 0.9


def make_data(name, n_train, n_val, grid, seed=1234):
    """Random train and validation points, a regular test grid; targets noise-free."""
    g = torch.Generator().manual_seed(seed)
    f = FUNCTIONS[name]

    def sample(n):
        x = torch.rand(n, 2, generator=g) * 2 - 1
        return x, f(x[:, 0], x[:, 1]).unsqueeze(1)

    lin = torch.linspace(-1, 1, grid)
    xx, yy = torch.meshgrid(lin, lin, indexing="ij")
    x_test = torch.stack([xx.ravel(), yy.ravel()], 1)
    y_test = f(x_test[:, 0], x_test[:, 1]).unsqueeze(1)
    return (*sample(n_train), *sample(n_val), x_test, y_test)


# --- the models, about 220 effective parameters each -----------------------------------


def mlp(activation, hidden):
    return nn.Sequential(
        nn.Linear(2, hidden),
        activation(),
        nn.Linear(hidden, hidden),
        activation(),
        nn.Linear(hidden, 1),
    )


def kan(width, grid):
    from kan import KAN  # pykan, from the bench extra

    # pykan seeds torch itself from its `seed` argument: derive it from the run's seed
    # (train() calls torch.manual_seed(seed) before building), or every seed is the same.
    seed = int(torch.randint(2**31 - 1, ()))
    model = KAN(width=width, grid=grid, k=3, seed=seed, auto_save=False)
    model.speed()  # no symbolic branch, no stored activations: what training needs
    return model


def gmnm_relative():
    # projections stored relative to their starting scale (Adam's steps scale with them)
    return GMNM(2, 1, n_components=32, n_projections=2, relative_projections=True)


def gmnm_zero_start(n_components=32, n_projections=2):
    # gmnm_relative whose mixture weights and bias start at zero, so training starts from
    # the zero function rather than a random sum of the Gaussians (init_from_data leaves
    # them as they are)
    model = GMNM(
        2,
        1,
        n_components=n_components,
        n_projections=n_projections,
        relative_projections=True,
    )
    nn.init.zeros_(model.mixture_weight)
    nn.init.zeros_(model.bias)
    return model


def gmnm_zero_lever(
    n_components=32, n_projections=2, lr_scale=None, lstsq=False, triangular=False
):
    """``gmnm_zero`` with one lever changed (the opt-in ``gmnm_zero_*`` models):
    the budget spent on rank-one Gaussians, Adam's step sizes per parameter (``lr_scale``:
    name -> multiple of the learning rate), mixture weights and bias starting at
    their least-squares fit to the training targets for the placed Gaussians, or
    triangular projections (see :func:`triangularise`)."""

    def build():
        model = gmnm_zero_start(n_components, n_projections)
        model.lr_scale = lr_scale or {}
        model.least_squares_start = lstsq
        model.triangular = triangular
        return model

    return build


class WithLinearTerm(nn.Module):
    """A model plus a linear term in its inputs, starting at zero (``out = model(x) +
    x @ V``; 2 parameters in 2-D): Gaussians fade away from their centres, and a linear
    term can carry a trend to the square's edge, where most of GMNM's error lies."""

    def __init__(self, model, in_features=2, out_features=1):
        super().__init__()
        self.model = model
        self.linear = nn.Linear(in_features, out_features, bias=False)
        nn.init.zeros_(self.linear.weight)

    def init_from_data(self, *args, **kwargs):
        return self.model.init_from_data(*args, **kwargs)

    def forward(self, x):
        return self.model(x) + self.linear(x)


def triangularise(model):
    """Make each Gaussian's projections ``A_i`` (k = d = 2) upper triangular and keep
    them so: the same Gaussians, one parameter fewer each.

    A Gaussian depends on ``A_i`` only through its precision ``A_i^T A_i`` (3 numbers
    in 2-D), so one of the 4 entries of ``A_i`` is redundant (a rotation). ``A_i = QR``
    gives ``R^T R = A_i^T A_i``: ``R`` replaces ``A_i``, and a gradient hook keeps its
    lower entry at zero (Adam never moves an entry whose gradient is always zero). The
    saved parameter buys more Gaussians at the same budget. Sets
    ``model.frozen_entries``, the entries that never train, for
    :func:`effective_parameters`.
    """
    k, m, d = model.n_projections, model.n_components, model.in_features
    if not k == d == 2:
        raise ValueError(f"triangular projections need k = d = 2, got k={k}, d={d}.")
    with torch.no_grad():
        projections = model.weight.view(k, m, d).transpose(0, 1)  # (m, k, d): A_i
        upper = torch.linalg.qr(projections).R  # (m, k, d), R^T R = A_i^T A_i
        model.weight.copy_(upper.transpose(0, 1).reshape(k * m, d))
    mask = torch.ones(k, m, d, dtype=model.weight.dtype)
    mask[1, :, 0] = 0  # the entry below R's diagonal, for every Gaussian
    mask = mask.reshape(k * m, d)
    model.weight.register_hook(lambda grad: grad * mask)
    model.frozen_entries = m


def least_squares_start(model, x, y, ridge=1e-3):
    """Mixture weights and bias set to the ridge least-squares fit of ``y`` on the
    Gaussians' responses at ``x`` (the classic start of an RBF network)."""
    with torch.no_grad():
        phi = model.basis(x).double()
        design = torch.cat([phi, torch.ones(len(phi), 1, dtype=phi.dtype)], 1)
        gram = design.T @ design
        gram += ridge * len(design) * torch.eye(len(gram), dtype=gram.dtype)
        solution = torch.linalg.solve(gram, design.T @ y.double())  # (m + 1, 1)
        model.mixture_weight.copy_(solution[:-1].T)
        model.bias.copy_(solution[-1])


REFLECT = {"boundary": "reflect"}
# name -> (builder, keyword arguments of init_from_data, or None: no data-aware init)
MODELS = {
    "gmnm_data": (lambda: GMNM(2, 1, n_components=32, n_projections=2), {}),
    "gmnm_random": (lambda: GMNM(2, 1, n_components=32, n_projections=2), None),
    "gmnm_relative": (gmnm_relative, {}),
    # the same, with centres also on the square's edge (data mirrored across it)
    "gmnm_reflect": (gmnm_relative, {"boundary": "reflect"}),
    # the same, starting from the zero function
    "gmnm_zero": (gmnm_zero_start, {"boundary": "reflect"}),
    "tanh_mlp": (lambda: mlp(nn.Tanh, 13), None),
    "relu_mlp": (lambda: mlp(nn.ReLU, 13), None),
    "kan_2_7_1_g5": (lambda: kan([2, 7, 1], 5), None),
    "kan_2_5_1_g10": (lambda: kan([2, 5, 1], 10), None),
    # opt-in (--models): learnt offsets c instead of explicit centres, same budget in 2-D
    "gmnm_fused": (
        lambda: GMNM(2, 1, n_components=32, n_projections=2, explicit_centers=False),
        {},
    ),
    # opt-in: the same budget spent on depth (2 -> 4 -> 1, 235 parameters) or on a
    # learnt 3-D embedding before the Gaussians (220 parameters)
    "gmnm_deep": (
        lambda: GMNMMLP(2, 1, hidden_layer_sizes=(4,), n_components=10),
        {},
    ),
    "gmnm_embed": (lambda: GMNMMLP(2, 1, embedding_dim=3, n_components=21), {}),
    # opt-in: gmnm_zero with one lever changed (see gmnm_zero_lever), at about the
    # same budget: narrower or wider starting Gaussians, ...
    "gmnm_zero_overlap0.35": (gmnm_zero_start, {**REFLECT, "overlap": 0.35}),
    "gmnm_zero_overlap0.7": (gmnm_zero_start, {**REFLECT, "overlap": 0.7}),
    # ... 45 rank-one Gaussians (226 parameters) instead of 32 of rank two, ...
    "gmnm_zero_k1": (gmnm_zero_lever(n_components=45, n_projections=1), REFLECT),
    # ... Adam's steps 3x larger or smaller on one kind of parameter, ...
    **{
        f"gmnm_zero_{kind}_lr{factor:g}x": (
            gmnm_zero_lever(lr_scale=dict.fromkeys(names, factor)),
            REFLECT,
        )
        for kind, names in [
            ("mixture", ("mixture_weight", "bias")),
            ("centres", ("centers",)),
            ("projections", ("weight",)),
        ]
        for factor in (3.0, 0.3)
    },
    # ... mixture weights starting at their least-squares fit, ...
    "gmnm_zero_lstsq": (gmnm_zero_lever(lstsq=True), REFLECT),
    # ... or triangular projections, the saved parameter spent on 37 Gaussians (223
    # parameters) instead of 32 (and, to see the constraint alone, on none: 32, 193)
    "gmnm_zero_triangular": (
        gmnm_zero_lever(n_components=37, triangular=True),
        REFLECT,
    ),
    "gmnm_zero_triangular32": (gmnm_zero_lever(triangular=True), REFLECT),
    # ... or 2 more parameters, on a linear term in the inputs (227 parameters)
    "gmnm_zero_linear": (lambda: WithLinearTerm(gmnm_zero_start()), REFLECT),
}
OPT_IN = (
    "gmnm_fused",
    "gmnm_deep",
    "gmnm_embed",
    *(name for name in MODELS if name.startswith("gmnm_zero_")),
)
DEFAULT_MODELS = [name for name in MODELS if name not in OPT_IN]


def effective_parameters(model, x):
    """Trainable parameters that receive a non-zero gradient on ``x``, less the
    entries a model keeps fixed inside them (``frozen_entries``, see
    :func:`triangularise`)."""
    model.zero_grad(set_to_none=True)
    model(x).square().mean().backward()
    count = sum(
        p.numel()
        for p in model.parameters()
        if p.grad is not None and p.grad.abs().sum() > 0
    )
    model.zero_grad(set_to_none=True)
    return count - getattr(model, "frozen_entries", 0)


def train(name, data, lr, steps, seed):
    x_tr, y_tr, x_val, y_val, x_te, y_te = data
    builder, init = MODELS[name]
    torch.manual_seed(seed)
    model = builder()
    if init is not None:
        model.init_from_data(x_tr, random_state=seed, **init)
    if getattr(model, "least_squares_start", False):
        least_squares_start(model, x_tr, y_tr)
    if getattr(model, "triangular", False):
        triangularise(model)
    lr_scale = getattr(model, "lr_scale", None)
    if lr_scale:  # one parameter group per parameter, each at its own rate
        params = [
            {"params": [p], "lr": lr * lr_scale.get(name, 1.0)}
            for name, p in model.named_parameters()
        ]
    else:
        params = model.parameters()
    opt = torch.optim.Adam(params, lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    curve = []
    start = time.perf_counter()
    for step in range(steps):
        opt.zero_grad(set_to_none=True)
        loss = nn.functional.mse_loss(model(x_tr), y_tr)
        loss.backward()
        opt.step()
        schedule.step()
        if step % max(1, steps // 100) == 0:
            curve.append(loss.item())
    seconds_per_step = (time.perf_counter() - start) / steps
    # counted after training: a model whose mixture weights start at zero passes no
    # gradient to its Gaussians until the first step
    n_params = effective_parameters(model, x_tr)
    with torch.no_grad():
        val = nn.functional.mse_loss(model(x_val), y_val).item()
        prediction = model(x_te)
        test = nn.functional.mse_loss(prediction, y_te).item()
        # where on the test grid the error lies: the interior, or the band along the
        # square's edge (where training points have neighbours on one side only)
        error = (prediction - y_te).square().squeeze(1)
        interior = x_te.abs().amax(dim=1) < INTERIOR
        test_interior = error[interior].mean().item()
        edge_share = (error[~interior].sum() / error.sum()).item()
    if not math.isfinite(val):
        val = test = test_interior = edge_share = float("inf")
    return {
        "val_mse": val,
        "test_mse": test,
        "test_mse_interior": test_interior,
        "edge_share": edge_share,
        "params": n_params,
        "ms_per_step": 1e3 * seconds_per_step,
        "curve": curve,
    }


def geometric_mean(values):
    return float(np.exp(np.mean(np.log(np.maximum(values, 1e-30)))))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a small smoke run")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument(
        "--lrs", type=float, nargs="+", default=[3e-3, 1e-2, 3e-2, 1e-1]
    )
    parser.add_argument("--functions", nargs="+", default=list(FUNCTIONS))
    parser.add_argument(
        "--models", nargs="+", default=DEFAULT_MODELS, choices=list(MODELS)
    )
    parser.add_argument("--n-train", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(RESULTS / "function_approx"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    if args.quick:
        args.steps, args.seeds, args.lrs = 200, 1, [1e-2]
        args.functions = args.functions[:2]
        args.models = [m for m in args.models if not m.startswith("kan")] + [
            "kan_2_7_1_g5"
        ]
    data = {f: make_data(f, args.n_train, 1024, GRID) for f in args.functions}

    # 1. learning rate per model: geometric mean of validation MSE over functions, seed 0
    chosen, sweep = {}, {}
    for model in args.models:
        for lr in args.lrs:
            runs = {
                f: train(model, data[f], lr, args.steps, seed=0) for f in args.functions
            }
            sweep[(model, lr)] = runs
            score = geometric_mean([r["val_mse"] for r in runs.values()])
            print(f"{model:15s} lr={lr:g} val geo-mean MSE {score:.3g}", flush=True)
            if model not in chosen or score < chosen[model][1]:
                chosen[model] = (lr, score)

    # 2. every seed at the chosen rate
    results = {}
    for model in args.models:
        lr = chosen[model][0]
        for f in args.functions:
            runs = [sweep[(model, lr)][f]]
            runs += [
                train(model, data[f], lr, args.steps, seed=s)
                for s in range(1, args.seeds)
            ]
            results[(model, f)] = runs
        print(f"{model:15s} done", flush=True)

    write_results(results, chosen, args)


def write_results(results, chosen, args):
    RESULTS.mkdir(parents=True, exist_ok=True)
    models, functions = args.models, args.functions
    table = {
        (m, f): {
            "median": median([r["test_mse"] for r in runs]),
            "min": min(r["test_mse"] for r in runs),
            "max": max(r["test_mse"] for r in runs),
        }
        for (m, f), runs in results.items()
    }
    params = {m: results[(m, functions[0])][0]["params"] for m in models}
    ms = {
        m: median([r["ms_per_step"] for f in functions for r in results[(m, f)]])
        for m in models
    }
    geo = {
        m: geometric_mean([table[(m, f)]["median"] for f in functions]) for m in models
    }
    # what picks each family's representative: validation MSE at the chosen rate,
    # median over seeds, geometric mean over functions (never the test MSE)
    validation = {
        m: geometric_mean(
            [median([r["val_mse"] for r in results[(m, f)]]) for f in functions]
        )
        for m in models
    }

    lines = [
        "# 2-D function approximation: GMNM vs MLPs vs KAN",
        "",
        f"Command: `{command_line()}`  ",
        f"Machine: {machine()}  ",
        f"Data: {args.n_train} random training points on [-1, 1]^2, 1024 validation points, "
        f"a {GRID}x{GRID} test grid; targets noise-free. Training: full-batch Adam, cosine decay, "
        f"{args.steps} steps, learning rate per model chosen from {args.lrs} on validation "
        f"MSE (seed 0, geometric mean over functions), then {args.seeds} seeds. "
        "Parameters: trainable parameters that receive a gradient.",
        "",
        "## Test MSE, median over seeds [min, max]",
        "",
        "| function | kind | " + " | ".join(models) + " |",
        "|---|---|" + "---|" * len(models),
    ]
    for f in functions:
        best = min(table[(m, f)]["median"] for m in models)
        cells = []
        for m in models:
            t = table[(m, f)]
            text = f"{t['median']:.2e} [{t['min']:.1e}, {t['max']:.1e}]"
            cells.append(f"**{text}**" if t["median"] == best else text)
        lines.append(f"| {f} | {KIND[f]} | " + " | ".join(cells) + " |")
    lines += [
        "| **geometric mean** | | "
        + " | ".join(f"{geo[m]:.2e}" for m in models)
        + " |",
        "| parameters | | " + " | ".join(str(params[m]) for m in models) + " |",
        "| ms per step | | " + " | ".join(f"{ms[m]:.2f}" for m in models) + " |",
        "| learning rate | | " + " | ".join(f"{chosen[m][0]:g}" for m in models) + " |",
        "| validation MSE | | "
        + " | ".join(f"{validation[m]:.2e}" for m in models)
        + " |",
        "",
    ]
    gm = [m for m in models if m.startswith("gmnm")]
    mlps = [m for m in models if m.endswith("mlp")]
    kans = [m for m in models if m.startswith("kan")]
    target = None
    if gm and mlps and kans:
        # each family's representative is chosen on validation MSE, not on test
        g = target = min(gm, key=validation.get)
        best_mlp = min(mlps, key=validation.get)
        best_kan = min(kans, key=validation.get)
        ratio_mlp = geo[g] / geo[best_mlp]
        ratio_kan = geo[g] / geo[best_kan]
        lines += [
            "## Targets",
            "",
            "Each family is represented by its model with the lowest validation MSE "
            "(the table's row: at the model's learning rate, median over seeds, "
            "geometric mean over functions).",
            "",
            f"- GMNM (`{g}`) geometric-mean test MSE / the MLP's (`{best_mlp}`): "
            f"**{ratio_mlp:.3f}x** (target <= 0.2x: {'met' if ratio_mlp <= 0.2 else 'NOT met'})",
            f"- / the KAN's (`{best_kan}`): **{ratio_kan:.3f}x** (target < 1: "
            f"{'met' if ratio_kan < 1 else 'NOT met'}), at {ms[g]:.2f} ms/step against the "
            f"KAN's {ms[best_kan]:.2f} ms/step "
            f"({'met' if ms[g] <= ms[best_kan] else 'NOT met'})",
            seed_bootstrap(results, g, best_kan, functions),
            "- GMNM wins on: "
            + ", ".join(
                f
                for f in functions
                if min(table[(m, f)]["median"] for m in gm)
                <= min(table[(m, f)]["median"] for m in models)
            ),
            "- GMNM loses on: "
            + (
                ", ".join(
                    f"{f} (best: {min(models, key=lambda m: table[(m, f)]['median'])})"
                    for f in functions
                    if min(table[(m, f)]["median"] for m in gm)
                    > min(table[(m, f)]["median"] for m in models)
                )
                or "none"
            ),
            "",
        ]

    if target is not None:
        lines += edge_section(results, target, best_kan, functions)

    def versus(model, other, timed):
        """How often and by how much ``model`` beats ``other``, as the end of a sentence."""
        wins = sum(
            table[(model, f)]["median"] < table[(other, f)]["median"] for f in functions
        )
        text = (
            f"on {wins} of {len(functions)} functions; geometric mean "
            f"{geo[model]:.2e} vs {geo[other]:.2e} ({geo[model] / geo[other]:.2f}x)"
        )
        if timed:
            text += f", at {ms[model]:.2f} vs {ms[other]:.2f} ms per step"
        return text + "."

    if "gmnm_data" in models and "gmnm_random" in models:
        lines += [
            "## Data-aware vs random initialisation",
            "",
            "Data-aware initialisation (k-means centres, widths from centre spacing) gives a "
            "lower median test MSE " + versus("gmnm_data", "gmnm_random", timed=False),
            "",
        ]
    if "gmnm_data" in models and "gmnm_relative" in models:
        lines += [
            "## Projections relative to their starting scale",
            "",
            "`gmnm_relative` (`GMNM(..., relative_projections=True)`: the same layer and "
            "initialisation, Adam's steps on the projections proportional to their "
            "scale) gives a lower median test MSE than `gmnm_data` "
            + versus("gmnm_relative", "gmnm_data", timed=True),
            "",
        ]
    if "gmnm_relative" in models and "gmnm_reflect" in models:
        ratios = {
            f: table[("gmnm_reflect", f)]["median"]
            / table[("gmnm_relative", f)]["median"]
            for f in functions
        }
        worse = ", ".join(f"{f} ({r:.2f}x)" for f, r in ratios.items() if r > 1)
        lines += [
            "## Centres on the edge",
            "",
            "`gmnm_reflect` (`init_from_data(..., boundary='reflect')`: the training "
            "points within one centre spacing of the square's edge are mirrored across "
            "it before k-means, so that some Gaussians sit on and beyond the edge) "
            "gives a lower median test MSE than `gmnm_relative` "
            + versus("gmnm_reflect", "gmnm_relative", timed=False)
            + f" Worse on: {worse or 'none'}: mirrored points take centres from the "
            "interior.",
            "",
        ]
    if "gmnm_reflect" in models and "gmnm_zero" in models:
        lines += [
            "## Mixture weights starting at zero",
            "",
            "`gmnm_zero` (`gmnm_reflect` with its mixture weights and bias set to zero "
            "before training, `torch.nn.init.zeros_`: training starts from the zero "
            "function instead of a random sum of the placed Gaussians) gives a lower "
            "median test MSE than `gmnm_reflect` "
            + versus("gmnm_zero", "gmnm_reflect", timed=False),
            "",
        ]
    levers = [m for m in models if m.startswith("gmnm_zero_")]
    if "gmnm_zero" in models and levers:
        lines += [
            "## Levers tried on `gmnm_zero`",
            "",
            "Each `gmnm_zero_*` model is `gmnm_zero` with one lever changed (see its "
            "entry in `MODELS` in the script): it gives a lower median test MSE than "
            "`gmnm_zero` ...",
            "",
        ]
        lines += [f"- `{m}`: " + versus(m, "gmnm_zero", timed=False) for m in levers]
        lines += [""]
    if "gmnm_data" in models and "gmnm_fused" in models:
        lines += [
            "## Explicit centres vs learnt offsets",
            "",
            "Explicit centres (`gmnm_data`) give a lower median test MSE "
            + versus("gmnm_data", "gmnm_fused", timed=True),
            "",
        ]
    text = "\n".join(lines)
    Path(f"{args.out}.md").write_text(text)
    Path(f"{args.out}.json").write_text(
        json.dumps(
            {
                "command": command_line(),
                "machine": machine(),
                "learning_rates": {m: chosen[m][0] for m in models},
                "validation_mse": {m: chosen[m][1] for m in models},  # seed 0
                "validation_mse_seeds": validation,
                "target_gmnm": target,
                "runs": {f"{m}/{f}": runs for (m, f), runs in results.items()},
            },
            indent=1,
        )
    )
    plot(table, results, models, functions, args.out)
    print(text)


def seed_bootstrap(results, model, other, functions, n_resamples=2000):
    """A Markdown line: how much the ratio of two models' test MSE depends on the seeds.

    Each resample draws, for every model and function, as many seeds as were run (with
    replacement), and recomputes both geometric means of the medians.
    """
    rng = np.random.default_rng(0)
    mse = {
        (m, f): np.array([r["test_mse"] for r in results[(m, f)]])
        for m in (model, other)
        for f in functions
    }

    def resampled_geometric_mean(m):
        return geometric_mean(
            [
                float(np.median(rng.choice(mse[(m, f)], size=len(mse[(m, f)]))))
                for f in functions
            ]
        )

    ratios = np.array(
        [
            resampled_geometric_mean(model) / resampled_geometric_mean(other)
            for _ in range(n_resamples)
        ]
    )
    low, high = np.percentile(ratios, [5, 95])
    return (
        f"- `{model}` / `{other}` over {n_resamples} bootstrap resamples of each "
        f"model's seeds per function: 90% interval {low:.2f}x to {high:.2f}x; below 1 "
        f"in {100 * np.mean(ratios < 1):.0f}% of resamples"
    )


def edge_section(results, gmnm, kan, functions):
    """Markdown lines: how much of each model's test error lies along the edge."""

    def med(model, f, key):
        return median([r[key] for r in results[(model, f)]])

    lin = torch.linspace(-1, 1, GRID)  # the test grid of make_data
    band = 1 - (lin.abs() < INTERIOR).double().mean().item() ** 2
    lines = [
        "## Where the errors lie",
        "",
        f"The test grid's points with max(|x|, |y|) >= {INTERIOR:g} form a band along the "
        f"square's edge ({band:.0%} of the grid), where training points have neighbours "
        "on one side only. Median over seeds of the share of the test error in that "
        "band, and of the test MSE inside it (the interior).",
        "",
        f"| function | edge share {gmnm} | edge share {kan} | interior MSE {gmnm} | "
        f"interior MSE {kan} | interior ratio | whole-grid ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    ratios, whole = [], []
    for f in functions:
        g_in, k_in = med(gmnm, f, "test_mse_interior"), med(kan, f, "test_mse_interior")
        ratio = g_in / k_in
        whole_ratio = med(gmnm, f, "test_mse") / med(kan, f, "test_mse")
        ratios.append(ratio)
        whole.append(whole_ratio)
        lines.append(
            f"| {f} | {med(gmnm, f, 'edge_share'):.0%} | {med(kan, f, 'edge_share'):.0%} "
            f"| {g_in:.2e} | {k_in:.2e} | {ratio:.2f}x | {whole_ratio:.2f}x |"
        )
    lines += [
        f"| **geometric mean** | | | | | {geometric_mean(ratios):.2f}x "
        f"| {geometric_mean(whole):.2f}x |",
        "",
    ]
    return lines


def plot(table, results, models, functions, out):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot (pip install '.[bench]').")
        return
    fig, (ax, ax2) = plt.subplots(
        1, 2, figsize=(14, 4.5), gridspec_kw={"width_ratios": [2, 1]}
    )
    width = 0.8 / len(models)
    xs = np.arange(len(functions))
    for i, m in enumerate(models):
        med = [table[(m, f)]["median"] for f in functions]
        lo = [med[j] - table[(m, f)]["min"] for j, f in enumerate(functions)]
        hi = [table[(m, f)]["max"] - med[j] for j, f in enumerate(functions)]
        ax.bar(xs + i * width, med, width, yerr=[lo, hi], label=m, capsize=2)
    ax.set_yscale("log")
    ax.set_xticks(xs + 0.4 - width / 2)
    ax.set_xticklabels(functions, rotation=30, ha="right")
    ax.set_ylabel("test MSE (median, min-max over seeds)")
    ax.legend(fontsize=8, ncol=2)
    f = functions[0]
    for m in models:
        curve = results[(m, f)][0]["curve"]
        ax2.plot(np.linspace(0, 1, len(curve)), curve, label=m)
    ax2.set_yscale("log")
    ax2.set_xlabel("fraction of training")
    ax2.set_ylabel(f"training MSE ({f}, seed 0)")
    fig.tight_layout()
    fig.savefig(f"{out}.png", dpi=110)


if __name__ == "__main__":
    main()
