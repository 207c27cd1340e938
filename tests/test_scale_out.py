"""Searches in worker processes: joblib's default backend and a dask cluster."""

import os

import joblib
import numpy as np
import pytest
import torch
from sklearn.datasets import make_friedman1
from sklearn.model_selection import GridSearchCV

from sklearn_gmnm import GMNMRegressor

GRID = {"n_components": [8, 16], "alpha": [1e-4, 1e-2]}


@pytest.fixture(scope="module")
def data():
    return make_friedman1(n_samples=120, random_state=0)


def torch_threads(estimator, X, y):
    """A 'score' that reports how many threads torch may use where the fit ran."""
    return float(torch.get_num_threads())


def test_workers_do_not_oversubscribe_the_cpu(data):
    """Each of n_jobs workers gets at most its share of the cores for torch."""
    X, y = data
    search = GridSearchCV(
        GMNMRegressor(max_iter=2), GRID, cv=2, n_jobs=2, scoring=torch_threads
    ).fit(X, y)
    share = max(1, (os.cpu_count() or 1) // 2)
    assert search.cv_results_["mean_test_score"].max() <= share


def test_grid_search_on_a_dask_cluster_matches_the_default_backend(data):
    distributed = pytest.importorskip("distributed")
    X, y = data
    search = GridSearchCV(GMNMRegressor(max_iter=10, random_state=0), GRID, cv=2)
    local = search.fit(X, y).cv_results_["mean_test_score"]
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster),
        joblib.parallel_backend("dask"),
    ):
        remote = GridSearchCV(
            GMNMRegressor(max_iter=10, random_state=0), GRID, cv=2, n_jobs=-1
        ).fit(X, y)
    # Workers use one thread each, this process more: matrix products may round
    # differently in the last bits, nothing more.
    np.testing.assert_allclose(
        remote.cv_results_["mean_test_score"], local, rtol=1e-6, atol=1e-9
    )
    assert remote.best_params_ == search.best_params_
    np.testing.assert_allclose(remote.predict(X), search.predict(X), rtol=1e-6)
