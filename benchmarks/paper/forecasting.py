"""Forecasting real series (statsmodels, offline): LSTM vs GMNM-LSTM.

The paper reports gains from GMNM in LSTMs for time-series forecasting. Series: yearly
sunspot numbers (309 years) or monthly changes of the Mauna Loa CO2 concentration (525
months; the weekly series averaged by month, gaps interpolated, differenced to remove
the trend). Task: from the last 24 steps, predict the next 12 (one direct multi-output
forecast), series standardised on the training part. The first 70% of the series
trains, the rest tests (windows whose targets lie in the test part). Host: a one-layer LSTM (hidden 32) whose
last state goes through an MLP readout (32 -> 32 -> ReLU -> 12). GMNM goes in the
readout (``GMNM(32, 12)`` in place of the MLP), in the cell's candidate or in all its
gates (``sklearn_gmnm.nn.GMNMLSTM``); each variant gets the largest ``n_components``
within the baseline's parameters. A wider LSTM has at least the parameters of all.

Protocol as in _paper.py, with early stopping: the last 20% of the training windows
validate, and each run keeps the weights of its best validation epoch (without it every
network overfits the 145 sunspot training windows, test MSE above that of predicting the
mean).
Learning rate per model by seed 0's validation MSE; Adam, batch 32; mean and spread over
seeds. A ridge regression on the same windows is a linear reference.
Test MSE is in units of the training series' variance, at horizons 1, 3, 6 and 12.

Usage::

    python benchmarks/paper/forecasting.py                # results/forecasting.*
    python benchmarks/paper/forecasting.py --series co2   # results/forecasting_co2.*
    python benchmarks/paper/forecasting.py --quick        # smoke test
"""

import argparse
import functools
import json

import numpy as np
import torch
from _paper import (
    add_benchmark_arguments,
    command_line,
    compare_models,
    count_parameters,
    finish_arguments,
    fmt,
    largest_components,
    machine,
    output,
    train_supervised,
    write_json,
)
from torch import nn

from sklearn_gmnm.nn import GMNM, GMNMLSTM

WINDOW, HORIZON, HIDDEN, WIDE_HIDDEN = 24, 12, 32, 40
HORIZONS = (1, 3, 6, 12)
TITLES = {
    "sunspots": "yearly sunspots",
    "co2": "monthly changes of Mauna Loa CO2",
}


class Forecaster(nn.Module):
    """(N, WINDOW, 1) past values -> (N, HORIZON) future values."""

    def __init__(self, cell="lstm", readout="mlp", n_components=16, hidden=HIDDEN):
        super().__init__()
        self.cell = cell
        if cell == "lstm":
            self.lstm = nn.LSTM(1, hidden, batch_first=True)
        else:  # 'candidate' or 'gates'
            self.lstm = GMNMLSTM(
                1,
                hidden,
                n_components=n_components,
                placement=cell,
                explicit_centers=False,
            )
        if readout == "gmnm":
            self.readout = GMNM(
                hidden, HORIZON, n_components=n_components, explicit_centers=False
            )
        else:
            self.readout = nn.Sequential(
                nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, HORIZON)
            )

    def forward(self, x):
        output, _ = self.lstm(x)  # (N, WINDOW, hidden)
        return self.readout(output[:, -1])  # (N, HORIZON)


def models():
    budget = count_parameters(Forecaster())
    out = {
        "lstm": functools.partial(Forecaster),
        "lstm_wide": functools.partial(Forecaster, hidden=WIDE_HIDDEN),
    }
    for name, cell, readout in (
        ("gmnm_readout", "lstm", "gmnm"),
        ("gmnm_candidate", "candidate", "mlp"),
        ("gmnm_gates", "gates", "mlp"),
    ):
        m = largest_components(lambda m, c=cell, r=readout: Forecaster(c, r, m), budget)
        out[name] = functools.partial(Forecaster, cell, readout, n_components=m)
    wide = count_parameters(out["lstm_wide"]())
    assert all(count_parameters(f()) <= wide for f in out.values()), "widen lstm_wide"
    return out


def windows(series, first_target, last_target):
    """Inputs (N, WINDOW, 1) and targets (N, HORIZON) whose targets start at
    ``first_target`` or later and end before ``last_target``."""
    starts = range(max(first_target, WINDOW), last_target - HORIZON + 1)
    X = np.stack([series[t - WINDOW : t] for t in starts])
    y = np.stack([series[t : t + HORIZON] for t in starts])
    return torch.tensor(X, dtype=torch.float32).unsqueeze(-1), torch.tensor(
        y, dtype=torch.float32
    )


def load_series(name):
    """The raw series: yearly sunspot numbers, or monthly changes of Mauna Loa CO2."""
    import statsmodels.api as sm

    if name == "sunspots":
        return sm.datasets.sunspots.load_pandas().data["SUNACTIVITY"].to_numpy(float)
    co2 = sm.datasets.co2.load_pandas().data["co2"]
    monthly = co2.interpolate().resample("MS").mean().dropna()  # 1958-03 .. 2001-12
    return np.diff(monthly.to_numpy(float))  # stationary: trend removed, season kept


@functools.cache
def data(name="sunspots"):
    """Train, validation and test windows: the training part's windows split 80/20 in
    time order (validation for early stopping and the learning rate), the rest test."""
    raw = load_series(name)
    split = int(0.7 * len(raw))
    series = (raw - raw[:split].mean()) / raw[:split].std()
    X_fit, y_fit = windows(series, 0, split)
    cut = int(0.8 * len(X_fit))
    X_test, y_test = windows(series, split, len(series))
    return (X_fit[:cut], y_fit[:cut]), (X_fit[cut:], y_fit[cut:]), (X_test, y_test)


def ridge_reference(name):
    """Test MSE of a ridge regression on the same windows (a linear AR reference)."""
    from sklearn.linear_model import RidgeCV

    (X, y), _, (X_test, y_test) = data(name)
    model = RidgeCV(alphas=np.logspace(-3, 3, 13)).fit(X[..., 0].numpy(), y.numpy())
    squared = ((model.predict(X_test[..., 0].numpy()) - y_test.numpy()) ** 2).mean(0)
    return {"test_mse": float(squared.mean())} | {
        f"test_mse_h{h}": float(squared[h - 1]) for h in HORIZONS
    }


def forecast_metrics(model, X, y):
    squared = (model(X) - y).square().mean(0)  # (HORIZON,)
    out = {"mse": squared.mean().item()}
    out.update({f"mse_h{h}": squared[h - 1].item() for h in HORIZONS})
    return out


def run(factory, seed, learning_rate, selecting, epochs, series):
    # ``selecting`` needs nothing special: every run keeps its best validation epoch,
    # and the learning rate is chosen by that validation MSE.
    torch.manual_seed(seed)
    model = factory()
    train, valid, test = data(series)
    result = train_supervised(
        model,
        *train,
        *test,
        loss_fn=nn.functional.mse_loss,
        epochs=epochs,
        learning_rate=learning_rate,
        batch_size=32,
        seed=seed,
        metrics=forecast_metrics,
        valid=valid,
        valid_key="mse",
    )
    return {
        **{f"test_{k}": v for k, v in result["eval"].items()},
        "valid_mse": result["valid"],
        "best_epoch": result["best_epoch"],
        "train_mse": result["train"]["mse"],
        "seconds_per_epoch": result["seconds_per_epoch"],
        "curve": [c["mse"] for c in result["curve"]],
        "params": count_parameters(model),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_benchmark_arguments(
        parser,
        seeds=5,
        epochs=150,
        learning_rates=[1e-3, 3e-3, 1e-2],
        out=None,  # forecasting, or forecasting_co2
    )
    parser.add_argument("--series", choices=["sunspots", "co2"], default="sunspots")
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="rewrite the markdown table and plot from the JSON results of --out",
    )
    args = parser.parse_args()
    if args.out is None:
        args.out = "forecasting" + ("" if args.series == "sunspots" else "_co2")
    if args.report_only:
        saved = json.loads(output(args.out, ".json").read_text())
        args.seeds, args.epochs = saved["seeds"], saved["epochs"]
        args.learning_rates = saved.get("learning_rates", args.learning_rates)
        results, reference = saved["results"], saved["ridge"]
        write_markdown(args, results, reference, command=saved["command"])
        plot(args, results)
        return
    finish_arguments(args)
    keys = [
        "test_mse",
        *(f"test_mse_h{h}" for h in HORIZONS),
        "train_mse",
        "best_epoch",
    ]
    results = compare_models(
        models(),
        functools.partial(run, epochs=args.epochs, series=args.series),
        args,
        select_key="valid_mse",
        summary_keys=keys,
    )
    reference = ridge_reference(args.series)
    write_json(
        args.out,
        {
            "series": args.series,
            "learning_rates": args.learning_rates,
            "epochs": args.epochs,
            "seeds": args.seeds,
            "results": results,
            "ridge": reference,
        },
    )
    write_markdown(args, results, reference)
    plot(args, results)


def write_markdown(args, results, reference, command=None):
    base = results["lstm"]["seconds_per_epoch"]["mean"]
    lines = [
        f"# Forecasting {TITLES[args.series]}: LSTM vs GMNM-LSTM",
        "",
        f"Command: `{command or command_line()}`  ",
        f"Machine: {machine()}  ",
        f"{args.seeds} seeds, up to {args.epochs} epochs of Adam, batch 32, the epoch "
        "with the lowest validation MSE kept (the last 20% of the training windows), "
        f"learning rate per model from {args.learning_rates} by seed 0's validation "
        "MSE. Test MSE in "
        "units of the training series' variance (mean ± std [min, max] over seeds); "
        f"window {WINDOW} steps, direct forecast of the next {HORIZON}. Time relative "
        "to `lstm`.",
        "",
        "| model | n_components | params | lr | test MSE (all horizons) | "
        + " | ".join(f"h={h}" for h in HORIZONS)
        + " | train MSE | best epoch | time / epoch |",
        "|---|---|---|---|---|" + "---|" * len(HORIZONS) + "---|---|---|",
    ]
    for name, r in results.items():
        lines.append(
            f"| {name} | {r['n_components'] or '-'} | {r['params']} | "
            f"{r['learning_rate']:g} | {fmt(r['test_mse'], 3)} | "
            + " | ".join(
                f"{r[f'test_mse_h{h}']['mean']:.3g} ± {r[f'test_mse_h{h}']['std']:.2g}"
                for h in HORIZONS
            )
            + f" | {r['train_mse']['mean']:.3f} | {r['best_epoch']['mean']:.0f} | "
            f"{r['seconds_per_epoch']['mean'] / base:.2f}x |"
        )
    lines.append(
        f"| ridge (reference, not a host) | - | {WINDOW * HORIZON + HORIZON} | - | "
        f"{reference['test_mse']:.3f} | "
        + " | ".join(f"{reference[f'test_mse_h{h}']:.3f}" for h in HORIZONS)
        + " | - | - | - |"
    )
    lines += [
        "",
        f"`lstm`: torch.nn.LSTM, hidden {HIDDEN}, MLP readout; `lstm_wide`: hidden "
        f"{WIDE_HIDDEN}. `gmnm_readout`: GMNM readout; `gmnm_candidate`, `gmnm_gates`: "
        "GMNMLSTM cells (a Python loop over time steps, hence their time). GMNM layers "
        "use fused offsets (`explicit_centers=False`), k = 2.",
    ]
    output(args.out, ".md").write_text("\n".join(lines) + "\n")


def plot(args, results):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, r in results.items():
        means = [r[f"test_mse_h{h}"]["mean"] for h in HORIZONS]
        stds = [r[f"test_mse_h{h}"]["std"] for h in HORIZONS]
        ax.errorbar(HORIZONS, means, yerr=stds, label=name, marker="o", capsize=3)
    ax.set_xlabel("forecast horizon (steps)")
    ax.set_ylabel("test MSE (standardised units)")
    ax.set_title(f"{TITLES[args.series]}: LSTM vs GMNM-LSTM")
    ax.legend()
    fig.tight_layout()
    fig.savefig(output(args.out, ".png"), dpi=110)


if __name__ == "__main__":
    main()
