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

import functools

import torch
from _paper import (
    classification_main,
    command_line,
    count_parameters,
    digits_split,
    fmt,
    largest_components,
    machine,
    output,
    run_classifier,
)
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
        out[name] = functools.partial(RowTransformer, "gmnm", attention, n_components=m)
    wide = count_parameters(out["transformer_wide"]())
    assert all(count_parameters(f()) <= wide for f in out.values()), "widen the wide"
    return out


def run(factory, seed, learning_rate, selecting, epochs):
    data = digits_split(seed, validation=selecting, shape=(8, 8))
    return run_classifier(factory, data, seed, learning_rate, epochs)


def main():
    classification_main(
        __doc__.split("\n")[0],
        models,
        run,
        write_markdown,
        "Digits as row sequences: Transformer variants",
        seeds=3,
        epochs=50,
        learning_rates=[1e-3, 3e-3],
        out="attention",
    )


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


if __name__ == "__main__":
    main()
