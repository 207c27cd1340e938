"""Torch modules built on the GMNM layer."""

import math
import numbers
import warnings

import torch
from torch import Tensor, nn

from . import functional as F

__all__ = ["GMNM", "GMNMMLP", "CompiledOrEager"]


def _check_positive_int(value, name):
    """``value`` as a Python int, if it is a positive integer of any integral type
    (numpy's too: hyperparameter grids built with numpy give them); else a ValueError
    that names it."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    return int(value)


def _random_directions(
    n_components, n_projections, in_features, generator, device=None, dtype=None
):
    """Unit-norm projection rows, orthonormal within a Gaussian wherever k <= in_features.

    Drawn on the generator's device (the global generator of ``device`` if None) and
    returned on ``device``: a CPU generator gives the same directions on every device.
    Returns a tensor of shape (m, k, in_features).
    """
    draw_on = generator.device if generator is not None else device
    g = torch.randn(
        n_components,
        in_features,
        n_projections,
        generator=generator,
        device=draw_on,
        dtype=dtype,
    )  # (m, d, k)
    if n_projections <= in_features:
        q, _ = torch.linalg.qr(g)  # (m, d, k), orthonormal columns
        return q.transpose(1, 2).to(device)  # (m, k, d)
    g = g.transpose(1, 2)  # (m, k, d)
    return (g / g.norm(dim=-1, keepdim=True)).to(device)


def _draw_rows(weight, max_samples, rng):
    """Indices of ``max_samples`` rows drawn without replacement in proportion to
    ``weight`` (numpy, one per row), or None when there are no more rows than that.

    Every data-aware initialisation subsamples through this one draw, so drawing early
    (before standardising or embedding the rows) and drawing in the layer itself pick
    the same rows from the same random stream.
    """
    if len(weight) <= max_samples:
        return None
    return rng.choice(len(weight), max_samples, replace=False, p=weight / weight.sum())


def _reflect_at_faces(X, weight, n_centers):
    """``X`` (numpy, n x d) with the rows near each face of its bounding box mirrored
    across that face, and their weights: see ``GMNM.init_from_data(boundary='reflect')``.
    """
    import numpy as np

    low, high = X.min(axis=0), X.max(axis=0)
    side = high - low
    varying = side > 0
    if not varying.any():
        return X, weight
    # the spacing of n_centers points spread evenly over the box (its varying sides)
    spacing = (np.prod(side[varying]) / n_centers) ** (1 / varying.sum())
    rows, weights = [X], [weight]
    for j in np.flatnonzero(varying):
        band = min(spacing, side[j] / 2)
        for face, near in (
            (low[j], X[:, j] - low[j] < band),
            (high[j], high[j] - X[:, j] < band),
        ):
            mirrored = X[near].copy()
            mirrored[:, j] = 2 * face - mirrored[:, j]
            rows.append(mirrored)
            weights.append(weight[near])
    return np.concatenate(rows), np.concatenate(weights)


class GMNM(nn.Module):
    r"""Gaussian Mixture-Inspired Nonlinear Module (arXiv 2510.06660).

    Maps ``in_features`` to ``out_features`` through ``n_components`` Gaussian basis
    functions, each an augmented Gaussian projection with ``n_projections`` projections:

    .. math::

        y = \sum_{i=1}^{m} \pi_i \exp\left(-\tfrac12 \lVert A_i (x - \mu_i) \rVert^2\right)
            + b

    with ``A_i`` of shape (k, in_features), so that ``A_i^T A_i`` is a positive
    semi-definite precision matrix of rank at most k for any real ``A_i``, and mixture
    weights ``pi_i`` free of any sign or sum-to-one constraint. All ``m * k``
    projections are computed as one matrix product (the fused augmented form).

    Parameters
    ----------
    in_features : int
        Size of each input sample.
    out_features : int
        Size of each output sample.
    n_components : int, default=32
        m, the number of Gaussians.
    n_projections : int, default=2
        k, the number of projections per Gaussian (rank of its precision matrix).
    bias : bool, default=True
        If False, the layer does not learn an output bias.
    explicit_centers : bool, default=True
        If True, the centres ``mu`` are parameters and the fused offsets
        ``c_i = -A_i mu_i`` are formed in the forward pass (an O(m k d) step): centres can
        be read back and initialised from data exactly. If False, the offsets ``c`` are
        learnt directly, which saves ``m * (in_features - k)`` parameters when
        ``k < in_features``; :meth:`gaussians` then reports the minimum-norm centre.
    relative_projections : bool, default=False
        If True, ``weight`` holds the projections in units of their starting scale:
        ``A = projection_scale * weight``, where the buffer ``projection_scale`` is the
        mean norm of the projection rows (1 / the mean width) set by
        :meth:`reset_parameters` and :meth:`init_from_data`. The function is the same;
        what changes is training: an optimiser such as Adam, whose steps have a size
        that does not depend on the parameter's scale, then moves the projections in
        steps proportional to their size, whatever the units of the input. In
        ``benchmarks/function_approx.py`` it gave a 32-Gaussian layer 0.66x the
        geometric-mean test MSE of plain projections; the estimators do not use it.
    device, dtype
        Factory arguments, as for :class:`torch.nn.Linear`.

    Attributes
    ----------
    weight : Parameter of shape (n_projections * n_components, in_features)
        The projection matrices, projection-major: ``weight.view(k, m, -1)[:, i]`` is
        ``A_i`` (divided by ``projection_scale`` if ``relative_projections``; use
        :meth:`projections` or :meth:`gaussians` to read them).
    projection_scale : Tensor of shape () or None
        The buffer that scales ``weight`` (only when ``relative_projections=True``).
    centers : Parameter of shape (n_components, in_features)
        The centres ``mu_i`` (only when ``explicit_centers=True``).
    offset : Parameter of shape (n_projections * n_components,)
        The fused offsets ``c_i`` (only when ``explicit_centers=False``).
    mixture_weight : Parameter of shape (out_features, n_components)
        The mixture weights ``pi``.
    bias : Parameter of shape (out_features,) or None

    Examples
    --------
    >>> import torch
    >>> from sklearn_gmnm.nn import GMNM
    >>> layer = GMNM(3, 2, n_components=16)
    >>> layer(torch.randn(8, 3)).shape
    torch.Size([8, 2])
    >>> layer(torch.randn(4, 5, 3)).shape
    torch.Size([4, 5, 2])
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        n_components: int = 32,
        n_projections: int = 2,
        bias: bool = True,
        explicit_centers: bool = True,
        relative_projections: bool = False,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        in_features = _check_positive_int(in_features, "in_features")
        out_features = _check_positive_int(out_features, "out_features")
        n_components = _check_positive_int(n_components, "n_components")
        n_projections = _check_positive_int(n_projections, "n_projections")
        factory_kwargs = {"device": device, "dtype": dtype}
        self.in_features = in_features
        self.out_features = out_features
        self.n_components = n_components
        self.n_projections = n_projections
        self.explicit_centers = explicit_centers
        self.relative_projections = relative_projections
        mk = n_components * n_projections
        self.weight = nn.Parameter(torch.empty(mk, in_features, **factory_kwargs))
        if relative_projections:
            self.register_buffer("projection_scale", torch.ones((), **factory_kwargs))
        else:
            self.register_buffer("projection_scale", None)
        if explicit_centers:
            self.centers = nn.Parameter(
                torch.empty(n_components, in_features, **factory_kwargs)
            )
            self.register_parameter("offset", None)
        else:
            self.offset = nn.Parameter(torch.empty(mk, **factory_kwargs))
            self.register_parameter("centers", None)
        self.mixture_weight = nn.Parameter(
            torch.empty(out_features, n_components, **factory_kwargs)
        )
        if bias:
            self.bias = nn.Parameter(torch.empty(out_features, **factory_kwargs))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def default_width(self) -> float:
        """Width (standard deviation) each Gaussian starts with, without data.

        Centres start as draws from a standard normal, as standardised data would be. In
        the k-dimensional space a Gaussian sees, m centres spread over about 4 standard
        deviations lie about ``4 / m**(1/k)`` apart: the width is that spacing, kept
        between 0.5 and 2 so that no Gaussian is a spike or flat.
        """
        rank = min(self.n_projections, self.in_features)
        spacing = 4.0 / self.n_components ** (1.0 / rank)
        return min(max(spacing, 0.5), 2.0)

    def reset_parameters(self) -> None:
        """Initialise for standardised inputs, without data.

        Centres: standard normal draws. Projections: random orthonormal directions scaled
        by ``1 / default_width()``. Mixture weights and bias: uniform in
        ``(-1/sqrt(m), 1/sqrt(m))``, as :class:`torch.nn.Linear` does for its fan-in.
        """
        with torch.no_grad():
            self._set_gaussians(
                torch.randn(
                    self.n_components,
                    self.in_features,
                    device=self.weight.device,
                    dtype=self.weight.dtype,
                ),
                torch.full(
                    (self.n_components,),
                    self.default_width(),
                    device=self.weight.device,
                    dtype=self.weight.dtype,
                ),
                generator=None,
            )
            bound = 1.0 / math.sqrt(self.n_components)
            nn.init.uniform_(self.mixture_weight, -bound, bound)
            if self.bias is not None:
                nn.init.uniform_(self.bias, -bound, bound)

    def _set_gaussians(self, centers, widths, generator):
        """Place Gaussians at ``centers`` (m, d) with isotropic ``widths`` (m,)."""
        directions = _random_directions(
            self.n_components,
            self.n_projections,
            self.in_features,
            generator,
            device=self.weight.device,
            dtype=self.weight.dtype,
        )  # (m, k, d)
        projections = directions / widths.view(-1, 1, 1)  # (m, k, d)
        # projection-major layout: row j*m + i is projection j of Gaussian i
        projections = projections.transpose(0, 1).reshape(-1, self.in_features)
        if self.relative_projections:
            # rows are unit directions over widths: their mean norm is 1 / mean width
            self.projection_scale.copy_(projections.norm(dim=1).mean())
            self.weight.copy_(projections / self.projection_scale)
        else:
            self.weight.copy_(projections)
        if self.explicit_centers:
            self.centers.copy_(centers)
        else:
            self.offset.copy_(
                F.gaussian_offsets(projections, centers, self.n_projections)
            )

    @torch.no_grad()
    def init_from_data(
        self,
        X,
        *,
        sample_weight=None,
        method="kmeans",
        overlap=0.5,
        boundary=None,
        max_samples=10_000,
        random_state=None,
    ):
        """Place the Gaussians on a sample of inputs (data-aware initialisation).

        Centres are spread over the data: distinct rows drawn at random in proportion to
        their weight (``method='sample'``), refined by weighted k-means
        (``method='kmeans'``). With fewer distinct rows than Gaussians, every row is a
        centre and the rest repeat rows. Each
        Gaussian's width is the mean distance from its centre to its 3 nearest other
        centres, times ``overlap``, so neighbouring Gaussians overlap. Projection
        directions stay random orthonormal; mixture weights and bias are left as they
        are.

        The draw is made over the distinct rows in sorted order, so the result depends on
        the data, not on their order, and an integer weight acts exactly as that many
        repeated rows.

        Parameters
        ----------
        X : array-like or Tensor of shape (n_samples, in_features)
            Inputs, on the scale the layer will see them.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative row weights; rows of weight 0 are never chosen.
        method : {'kmeans', 'sample'}, default='kmeans'
            How centres are chosen.
        overlap : float, default=0.5
            Width multiplier; larger values give smoother starting functions. 0.5 gave
            the lowest validation error in ``benchmarks/function_approx.py``.
        boundary : {None, 'reflect'}, default=None
            ``'reflect'``: before centres are chosen, the rows within one centre spacing
            ``h = (volume of the data's bounding box / n_components) ** (1 / d)`` of a
            face of that box (at most half its side) are mirrored across the face, so
            that centres are also placed on and just beyond the edge of the data, and
            the function near the edge is not made of Gaussian tails alone. For
            low-dimensional inputs on a box (function approximation, PDE domains): in
            ``benchmarks/function_approx.py`` it lowered the test MSE on 7 of 8
            functions (geometric mean 0.94x) but raised it 2.9x on a narrow ridge,
            which needs the centres the mirrored rows draw to the edge. It adds at
            most ``in_features`` copies of each row; constant features are left as
            they are.
        max_samples : int, default=10000
            Rows used at most (a weighted random subsample of larger inputs).
        random_state : int, numpy.random.Generator or None, default=None
            Seed for the draw, the subsample and the projection directions.

        Returns
        -------
        self : GMNM

        Examples
        --------
        >>> import torch
        >>> from sklearn_gmnm.nn import GMNM
        >>> X = torch.rand(500, 2) * 10
        >>> layer = GMNM(2, 1, n_components=8).init_from_data(X, random_state=0)
        >>> centers = layer.gaussians()["centers"]
        >>> bool(((centers >= 0) & (centers <= 10)).all())
        True
        """
        import numpy as np
        from sklearn.cluster import KMeans
        from sklearn.neighbors import NearestNeighbors

        if method not in ("kmeans", "sample"):
            raise ValueError(f"method must be 'kmeans' or 'sample', got {method!r}.")
        if not overlap > 0:
            raise ValueError(f"overlap must be positive, got {overlap!r}.")
        if boundary not in (None, "reflect"):
            raise ValueError(f"boundary must be None or 'reflect', got {boundary!r}.")
        X = X.detach().cpu().numpy() if isinstance(X, Tensor) else np.asarray(X)
        X = X.reshape(-1, X.shape[-1]).astype(np.float64)
        if X.shape[1] != self.in_features:
            raise ValueError(
                f"X has {X.shape[1]} features, but this layer has "
                f"in_features={self.in_features}."
            )
        if not np.isfinite(X).all():
            raise ValueError(
                "X contains NaN or infinity; clean it before init_from_data."
            )
        if len(X) == 0:
            raise ValueError("X has no rows: no data to place Gaussians on.")
        if sample_weight is None:
            w = np.ones(len(X))
        else:
            w = np.asarray(sample_weight, dtype=np.float64).reshape(-1)
            if w.shape != (len(X),) or not np.isfinite(w).all() or (w < 0).any():
                raise ValueError(
                    "sample_weight must hold one finite, non-negative weight per row of X."
                )
        if not w.sum() > 0:
            raise ValueError(
                "sample_weight sums to zero: no row to place Gaussians on."
            )
        m = self.n_components
        rng = np.random.default_rng(random_state)
        rows = _draw_rows(w, max_samples, rng)
        if rows is not None:
            X, w = X[rows], np.ones(max_samples)
        if boundary == "reflect":
            X, w = _reflect_at_faces(X, w, m)

        # Merge repeated rows (summing their weights): np.unique also sorts them, so the
        # draw below sees the same rows in the same order however X was shuffled.
        X, inverse = np.unique(X, axis=0, return_inverse=True)
        w = np.bincount(inverse.reshape(-1), weights=w, minlength=len(X))
        X, w = X[w > 0], w[w > 0]
        if len(X) >= m:
            # m distinct rows, drawn without replacement in proportion to their weight
            # (Efraimidis-Spirakis keys).
            keys = np.log(rng.random(len(X))) / w
            centers = X[np.argsort(-keys, kind="stable")[:m]]
            if method == "kmeans":
                # tol=0: stop when assignments stop changing. A positive tol is scaled
                # by the unweighted variance of X, which weights would change.
                kmeans = KMeans(m, init=centers, n_init=1, max_iter=100, tol=0.0)
                centers = kmeans.fit(X, sample_weight=w).cluster_centers_
        else:  # fewer distinct rows than Gaussians: every row, then weighted repeats
            extra = rng.choice(len(X), m - len(X), p=w / w.sum())
            centers = np.concatenate([X, X[extra]])

        # Widths: mean distance to the 3 nearest *other* centres. Centres repeated
        # (fewer distinct rows than Gaussians) share the width of their distinct
        # centre: measured among copies, rounding in the distance computation would
        # give them near-zero widths, i.e. huge, unstable projections.
        fallback = max(float(X.std(axis=0).mean()), 1.0) * overlap
        distinct, which = np.unique(centers, axis=0, return_inverse=True)
        if len(distinct) > 1:
            n_neighbors = min(3, len(distinct) - 1)  # kneighbors() leaves each out
            dist, _ = (
                NearestNeighbors(n_neighbors=n_neighbors).fit(distinct).kneighbors()
            )
            widths = dist.mean(axis=1)[which.reshape(-1)] * overlap
        else:
            widths = np.full(m, X.std(axis=0).mean() * overlap)
        # Constant data gives a zero width: fall back to the data's (or unit) scale.
        widths = np.where(widths > 1e-9 * fallback, widths, fallback)

        generator = torch.Generator()  # CPU: the same directions on every device
        generator.manual_seed(int(rng.integers(2**63 - 1)))
        as_tensor = {"device": self.weight.device, "dtype": self.weight.dtype}
        self._set_gaussians(
            torch.as_tensor(centers, **as_tensor),
            torch.as_tensor(widths, **as_tensor),
            generator=generator,
        )
        return self

    def projections(self) -> Tensor:
        """The projection matrices ``A``, of shape (k * m, in_features), projection-major.

        ``weight`` itself, or ``projection_scale * weight`` with
        ``relative_projections=True``; differentiable.
        """
        if self.relative_projections:
            return self.weight * self.projection_scale
        return self.weight

    def offsets(self, projections: Tensor | None = None) -> Tensor:
        """The fused offsets ``c_i = -A_i mu_i``, of shape (k * m,), projection-major.

        ``projections`` is :meth:`projections`, if already computed.
        """
        if self.explicit_centers:
            if projections is None:
                projections = self.projections()
            return F.gaussian_offsets(projections, self.centers, self.n_projections)
        return self.offset

    def forward(self, input: Tensor) -> Tensor:
        if F._checking_shapes() and input.shape[-1] != self.in_features:
            raise ValueError(
                f"Expected input with last dimension in_features={self.in_features}, "
                f"got shape {tuple(input.shape)}."
            )
        projections = self.projections()
        if self.explicit_centers:
            return F.gmnm_from_centers(
                input,
                projections,
                self.centers,
                self.mixture_weight,
                self.bias,
                n_projections=self.n_projections,
            )
        return F.gmnm(
            input,
            projections,
            self.offset,
            self.mixture_weight,
            self.bias,
            n_projections=self.n_projections,
        )

    def basis(self, input: Tensor) -> Tensor:
        """Gaussian responses ``phi`` of shape (..., n_components), each in (0, 1]."""
        projections = self.projections()
        return F.gmnm_basis(
            input, projections, self.offsets(projections), self.n_projections
        )

    @torch.no_grad()
    def gaussians(self) -> dict:
        """The Gaussians in the input space, detached, for display.

        Returns
        -------
        gaussians : dict with keys
            ``'centers'`` (m, in_features): the centres. With ``explicit_centers=False``
            and k < in_features a centre is defined only up to the null space of ``A_i``
            (the Gaussian is a ridge); the minimum-norm centre is given.
            ``'projections'`` (m, k, in_features): the matrices ``A_i``.
            ``'precisions'`` (m, in_features, in_features): ``A_i^T A_i``, positive
            semi-definite of rank at most k.
            ``'mixture_weights'`` (out_features, m): the weights ``pi``.
        """
        m, k = self.n_components, self.n_projections
        projections = self.projections().view(k, m, -1).transpose(0, 1)  # (m, k, d)
        if self.explicit_centers:
            centers = self.centers.clone()
        else:  # minimum-norm solution of A_i mu_i = -c_i
            c = self.offset.view(k, m).t().unsqueeze(-1)  # (m, k, 1)
            centers = -(torch.linalg.pinv(projections) @ c).squeeze(-1)  # (m, d)
        precisions = projections.transpose(1, 2) @ projections  # (m, d, d)
        return {
            "centers": centers,
            "projections": projections.contiguous(),
            "precisions": precisions,
            "mixture_weights": self.mixture_weight.clone(),
        }

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"n_components={self.n_components}, n_projections={self.n_projections}, "
            f"bias={self.bias is not None}, explicit_centers={self.explicit_centers}"
            + (", relative_projections=True" if self.relative_projections else "")
        )


class GMNMMLP(nn.Module):
    """A stack of GMNM layers mapping ``in_features`` to ``out_features``.

    ``input -> [Linear embedding] -> GMNM -> ... -> GMNM -> output``. Each entry of
    ``hidden_layer_sizes`` adds one GMNM layer of that output width; the last GMNM layer
    maps to ``out_features``. With ``hidden_layer_sizes=()`` the network is one GMNM layer.

    Parameters
    ----------
    in_features : int
        Size of each input sample.
    out_features : int
        Size of each output sample.
    hidden_layer_sizes : tuple of int, default=()
        Output widths of the hidden GMNM layers.
    n_components : int, default=32
        Gaussians per GMNM layer.
    n_projections : int, default=2
        Projections per Gaussian.
    embedding_dim : int or None, default=None
        If set, a learnt linear map ``in_features -> embedding_dim`` comes before the
        first GMNM layer: the Gaussians then live in a small space, which keeps their cost
        and the number of Gaussians they need down when ``in_features`` is large.
    residual : bool, default=False
        If True, a hidden GMNM layer whose input and output widths match adds its input
        to its output (``x + GMNM(x)``).
    explicit_centers : bool, default=True
        Passed to every :class:`GMNM` layer.
    relative_projections : bool, default=False
        Passed to every :class:`GMNM` layer.
    device, dtype
        Factory arguments.

    Examples
    --------
    >>> import torch
    >>> from sklearn_gmnm.nn import GMNMMLP
    >>> net = GMNMMLP(10, 3, hidden_layer_sizes=(16,), embedding_dim=4)
    >>> net(torch.randn(32, 10)).shape
    torch.Size([32, 3])
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        hidden_layer_sizes: tuple = (),
        n_components: int = 32,
        n_projections: int = 2,
        embedding_dim: int | None = None,
        residual: bool = False,
        explicit_centers: bool = True,
        relative_projections: bool = False,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        factory_kwargs = {"device": device, "dtype": dtype}
        if isinstance(hidden_layer_sizes, numbers.Integral):  # as scikit-learn's MLP
            hidden_layer_sizes = (hidden_layer_sizes,)
        hidden_layer_sizes = tuple(
            _check_positive_int(width, "each of hidden_layer_sizes")
            for width in hidden_layer_sizes
        )
        self.in_features = in_features
        self.out_features = out_features
        self.residual = residual
        if embedding_dim is None:
            self.embedding = None
            width = in_features
        else:
            embedding_dim = _check_positive_int(embedding_dim, "embedding_dim")
            self.embedding = nn.Linear(in_features, embedding_dim, **factory_kwargs)
            width = embedding_dim
        self.layers = nn.ModuleList()
        for out_width in (*hidden_layer_sizes, out_features):
            self.layers.append(
                GMNM(
                    width,
                    out_width,
                    n_components=n_components,
                    n_projections=n_projections,
                    explicit_centers=explicit_centers,
                    relative_projections=relative_projections,
                    **factory_kwargs,
                )
            )
            width = out_width
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Reset every layer; an embedding starts as an orthogonal map, so it keeps the
        scale of standardised inputs the Gaussians expect."""
        if self.embedding is not None:
            nn.init.orthogonal_(self.embedding.weight)
            nn.init.zeros_(self.embedding.bias)
        for layer in self.layers:
            layer.reset_parameters()

    @torch.no_grad()
    def init_from_data(self, X, **kwargs):
        """Data-aware initialisation of the first GMNM layer (see :meth:`GMNM.init_from_data`).

        ``X`` is passed through the embedding first, if there is one. Keyword arguments go
        to :meth:`GMNM.init_from_data`. Returns ``self``.
        """
        X = torch.as_tensor(X, dtype=self.layers[0].weight.dtype)
        X = X.reshape(-1, X.shape[-1])
        max_samples = kwargs.get("max_samples", 10_000)
        if len(X) > max_samples:
            # Draw the rows the layer would draw, here, so that only they are embedded
            # and merged; the layer then continues the same random stream.
            import numpy as np

            rng = np.random.default_rng(kwargs.get("random_state"))
            weight = kwargs.pop("sample_weight", None)
            weight = np.ones(len(X)) if weight is None else np.asarray(weight)
            weight = weight.reshape(-1).astype(np.float64)
            if weight.shape != (len(X),) or not weight.sum() > 0:
                raise ValueError(
                    "sample_weight must hold one non-negative weight per row of X, "
                    "with a positive sum."
                )
            X = X[torch.as_tensor(_draw_rows(weight, max_samples, rng))]
            kwargs["random_state"] = rng
        if self.embedding is not None:
            # Merge repeated rows (summing their weights) before the embedding: a matrix
            # product can round two copies of a row differently, which would turn them
            # into distinct points and change where the Gaussians go.
            import numpy as np

            rows, which = np.unique(
                X.detach().cpu().numpy(), axis=0, return_inverse=True
            )
            weight = kwargs.pop("sample_weight", None)
            weight = np.ones(len(X)) if weight is None else np.asarray(weight)
            kwargs["sample_weight"] = np.bincount(
                which.reshape(-1), weights=weight.reshape(-1), minlength=len(rows)
            )
            device = self.embedding.weight.device
            X = self.embedding(torch.as_tensor(rows, dtype=X.dtype, device=device))
        self.layers[0].init_from_data(X.to(self.layers[0].weight.device), **kwargs)
        return self

    def forward(self, input: Tensor) -> Tensor:
        x = input if self.embedding is None else self.embedding(input)
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            out = layer(x)
            x = x + out if self.residual and i < last and out.shape == x.shape else out
        return x


class CompiledOrEager(nn.Module):
    """Run a module through :func:`torch.compile`, falling back to eager execution.

    ``torch.compile`` fails lazily, at the first call, where it is unavailable (no C++
    compiler for the CPU backend, no Triton for the GPU one, an unsupported platform).
    This wrapper tries the compiled module on the first forward call; if compilation
    fails it warns once and runs the eager module from then on, so the same code runs
    everywhere. On a GPU, compilation fuses the elementwise steps of GMNM layers
    (see ``benchmarks/layer_speed.py``); second derivatives need the eager module.

    Parameters
    ----------
    module : torch.nn.Module
        The module to run; its parameters are shared, not copied.
    **compile_kwargs
        Passed to :func:`torch.compile`.

    Attributes
    ----------
    compiled : bool or None
        None before the first call, then whether the compiled module is in use.

    Examples
    --------
    >>> import torch
    >>> from sklearn_gmnm.nn import GMNM, CompiledOrEager
    >>> layer = GMNM(2, 1, n_components=4)
    >>> fast = CompiledOrEager(layer)
    >>> fast.module is layer
    True
    """

    def __init__(self, module: nn.Module, **compile_kwargs) -> None:
        super().__init__()
        self.module = module
        self.compile_kwargs = compile_kwargs
        self.compiled = None
        self._compiled_module = None

    def forward(self, *args, **kwargs):
        if self.compiled is None:
            try:
                # Kept out of the registered submodules: it shares self.module's
                # parameters, and registered it would repeat them in state_dict under
                # other keys, so that a state_dict saved after the first call would not
                # load before it (or into a wrapper that fell back to eager).
                self.__dict__["_compiled_module"] = torch.compile(
                    self.module, **self.compile_kwargs
                )
                out = self._compiled_module(*args, **kwargs)
            except Exception as error:  # any backend failure: fall back to eager
                warnings.warn(
                    f"torch.compile is unavailable here ({type(error).__name__}: "
                    f"{str(error).splitlines()[0] if str(error) else ''}); running the "
                    "module eagerly.",
                    RuntimeWarning,
                    stacklevel=2,
                )
                self.compiled = False
                self._compiled_module = None
                return self.module(*args, **kwargs)
            self.compiled = True
            return out
        if self.compiled:
            return self._compiled_module(*args, **kwargs)
        return self.module(*args, **kwargs)

    def __getstate__(self):
        # A compiled module does not pickle; the wrapper compiles again after loading.
        state = self.__dict__.copy()
        state["_compiled_module"] = None
        state["compiled"] = None
        return state
