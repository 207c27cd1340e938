"""Helpers shared by the paper-claim benchmarks (benchmarks/paper/*.py).

Every benchmark compares a host architecture with and without GMNM under one protocol:
the same optimiser (Adam), the same epochs and batches, the learning rate of each model
chosen from the same small grid on a validation split of seed 0 (never on test data),
then every seed trained on the full training split and scored on the test split.

Every script takes ``--threads`` and ``--device`` (e.g. ``--device cuda --out
digits_cnn_gpu`` on a GPU machine: the time per epoch then includes GPU synchronisation,
and the results file names the GPU).
"""

import copy
import json
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import _common
from _common import RESULTS, command_line, count_parameters

# The device every benchmark runs on; set from --device by configure().
DEVICE = torch.device("cpu")

__all__ = [
    "CLASSIFICATION_KEYS",
    "RESULTS",
    "add_benchmark_arguments",
    "add_run_arguments",
    "choose_learning_rate",
    "command_line",
    "compare_models",
    "configure",
    "count_parameters",
    "digits_split",
    "finish_arguments",
    "fmt",
    "largest_components",
    "machine",
    "output",
    "plot_accuracy_curves",
    "run_classifier",
    "spread",
    "train_supervised",
    "write_json",
]


def add_run_arguments(parser):
    """--threads and --device, shared by every paper benchmark."""
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for torch")
    parser.add_argument(
        "--device", default="cpu", help="torch device to train on, e.g. 'cuda'"
    )


def add_benchmark_arguments(parser, *, seeds, epochs, learning_rates, out):
    """The arguments of the epoch-based benchmarks (digits CNN, attention, forecasting):
    --seeds, --epochs, --learning-rates, --threads, --device, --quick and --out."""
    parser.add_argument("--seeds", type=int, default=seeds)
    parser.add_argument("--epochs", type=int, default=epochs)
    parser.add_argument(
        "--learning-rates", type=float, nargs="+", default=learning_rates
    )
    add_run_arguments(parser)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=out)


def finish_arguments(args):
    """Apply --quick (1 seed, 3 epochs, one learning rate, results under a ``_quick``
    name unless --out is a path), then --threads and --device."""
    if args.quick:
        args.seeds, args.epochs, args.learning_rates = 1, 3, [3e-3]
        if "/" not in args.out:  # keep the full results; an explicit path wins
            args.out += "_quick"
    configure(args)


def configure(args):
    """Apply --threads and --device (an error if the device is not available)."""
    global DEVICE
    torch.set_num_threads(args.threads)
    DEVICE = torch.device(args.device)
    if DEVICE.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"--device {args.device}: no CUDA device is available here.")


def machine():
    """The machine line of a results file, with the GPU's name when one is used."""
    line = _common.machine()
    if DEVICE.type == "cuda":
        line += f", device {torch.cuda.get_device_name(DEVICE)}"
    return line


def synchronize():
    """Wait for queued GPU work, so that wall-clock timings are complete."""
    if DEVICE.type == "cuda":
        torch.cuda.synchronize(DEVICE)


def spread(values):
    """Mean, standard deviation, min and max of a list of numbers."""
    values = [float(v) for v in values]
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return {
        "mean": statistics.fmean(values),
        "std": std,
        "min": min(values),
        "max": max(values),
        "values": values,
    }


def largest_components(build, budget, low=1, high=4096):
    """The largest ``n_components`` whose model ``build(m)`` has <= ``budget``
    trainable parameters (parameters grow with m)."""
    if count_parameters(build(low)) > budget:
        raise ValueError(f"even n_components={low} exceeds {budget} parameters")
    while low < high:
        mid = (low + high + 1) // 2
        if count_parameters(build(mid)) <= budget:
            low = mid
        else:
            high = mid - 1
    return low


def train_supervised(
    model,
    X_train,
    y_train,
    X_eval,
    y_eval,
    *,
    loss_fn,
    epochs,
    learning_rate,
    batch_size,
    seed,
    metrics,
    valid=None,
    valid_key=None,
):
    """Adam on mini-batches for ``epochs``; returns scores on train and eval data.

    ``metrics(model, X, y)`` returns a dict of scores (the model in eval mode, no
    gradients). With ``valid = (X_valid, y_valid)``, the weights of the epoch with the
    lowest ``metrics(...)[valid_key]`` on it are restored at the end (early stopping
    by checkpoint). Returns ``{'train': ..., 'eval': ..., 'valid': best validation
    score or None, 'best_epoch': ..., 'seconds_per_epoch': ..., 'curve': [eval
    metrics every 10% of the epochs]}``. Raises FloatingPointError if the loss
    diverges.
    """
    model.to(DEVICE)
    X_train, y_train, X_eval, y_eval = (
        t.to(DEVICE) for t in (X_train, y_train, X_eval, y_eval)
    )
    if valid is not None:
        valid = tuple(t.to(DEVICE) for t in valid)
    generator = torch.Generator().manual_seed(seed)  # CPU: the same order everywhere
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
    n = len(X_train)
    seconds = 0.0
    curve = []
    every = max(epochs // 10, 1)
    best_score, best_state, best_epoch = math.inf, None, epochs
    for epoch in range(epochs):
        model.train()
        start = time.perf_counter()
        synchronize()
        order = torch.randperm(n, generator=generator).to(DEVICE)
        for begin in range(0, n, batch_size):
            rows = order[begin : begin + batch_size]
            optimizer.zero_grad()
            loss = loss_fn(model(X_train[rows]), y_train[rows])
            loss.backward()
            optimizer.step()
        synchronize()
        seconds += time.perf_counter() - start
        if not math.isfinite(loss.item()):
            raise FloatingPointError(f"loss {loss.item()} at epoch {epoch}")
        if valid is not None:
            score = _score(model, metrics, *valid)[valid_key]
            if score < best_score:
                best_score, best_epoch = score, epoch + 1
                best_state = copy.deepcopy(model.state_dict())
        if (epoch + 1) % every == 0:
            curve.append(_score(model, metrics, X_eval, y_eval))
    if best_state is not None:
        model.load_state_dict(best_state)
    return {
        "train": _score(model, metrics, X_train, y_train),
        "eval": _score(model, metrics, X_eval, y_eval),
        "valid": None if valid is None else best_score,
        "best_epoch": best_epoch,
        "seconds_per_epoch": seconds / epochs,
        "curve": curve,
    }


def _score(model, metrics, X, y):
    model.eval()
    with torch.no_grad():
        return metrics(model, X, y)


def choose_learning_rate(run, learning_rates, key, lower_is_better=True):
    """The learning rate whose ``run(learning_rate)[key]`` is best (seed-0 validation
    run); returns (best rate, {rate: score})."""
    scores = {}
    for lr in learning_rates:
        try:
            scores[lr] = float(run(lr)[key])
        except FloatingPointError:
            scores[lr] = math.inf if lower_is_better else -math.inf
    pick = min if lower_is_better else max
    return pick(scores, key=scores.get), scores


def compare_models(models, run, args, select_key, summary_keys):
    """Every model under the same protocol; returns {name: summary}.

    ``models`` maps names to factories (``functools.partial`` objects; a GMNM one
    carries ``n_components`` as a keyword). ``run(factory, seed, learning_rate,
    selecting)`` trains once and returns a dict of scores; ``selecting`` is True for the
    seed-0 runs that choose the learning rate by ``select_key`` (lower is better).
    """
    results = {}
    for name, factory in models.items():
        lr, lr_scores = choose_learning_rate(
            lambda lr, f=factory: run(f, 0, lr, True), args.learning_rates, select_key
        )
        runs = [run(factory, seed, lr, False) for seed in range(args.seeds)]
        results[name] = {
            "learning_rate": lr,
            "learning_rate_scores": lr_scores,  # seed 0, validation {select_key}
            "params": runs[0]["params"],
            "n_components": factory.keywords.get("n_components"),
            "runs": runs,
            **{key: spread([r[key] for r in runs]) for key in summary_keys},
            "seconds_per_epoch": spread([r["seconds_per_epoch"] for r in runs]),
        }
        print(name, {k: results[name][k]["mean"] for k in summary_keys[:1]}, flush=True)
    return results


def classification_main(
    description, models, run, write_markdown, plot_title, **defaults
):
    """The whole ``main()`` of a digits classification benchmark (CNN, attention):
    arguments (``defaults``: seeds, epochs, learning_rates, out), the comparison chosen
    by test log-loss, then the JSON, the markdown (``write_markdown(args, results)``) and
    the accuracy plot. ``models()`` is called after --threads and --device apply."""
    import argparse
    import functools

    parser = argparse.ArgumentParser(description=description)
    add_benchmark_arguments(parser, **defaults)
    args = parser.parse_args()
    finish_arguments(args)
    results = compare_models(
        models(),
        functools.partial(run, epochs=args.epochs),
        args,
        select_key="test_log_loss",
        summary_keys=CLASSIFICATION_KEYS,
    )
    write_json(
        args.out, {"epochs": args.epochs, "seeds": args.seeds, "results": results}
    )
    write_markdown(args, results)
    plot_accuracy_curves(args, results, plot_title)


def digits_split(seed, validation, shape):
    """scikit-learn's 8x8 digits, standardised, as (X_train, y_train, X_eval, y_eval).

    Each seed draws its own stratified 50/50 train/test split. With ``validation`` the
    training half is split again 75/25 (for choosing the learning rate only). Pixels
    are standardised with the training part's mean and std; ``shape`` is the shape of
    one sample, e.g. (1, 8, 8) for images or (8, 8) for sequences of rows.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    X_train, X_eval, y_train, y_eval = train_test_split(
        X, y, test_size=0.5, stratify=y, random_state=seed
    )
    if validation:
        X_train, X_eval, y_train, y_eval = train_test_split(
            X_train, y_train, test_size=0.25, stratify=y_train, random_state=seed
        )
    mean, std = X_train.mean(), X_train.std()

    def samples(X):
        return torch.tensor((X - mean) / std, dtype=torch.float32).view(-1, *shape)

    return (
        samples(X_train),
        torch.tensor(y_train),
        samples(X_eval),
        torch.tensor(y_eval),
    )


def run_classifier(factory, data, seed, learning_rate, epochs):
    """Train ``factory()`` on ``data`` (as digits_split returns) with cross-entropy,
    batch 64; returns accuracy, log-loss, train-test gap, time and parameters."""
    torch.manual_seed(seed)
    model = factory()
    result = train_supervised(
        model,
        *data,
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


CLASSIFICATION_KEYS = ("test_accuracy", "train_accuracy", "gap", "test_log_loss")


def plot_accuracy_curves(args, results, title):
    """Test accuracy against the epoch, mean over seeds, one line per model."""
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
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(output(args.out, ".png"), dpi=110)


def classification_metrics(model, X, y):
    logits = model(X)
    return {
        "accuracy": (logits.argmax(1) == y).float().mean().item(),
        "log_loss": nn.functional.cross_entropy(logits, y).item(),
    }


def output(out, suffix):
    """Where a result goes: ``benchmarks/results/<out><suffix>``, or ``<out><suffix>``
    when ``out`` is a path (it contains a '/')."""
    return Path(f"{out}{suffix}") if "/" in out else RESULTS / f"{out}{suffix}"


def write_json(name, payload):
    path = output(name, ".json")
    payload = {"command": command_line(), "machine": machine(), **payload}
    path.write_text(json.dumps(payload, indent=1, default=_jsonable) + "\n")
    return path


def _jsonable(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(type(value))


def fmt(stats, digits=4, scale=1.0):
    """'mean ± std [min, max]' of a spread() dict."""
    m, s = stats["mean"] * scale, stats["std"] * scale
    lo, hi = stats["min"] * scale, stats["max"] * scale
    return f"{m:.{digits}g} ± {s:.2g} [{lo:.{digits}g}, {hi:.{digits}g}]"
