"""The fitted Gaussians, read back in the user's units, and drawn."""

import sys
import warnings

import numpy as np
import pytest
import torch
from sklearn.datasets import make_classification
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sklearn_gmnm import GMNMClassifier, GMNMRegressor
from sklearn_gmnm.nn import GMNM

TRUE_CENTERS = np.array([[25.0, -0.5], [70.0, 0.4], [50.0, 0.0]])
AMPLITUDES = np.array([1.0, -0.8, 0.6])
SIGMA = np.array([8.0, 0.2])  # features on very different scales


@pytest.fixture(scope="module")
def bumps():
    rng = np.random.default_rng(0)
    X = np.column_stack([rng.uniform(0, 100, 1500), rng.uniform(-1, 1, 1500)])
    y = sum(
        a * np.exp(-0.5 * (((X - c) / SIGMA) ** 2).sum(1))
        for a, c in zip(AMPLITUDES, TRUE_CENTERS, strict=True)
    )
    return X, y


def fit(X, y, embedding_dim):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return GMNMRegressor(
            n_components=8,
            n_projections=2,
            embedding_dim=embedding_dim,
            max_iter=300,
            learning_rate_init=1e-2,
            random_state=0,
        ).fit(X, y)


def responses(gaussians, X):
    diff = X[:, None, :] - gaussians["centers"][None]
    return np.exp(
        -0.5 * np.einsum("nmi,mij,nmj->nm", diff, gaussians["precisions"], diff)
    )


@pytest.mark.parametrize("embedding_dim", [None, 16])
def test_gaussians_in_input_units_reproduce_the_model(bumps, embedding_dim):
    """The standardisation (and the embedding) undone: the Gaussians in input units
    give the network's own responses and predictions, to rounding."""
    X, y = bumps
    est = fit(X, y, embedding_dim)
    g = est.gaussians()
    module = est.module_
    with torch.no_grad():
        z = module.standardize(torch.as_tensor(X[:100]))
        if module.body.embedding is not None:
            z = module.body.embedding(z)
        phi = module.body.layers[0].basis(z).numpy()
    np.testing.assert_allclose(responses(g, X[:100]), phi, atol=1e-10)
    predicted = responses(g, X[:100]) @ g["mixture_weights"].T + g["bias"]
    np.testing.assert_allclose(predicted.ravel(), est.predict(X[:100]), atol=1e-10)
    np.testing.assert_allclose(
        g["widths"], 1 / np.linalg.norm(g["projections"], axis=-1), rtol=1e-12
    )
    assert ("embedding" in g["space"]) == (embedding_dim is not None)


@pytest.mark.parametrize("embedding_dim", [None, 16])
def test_fitted_centres_land_near_the_true_ones(bumps, embedding_dim):
    X, y = bumps
    g = fit(X, y, embedding_dim).gaussians()
    weights = g["mixture_weights"][0]
    strong = np.abs(weights) > 0.2
    for center, amplitude in zip(TRUE_CENTERS, AMPLITUDES, strict=True):
        distance = np.linalg.norm((g["centers"][strong] - center) / SIGMA, axis=1)
        nearest = np.argmin(distance)
        assert distance[nearest] < 1.0  # within one true standard deviation
        assert np.sign(weights[strong][nearest]) == np.sign(amplitude)


def test_classifier_gaussians_weigh_the_logits():
    X, y = make_classification(n_samples=200, n_features=4, random_state=0)
    est = GMNMClassifier(n_components=6, max_iter=20, random_state=0).fit(X, y)
    g = est.gaussians()
    assert g["centers"].shape == (6, 4)
    assert g["mixture_weights"].shape[1] == 6


def test_plot_gaussians_draws_one_ellipse_per_gaussian(bumps):
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    from sklearn_gmnm.inspection import plot_gaussians

    X, y = bumps
    est = fit(X[:300], y[:300], None)
    ax = plot_gaussians(est)
    assert len(ax.patches) == 8
    assert len(ax.images) == 1  # two inputs: the fitted function is drawn beneath
    surface = ax.images[0].get_array()
    assert surface.shape == (100, 100) and np.isfinite(surface).all()
    layer = GMNM(3, 1, n_components=5)
    ax = plot_gaussians(layer, features=(0, 2))
    assert len(ax.patches) == 5 and len(ax.images) == 0
    assert len(plot_gaussians(GMNM(2, 1, n_components=4)).images) == 1
    with pytest.raises(ValueError, match="features"):
        plot_gaussians(est, features=(0, 0))
    with pytest.raises(TypeError, match="fitted GMNMRegressor"):
        plot_gaussians(object())
    with pytest.raises(ValueError, match="output must be an index below"):
        plot_gaussians(est, output=1)  # one output
    with pytest.raises(TypeError, match=r"pipeline\[-1\]"):
        plot_gaussians(make_pipeline(StandardScaler(), est))


def test_plot_gaussians_without_matplotlib_says_what_to_install(bumps, monkeypatch):
    from sklearn_gmnm.inspection import plot_gaussians

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError, match="pip install matplotlib"):
        plot_gaussians(GMNM(2, 1, n_components=3))
