"""Choose the estimators' defaults: successive halving over GMNM settings on every
development dataset of ``tabular.py`` (never per dataset).

A random sample of settings (``SPACE``), plus the current defaults, is scored on every
development dataset with cross-validation; after each round the best third (by mean rank
over the datasets of the primary metric: R2 / accuracy, log-loss breaking ties) goes on
to a round with more folds and more rows:

===== ========== =============== ======
round settings   rows per set     folds
===== ========== =============== ======
1     ``--n``    <= 1,500         2
2     n / 3      <= 4,000         3
3     n / 9      all (<= 10,000)  5
===== ========== =============== ======

Fits run in parallel, one thread each (``--jobs``). Writes
``benchmarks/results/tune_defaults.md`` / ``.json`` with every setting and score.

``--refine`` is a second, local step around the defaults that the halving chose: every
setting that changes *one* knob of the current defaults (``NEIGHBOURS``) is scored like
round 3 (all rows, 5 folds, the folds and seeds of ``tabular.py``), next to
scikit-learn's MLP at its defaults on the same folds. Settings are ordered by the number
of datasets on which they beat that MLP (the tabular benchmark's first target), then by
mean rank. Writes ``tune_defaults_refine.md`` / ``.json``.
Usage::

    python benchmarks/tune_defaults.py            # about 20 minutes on 2 cores
    python benchmarks/tune_defaults.py --refine   # about 30 minutes on 2 cores
    python benchmarks/tune_defaults.py --quick    # a smoke run
"""

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from joblib import Parallel, delayed
from sklearn.pipeline import make_pipeline

sys.path.insert(0, str(Path(__file__).resolve().parent))
import tabular
from _common import RESULTS, command_line, machine

from sklearn_gmnm import GMNMClassifier, GMNMRegressor

SPACE = {
    "n_components": [16, 32, 64, 128],
    "n_projections": [1, 2, 4],
    "hidden_layer_sizes": [(), (16,), (32,), (64,)],
    "embedding_dim": [None, None, 16],
    "learning_rate_init": [3e-4, 1e-3, 3e-3, 1e-2],
    "alpha": [1e-5, 1e-4, 1e-3, 1e-2],
    "batch_size": ["auto", 64, 512],
    "early_stopping": [False, True],
    "max_iter": [100, 200, 400],
    "init": ["data", "random"],
}


# --refine: one knob at a time, around the current defaults
NEIGHBOURS = {
    "n_components": [64, 256],
    "n_projections": [2],
    "embedding_dim": [None, 32],
    "learning_rate_init": [1e-3],
    "alpha": [1e-4, 1e-2],
    "max_iter": [400],
}


def current_defaults():
    params = GMNMRegressor().get_params()
    return {key: params[key] for key in SPACE}


def sample_settings(n, seed):
    rng = np.random.default_rng(seed)
    settings = [current_defaults()]
    seen = {json.dumps(settings[0], sort_keys=True, default=str)}
    while len(settings) < n:
        s = {key: values[rng.integers(len(values))] for key, values in SPACE.items()}
        key = json.dumps(s, sort_keys=True, default=str)
        if key not in seen:
            seen.add(key)
            settings.append(s)
    return settings


def fit_one(setting, dataset, X, y, train, test, seed):
    torch.set_num_threads(1)
    task = tabular.DATASETS[dataset][0]
    Estimator = GMNMRegressor if task == "regression" else GMNMClassifier
    model = make_pipeline(
        tabular.preprocessor(), Estimator(random_state=seed, **setting)
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return tabular.evaluate(
                model, task, X.iloc[train], y.iloc[train], X.iloc[test], y.iloc[test]
            )
        except ValueError as error:  # a diverged fit scores as the worst
            return {"error": str(error).splitlines()[0]}


def neighbour_settings():
    """The current defaults, then each setting that changes one of their knobs."""
    base = current_defaults()
    settings = [base]
    for key, values in NEIGHBOURS.items():
        settings += [{**base, key: v} for v in values if v != base[key]]
    return settings


def mlp_scores(data, folds):
    """scikit-learn's MLP (defaults, as ``tabular.py`` runs it) on the round's folds."""
    scores = {}
    for dataset, (X, y) in data.items():
        task = tabular.DATASETS[dataset][0]
        splits = tabular.make_splits(task, X, y, folds, repeats=1)
        outs, _ = tabular.cross_validate("mlp", task, X, y, splits, quick=False)
        first, _ = tabular.PRIMARY[task]
        scores[dataset] = float(np.mean([o[first] for o in outs]))
    return scores


def score_round(settings, data, rows, folds, jobs):
    """Mean over folds of the primary and secondary metric, per setting and dataset."""
    jobs_list = []
    for dataset, (X, y) in data.items():
        task = tabular.DATASETS[dataset][0]
        if len(X) > rows:
            keep = np.sort(np.random.default_rng(0).choice(len(X), rows, replace=False))
            X, y = (
                X.iloc[keep].reset_index(drop=True),
                y.iloc[keep].reset_index(drop=True),
            )
        splits = tabular.make_splits(task, X, y, folds, repeats=1)
        for f, (train, test) in enumerate(splits):
            for i, s in enumerate(settings):
                jobs_list.append((i, dataset, X, y, train, test, f, s))
    outputs = Parallel(n_jobs=jobs)(
        delayed(fit_one)(s, dataset, X, y, train, test, f)
        for i, dataset, X, y, train, test, f, s in jobs_list
    )
    table = {}
    for (i, dataset, *_), out in zip(jobs_list, outputs, strict=True):
        table.setdefault((i, dataset), []).append(out)
    scores = {}
    for (i, dataset), outs in table.items():
        first, second = tabular.PRIMARY[tabular.DATASETS[dataset][0]]
        if any("error" in o for o in outs):
            scores[(i, dataset)] = (-np.inf, np.inf, np.nan)
            continue
        scores[(i, dataset)] = (
            float(np.mean([o[first] for o in outs])),
            float(np.mean([o[second] for o in outs])),
            float(np.mean([o["fit_s"] for o in outs])),
        )
    return scores


def rank_settings(settings, scores, datasets):
    """Mean rank over datasets: by the primary metric (higher is better), the secondary
    (RMSE / log-loss, lower is better) breaking ties; 1 is best."""
    n = len(settings)
    ranks = []
    for dataset in datasets:
        keys = [(-scores[(i, dataset)][0], scores[(i, dataset)][1]) for i in range(n)]
        order = sorted(range(n), key=lambda i: keys[i])
        rank = np.empty(n)
        rank[order] = np.arange(1, n + 1)
        ranks.append(rank)
    return np.mean(ranks, axis=0)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=27, help="settings in round 1")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--refine", action="store_true", help="one knob at a time around the defaults"
    )
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    if args.out is None:
        name = "tune_defaults_refine" if args.refine else "tune_defaults"
        args.out = str(RESULTS / (name + ("_quick" if args.quick else "")))
    datasets = tabular.QUICK_DATASETS if args.quick else list(tabular.DATASETS)
    rounds = [(1500, 2), (4000, 3), (10_000, 5)]
    if args.quick:
        args.n, rounds = 3, [(300, 2)]
    data = {}
    for dataset in datasets:
        try:
            X, y, _ = tabular.load_dataset(dataset, 10_000)
        except ImportError as error:
            print(f"{dataset}: skipped ({error})")
            continue
        data[dataset] = (X, y)
    datasets = list(data)
    if args.refine:
        return refine(data, datasets, args)

    settings = sample_settings(args.n, args.seed)
    alive = list(range(len(settings)))
    history = []
    for r, (rows, folds) in enumerate(rounds, start=1):
        start = time.perf_counter()
        subset = [settings[i] for i in alive]
        scores = score_round(subset, data, rows, folds, args.jobs)
        mean_rank = rank_settings(subset, scores, datasets)
        history.append(
            {
                "round": r,
                "rows": rows,
                "folds": folds,
                "seconds": time.perf_counter() - start,
                "settings": [
                    {
                        "id": alive[j],
                        "mean_rank": float(mean_rank[j]),
                        "scores": {d: scores[(j, d)][:2] for d in datasets},
                        "fit_s": {d: scores[(j, d)][2] for d in datasets},
                    }
                    for j in range(len(subset))
                ],
            }
        )
        print(f"round {r}: {len(subset)} settings, {time.perf_counter() - start:.0f} s")
        order = np.argsort(mean_rank, kind="stable")
        keep = max(1, len(subset) // 3)
        alive = [alive[j] for j in order[:keep]]
    write(settings, history, datasets, args)


def refine(data, datasets, args):
    folds = 2 if args.quick else 5
    rows = 300 if args.quick else 10_000
    settings = neighbour_settings()
    if args.quick:
        settings = settings[:2]
        data = {
            d: (
                X.iloc[:rows].reset_index(drop=True),
                y.iloc[:rows].reset_index(drop=True),
            )
            for d, (X, y) in data.items()
        }
    start = time.perf_counter()
    scores = score_round(settings, data, rows, folds, args.jobs)
    mlp = mlp_scores(data, folds)
    mean_rank = rank_settings(settings, scores, datasets)
    beats = [
        [d for d in datasets if scores[(i, d)][0] > mlp[d]]
        for i in range(len(settings))
    ]
    order = sorted(range(len(settings)), key=lambda i: (-len(beats[i]), mean_rank[i]))
    base = settings[0]
    lines = [
        "# Refining the defaults: one knob at a time",
        "",
        f"Command: `{command_line()}`  ",
        f"Machine: {machine()}  ",
        f"Up to {rows:,} rows per dataset (all of them: none is larger), {folds} folds "
        "(the folds and seeds of `tabular.py`), "
        f"{(time.perf_counter() - start) / 60:.0f} min. Setting 0 is the defaults at the "
        f"time of the run: `{base}`. Every other setting changes one knob. Ordered by "
        "the number of datasets where the setting beats scikit-learn's MLP (defaults, "
        "same folds) on the primary metric (R2 / accuracy), then by mean rank among "
        "these settings. Bold: beats the MLP.",
        "",
        "| setting | change | beats MLP | mean rank | " + " | ".join(datasets) + " |",
        "|---|---|---|---|" + "---|" * len(datasets),
        "| MLP | scikit-learn defaults | | | "
        + " | ".join(f"{mlp[d]:.4f}" for d in datasets)
        + " |",
    ]
    for i in order:
        change = (
            ", ".join(f"{k}={v!r}" for k, v in settings[i].items() if v != base[k])
            or "(defaults)"
        )
        cells = " | ".join(
            f"**{scores[(i, d)][0]:.4f}**"
            if d in beats[i]
            else f"{scores[(i, d)][0]:.4f}"
            for d in datasets
        )
        lines.append(
            f"| {i} | {change} | {len(beats[i])}/{len(datasets)} | "
            f"{mean_rank[i]:.2f} | {cells} |"
        )
    lines += [
        "",
        "Mean fit seconds per fold: "
        + "; ".join(
            f"setting {i}: "
            + f"{np.nanmean([scores[(i, d)][2] for d in datasets]):.1f}"
            for i in order
        ),
        "",
    ]
    write_report(
        args.out,
        lines,
        {
            "settings": settings,
            "mlp": mlp,
            "scores": {
                f"{i}/{d}": scores[(i, d)]
                for i in range(len(settings))
                for d in datasets
            },
            "mean_rank": [float(r) for r in mean_rank],
        },
    )


def write_report(out, lines, payload):
    """``out``.md from the report's lines; ``out``.json with the command, the machine
    and ``payload``."""
    Path(f"{out}.md").write_text("\n".join(lines) + "\n")
    Path(f"{out}.json").write_text(
        json.dumps(
            {"command": command_line(), "machine": machine(), **payload},
            indent=1,
            default=str,
        )
    )
    print("\n".join(lines))


def write(settings, history, datasets, args):
    best = history[-1]["settings"]
    best = min(best, key=lambda s: s["mean_rank"])["id"]
    lines = [
        "# Choosing the defaults: successive halving over GMNM settings",
        "",
        f"Command: `{command_line()}`  ",
        f"Machine: {machine()}  ",
        "Every setting is scored on every development dataset; ranks per dataset by the "
        "primary metric (R2 / accuracy), mean over datasets; the best third goes on. "
        "Setting 0 is the defaults at the time of the run.",
        "",
        f"**Winner: setting {best}**: `{settings[best]}`",
        "",
    ]
    for h in history:
        lines += [
            f"## Round {h['round']}: <= {h['rows']} rows per dataset, {h['folds']} folds "
            f"({h['seconds'] / 60:.0f} min)",
            "",
            "| setting | mean rank | " + " | ".join(datasets) + " | parameters |",
            "|---|---|" + "---|" * len(datasets) + "---|",
        ]
        for s in sorted(h["settings"], key=lambda s: s["mean_rank"]):
            cells = " | ".join(f"{s['scores'][d][0]:.4f}" for d in datasets)
            lines.append(
                f"| {s['id']} | {s['mean_rank']:.2f} | {cells} | `{settings[s['id']]}` |"
            )
        lines.append("")
    write_report(args.out, lines, {"settings": settings, "history": history})


if __name__ == "__main__":
    main()
