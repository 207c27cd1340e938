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

import functools

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
        out[f"gmnm_{placement}"] = functools.partial(build, placement, n_components=m)
    wide = count_parameters(out["cnn_wide"]())
    assert all(count_parameters(f()) <= wide for f in out.values()), "widen cnn_wide"
    return out


def run(factory, seed, learning_rate, selecting, epochs):
    data = digits_split(seed, validation=selecting, shape=(1, 8, 8))
    return run_classifier(factory, data, seed, learning_rate, epochs)


def main():
    classification_main(
        __doc__.split("\n")[0],
        models,
        run,
        write_markdown,
        "Digits 8x8: CNN vs GMNM-CNN",
        seeds=5,
        epochs=60,
        learning_rates=[1e-3, 3e-3, 1e-2],
        out="digits_cnn",
    )


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


if __name__ == "__main__":
    main()
