"""Saving and loading fitted estimators: pickle, joblib and skops."""

import io
import pickle

import joblib
import numpy as np
import pytest
from sklearn.datasets import make_classification, make_friedman1

from sklearn_gmnm import GMNMClassifier, GMNMRegressor
from sklearn_gmnm._persistence import STATE_FORMAT, PersistenceVersionWarning

skops_io = pytest.importorskip("skops.io")


@pytest.fixture(scope="module")
def fitted():
    X_reg, y_reg = make_friedman1(n_samples=150, random_state=0)
    X_clf, y_clf = make_classification(
        n_samples=150, n_features=5, n_informative=3, n_classes=3, random_state=0
    )
    labels = np.array(["ant", "bee", "cat"])[y_clf]
    return {
        "regressor": (GMNMRegressor(max_iter=20, random_state=0), X_reg, y_reg),
        "early stopping": (
            GMNMRegressor(max_iter=20, early_stopping=True, random_state=0),
            X_reg,
            y_reg,
        ),
        "classifier": (GMNMClassifier(max_iter=20, random_state=0), X_clf, labels),
    }


CASES = ["regressor", "early stopping", "classifier"]


def outputs(est, X):
    return est.predict_proba(X) if hasattr(est, "predict_proba") else est.predict(X)


@pytest.mark.parametrize("case", CASES)
def test_saved_state_holds_no_torch_objects(fitted, case):
    est, X, y = fitted[case]
    est.fit(X, y)
    assert b"torch" not in pickle.dumps(est)
    assert b"skorch" not in pickle.dumps(est)
    assert hasattr(est, "net_")  # saving does not change the live estimator


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("how", ["pickle", "joblib", "skops"])
def test_round_trip_predicts_the_same(fitted, case, how):
    est, X, y = fitted[case]
    est.fit(X, y)
    if how == "pickle":
        loaded = pickle.loads(pickle.dumps(est))
    elif how == "joblib":
        buffer = io.BytesIO()
        joblib.dump(est, buffer)
        buffer.seek(0)
        loaded = joblib.load(buffer)
    else:
        data = skops_io.dumps(est)
        # Only the estimator's own class needs trusting: everything inside is plain.
        assert skops_io.get_untrusted_types(data=data) == [
            f"sklearn_gmnm._estimators.{type(est).__name__}"
        ]
        loaded = skops_io.loads(data, trusted=[type(est)])
    np.testing.assert_array_equal(outputs(loaded, X), outputs(est, X))
    assert loaded.n_iter_ == est.n_iter_
    assert loaded.loss_curve_ == est.loss_curve_
    assert loaded.get_params() == est.get_params()


@pytest.mark.parametrize("case", CASES)
def test_training_continues_after_loading_exactly_as_without(fitted, case):
    """The optimizer state, history and stopping counters are saved too."""
    est, X, y = fitted[case]
    est.fit(X, y)
    loaded = pickle.loads(pickle.dumps(est))
    est.partial_fit(X, y)
    loaded.partial_fit(X, y)
    np.testing.assert_array_equal(outputs(loaded, X), outputs(est, X))
    assert loaded.loss_curve_ == est.loss_curve_


def test_a_different_package_version_warns_and_an_unknown_format_fails(fitted):
    est, X, y = fitted["regressor"]
    est.fit(X, y)
    state = est.__getstate__()
    network = dict(state["_network_state"], package_version="0.0.1")
    with pytest.warns(PersistenceVersionWarning, match="saved by sklearn_gmnm 0.0.1"):
        type(est).__new__(type(est)).__setstate__(dict(state, _network_state=network))
    network = dict(network, format=STATE_FORMAT + 1)
    with pytest.raises(ValueError, match=r"storage format .* cannot read"):
        type(est).__new__(type(est)).__setstate__(dict(state, _network_state=network))


def test_loading_does_not_move_the_global_random_state(fitted):
    import torch

    est, X, y = fitted["regressor"]
    est.fit(X, y)
    data = pickle.dumps(est)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    pickle.loads(data)
    torch.testing.assert_close(torch.rand(3), expected)


def test_the_loading_machine_chooses_the_adam_implementation(fitted):
    """A model saved with the fused Adam kernel loads where the kernel is missing (and
    the other way round): the saved choice of implementation is not restored."""
    est, X, y = fitted["regressor"]
    est.fit(X, y)
    here = est.net_.optimizer_.param_groups[0]["fused"]
    state = est.__getstate__()
    network = state["_network_state"]
    groups = [dict(g, fused=not here) for g in network["optimizer"]["param_groups"]]
    network = dict(network, optimizer=dict(network["optimizer"], param_groups=groups))
    loaded = type(est).__new__(type(est))
    loaded.__setstate__(dict(state, _network_state=network))
    assert loaded.net_.optimizer_.param_groups[0]["fused"] == here
    loaded.partial_fit(X, y)
    assert np.isfinite(loaded.predict(X)).all()
