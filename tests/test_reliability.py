"""Odd but valid input, threads and processes: either a right answer or a clear error."""

import os
import subprocess
import sys
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from sklearn.datasets import make_friedman1

from sklearn_gmnm import GMNMClassifier, GMNMRegressor

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

TINY_FIT = {"max_iter": 3, "random_state": 0, "n_components": 4}
# Errors the estimators document for bad input: ValueError (NaN/inf, shapes, labels,
# overflow to inf in a narrow dtype) and TypeError (sparse input).
DOCUMENTED_ERRORS = (ValueError, TypeError)


@st.composite
def tables(draw):
    n_rows = draw(st.integers(1, 25))
    n_features = draw(st.integers(1, 30))  # more features than rows included
    dtype = draw(
        st.sampled_from(["float16", "float32", "float64", "int64", "bool", "object"])
    )
    magnitude = draw(st.sampled_from([1e-30, 1e-5, 1.0, 1e5, 1e30]))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_rows, n_features)) * magnitude
    if draw(st.booleans()):
        X[:, 0] = 3.0 * magnitude  # a constant column
    with np.errstate(over="ignore"):
        X = X.astype(dtype) if dtype != "bool" else X > 0  # object: Python floats
    special = draw(st.sampled_from([None, None, None, np.nan, np.inf, -np.inf]))
    if special is not None and dtype in ("float16", "float32", "float64", "object"):
        X[rng.integers(n_rows), rng.integers(n_features)] = special
    return X, rng


def has_nan_or_inf(X):
    return not np.isfinite(np.asarray(X, dtype=np.float64)).all()


def fits_or_fails_clearly(est, X, y, predict=("predict",)):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            est.fit(X, y)
        except DOCUMENTED_ERRORS as error:
            assert str(error), "an error without a message"
            return None
    outputs = {}
    for method in predict:
        out = getattr(est, method)(X)
        assert len(out) == len(X)
        if out.dtype.kind == "f":
            assert np.isfinite(out).all(), f"{method} returned non-finite values"
        outputs[method] = out
    return outputs


@settings(
    max_examples=30,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(tables())
def test_regressor_on_generated_tables(table):
    X, rng = table
    y = rng.normal(size=len(X))
    if has_nan_or_inf(X):  # a clear error that names the problem
        with pytest.raises(ValueError, match=r"NaN|infinity"):
            GMNMRegressor(**TINY_FIT).fit(X, y)
        return
    out = fits_or_fails_clearly(GMNMRegressor(**TINY_FIT), X, y)
    if out is not None:
        assert out["predict"].dtype == np.float64


@settings(
    max_examples=30,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(tables(), st.sampled_from(["int", "str", "bool"]))
def test_classifier_on_generated_tables(table, label_kind):
    X, rng = table
    codes = rng.integers(0, 3, size=len(X))
    y = {"int": codes, "str": np.array(["a", "b", "c"])[codes], "bool": codes > 0}[
        label_kind
    ]
    if has_nan_or_inf(X):
        with pytest.raises(ValueError, match=r"NaN|infinity"):
            GMNMClassifier(**TINY_FIT).fit(X, y)
        return
    if len(np.unique(y)) < 2:  # a single class: the documented error
        with pytest.raises(ValueError, match="class"):
            GMNMClassifier(**TINY_FIT).fit(X, y)
        return
    out = fits_or_fails_clearly(
        GMNMClassifier(**TINY_FIT), X, y, predict=("predict", "predict_proba")
    )
    if out is not None:
        assert set(out["predict"]) <= set(y)
        np.testing.assert_allclose(out["predict_proba"].sum(1), 1.0, rtol=1e-6)


def test_pandas_nullable_and_category_columns():
    X, y = make_friedman1(n_samples=60, n_features=5, random_state=0)
    frame = pd.DataFrame(X, columns=list("abcde"))
    frame["a"] = frame["a"].astype("Float64")
    frame["b"] = (frame["b"] > 0.5).astype("boolean")
    frame["c"] = (frame["c"] * 10).round().astype("Int64")
    est = GMNMRegressor(**TINY_FIT).fit(frame, y)
    assert np.isfinite(est.predict(frame)).all()
    frame["d"] = pd.Categorical(np.where(frame["d"] > 0.5, "hi", "lo"))
    with pytest.raises(ValueError, match=r"could not convert|numeric|dtype"):
        GMNMRegressor(**TINY_FIT).fit(frame, y)


def test_missing_values_in_nullable_columns_are_a_clear_error():
    X, y = make_friedman1(n_samples=30, n_features=5, random_state=0)
    frame = pd.DataFrame(X).astype("Float64")
    frame.iloc[3, 2] = pd.NA
    with pytest.raises(ValueError, match="NaN"):
        GMNMRegressor(**TINY_FIT).fit(frame, y)


def test_sparse_input_is_a_clear_error():
    X, y = make_friedman1(n_samples=30, n_features=5, random_state=0)
    with pytest.raises(TypeError, match=r"[Ss]parse"):
        GMNMRegressor(**TINY_FIT).fit(sp.csr_matrix(X), y)


def test_unseen_labels_at_score_time_are_a_clear_error():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3))
    y = np.array(["a", "b"])[rng.integers(0, 2, 40)]
    est = GMNMClassifier(**TINY_FIT).fit(X, y)
    # Scoring against labels the model never saw is scored as wrong, as for any
    # scikit-learn classifier; predictions are always among the known classes.
    y_new = np.where(y == "a", "z", y)
    assert 0.0 <= est.score(X, y_new) <= 1.0
    assert set(est.predict(X)) <= {"a", "b"}


def test_predict_from_several_threads_matches_one_thread():
    X, y = make_friedman1(n_samples=300, random_state=0)
    est = GMNMRegressor(max_iter=20, random_state=0).fit(X, y)
    expected = est.predict(X)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: est.predict(X), range(12)))
    for result in results:
        np.testing.assert_array_equal(result, expected)


def test_random_state_gives_identical_predictions_across_processes():
    code = (
        "import warnings; warnings.simplefilter('ignore');"
        "import numpy as np;"
        "from sklearn.datasets import make_friedman1;"
        "from sklearn_gmnm import GMNMRegressor;"
        "X, y = make_friedman1(n_samples=200, random_state=0);"
        "p = GMNMRegressor(max_iter=10, random_state=0).fit(X, y).predict(X);"
        "print(p.tobytes().hex())"
    )
    runs = [
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout.strip()
        for _ in range(2)
    ]
    X, y = make_friedman1(n_samples=200, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        here = GMNMRegressor(max_iter=10, random_state=0).fit(X, y).predict(X)
    assert runs[0] == runs[1] == here.tobytes().hex()


@pytest.mark.skipif(
    not os.path.exists("/proc/self/clear_refs"), reason="needs Linux's /proc"
)
def test_predict_memory_does_not_grow_with_the_rows():
    """predict runs in blocks: on 400,000 rows it adds far less than the ~400 MB that
    the network's activations for all rows would take (it once did, through heap
    fragmentation)."""
    code = (
        "import warnings; warnings.simplefilter('ignore');"
        "import numpy as np;"
        "from sklearn.datasets import make_friedman1;"
        "from sklearn_gmnm import GMNMRegressor;"
        "X, y = make_friedman1(n_samples=500, n_features=20, random_state=0);"
        "est = GMNMRegressor(max_iter=2, random_state=0).fit(X, y);"
        "big = np.random.default_rng(0).random((400_000, 20)); est.predict(big[:10]);"
        "status = lambda key: int([l for l in open('/proc/self/status')"
        " if l.startswith(key)][0].split()[1]) * 1024;"
        "open('/proc/self/clear_refs', 'w').write('5'); rss = status('VmRSS:');"
        "est.predict(big); print(status('VmHWM:') - rss)"
    )
    added = int(
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout.split()[-1]
    )
    assert added < 120 * 2**20, f"predict added {added / 2**20:.0f} MiB"
