"""Look inside a fitted GMNM model: its Gaussians, drawn over two input features.

matplotlib is an optional dependency (``pip install "sklearn-gmnm[cli]"`` brings it).
"""

import numpy as np

__all__ = ["plot_gaussians"]


def _as_numpy_gaussians(model):
    """``gaussians()`` of an estimator or a :class:`~sklearn_gmnm.nn.GMNM` layer, as
    numpy arrays."""
    if not hasattr(model, "gaussians"):
        hint = ""
        if hasattr(model, "steps"):
            hint = (
                " For a Pipeline, pass its last step (pipeline[-1]): its Gaussians "
                "are in the units of the features that step receives."
            )
        raise TypeError(
            f"plot_gaussians needs a fitted GMNMRegressor, GMNMClassifier or an "
            f"nn.GMNM layer, got {type(model).__name__}.{hint}"
        )
    gaussians = model.gaussians()
    return {
        key: value.detach().cpu().numpy() if hasattr(value, "detach") else value
        for key, value in gaussians.items()
    }


def _fitted_surface(model, xlim, ylim, features, output, n=100):
    """The model's output on an n x n grid over two-dimensional inputs."""
    import torch

    xs, ys = np.meshgrid(np.linspace(*xlim, n), np.linspace(*ylim, n))
    grid = np.empty((n * n, 2))
    grid[:, features[0]], grid[:, features[1]] = xs.ravel(), ys.ravel()
    if isinstance(model, torch.nn.Module):
        parameter = next(model.parameters())
        with torch.no_grad():
            values = model(
                torch.as_tensor(grid, dtype=parameter.dtype).to(parameter.device)
            )
        values = values[:, output].cpu().numpy()
    elif hasattr(model, "predict_proba"):
        values = model.predict_proba(grid)[:, output]
    else:
        values = np.asarray(model.predict(grid)).reshape(n * n, -1)[:, output]
    return values.reshape(n, n)


def plot_gaussians(model, features=(0, 1), *, output=0, n_std=1.0, ax=None):
    """Draw the Gaussians of a fitted model as ellipses over two input features.

    With two input features, the fitted function is drawn beneath them (for a
    classifier, the probability of class ``output``). Each Gaussian is drawn as the ellipse ``n_std`` standard deviations wide in the
    plane of the two features (the other features held at the Gaussian's centre),
    coloured by its mixture weight for one output. A Gaussian that ignores a direction
    in that plane (a ridge) is drawn as a long band, cut to the plot's extent.

    Parameters
    ----------
    model : GMNMRegressor, GMNMClassifier or sklearn_gmnm.nn.GMNM
        A fitted estimator (its Gaussians in input units, see ``gaussians()``), or a
        layer (its Gaussians in the layer's input space).
    features : tuple of two int, default=(0, 1)
        The input features on the horizontal and vertical axes.
    output : int, default=0
        The output whose mixture weights colour the Gaussians.
    n_std : float, default=1.0
        Half-width of the ellipses, in standard deviations.
    ax : matplotlib Axes, default=None
        Where to draw; a new figure's axes if None.

    Returns
    -------
    ax : matplotlib Axes

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_gmnm import GMNMRegressor
    >>> from sklearn_gmnm.inspection import plot_gaussians
    >>> X = np.random.default_rng(0).normal(size=(100, 3))
    >>> est = GMNMRegressor(n_components=5, max_iter=3).fit(X, X[:, 0] ** 2)
    >>> ax = plot_gaussians(est, features=(0, 2))
    >>> len(ax.patches)
    5
    """
    try:
        import matplotlib.pyplot as plt
        from matplotlib.patches import Ellipse
    except ImportError as error:
        raise ImportError(
            "plot_gaussians needs matplotlib: pip install matplotlib (or "
            "pip install 'sklearn-gmnm[cli]')."
        ) from error
    g = _as_numpy_gaussians(model)
    centers = g["centers"]
    n_features = centers.shape[1]
    i, j = features
    if not (0 <= i < n_features and 0 <= j < n_features) or i == j:
        raise ValueError(
            f"features must be two different indices below {n_features}, got "
            f"{features!r}."
        )
    n_outputs = g["mixture_weights"].shape[0]
    if isinstance(output, bool) or not 0 <= output < n_outputs:
        raise ValueError(
            f"output must be an index below the model's {n_outputs} output(s), got "
            f"{output!r}."
        )
    weights = g["mixture_weights"][output]
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 4.5))
    spread = np.ptp(centers[:, [i, j]], axis=0)
    cap = 4 * max(float(spread.max()), 1e-12)  # a ridge's band length
    limit = float(np.abs(weights).max()) or 1.0
    cmap = plt.get_cmap("RdBu_r")
    for center, precision, weight in zip(
        centers[:, [i, j]],
        g["precisions"][:, [i, j]][:, :, [i, j]],
        weights,
        strict=True,
    ):
        values, vectors = np.linalg.eigh(precision)
        lengths = 2 * n_std / np.sqrt(np.maximum(values, (2 * n_std / cap) ** 2))
        angle = np.degrees(np.arctan2(vectors[1, 0], vectors[0, 0]))
        ax.add_patch(
            Ellipse(
                center,
                lengths[0],
                lengths[1],
                angle=angle,
                facecolor=cmap(0.5 + 0.5 * weight / limit),
                edgecolor="k",
                alpha=0.5,
                lw=0.8,
            )
        )
    ax.scatter(centers[:, i], centers[:, j], s=8, c="k")
    pad = 0.15 * np.maximum(spread, 1e-12)
    xlim = (centers[:, i].min() - pad[0], centers[:, i].max() + pad[0])
    ylim = (centers[:, j].min() - pad[1], centers[:, j].max() + pad[1])
    if n_features == 2:  # the whole input space: draw the fitted function beneath
        surface = _fitted_surface(model, xlim, ylim, (i, j), output)
        image = ax.imshow(
            surface,
            extent=(*xlim, *ylim),
            origin="lower",
            aspect="auto",
            cmap="viridis",
            zorder=0,
        )
        ax.figure.colorbar(image, ax=ax, label=f"fitted output {output}")
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    names = getattr(model, "feature_names_in_", None)
    ax.set_xlabel(str(names[i]) if names is not None else f"feature {i}")
    ax.set_ylabel(str(names[j]) if names is not None else f"feature {j}")
    ax.set_title("Gaussians (red: positive weight, blue: negative)", fontsize=9)
    return ax
