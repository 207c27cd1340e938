"""Tabular benchmark: GMNM against the estimators a user would pick instead.

Every development dataset of the project (see ``DATASETS`` below: scikit-learn's, ISLP's,
statsmodels' and palmerpenguins' tables, all offline) is cross-validated with repeated
K-fold, the SAME folds for every model. Models (``MODELS``):

- ``gmnm``: GMNMRegressor / GMNMClassifier at their defaults,
- ``mlp``: scikit-learn's MLP at its defaults; ``mlp_es``: with early stopping and
  ``max_iter=500``,
- ``hgb``: HistGradientBoosting at its defaults (categorical columns as categories),
- ``linear``: RidgeCV / LogisticRegression,
- ``torch_mlp``: a plain skorch MLP (256-256 ReLU, Adam 1e-3, batch 128, 100 epochs, no
  early stopping),
- ``realmlp``: pytabkit's RealMLP-TD, if pytabkit is installed (``pip install pytabkit``
  after the CPU torch; it brings pytorch-lightning).

Numeric columns are imputed (median) and standardised and categorical columns one-hot
encoded in a Pipeline for every model but HistGradientBoosting (which takes categories
natively) and RealMLP (which has its own preprocessing); regression targets are
standardised for the MLPs and the linear model (GMNM standardises its own). Metrics: R2
and RMSE (regression), accuracy and log-loss (classification), mean and std over folds;
fit and predict seconds; trainable parameters of the neural models. Sets larger than
``--max-rows`` are subsampled (and the table says so).

Usage::

    python benchmarks/tabular.py                 # every dataset, 5-fold x 1
    python benchmarks/tabular.py --quick         # 2 small datasets, 2 folds: a smoke run
    python benchmarks/tabular.py --datasets diabetes,wage --models gmnm,hgb

Add a dataset: write a loader returning ``(X DataFrame, y Series)`` and add it to
``DATASETS`` with its task.
"""

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.compose import ColumnTransformer, TransformedTargetRegressor
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
)
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, RidgeCV
from sklearn.metrics import accuracy_score, log_loss, mean_squared_error, r2_score
from sklearn.model_selection import RepeatedKFold, RepeatedStratifiedKFold
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, command_line, machine
from _common import count_parameters as module_parameters

from sklearn_gmnm import GMNMClassifier, GMNMRegressor

# --- datasets -------------------------------------------------------------------------


def _sklearn(loader):
    def load():
        bunch = loader(as_frame=True)
        return bunch.data, bunch.target

    return load


def _islp(name, target, drop=()):
    def load():
        from ISLP import load_data  # pip install --no-deps ISLP

        frame = load_data(name)
        y = frame[target]
        return frame.drop(columns=[target, *drop]), y

    return load


def _fair():
    import statsmodels.api as sm

    frame = sm.datasets.fair.load_pandas().data
    y = (frame["affairs"] > 0).astype(int).rename("affair")
    X = frame.drop(columns=["affairs"])
    for column in ("occupation", "occupation_husb"):  # codes stored as floats
        X[column] = X[column].astype(int).astype("category")
    return X, y


def _penguins():
    from palmerpenguins import load_penguins

    frame = load_penguins().dropna()
    y = frame["species"]
    return frame.drop(columns=["species"]), y


def _caravan():
    from ISLP import load_data

    frame = load_data("Caravan")
    y = frame["Purchase"]
    return frame.drop(columns=["Purchase"]), y


DATASETS = {
    # name: (task, loader)
    "diabetes": ("regression", _sklearn(load_diabetes)),
    "bikeshare": (
        "regression",
        _islp("Bikeshare", "bikers", drop=("casual", "registered")),
    ),
    "wage": ("regression", _islp("Wage", "logwage", drop=("wage", "region"))),
    "breast_cancer": (
        "classification",
        _sklearn(load_breast_cancer),
    ),
    "digits": ("classification", _sklearn(load_digits)),
    "fair": ("classification", _fair),
    "caravan": ("classification", _caravan),
    "penguins": ("classification", _penguins),
}
QUICK_DATASETS = ["diabetes", "breast_cancer"]


def load_dataset(name, max_rows, seed=0):
    """(X, y, note): categorical columns as pandas ``category``, at most max_rows rows."""
    task, loader = DATASETS[name]
    X, y = loader()
    X = X.copy()
    for column in X.columns:
        if X[column].dtype == object or pd.api.types.is_string_dtype(X[column]):
            X[column] = X[column].astype("category")
        elif pd.api.types.is_bool_dtype(X[column]):
            X[column] = X[column].astype(int)
    if task == "classification":
        y = y.astype(str) if not pd.api.types.is_integer_dtype(y) else y
    note = ""
    if len(X) > max_rows:
        rows = np.random.default_rng(seed).choice(len(X), max_rows, replace=False)
        X, y = X.iloc[np.sort(rows)], y.iloc[np.sort(rows)]
        note = f"subsampled to {max_rows} rows"
    return X.reset_index(drop=True), y.reset_index(drop=True), note


# --- models ---------------------------------------------------------------------------


def preprocessor():
    """Median-imputed standardised numbers, one-hot categories (dense)."""
    return ColumnTransformer(
        [
            (
                "numeric",
                make_pipeline(SimpleImputer(strategy="median"), StandardScaler()),
                lambda X: [
                    c
                    for c in X.columns
                    if not isinstance(X[c].dtype, pd.CategoricalDtype)
                ],
            ),
            (
                "categorical",
                OneHotEncoder(handle_unknown="ignore", sparse_output=False),
                lambda X: [
                    c for c in X.columns if isinstance(X[c].dtype, pd.CategoricalDtype)
                ],
            ),
        ]
    )


class MLPModule(nn.Module):
    def __init__(self, n_in, n_out, width=256):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(n_in, width),
            nn.ReLU(),
            nn.Linear(width, width),
            nn.ReLU(),
            nn.Linear(width, n_out),
        )

    def forward(self, X):
        return self.net(X)


class SkorchMLP(BaseEstimator):
    """The plain torch MLP a user would write with skorch: 256-256 ReLU, Adam 1e-3,
    batch 128, a fixed number of epochs, no early stopping; float32."""

    def __init__(self, max_epochs=100, random_state=0):
        self.max_epochs = max_epochs
        self.random_state = random_state

    def _net(self, net_class, n_in, n_out, **kwargs):
        torch.manual_seed(self.random_state)
        return net_class(
            MLPModule,
            module__n_in=n_in,
            module__n_out=n_out,
            optimizer=torch.optim.Adam,
            lr=1e-3,
            batch_size=128,
            max_epochs=self.max_epochs,
            train_split=None,
            verbose=0,
            **kwargs,
        )


class SkorchMLPRegressor(RegressorMixin, SkorchMLP):
    def fit(self, X, y):
        from skorch import NeuralNetRegressor

        X = np.asarray(X, dtype=np.float32)
        y = np.asarray(y, dtype=np.float32).reshape(-1, 1)
        self.net_ = self._net(NeuralNetRegressor, X.shape[1], 1).fit(X, y)
        return self

    def predict(self, X):
        return self.net_.predict(np.asarray(X, dtype=np.float32)).ravel()


class SkorchMLPClassifier(ClassifierMixin, SkorchMLP):
    def fit(self, X, y):
        from skorch import NeuralNetClassifier

        X = np.asarray(X, dtype=np.float32)
        self.classes_, codes = np.unique(np.asarray(y), return_inverse=True)
        self.net_ = self._net(
            NeuralNetClassifier,
            X.shape[1],
            len(self.classes_),
            criterion=nn.CrossEntropyLoss,
        ).fit(X, codes.astype(np.int64))
        return self

    def predict_proba(self, X):
        return self.net_.predict_proba(np.asarray(X, dtype=np.float32))

    def predict(self, X):
        return self.classes_[self.predict_proba(X).argmax(1)]


def _scaled_target(regressor):
    return TransformedTargetRegressor(regressor, transformer=StandardScaler())


def _realmlp(task, seed):
    from pytabkit import RealMLP_TD_Classifier, RealMLP_TD_Regressor

    cls = RealMLP_TD_Regressor if task == "regression" else RealMLP_TD_Classifier
    return cls(
        random_state=seed, n_threads=torch.get_num_threads(), device="cpu", verbosity=0
    )


def make_model(name, task, seed, quick):
    """A fresh, unfitted model; the preprocessing is part of it."""
    reg = task == "regression"
    if name == "gmnm":
        est = (
            GMNMRegressor(random_state=seed)
            if reg
            else GMNMClassifier(random_state=seed)
        )
        return make_pipeline(preprocessor(), est)
    if name == "mlp":
        est = (
            MLPRegressor(random_state=seed) if reg else MLPClassifier(random_state=seed)
        )
        return make_pipeline(preprocessor(), _scaled_target(est) if reg else est)
    if name == "mlp_es":
        params = {"early_stopping": True, "max_iter": 500, "random_state": seed}
        est = MLPRegressor(**params) if reg else MLPClassifier(**params)
        return make_pipeline(preprocessor(), _scaled_target(est) if reg else est)
    if name == "hgb":
        params = {"categorical_features": "from_dtype", "random_state": seed}
        return (
            HistGradientBoostingRegressor(**params)
            if reg
            else HistGradientBoostingClassifier(**params)
        )
    if name == "linear":
        est = _scaled_target(RidgeCV()) if reg else LogisticRegression(max_iter=2000)
        return make_pipeline(preprocessor(), est)
    if name == "torch_mlp":
        epochs = 10 if quick else 100
        est = (
            SkorchMLPRegressor(epochs, seed)
            if reg
            else SkorchMLPClassifier(epochs, seed)
        )
        return make_pipeline(preprocessor(), _scaled_target(est) if reg else est)
    if name == "realmlp":
        return _realmlp(task, seed)
    raise ValueError(f"unknown model {name!r}")


MODELS = ["gmnm", "mlp", "mlp_es", "hgb", "linear", "torch_mlp", "realmlp"]


def realmlp_available():
    try:
        import pytabkit  # noqa: F401
    except ImportError:
        return False
    return True


def count_parameters(model):
    """Trainable parameters of a fitted neural model, or None."""
    est = model.steps[-1][1] if hasattr(model, "steps") else model
    est = getattr(est, "regressor_", est)
    if isinstance(est, (GMNMRegressor, GMNMClassifier)):
        return module_parameters(est.module_)
    if isinstance(est, (MLPRegressor, MLPClassifier)):
        return int(
            sum(c.size for c in est.coefs_) + sum(b.size for b in est.intercepts_)
        )
    if isinstance(est, SkorchMLP):
        return module_parameters(est.net_.module_)
    return None


# --- evaluation -----------------------------------------------------------------------


def evaluate(model, task, X_train, y_train, X_test, y_test):
    start = time.perf_counter()
    model.fit(X_train, y_train)
    fit_s = time.perf_counter() - start
    start = time.perf_counter()
    if task == "regression":
        pred = np.asarray(model.predict(X_test), dtype=float).ravel()
        predict_s = time.perf_counter() - start
        scores = {
            "r2": r2_score(y_test, pred),
            "rmse": mean_squared_error(y_test, pred) ** 0.5,
        }
    else:
        proba = model.predict_proba(X_test)
        predict_s = time.perf_counter() - start
        classes = np.asarray(model.classes_)
        pred = classes[np.asarray(proba).argmax(1)]
        scores = {
            "accuracy": accuracy_score(np.asarray(y_test), pred),
            "log_loss": log_loss(np.asarray(y_test), proba, labels=classes),
        }
    return {**scores, "fit_s": fit_s, "predict_s": predict_s}


def make_splits(task, X, y, folds, repeats):
    """Repeated K-fold (stratified for classification) train/test indices, seed 0."""
    splitter = (
        RepeatedKFold(n_splits=folds, n_repeats=repeats, random_state=0)
        if task == "regression"
        else RepeatedStratifiedKFold(n_splits=folds, n_repeats=repeats, random_state=0)
    )
    return list(splitter.split(X, y))


def cross_validate(name, task, X, y, splits, quick):
    """Model ``name`` fitted and scored on every split (seed = split number): the
    per-fold metrics, and the parameter count of the last fitted model."""
    folds_out, params = [], None
    for i, (train, test) in enumerate(splits):
        model = make_model(name, task, seed=i, quick=quick)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            folds_out.append(
                evaluate(
                    model,
                    task,
                    X.iloc[train],
                    y.iloc[train],
                    X.iloc[test],
                    y.iloc[test],
                )
            )
        params = count_parameters(model)
    return folds_out, params


def run(datasets, models, folds, repeats, max_rows, quick, log=print):
    results = {}
    for dataset in datasets:
        task = DATASETS[dataset][0]
        try:
            X, y, note = load_dataset(dataset, max_rows)
        except ImportError as error:
            log(f"{dataset}: skipped, its package is missing ({error})")
            continue
        splits = make_splits(task, X, y, folds, repeats)  # the same for every model
        entry = {
            "task": task,
            "rows": len(X),
            "features": X.shape[1],
            "note": note,
            "models": {},
        }
        entry["categorical"] = int(
            sum(isinstance(X[c].dtype, pd.CategoricalDtype) for c in X.columns)
        )
        for name in models:
            folds_out, params = cross_validate(name, task, X, y, splits, quick)
            summary = {
                key: {
                    "mean": float(np.mean([f[key] for f in folds_out])),
                    "std": float(np.std([f[key] for f in folds_out])),
                }
                for key in folds_out[0]
            }
            summary["parameters"] = params
            summary["folds"] = folds_out
            entry["models"][name] = summary
            primary = "r2" if task == "regression" else "accuracy"
            log(
                f"{dataset:>14} {name:>10}: {primary} {summary[primary]['mean']:.4f} "
                f"± {summary[primary]['std']:.4f}, fit {summary['fit_s']['mean']:.2f} s"
            )
        results[dataset] = entry
    return results


# --- report ---------------------------------------------------------------------------

PRIMARY = {"regression": ("r2", "rmse"), "classification": ("accuracy", "log_loss")}


def ranks(results, models):
    """Rank of every model per dataset by the primary metric (1 = best; ties averaged)."""
    table = {}
    for dataset, entry in results.items():
        primary = PRIMARY[entry["task"]][0]
        present = [m for m in models if m in entry["models"]]
        scores = pd.Series({m: entry["models"][m][primary]["mean"] for m in present})
        table[dataset] = scores.rank(ascending=False).to_dict()
    return pd.DataFrame(table).T


def targets(results):
    """The issue's targets for GMNM, on the datasets where the peers ran."""
    beat_mlp, near_hgb, counted_mlp, counted_hgb = [], [], 0, 0
    for dataset, entry in results.items():
        primary = PRIMARY[entry["task"]][0]
        m = entry["models"]
        if "gmnm" not in m:
            continue
        if "mlp" in m:
            counted_mlp += 1
            if m["gmnm"][primary]["mean"] > m["mlp"][primary]["mean"]:
                beat_mlp.append(dataset)
        if "hgb" in m:
            counted_hgb += 1
            gap = m["hgb"][primary]["mean"] - m["gmnm"][primary]["mean"]
            if gap <= m["hgb"][primary]["std"]:
                near_hgb.append(dataset)
    return beat_mlp, counted_mlp, near_hgb, counted_hgb


def write_report(results, models, args, out):
    lines = [
        "# Tabular benchmark: GMNM against the estimators users would pick instead",
        "",
        f"Command: `{command_line()}`  ",
        f"Machine: {machine()}  ",
        f"{args.folds}-fold cross-validation x {args.repeats} repeat(s), the same folds for "
        "every model (stratified for classification), seeds fixed; mean ± std over folds. "
        "Primary metric: R2 (regression), accuracy (classification); higher is better. "
        "Fit and predict: seconds per fold. Parameters: trainable, of the fitted network.",
        "",
    ]
    for dataset, entry in results.items():
        first, second = PRIMARY[entry["task"]]
        note = f"; {entry['note']}" if entry["note"] else ""
        lines += [
            f"## {dataset} ({entry['task']}, {entry['rows']} rows, {entry['features']} "
            f"features, {entry['categorical']} categorical{note})",
            "",
            f"| model | {first} | {second} | fit s | predict s | parameters |",
            "|---|---|---|---|---|---|",
        ]
        for name, s in entry["models"].items():
            params = "" if s["parameters"] is None else f"{s['parameters']:,}"
            lines.append(
                f"| {name} | {s[first]['mean']:.4f} ± {s[first]['std']:.4f} | "
                f"{s[second]['mean']:.4f} ± {s[second]['std']:.4f} | "
                f"{s['fit_s']['mean']:.2f} | {s['predict_s']['mean']:.3f} | {params} |"
            )
        lines.append("")
    rank_table = ranks(results, models)
    if len(rank_table):
        lines += [
            "## Ranks by the primary metric (1 = best)",
            "",
            "| dataset | " + " | ".join(rank_table.columns) + " |",
            "|---|" + "---|" * len(rank_table.columns),
        ]
        for dataset, row in rank_table.iterrows():
            lines.append(f"| {dataset} | " + " | ".join(f"{v:g}" for v in row) + " |")
        lines.append(
            "| **mean rank** | "
            + " | ".join(f"**{v:.2f}**" for v in rank_table.mean())
            + " |"
        )
        lines.append("")
    beat, n_mlp, near, n_hgb = targets(results)
    if n_mlp or n_hgb:
        lines += [
            "## Targets (GMNM at its defaults)",
            "",
            f"- beats scikit-learn's MLP (defaults) on {len(beat)} of {n_mlp} datasets "
            f"(target: at least 80%): **{'met' if n_mlp and len(beat) >= 0.8 * n_mlp else 'NOT met'}**"
            f" — {', '.join(beat) or 'none'};",
            f"- within one standard deviation of HistGradientBoosting on {len(near)} of "
            f"{n_hgb} (target: at least half): "
            f"**{'met' if n_hgb and len(near) >= 0.5 * n_hgb else 'NOT met'}** — "
            f"{', '.join(near) or 'none'}.",
            "",
        ]
    Path(f"{out}.md").write_text("\n".join(lines) + "\n")
    Path(f"{out}.json").write_text(
        json.dumps(
            {"command": command_line(), "machine": machine(), "results": results},
            indent=1,
        )
    )
    plot(results, models, out)
    print("\n".join(lines))


def plot(results, models, out):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot (pip install '.[bench]').")
        return
    datasets = [d for d, e in results.items() if "hgb" in e["models"]]
    others = [m for m in models if m != "hgb"]
    if not datasets or not others:
        return
    fig, ax = plt.subplots(figsize=(1.6 * len(datasets) + 3, 4))
    width = 0.8 / len(others)
    for j, name in enumerate(others):
        gaps = []
        for d in datasets:
            e = results[d]
            primary = PRIMARY[e["task"]][0]
            hgb = e["models"]["hgb"][primary]["mean"]
            mine = e["models"].get(name, {}).get(primary, {}).get("mean", np.nan)
            gaps.append(mine - hgb)
        ax.bar(np.arange(len(datasets)) + j * width, gaps, width, label=name)
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xticks(np.arange(len(datasets)) + 0.4 - width / 2)
    ax.set_xticklabels(datasets, rotation=20)
    ax.set_ylabel("score - HistGradientBoosting's (R2 / accuracy)")
    ax.set_title("Primary metric relative to HistGradientBoosting (> 0: better)")
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(f"{out}.png", dpi=110)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="2 small datasets, 2 folds"
    )
    parser.add_argument(
        "--datasets", help="comma-separated; default: all development sets"
    )
    parser.add_argument("--models", help=f"comma-separated, from {', '.join(MODELS)}")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--max-rows", type=int, default=10_000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=None, help="default: results/tabular[_quick]")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.quick:
        args.folds = 2
    datasets = (
        args.datasets.split(",")
        if args.datasets
        else (QUICK_DATASETS if args.quick else list(DATASETS))
    )
    unknown = set(datasets) - set(DATASETS)
    if unknown:
        parser.error(
            f"--datasets: unknown {sorted(unknown)}; known: {', '.join(DATASETS)}"
        )
    models = args.models.split(",") if args.models else list(MODELS)
    unknown = set(models) - set(MODELS)
    if unknown:
        parser.error(f"--models: unknown {sorted(unknown)}; known: {', '.join(MODELS)}")
    if "realmlp" in models and not realmlp_available():
        print("realmlp: skipped, pytabkit is not installed (pip install pytabkit)")
        models.remove("realmlp")
    out = args.out or str(RESULTS / ("tabular_quick" if args.quick else "tabular"))
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    results = run(datasets, models, args.folds, args.repeats, args.max_rows, args.quick)
    write_report(results, models, args, out)
    return results


if __name__ == "__main__":
    main()
