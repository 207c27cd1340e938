"""Behaviour of GMNMRegressor and GMNMClassifier as scikit-learn estimators."""

import io
import os
import pickle
import re
import subprocess
import sys
from contextlib import redirect_stdout

import numpy as np
import pandas as pd
import pytest
import sklearn
import torch
from sklearn.base import clone, is_classifier, is_regressor
from sklearn.calibration import CalibratedClassifierCV
from sklearn.compose import ColumnTransformer, TransformedTargetRegressor
from sklearn.datasets import (
    load_diabetes,
    load_iris,
    make_classification,
    make_friedman1,
    make_regression,
)
from sklearn.ensemble import StackingRegressor
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import Ridge
from sklearn.metrics import get_scorer
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from sklearn_gmnm import (
    DivergenceError,
    DivergenceWarning,
    GMNMClassifier,
    GMNMRegressor,
)

FAST = {"max_iter": 30, "random_state": 0}


@pytest.fixture(scope="module")
def regression_data():
    X, y = make_friedman1(n_samples=200, random_state=0)
    return X, y


@pytest.fixture(scope="module")
def classification_data():
    X, y = make_classification(
        n_samples=200, n_features=6, n_informative=4, n_classes=3, random_state=0
    )
    return X, y


def data_for(estimator, regression_data, classification_data):
    return (
        regression_data if isinstance(estimator, GMNMRegressor) else classification_data
    )


ESTIMATORS = [GMNMRegressor, GMNMClassifier]


# --- parameters ---------------------------------------------------------------------

BAD_VALUES = {
    "hidden_layer_sizes": [(4, 0), (-1,), "wide"],
    "n_components": [0, 2.5, "many"],
    "n_projections": [0, -2],
    "embedding_dim": [0, 1.5],
    "init": ["kmeans++", 3],
    "standardize": ["yes", 2],
    "alpha": [-1.0, "big"],
    "batch_size": [0, "all"],
    "learning_rate_init": [0.0, -0.1],
    "max_iter": [0, 1.5],
    "tol": [-1e-3],
    "early_stopping": ["no"],
    "validation_fraction": [0.0, 1.0, 1.5],
    "n_iter_no_change": [0],
    "warm_start": [3],
    "random_state": ["seed"],
    "verbose": [-1, "loud"],
    "device": [3, "tpu"],
    "class_weight": ["heavy", 1.0],
}


@pytest.mark.parametrize("Estimator", ESTIMATORS)
def test_constraints_cover_every_parameter(Estimator):
    assert set(Estimator._parameter_constraints) == set(Estimator().get_params())


@pytest.mark.parametrize("Estimator", ESTIMATORS)
def test_each_bad_value_names_its_parameter(Estimator, classification_data):
    X, y = classification_data
    for name in Estimator().get_params():
        for value in BAD_VALUES[name]:
            with pytest.raises((ValueError, TypeError, RuntimeError), match=name):
                Estimator(max_iter=1, **{name: value}).fit(X[:20], y[:20])


def test_an_unknown_device_is_a_clear_error(classification_data):
    X, y = classification_data
    with pytest.raises(ValueError, match="device='tpu' is not a torch device"):
        GMNMClassifier(device="tpu", max_iter=1).fit(X, y)


def test_cuda_without_a_gpu_is_a_clear_error(classification_data):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    X, y = classification_data
    with pytest.raises(ValueError, match="CUDA is not available"):
        GMNMClassifier(device="cuda", max_iter=1).fit(X, y)


# --- bad input ------------------------------------------------------------------------


@pytest.mark.parametrize("Estimator", ESTIMATORS)
def test_bad_input_errors(Estimator, regression_data, classification_data):
    X, y = data_for(Estimator(), regression_data, classification_data)
    est = Estimator(max_iter=2)
    X_nan = X.copy()
    X_nan[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        est.fit(X_nan, y)
    X_inf = X.copy()
    X_inf[0, 0] = np.inf
    with pytest.raises(ValueError, match="infinity"):
        est.fit(X_inf, y)
    with pytest.raises(ValueError, match="2D array"):
        est.fit(X[:, 0], y)
    with pytest.raises(ValueError, match="0 sample"):
        est.fit(X[:0], y[:0])
    with pytest.raises(ValueError, match=r"could not convert|dtype"):
        est.fit(np.full(X.shape, "a", dtype=object), y)
    est.fit(X, y)
    with pytest.raises(ValueError, match=f"{X.shape[1]} features"):
        est.predict(X[:, :-1])
    with pytest.raises(NotFittedError):
        Estimator().predict(X)


def test_nan_or_inf_in_y_is_an_error(regression_data):
    X, y = regression_data
    y = y.copy()
    y[5] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        GMNMRegressor(max_iter=2).fit(X, y)


def test_one_class_is_an_error(classification_data):
    X, _ = classification_data
    with pytest.raises(ValueError, match="at least 2 classes"):
        GMNMClassifier(max_iter=2).fit(X, np.zeros(len(X)))


def test_divergence_is_an_error_that_names_the_remedy(regression_data):
    X, y = regression_data
    # Gaussian responses are bounded, so only a truly explosive step overflows.
    est = GMNMRegressor(learning_rate_init=1e200, max_iter=50, random_state=0)
    with pytest.raises(DivergenceError, match="learning_rate_init"):
        est.fit(X, y)
    # The estimator stays usable: a sensible refit works.
    est.set_params(learning_rate_init=1e-3, max_iter=5).fit(X, y)
    assert np.isfinite(est.predict(X)).all()


# The learning rates below come from benchmarks/results/divergence_check.md (diabetes).


@pytest.mark.parametrize("estimator_class", [GMNMRegressor, GMNMClassifier])
def test_a_finite_divergence_warns_and_names_the_remedy(estimator_class):
    X, y = (load_diabetes if estimator_class is GMNMRegressor else load_iris)(
        return_X_y=True
    )
    est = estimator_class(learning_rate_init=1e3, **FAST)
    with pytest.warns(DivergenceWarning, match=r"learning_rate_init \(now 1000\)"):
        est.fit(X, y)
    # the model is kept, and it does no better than a constant on its training data
    assert np.isfinite(est.predict(X)).all()
    constant_score = 0 if is_regressor(est) else np.bincount(y).max() / len(y)
    assert est.score(X, y) <= constant_score


def test_a_spike_that_collapses_to_a_constant_warns():
    X, y = load_diabetes(return_X_y=True)
    # the loss of an epoch rose 70-fold, and training ended no better than the mean
    with pytest.warns(DivergenceWarning, match="rose to"):
        GMNMRegressor(learning_rate_init=1.0, **FAST).fit(X, y)


@pytest.mark.parametrize("kind", ["regression", "multiclass", "multilabel"])
def test_the_divergence_yardstick_is_the_best_constant_prediction(kind):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 3))
    y = {
        "regression": np.c_[X[:, 0] + 2, X[:, 1] ** 2],
        "multiclass": (X[:, 0] > 0.5).astype(int) + (X[:, 1] > 0),
        "multilabel": np.c_[X[:, 0] > 0.5, X[:, 1] > 0].astype(int),
    }[kind]
    estimator_class = GMNMRegressor if kind == "regression" else GMNMClassifier
    est = estimator_class(max_iter=1, random_state=0).fit(X, y)
    weight = torch.as_tensor(rng.uniform(0.1, 2.0, size=len(X)))
    targets = est._encode_targets(y, weight.numpy(), torch.float64, first_call=False)
    probe = ({"X": torch.as_tensor(X), "sample_weight": weight}, targets)
    constant = est._constant_output(targets, weight, torch.float64)
    assert constant.shape == (len(X), est.n_outputs_)
    assert torch.equal(constant, constant[:1].expand_as(constant))  # one row for all
    best = est._probe_loss(est.net_, probe, constant)
    for _ in range(5):  # any other constant scores worse on the weighted loss
        moved = constant + 0.05 * torch.as_tensor(rng.normal(size=est.n_outputs_))
        assert est._probe_loss(est.net_, probe, moved) > best


@pytest.mark.filterwarnings("error::sklearn_gmnm.DivergenceWarning")
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_sound_fits_do_not_warn_of_divergence():
    X, y = load_diabetes(return_X_y=True)
    # an epoch's loss spiked 24-fold at this rate, but training recovered
    GMNMRegressor(learning_rate_init=0.1, **FAST).fit(X, y)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(500, 4))
    # one epoch from uniform class probabilities on 99:1 classes: the loss is still
    # well above the constant prediction's, as it was at the start
    rare = (np.arange(500) % 100 == 0).astype(int)
    GMNMClassifier(max_iter=1, random_state=0).fit(X, rare)
    GMNMRegressor(max_iter=5, random_state=0).fit(X, np.full(500, 3.0))  # constant y
    GMNMRegressor(max_iter=5, random_state=0).fit(X, rng.normal(size=500))  # noise
    partial = GMNMRegressor(random_state=0)
    for rows in np.array_split(np.arange(500), 5):
        partial.partial_fit(X[rows], X[rows, 0])
    # partial_fit skips the check (it would make each one-epoch call 1.2-1.3x slower)
    assert not hasattr(partial, "_divergence_check")


# --- fitted attributes ----------------------------------------------------------------


def test_fitted_attributes_without_early_stopping(regression_data):
    X, y = regression_data
    est = GMNMRegressor(**FAST).fit(X, y)
    assert est.n_iter_ == len(est.loss_curve_) <= 30
    assert est.best_loss_ == min(est.loss_curve_)
    assert est.validation_scores_ is None and est.best_validation_score_ is None
    assert est.n_outputs_ == 1 and est.n_features_in_ == X.shape[1]
    assert est.t_ == est.n_iter_ * len(X)
    assert est.module_ is est.net_.module_


def test_early_stopping_stops_and_keeps_the_best_epoch(regression_data):
    X, y = regression_data
    est = GMNMRegressor(
        early_stopping=True,
        n_iter_no_change=3,
        max_iter=500,
        learning_rate_init=1e-2,  # fast enough to reach a plateau well before 500
        random_state=0,
    ).fit(X, y)
    assert est.n_iter_ < 500
    assert est.best_loss_ is None
    assert len(est.validation_scores_) == est.n_iter_
    assert est.best_validation_score_ == max(est.validation_scores_)
    # It stopped because each of the last n_iter_no_change epochs beat the best score
    # before it by less than tol (scikit-learn MLP's rule).
    scores = est.validation_scores_
    for epoch in range(len(scores) - 3, len(scores)):
        assert scores[epoch] < max(scores[:epoch]) + est.tol
    # The weights kept are those of the best epoch.
    best_state = dict(est.net_.callbacks_)["convergence"].best_state_
    for name, value in est.module_.state_dict().items():
        assert torch.equal(value, best_state[name])


def test_early_stopping_validation_split_like_scikit_learns_mlp(classification_data):
    X, y = classification_data
    # stratified by class where every class can be split
    est = GMNMClassifier(early_stopping=True, max_iter=2, random_state=0)
    split = est.fit(X, y).net_.train_split
    _, valid = split(np.arange(len(y)), torch.as_tensor(y))
    assert np.bincount(y[valid.indices]).min() >= 6  # 20 rows, 3 classes: 6-7 each
    # a class with one member can't be stratified: a random split, with a warning
    rare = y.copy()
    rare[0] = 3
    with pytest.warns(UserWarning, match="split at random instead"):
        GMNMClassifier(early_stopping=True, max_iter=2, random_state=0).fit(X, rare)
    # fewer than 2 validation rows: an error that names the parameters (as the MLP)
    for Estimator in (GMNMClassifier, GMNMRegressor):
        with pytest.raises(ValueError, match="validation_fraction"):
            Estimator(early_stopping=True, max_iter=2).fit(X[:10], y[:10])


def test_convergence_warning_when_max_iter_is_reached(regression_data):
    X, y = regression_data
    with pytest.warns(sklearn.exceptions.ConvergenceWarning, match="max_iter"):
        GMNMRegressor(max_iter=2, random_state=0).fit(X, y)


def test_dataframe_feature_names(regression_data):
    X, y = regression_data
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])])
    est = GMNMRegressor(**FAST).fit(frame, y)
    np.testing.assert_array_equal(est.feature_names_in_, frame.columns)
    np.testing.assert_allclose(est.predict(frame), est.predict(X), rtol=1e-12)


def test_multi_output_regression():
    X, y = make_regression(n_samples=120, n_features=4, n_targets=3, random_state=0)
    est = GMNMRegressor(**FAST).fit(X, y * [1, 100, 0.01])
    assert est.predict(X).shape == (120, 3)
    assert est.n_outputs_ == 3


def test_multilabel_classification():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3))
    y = np.stack([X[:, 0] > 0, X[:, 1] + X[:, 2] > 0], axis=1).astype(int)
    est = GMNMClassifier(max_iter=300, random_state=0).fit(X, y)
    assert est.predict(X).shape == (200, 2)
    proba = est.predict_proba(X)
    assert proba.shape == (200, 2) and ((proba >= 0) & (proba <= 1)).all()
    assert (est.predict(X) == y).mean(axis=0).min() > 0.9  # each label
    assert est.score(X, y) > 0.85  # subset accuracy: both labels right


def test_string_labels_and_probabilities(classification_data):
    X, y = classification_data
    labels = np.array(["cat", "dog", "emu"])[y]
    est = GMNMClassifier(**FAST).fit(X, labels)
    assert set(est.predict(X)) <= set(labels)
    np.testing.assert_array_equal(est.classes_, ["cat", "dog", "emu"])
    proba = est.predict_proba(X)
    np.testing.assert_allclose(proba.sum(1), 1.0)
    np.testing.assert_allclose(np.log(proba), est.predict_log_proba(X), atol=1e-10)
    np.testing.assert_array_equal(est.predict(X), est.classes_[proba.argmax(1)])


# --- reproducibility and persistence ---------------------------------------------------


@pytest.mark.parametrize("Estimator", ESTIMATORS)
def test_random_state_gives_identical_predictions(
    Estimator, regression_data, classification_data
):
    X, y = data_for(Estimator(), regression_data, classification_data)
    a = Estimator(**FAST).fit(X, y)
    b = Estimator(**FAST).fit(X, y)
    np.testing.assert_array_equal(a.predict(X), b.predict(X))
    c = Estimator(max_iter=30, random_state=1).fit(X, y)
    if isinstance(a, GMNMRegressor):
        assert not np.array_equal(a.predict(X), c.predict(X))


@pytest.mark.parametrize("Estimator", ESTIMATORS)
def test_float32_input_trains_in_float32(
    Estimator, regression_data, classification_data
):
    X, y = data_for(Estimator(), regression_data, classification_data)
    est = Estimator(**FAST).fit(X.astype(np.float32), y)
    assert next(est.module_.parameters()).dtype.is_floating_point
    assert str(next(est.module_.parameters()).dtype) == "torch.float32"
    assert np.isfinite(est.predict(X)).all()


@pytest.mark.parametrize("Estimator", ESTIMATORS)
def test_pickle_round_trip(Estimator, regression_data, classification_data):
    X, y = data_for(Estimator(), regression_data, classification_data)
    est = Estimator(**FAST).fit(X, y)
    copy = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(est.predict(X), copy.predict(X))


@pytest.mark.parametrize("Estimator", ESTIMATORS)
def test_clone_is_unfitted_with_the_same_parameters(Estimator, classification_data):
    X, y = classification_data
    est = Estimator(n_components=7, alpha=0.5, max_iter=2).fit(X, y)
    copy = clone(est)
    assert copy.get_params() == est.get_params()
    assert not hasattr(copy, "net_")


# --- training behaviour -----------------------------------------------------------------


def test_verbose(classification_data):
    X, y = classification_data
    quiet = io.StringIO()
    with redirect_stdout(quiet):
        GMNMClassifier(max_iter=3, verbose=0).fit(X, y)
    assert quiet.getvalue() == ""
    loud = io.StringIO()
    with redirect_stdout(loud):
        GMNMClassifier(max_iter=3, verbose=1).fit(X, y)
    assert re.search(r"epoch\s+train_loss", loud.getvalue())


def test_warm_start_continues(regression_data):
    X, y = regression_data
    est = GMNMRegressor(max_iter=10, warm_start=True, random_state=0)
    est.fit(X, y)
    first_weights = est.module_.body.layers[0].weight.detach().clone()
    first_loss = est.loss_curve_[-1]
    est.fit(X, y)
    assert est.n_iter_ == 20 and len(est.loss_curve_) == 20
    assert est.loss_curve_[-1] < first_loss
    assert not np.allclose(first_weights, est.module_.body.layers[0].weight.detach())
    cold = GMNMRegressor(max_iter=10, random_state=0).fit(X, y)
    assert cold.n_iter_ == 10


def test_partial_fit_learns(regression_data, classification_data):
    X, y = regression_data
    est = GMNMRegressor(learning_rate_init=1e-2, random_state=0)
    losses = []
    for _ in range(15):
        est.partial_fit(X, y)
        losses.append(est.loss_curve_[-1])
    assert est.n_iter_ == 15 and losses[-1] < 0.5 * losses[0]

    X, y = classification_data
    clf = GMNMClassifier(learning_rate_init=1e-2, random_state=0)
    with pytest.raises(ValueError, match="classes"):
        clf.partial_fit(X, y)
    clf.partial_fit(X[:100], y[:100], classes=[0, 1, 2])
    for _ in range(10):
        clf.partial_fit(X, y)
    assert clf.score(X, y) > 0.7
    with pytest.raises(ValueError, match="not fitted with"):
        clf.partial_fit(X, np.full(len(X), 7))


def test_training_further_takes_the_current_training_parameters(regression_data):
    X, y = regression_data
    est = GMNMRegressor(random_state=0).partial_fit(X[:50], y[:50])
    assert est.net_.batch_size == 50  # "auto": min(200, rows)
    steps = est.net_.optimizer_.state_dict()["state"][0]["step"].item()
    est.set_params(learning_rate_init=1e-2)
    est.partial_fit(X, y)
    optimizer = est.net_.optimizer_
    assert optimizer.param_groups[0]["lr"] == 1e-2
    assert est.net_.batch_size == 200
    assert optimizer.state_dict()["state"][0]["step"].item() == steps + 1  # Adam's
    # state carried over: 200 rows in one batch

    est = GMNMRegressor(max_iter=3, warm_start=True, random_state=0).fit(X, y)
    est.set_params(batch_size=32, early_stopping=True, max_iter=4, tol=0.5)
    est.fit(X, y)
    assert est.n_iter_ == 7 and est.net_.batch_size == 32
    assert len(est.validation_scores_) == 4  # the epochs that had a validation split
    assert dict(est.net_.callbacks_)["convergence"].tol == 0.5
    est.set_params(early_stopping=False, verbose=2)
    est.fit(X, y)
    assert est.validation_scores_ is None and est.best_loss_ is not None
    assert "progress_bar" in dict(est.net_.callbacks_)


@pytest.mark.parametrize(
    "change",
    [
        {"n_components": 8},
        {"n_projections": 2},
        {"hidden_layer_sizes": (8,)},
        {"embedding_dim": 3},
        {"standardize": False},
    ],
)
@pytest.mark.parametrize("how", ["warm_start", "partial_fit"])
def test_training_further_refuses_another_network_shape(regression_data, change, how):
    X, y = regression_data
    est = GMNMRegressor(max_iter=2, warm_start=True, random_state=0).fit(X, y)
    before = est.predict(X)
    est.set_params(**change)
    name = next(iter(change))
    with pytest.raises(ValueError, match=f"built with {name}="):
        if how == "warm_start":
            est.fit(X, y)
        else:
            est.partial_fit(X, y)
    np.testing.assert_array_equal(est.predict(X), before)  # the model is untouched
    est.set_params(warm_start=False).fit(X, y)  # a new network of the new shape
    assert est.get_params()[name] == change[name]


def test_training_further_keeps_the_networks_dtype(regression_data):
    X, y = regression_data
    est = GMNMRegressor(max_iter=2, warm_start=True, random_state=0).fit(X, y)
    est.fit(X.astype(np.float32), y)
    assert est.net_.module_.x_mean.dtype == torch.float64
    assert est.n_iter_ == 4


def test_sample_weight_changes_the_fit(regression_data):
    X, y = regression_data
    w = np.ones(len(y))
    w[y > np.median(y)] = 20.0
    plain = GMNMRegressor(**FAST).fit(X, y)
    weighted = GMNMRegressor(**FAST).fit(X, y, sample_weight=w)
    high = y > np.median(y)
    error_plain = np.abs(plain.predict(X) - y)[high].mean()
    error_weighted = np.abs(weighted.predict(X) - y)[high].mean()
    assert error_weighted < error_plain


def test_class_weight_shifts_predictions_towards_the_weighted_class():
    X, y = make_classification(
        n_samples=300, weights=[0.85], flip_y=0.1, class_sep=0.5, random_state=0
    )
    plain = GMNMClassifier(**FAST).fit(X, y)
    weighted = GMNMClassifier(class_weight={0: 1.0, 1: 10.0}, **FAST).fit(X, y)
    balanced = GMNMClassifier(class_weight="balanced", **FAST).fit(X, y)
    assert (weighted.predict(X) == 1).sum() > (plain.predict(X) == 1).sum()
    assert (balanced.predict(X) == 1).sum() > (plain.predict(X) == 1).sum()
    # partial_fit sees one chunk at a time: "balanced" would balance each chunk
    with pytest.raises(ValueError, match="'balanced' is not supported by partial_fit"):
        GMNMClassifier(class_weight="balanced").partial_fit(X, y, classes=[0, 1])
    incremental = GMNMClassifier(class_weight={0: 1.0, 1: 10.0}, random_state=0)
    incremental.partial_fit(X, y, classes=[0, 1])  # a dict is fine


# --- scikit-learn machinery ---------------------------------------------------------------


def mixed_frame(n=160, seed=0):
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "age": rng.uniform(20, 70, n),
            "income": rng.lognormal(10, 0.5, n),
            "city": rng.choice(["north", "south", "east"], n),
        }
    )
    effect = frame["city"].map({"north": 1.0, "south": -1.0, "east": 0.0})
    target = 0.05 * frame["age"] + effect + rng.normal(0, 0.1, n)
    return frame, target.to_numpy()


@pytest.mark.parametrize("Estimator", ESTIMATORS)
def test_pipeline_with_column_transformer_on_a_mixed_dataframe(Estimator):
    frame, target = mixed_frame()
    y = target if Estimator is GMNMRegressor else (target > np.median(target))
    pre = ColumnTransformer(
        [
            ("num", StandardScaler(), ["age", "income"]),
            ("cat", OneHotEncoder(), ["city"]),
        ]
    )
    model = make_pipeline(
        pre, Estimator(standardize=False, max_iter=100, random_state=0)
    )
    scores = cross_val_score(model, frame, y, cv=3)
    assert scores.mean() > 0.5


def test_grid_search_in_parallel(classification_data):
    X, y = classification_data
    search = GridSearchCV(
        GMNMClassifier(max_iter=10, random_state=0),
        {"n_components": [4, 16]},
        cv=2,
        n_jobs=2,
    ).fit(X, y)
    assert search.best_params_["n_components"] in (4, 16)
    assert search.predict(X).shape == (len(X),)


def test_meta_estimators_accept_the_estimators(regression_data, classification_data):
    X, y = classification_data
    calibrated = CalibratedClassifierCV(GMNMClassifier(**FAST), cv=2).fit(X, y)
    assert calibrated.predict_proba(X).shape == (len(X), 3)
    X, y = regression_data
    stack = StackingRegressor(
        [("gmnm", GMNMRegressor(**FAST)), ("ridge", Ridge())], cv=2
    )
    assert stack.fit(X, y).score(X, y) > 0.5
    log_target = TransformedTargetRegressor(
        GMNMRegressor(**FAST), func=np.log1p, inverse_func=np.expm1
    )
    assert log_target.fit(X, np.abs(y)).predict(X).shape == (len(X),)


@pytest.mark.parametrize("Estimator", ESTIMATORS)
def test_sample_weight_routes_through_pipeline_and_search(
    Estimator, regression_data, classification_data
):
    X, y = data_for(Estimator(), regression_data, classification_data)
    w = np.random.default_rng(0).integers(1, 4, len(y)).astype(float)
    with sklearn.config_context(enable_metadata_routing=True):
        est = (
            Estimator(**FAST)
            .set_fit_request(sample_weight=True)
            .set_score_request(sample_weight=True)
        )
        pipe = make_pipeline(StandardScaler().set_fit_request(sample_weight=False), est)
        pipe.fit(X, y, sample_weight=w)
        direct = Estimator(**FAST).fit(
            StandardScaler().fit_transform(X), y, sample_weight=w
        )
        np.testing.assert_allclose(
            pipe.predict(X),
            direct.predict(StandardScaler().fit_transform(X)),
            rtol=1e-9,
        )
        # An explicit scorer that asks for the weights routes them the same way in
        # every scikit-learn version this package supports (1.6 included).
        metric = "accuracy" if is_classifier(est) else "r2"
        search = GridSearchCV(
            pipe,
            {f"{type(est).__name__.lower()}__alpha": [1e-4]},
            cv=2,
            scoring=get_scorer(metric).set_score_request(sample_weight=True),
        )
        search.fit(X, y, sample_weight=w)
        assert hasattr(search, "best_estimator_")


def test_keyboard_interrupt_propagates(regression_data):
    """Ctrl-C stops the fit (skorch would swallow it) and leaves nothing fitted."""
    from skorch.callbacks import Callback

    X, y = regression_data

    class Interrupt(Callback):
        def on_epoch_end(self, net, **kwargs):
            raise KeyboardInterrupt

    est = GMNMRegressor(max_iter=50)
    original = GMNMRegressor._build_net

    def build_with_interrupt(self, *args, **kwargs):
        net, config = original(self, *args, **kwargs)
        net.callbacks_.append(("interrupt", Interrupt().initialize()))
        return net, config

    GMNMRegressor._build_net = build_with_interrupt
    try:
        with pytest.raises(KeyboardInterrupt):
            est.fit(X, y)
    finally:
        GMNMRegressor._build_net = original
    with pytest.raises(NotFittedError):
        est.predict(X)


def test_a_model_recorded_as_trained_on_cuda_predicts_on_the_cpu(regression_data):
    """skorch maps CUDA tensors to the CPU when unpickled on a machine without a GPU;
    the estimator then predicts there, and only a refit on 'cuda' is an error."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    X, y = regression_data
    est = GMNMRegressor(**FAST).fit(X, y)
    expected = est.predict(X)
    est.net_.device = "cuda"  # as if trained on a GPU
    est.set_params(device="cuda")
    with pytest.warns(UserWarning, match="no CUDA devices are available"):
        loaded = pickle.loads(pickle.dumps(est))
    np.testing.assert_allclose(loaded.predict(X), expected, rtol=1e-12)
    with pytest.raises(ValueError, match="CUDA is not available"):
        loaded.fit(X, y)


@pytest.mark.parametrize(
    "params",
    [
        {"hidden_layer_sizes": (8,)},
        {"embedding_dim": 3},
        {"init": "random", "standardize": False},
        {"n_components": 1, "n_projections": 1},
        {"batch_size": 16},
    ],
)
@pytest.mark.parametrize("Estimator", ESTIMATORS)
def test_non_default_networks_fit(
    Estimator, params, regression_data, classification_data
):
    X, y = data_for(Estimator(), regression_data, classification_data)
    est = Estimator(max_iter=5, random_state=0, **params).fit(X, y)
    assert np.isfinite(est.predict(X).astype(float)).all()
    if params.get("embedding_dim"):
        assert est.module_.body.embedding.out_features == params["embedding_dim"]


def test_verbose_2_shows_a_progress_bar(classification_data, capsys):
    X, y = classification_data
    GMNMClassifier(max_iter=2, verbose=2).fit(X, y)
    captured = capsys.readouterr()
    assert "it/s" in captured.err or "batches" in captured.err or "%" in captured.err


# --- GPU (run where CUDA exists) ----------------------------------------------------

requires_cuda = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA device"
)

CUDA_TASKS = {
    "regression, sample weights": (
        GMNMRegressor,
        {},
        lambda rng: make_friedman1(n_samples=300, random_state=0),
        True,
    ),
    "multi-output regression, early stopping": (
        GMNMRegressor,
        {"early_stopping": True, "hidden_layer_sizes": (8,)},
        lambda rng: make_regression(n_samples=300, n_targets=2, random_state=0),
        False,
    ),
    "multiclass, class_weight, float32": (
        GMNMClassifier,
        {"class_weight": "balanced"},
        lambda rng: tuple(
            a.astype(np.float32) if a.ndim == 2 else a
            for a in make_classification(
                n_samples=300, n_classes=3, n_informative=4, random_state=0
            )
        ),
        True,
    ),
    "multilabel, early stopping": (
        GMNMClassifier,
        {"early_stopping": True},
        lambda rng: (X := rng.normal(size=(300, 4)), (X[:, :3] > 0).astype(int)),
        False,
    ),
}


@requires_cuda
@pytest.mark.parametrize("task", list(CUDA_TASKS))
def test_cuda_fit_matches_the_cpu_fit(task):
    """The same seed trains the same network on the GPU as on the CPU (up to rounding):
    every tensor the fit touches (weights, targets, validation split) follows the
    device."""
    Estimator, params, make, weighted = CUDA_TASKS[task]
    rng = np.random.default_rng(0)
    X, y = make(rng)
    weight = rng.uniform(0.5, 2.0, size=len(X)) if weighted else None
    outputs = {}
    for device in ("cpu", "cuda"):
        est = Estimator(max_iter=15, random_state=0, device=device, **params)
        est.fit(X, y, sample_weight=weight)
        assert est.module_.x_mean.device.type == device
        predict = est.predict_proba if is_classifier(est) else est.predict
        outputs[device] = predict(X)
        assert est.score(X, y) > (0.3 if is_classifier(est) else 0.0)
    tolerance = 1e-3 if X.dtype == np.float32 else 1e-6
    np.testing.assert_allclose(outputs["cuda"], outputs["cpu"], atol=tolerance)


@requires_cuda
def test_device_auto_uses_the_gpu(regression_data):
    X, y = regression_data
    est = GMNMRegressor(device="auto", max_iter=2).fit(X, y)
    assert est.module_.x_mean.is_cuda


@requires_cuda
@pytest.mark.parametrize("Estimator", ESTIMATORS)
def test_trained_on_cuda_predicts_where_there_is_no_gpu(
    Estimator, regression_data, classification_data, tmp_path
):
    """Pickled after a GPU fit, unpickled in a process that sees no GPU: the model
    predicts the same there, and only a refit on 'cuda' is an error."""
    X, y = data_for(Estimator(), regression_data, classification_data)
    est = Estimator(device="cuda", **FAST).fit(X, y)
    predict = "predict_proba" if Estimator is GMNMClassifier else "predict"
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y)
    np.save(tmp_path / "expected.npy", getattr(est, predict)(X))
    (tmp_path / "model.pkl").write_bytes(pickle.dumps(est))
    code = f"""
import pickle, warnings
import numpy as np, torch
assert not torch.cuda.is_available()
d = {str(tmp_path)!r}
with warnings.catch_warnings(record=True):
    warnings.simplefilter("always")
    est = pickle.loads(open(d + "/model.pkl", "rb").read())
X = np.load(d + "/X.npy")
np.testing.assert_allclose(est.{predict}(X), np.load(d + "/expected.npy"), atol=1e-9)
try:
    est.fit(X, np.load(d + "/y.npy"))
except ValueError as error:
    assert "CUDA is not available" in str(error), error
else:
    raise AssertionError("a refit on 'cuda' without a GPU did not fail")
print("ok")
"""
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("ok")


@pytest.mark.parametrize("Estimator", [GMNMRegressor, GMNMClassifier])
def test_predict_in_blocks_equals_predict_row_by_row(Estimator, monkeypatch):
    """predict cuts large inputs into blocks: the blocks' seams change nothing."""
    import sklearn_gmnm._estimators as estimators

    X, y = make_regression(n_samples=60, n_features=4, random_state=0)
    if Estimator is GMNMClassifier:
        y = (y > 0).astype(int)
    model = Estimator(max_iter=3, random_state=0).fit(X, y)
    monkeypatch.setitem(estimators.PREDICT_BATCH_SIZE, "cpu", 7)  # 9 blocks, uneven
    blocks = model._forward(X)
    rows = np.vstack([model._forward(X[i : i + 1]) for i in range(len(X))])
    np.testing.assert_allclose(blocks, rows, rtol=1e-7, atol=1e-12)


def test_batch_callbacks_still_reach_callbacks_that_use_them():
    """The net skips no-op batch hooks, but a callback that defines them is called."""
    from skorch.callbacks import Callback

    class CountBatches(Callback):
        calls = 0

        def on_batch_end(self, net, **kwargs):
            CountBatches.calls += 1

    X, y = make_regression(n_samples=50, n_features=3, random_state=0)
    model = GMNMRegressor(max_iter=1, batch_size=10, random_state=0).fit(X, y)
    model.net_.callbacks_.append(("count", CountBatches()))
    model.partial_fit(X, y)
    assert CountBatches.calls == 5  # one epoch of 50 rows in batches of 10
    pickle.loads(pickle.dumps(model)).predict(X)


def test_a_gradient_callback_sees_every_step_and_the_same_fit():
    """Without a callback on the gradients the net steps Adam directly; with one it
    takes skorch's own path (a closure and the on_grad_computed hook). Both are the
    same optimisation: the fitted predictions agree."""
    from skorch.callbacks import Callback

    class GradientNorms(Callback):
        def initialize(self):
            self.norms = []
            return self

        def on_grad_computed(self, net, named_parameters, **kwargs):
            squares = sum(p.grad.square().sum() for _, p in named_parameters)
            self.norms.append(float(squares) ** 0.5)

    X, y = make_regression(n_samples=50, n_features=3, random_state=0)
    plain = GMNMRegressor(max_iter=1, batch_size=10, random_state=0).fit(X, y)
    watched = GMNMRegressor(max_iter=1, batch_size=10, random_state=0).fit(X, y)
    norms = GradientNorms().initialize()
    watched.net_.callbacks_.append(("norms", norms))
    plain.partial_fit(X, y)
    watched.partial_fit(X, y)
    assert len(norms.norms) == 5 and all(n > 0 for n in norms.norms)
    np.testing.assert_array_equal(watched.predict(X), plain.predict(X))


def test_without_a_fused_adam_kernel_the_estimator_uses_plain_adam(monkeypatch):
    """Torch before 2.4 has no fused Adam on the CPU: the estimator falls back to the
    foreach implementation instead of failing."""
    import torch

    from sklearn_gmnm import _estimators as estimators

    class OldAdam(torch.optim.Adam):
        def __init__(self, params, fused=None, **kwargs):
            if fused:
                raise RuntimeError("`fused=True` requires all the params to be CUDA")
            super().__init__(params, fused=fused, **kwargs)

    monkeypatch.setattr(torch.optim, "Adam", OldAdam)
    estimators._fused_adam.cache_clear()
    try:
        X, y = make_regression(n_samples=60, n_features=3, random_state=0)
        model = GMNMRegressor(max_iter=2, random_state=0).fit(X, y)
        assert not model.net_.optimizer_.param_groups[0]["fused"]
        assert np.isfinite(model.predict(X)).all()
    finally:
        estimators._fused_adam.cache_clear()
