"""The main job: cross-validate GMNM estimators against scikit-learn's on a table.

``python -m sklearn_gmnm`` (or ``sklearn-gmnm``) compares GMNMRegressor and
GMNMClassifier with scikit-learn's MLP and HistGradientBoosting on data shipped with
scikit-learn; ``--csv FILE --target COLUMN`` does the same on the user's own table.
"""

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from sklearn.compose import ColumnTransformer, make_column_selector
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
)
from sklearn.exceptions import ConvergenceWarning
from sklearn.impute import SimpleImputer
from sklearn.model_selection import KFold, StratifiedKFold, cross_validate
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from ._estimators import GMNMClassifier, GMNMRegressor


class UsageError(Exception):
    """A problem with the command line or the user's file, reported without a traceback."""


def builtin_tasks():
    """(name, X, y, task) for the demo datasets that ship with scikit-learn."""
    from sklearn.datasets import load_breast_cancer, load_diabetes, load_wine

    return [
        ("diabetes", *load_diabetes(return_X_y=True), "regression"),
        ("breast_cancer", *load_breast_cancer(return_X_y=True), "classification"),
        ("wine", *load_wine(return_X_y=True), "classification"),
    ]


def infer_task(y):
    """Classification for text, boolean, categorical or few-valued integer targets."""
    import pandas as pd

    if (
        y.dtype == object
        or isinstance(y.dtype, pd.CategoricalDtype)
        or pd.api.types.is_bool_dtype(y)
        or pd.api.types.is_string_dtype(y)
    ):
        return "classification"
    if pd.api.types.is_integer_dtype(y) and y.nunique() <= min(
        20, max(2, len(y) // 20)
    ):
        return "classification"
    return "regression"


def read_table(path, target):
    """Load a CSV file and split off the target column, with clear errors."""
    try:
        import pandas as pd
    except ImportError as exc:  # pragma: no cover - pandas comes with the cli extra
        raise UsageError("--csv needs pandas: pip install 'sklearn-gmnm[cli]'") from exc
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"--csv: no such file: {path}")
    try:
        frame = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise UsageError(f"--csv: {path} could not be read as CSV: {exc}") from exc
    if target not in frame.columns:
        raise UsageError(
            f"--target: no column {target!r} in {path}; the columns are "
            f"{', '.join(map(str, frame.columns))}."
        )
    missing = frame[target].isna()
    if missing.all():
        raise UsageError(f"--target: column {target!r} has no values.")
    if missing.any():
        print(f"Dropping {int(missing.sum())} rows whose target {target!r} is missing.")
        frame = frame[~missing]
    X = frame.drop(columns=[target])
    if X.shape[1] == 0:
        raise UsageError(f"{path} has no columns besides the target {target!r}.")
    return X, frame[target], infer_task(frame[target])


def preprocessor(X):
    """Impute, scale numbers, one-hot encode the rest: what a user would do by hand.

    Missing numbers take the median and get a missing-value indicator; missing
    categories become their own category.
    """
    if isinstance(X, np.ndarray):
        return StandardScaler()
    numeric = make_pipeline(
        SimpleImputer(strategy="median", add_indicator=True), StandardScaler()
    )
    categorical = make_pipeline(
        SimpleImputer(strategy="constant", fill_value="missing"),
        OneHotEncoder(handle_unknown="ignore", sparse_output=False),
    )
    return ColumnTransformer(
        [
            ("numeric", numeric, make_column_selector(dtype_include="number")),
            ("categorical", categorical, make_column_selector(dtype_exclude="number")),
        ]
    )


def candidates(task, X, random_state):
    """The models compared: GMNM, scikit-learn's MLP, HistGradientBoosting."""
    regression = task == "regression"
    gmnm = (GMNMRegressor if regression else GMNMClassifier)(random_state=random_state)
    mlp = (MLPRegressor if regression else MLPClassifier)(random_state=random_state)
    hgb = (
        HistGradientBoostingRegressor if regression else HistGradientBoostingClassifier
    )(random_state=random_state)
    return {
        "GMNM": make_pipeline(preprocessor(X), gmnm),
        "MLP": make_pipeline(preprocessor(X), mlp),
        "HistGradientBoosting": make_pipeline(preprocessor(X), hgb),
    }


def run(tasks, folds, random_state, plot_path):
    from tqdm.auto import tqdm

    rows, curves = [], {}
    jobs = [(name, X, y, task) for name, X, y, task in tasks]
    with tqdm(total=len(jobs) * 3, desc="cross-validating", unit="model") as bar:
        for name, X, y, task in jobs:
            splitter = (KFold if task == "regression" else StratifiedKFold)(
                folds, shuffle=True, random_state=random_state
            )
            try:  # too few rows (or members of a class) for the folds
                next(splitter.split(X, y))
            except ValueError as exc:
                raise UsageError(f"--folds {folds} on {name}: {exc}") from exc
            for model_name, model in candidates(task, X, random_state).items():
                bar.set_postfix_str(f"{name}: {model_name}")
                start = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ConvergenceWarning)
                    result = cross_validate(
                        model, X, y, cv=splitter, return_estimator=model_name == "GMNM"
                    )
                scores = result["test_score"]
                rows.append(
                    (
                        name,
                        "R^2" if task == "regression" else "accuracy",
                        model_name,
                        scores.mean(),
                        scores.std(),
                        result["fit_time"].mean(),
                        time.perf_counter() - start,
                    )
                )
                if model_name == "GMNM":
                    curves[name] = [est[-1].loss_curve_ for est in result["estimator"]]
                bar.update()
    print_table(rows, folds)
    if plot_path is not None:
        plot_loss_curves(curves, plot_path)


def print_table(rows, folds):
    header = f"{'dataset':16s} {'metric':9s} {'model':22s} {'score (mean ± std over ' + str(folds) + ' folds)':34s} {'fit s/fold':>10s}"
    print()
    print(header)
    print("-" * len(header))
    for dataset, metric, model, mean, std, fit_time, _ in rows:
        print(
            f"{dataset:16s} {metric:9s} {model:22s} {mean:8.3f} ± {std:<23.3f} {fit_time:10.2f}"
        )


def plot_loss_curves(curves, path):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(
            "matplotlib is not installed, so no loss-curve plot was written: "
            "pip install 'sklearn-gmnm[cli]' (or pass --no-plot)."
        )
        return
    fig, axes = plt.subplots(
        1, len(curves), figsize=(4.5 * len(curves), 3.5), squeeze=False
    )
    for ax, (name, fold_curves) in zip(axes[0], curves.items(), strict=True):
        for fold, curve in enumerate(fold_curves):
            ax.plot(np.arange(1, len(curve) + 1), curve, label=f"fold {fold + 1}")
        ax.set_title(f"GMNM on {name}")
        ax.set_xlabel("epoch")
        ax.set_ylabel("training loss")
        ax.set_yscale("log")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    print(f"Loss curves written to {path}")


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="sklearn-gmnm",
        description="Cross-validate GMNM estimators against scikit-learn's MLP and "
        "HistGradientBoosting, on data shipped with scikit-learn or on your own CSV.",
    )
    parser.add_argument("--csv", help="a CSV file with a header row")
    parser.add_argument("--target", help="the column of --csv to predict")
    parser.add_argument("--folds", type=int, default=5, help="cross-validation folds")
    parser.add_argument("--random-state", type=int, default=0)
    parser.add_argument(
        "--plot", default="gmnm_loss_curves.png", help="where to write the loss curves"
    )
    parser.add_argument("--no-plot", action="store_true", help="write no plot")
    args = parser.parse_args(argv)
    try:
        if (args.csv is None) != (args.target is None):
            raise UsageError("--csv and --target go together: give both, or neither.")
        if args.folds < 2:
            raise UsageError(f"--folds must be at least 2, got {args.folds}.")
        if args.csv is None:
            tasks = builtin_tasks()
        else:
            X, y, task = read_table(args.csv, args.target)
            print(f"{args.csv}: {X.shape[0]} rows, {X.shape[1]} columns; task: {task}.")
            tasks = [(Path(args.csv).stem, X, y, task)]
        run(tasks, args.folds, args.random_state, None if args.no_plot else args.plot)
    except UsageError as exc:
        print(f"sklearn-gmnm: error: {exc}", file=sys.stderr)
        return 2
    return 0
