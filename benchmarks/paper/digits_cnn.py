"""Image classification on scikit-learn's 8x8 digits: CNN vs GMNM-CNN.

The paper claims GMNM in CNNs gives higher accuracy and less overfitting. Host: two conv
blocks (Conv 3x3 -> BatchNorm -> ReLU -> MaxPool) and a linear head
(``sklearn_gmnm.nn.GMNMConvNet``). GMNM goes in the head, the convolutions, or both;
each GMNM variant gets the largest ``n_components`` whose parameter count is at most the
baseline's. Baselines: the plain CNN at the same channel widths, and a wider plain CNN
with at least as many parameters as every GMNM variant.

Protocol (see _paper.py): each seed draws its own stratified 50/50 train/test split (a
small training set, where overfitting shows); learning rate per model from a grid on a
validation split of seed 0; Adam, batch 64, fixed epochs; mean and spread over seeds.

Usage::

    python benchmarks/paper/digits_cnn.py            # writes benchmarks/results/digits_cnn.*
    python benchmarks/paper/digits_cnn.py --quick    # 1 seed, few epochs (smoke test)
"""

import argparse
import functools

import numpy as np
import torch
from _paper import (
    add_run_arguments,
    choose_learning_rate,
    classification_metrics,
    command_line,
    configure,
    count_parameters,
    fmt,
    largest_components,
    machine,
    output,
    spread,
    train_supervised,
    write_json,
)
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

from sklearn_gmnm.nn import GMNMConvNet

CHANNELS = (16, 32)
WIDE_CHANNELS = (24, 48)


def build(placement, n_components=16, channels=CHANNELS):
    return GMNMConvNet(
        1,
        10,
        image_size=(8, 8),
        channels=channels,
        placement=placement,
        n_components=n_components,
        explicit_centers=False,
    )


def models():
    """name -> factory(), with GMNM variants sized to the baseline's parameters."""
    budget = count_parameters(build(None))
    out = {
        "cnn": functools.partial(build, None),
        "cnn_wide": functools.partial(build, None, channels=WIDE_CHANNELS),
    }
    for placement in ("head", "conv", "both"):
        m = largest_components(lambda m, p=placement: build(p, m), budget)
        out[f"gmnm_{placement}"] = functools.partial(build, placement, m)
    wide = count_parameters(out["cnn_wide"]())
    assert all(count_parameters(f()) <= wide for f in out.values()), "widen cnn_wide"
    return out


def data(seed, validation=False):
    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.5, stratify=y, random_state=seed
    )
    if validation:  # seed 0's training half, split again: for the learning rate only
        X_train, X_test, y_train, y_test = train_test_split(
            X_train, y_train, test_size=0.25, stratify=y_train, random_state=seed
        )
    mean, std = X_train.mean(), X_train.std()

    def images(X):
        return torch.tensor((X - mean) / std, dtype=torch.float32).view(-1, 1, 8, 8)

    return (
        images(X_train),
        torch.tensor(y_train),
        images(X_test),
        torch.tensor(y_test),
    )


def run(factory, seed, learning_rate, epochs, validation=False):
    torch.manual_seed(seed)
    model = factory()
    result = train_supervised(
        model,
        *data(seed, validation),
        loss_fn=nn.functional.cross_entropy,
        epochs=epochs,
        learning_rate=learning_rate,
        batch_size=64,
        seed=seed,
        metrics=classification_metrics,
    )
    return {
        "train_accuracy": result["train"]["accuracy"],
        "test_accuracy": result["eval"]["accuracy"],
        "test_log_loss": result["eval"]["log_loss"],
        "gap": result["train"]["accuracy"] - result["eval"]["accuracy"],
        "seconds_per_epoch": result["seconds_per_epoch"],
        "curve": [c["accuracy"] for c in result["curve"]],
        "params": count_parameters(model),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument(
        "--learning-rates", type=float, nargs="+", default=[1e-3, 3e-3, 1e-2]
    )
    add_run_arguments(parser)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default="digits_cnn")
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.epochs, args.learning_rates = 1, 3, [3e-3]
        if args.out == "digits_cnn":  # keep the full results; an explicit --out wins
            args.out = "digits_cnn_quick"
    configure(args)

    results = {}
    for name, factory in models().items():
        lr, lr_scores = choose_learning_rate(
            lambda lr, f=factory: run(f, 0, lr, args.epochs, validation=True),
            args.learning_rates,
            key="test_log_loss",
        )
        runs = [run(factory, seed, lr, args.epochs) for seed in range(args.seeds)]
        results[name] = {
            "learning_rate": lr,
            "validation_log_loss": lr_scores,
            "params": runs[0]["params"],
            "n_components": ((*factory.args, None))[1],
            "runs": runs,
            **{
                key: spread([r[key] for r in runs])
                for key in ("test_accuracy", "train_accuracy", "gap", "test_log_loss")
            },
            "seconds_per_epoch": spread([r["seconds_per_epoch"] for r in runs]),
        }
        print(name, results[name]["test_accuracy"]["mean"], flush=True)
    write_json(
        args.out, {"epochs": args.epochs, "seeds": args.seeds, "results": results}
    )
    write_markdown(args, results)
    plot(args, results)


def write_markdown(args, results):
    base = results["cnn"]["seconds_per_epoch"]["mean"]
    lines = [
        "# Digits (8x8) image classification: CNN vs GMNM-CNN",
        "",
        f"Command: `{command_line()}`  ",
        f"Machine: {machine()}  ",
        f"{args.seeds} seeds (each its own stratified 50/50 split of the 1,797 images), "
        f"{args.epochs} epochs of Adam, batch 64, learning rate per model chosen from "
        f"{args.learning_rates} on a validation split of seed 0. Mean ± std [min, max] "
        "over seeds. Gap = train accuracy - test accuracy (overfitting). Time relative "
        "to `cnn`.",
        "",
        "| model | n_components | params | lr | test accuracy | train-test gap | "
        "test log-loss | time / epoch |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        lines.append(
            f"| {name} | {r['n_components'] or '-'} | {r['params']} | "
            f"{r['learning_rate']:g} | {fmt(r['test_accuracy'], 4)} | "
            f"{fmt(r['gap'], 3)} | {fmt(r['test_log_loss'], 3)} | "
            f"{r['seconds_per_epoch']['mean'] / base:.2f}x |"
        )
    lines += [
        "",
        "`cnn`: channels (16, 32); `cnn_wide`: channels (24, 48), at least as many "
        "parameters as every GMNM variant. `gmnm_head`: BatchNorm1d + GMNM head; "
        "`gmnm_conv`: GMNMConv2d in place of Conv2d + ReLU; `gmnm_both`: both. GMNM "
        "layers use fused offsets (`explicit_centers=False`), k = 2.",
    ]
    output(args.out, ".md").write_text("\n".join(lines) + "\n")


def plot(args, results):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, r in results.items():
        curves = np.array([run["curve"] for run in r["runs"]])
        x = np.linspace(args.epochs / curves.shape[1], args.epochs, curves.shape[1])
        ax.plot(x, curves.mean(0), label=name, marker="o", ms=3)
    ax.set_xlabel("epoch")
    ax.set_ylabel("test accuracy (mean over seeds)")
    ax.set_title("Digits 8x8: CNN vs GMNM-CNN")
    ax.legend()
    fig.tight_layout()
    fig.savefig(output(args.out, ".png"), dpi=110)


if __name__ == "__main__":
    main()
