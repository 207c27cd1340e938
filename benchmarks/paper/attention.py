"""Attention: a small Transformer on digits read as a sequence of rows, with and without
GMNM.

Each 8x8 digit is a sequence of 8 tokens (its rows, 8 pixels each). Host: a linear token
embedding plus learnt positions, two pre-norm encoder blocks
(``sklearn_gmnm.nn.GMNMTransformerBlock``), a final LayerNorm, mean pooling and a linear
classifier. Variants: the standard block (softmax dot-product attention, ReLU MLP
feed-forward of width 4 d), GMNM feed-forward (``GMNMFeedForward``, the largest
``n_components`` within the MLP's parameters), Gaussian-kernel attention
(``GaussianKernelAttention``), and both. A wider standard model (``d_model`` 40) has at
least the parameters of every variant.

Protocol as in _paper.py (stratified 50/50 split per seed, learning rate per model from
a grid on a validation split of seed 0, Adam, batch 64, fixed epochs).

Usage::

    python benchmarks/paper/attention.py            # writes benchmarks/results/attention.*
    python benchmarks/paper/attention.py --quick    # smoke test
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

from sklearn_gmnm.nn import GMNMTransformerBlock

D_MODEL, WIDE_D_MODEL, N_HEADS, N_BLOCKS = 32, 40, 4, 2


class RowTransformer(nn.Module):
    """Digits as 8 row tokens -> 2 encoder blocks -> mean pool -> 10 logits."""

    def __init__(self, feedforward, attention, n_components=64, d_model=D_MODEL):
        super().__init__()
        self.embed = nn.Linear(8, d_model)
        self.position = nn.Parameter(torch.zeros(8, d_model))
        nn.init.normal_(self.position, std=0.02)
        self.blocks = nn.ModuleList(
            GMNMTransformerBlock(
                d_model,
                N_HEADS,
                feedforward=feedforward,
                attention=attention,
                n_components=n_components,
                explicit_centers=False,
            )
            for _ in range(N_BLOCKS)
        )
        self.norm = nn.LayerNorm(d_model)
        self.classify = nn.Linear(d_model, 10)

    def forward(self, x):  # x: (N, 8, 8) rows of pixels
        h = self.embed(x) + self.position  # (N, 8, d_model)
        for block in self.blocks:
            h = block(h)
        return self.classify(self.norm(h).mean(1))  # (N, 10)


def models():
    budget = count_parameters(RowTransformer("mlp", "dot"))
    out = {
        "transformer": functools.partial(RowTransformer, "mlp", "dot"),
        "transformer_wide": functools.partial(
            RowTransformer, "mlp", "dot", d_model=WIDE_D_MODEL
        ),
        "gaussian_attention": functools.partial(RowTransformer, "mlp", "gaussian"),
    }
    for attention, name in (("dot", "gmnm_ffn"), ("gaussian", "gmnm_ffn_gaussian")):
        m = largest_components(
            lambda m, a=attention: RowTransformer("gmnm", a, m), budget
        )
        out[name] = functools.partial(RowTransformer, "gmnm", attention, m)
    wide = count_parameters(out["transformer_wide"]())
    assert all(count_parameters(f()) <= wide for f in out.values()), "widen the wide"
    return out


def data(seed, validation=False):
    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.5, stratify=y, random_state=seed
    )
    if validation:
        X_train, X_test, y_train, y_test = train_test_split(
            X_train, y_train, test_size=0.25, stratify=y_train, random_state=seed
        )
    mean, std = X_train.mean(), X_train.std()

    def rows(X):
        return torch.tensor((X - mean) / std, dtype=torch.float32).view(-1, 8, 8)

    return rows(X_train), torch.tensor(y_train), rows(X_test), torch.tensor(y_test)


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
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--learning-rates", type=float, nargs="+", default=[1e-3, 3e-3])
    add_run_arguments(parser)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default="attention")
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.epochs, args.learning_rates = 1, 3, [3e-3]
        if args.out == "attention":  # keep the full results; an explicit --out wins
            args.out = "attention_quick"
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
            "n_components": factory.keywords.get("n_components")
            or ((*factory.args, None, None, None))[2],
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
    base = results["transformer"]["seconds_per_epoch"]["mean"]
    lines = [
        "# Attention: a Transformer on digits as sequences of rows, with and without GMNM",
        "",
        f"Command: `{command_line()}`  ",
        f"Machine: {machine()}  ",
        f"{args.seeds} seeds (each its own stratified 50/50 split of the 1,797 digits), "
        f"{args.epochs} epochs of Adam, batch 64, learning rate per model from "
        f"{args.learning_rates} on a validation split of seed 0. Mean ± std "
        "[min, max] over seeds. Time relative to `transformer`.",
        "",
        "| model | feed-forward | attention | n_components | params | lr | "
        "test accuracy | train-test gap | test log-loss | time / epoch |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        ffn = "GMNM" if name.startswith("gmnm") else "ReLU MLP"
        attention = "Gaussian kernel" if "gaussian" in name else "dot product"
        lines.append(
            f"| {name} | {ffn} | {attention} | {r['n_components'] or '-'} | "
            f"{r['params']} | {r['learning_rate']:g} | {fmt(r['test_accuracy'], 4)} | "
            f"{fmt(r['gap'], 3)} | {fmt(r['test_log_loss'], 3)} | "
            f"{r['seconds_per_epoch']['mean'] / base:.2f}x |"
        )
    lines += [
        "",
        f"d_model {D_MODEL} ({WIDE_D_MODEL} for `transformer_wide`), {N_HEADS} heads, "
        f"{N_BLOCKS} pre-norm blocks; the MLP feed-forward is 4 d_model wide; GMNM layers "
        "use fused offsets (`explicit_centers=False`), k = 2.",
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
    ax.set_title("Digits as row sequences: Transformer variants")
    ax.legend()
    fig.tight_layout()
    fig.savefig(output(args.out, ".png"), dpi=110)


if __name__ == "__main__":
    main()
