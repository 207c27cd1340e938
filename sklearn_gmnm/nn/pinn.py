"""Physics-informed training: fit a network to a PDE residual and boundary values.

A physics-informed neural network (PINN) learns ``u(x)`` by minimising the mean squared
residual of the PDE at interior collocation points plus the mean squared error of the
boundary condition. GMNM suits it: ``exp`` is smooth, so the second derivatives a PDE
needs are exact and cheap (the layer's autograd node supports double backward).
"""

import math

import torch
from torch import Tensor, nn

__all__ = ["fit_pinn", "gradient", "laplacian"]


def gradient(u: Tensor, x: Tensor) -> Tensor:
    """du/dx for a scalar field: ``u`` (N, 1) computed from ``x`` (N, d); returns (N, d).

    The graph is kept (``create_graph=True``), so the result can be differentiated
    again and trained through.

    Examples
    --------
    >>> import torch
    >>> from sklearn_gmnm.nn.pinn import gradient
    >>> x = torch.tensor([[1.0, 2.0]], requires_grad=True)
    >>> gradient((x ** 2).sum(1, keepdim=True), x)
    tensor([[2., 4.]], grad_fn=<MulBackward0>)
    """
    (du,) = torch.autograd.grad(u.sum(), x, create_graph=True)
    return du


def laplacian(u: Tensor, x: Tensor) -> Tensor:
    """The Laplacian ``sum_j d2u/dx_j^2`` of a scalar field, shape (N, 1).

    ``u`` (N, 1) must be computed from ``x`` (N, d) with ``x.requires_grad``. One
    backward pass per input dimension.

    Examples
    --------
    >>> import torch
    >>> from sklearn_gmnm.nn.pinn import laplacian
    >>> x = torch.randn(3, 2, requires_grad=True)
    >>> laplacian((x ** 2).sum(1, keepdim=True), x)
    tensor([[4.],
            [4.],
            [4.]], grad_fn=<AddBackward0>)
    """
    du = gradient(u, x)  # (N, d)
    total = 0
    for j in range(x.shape[1]):
        (d2u,) = torch.autograd.grad(du[:, j].sum(), x, create_graph=True)  # (N, d)
        total = total + d2u[:, j : j + 1]
    return total


def fit_pinn(
    model: nn.Module,
    residual,
    interior: Tensor,
    boundary: Tensor,
    boundary_values: Tensor,
    *,
    max_iter: int = 2000,
    learning_rate: float = 1e-3,
    boundary_weight: float = 1.0,
    callback=None,
):
    """Train ``model`` on a PDE residual with Adam, full batch.

    Minimises ``mean(residual(model, x)^2) + boundary_weight * mean((model(x_b) -
    u_b)^2)`` over the collocation points ``interior`` and ``boundary``.

    Parameters
    ----------
    model : torch.nn.Module
        Maps (N, d) points to (N, 1) values, e.g. a :class:`~sklearn_gmnm.nn.GMNMMLP`
        (initialise its Gaussians on the domain first with ``init_from_data``).
    residual : callable
        ``residual(model, x)`` returns the PDE residual (N, 1) at points ``x`` (N, d);
        ``x`` is passed with ``requires_grad=True`` so that :func:`gradient` and
        :func:`laplacian` work on ``model(x)``.
    interior : Tensor of shape (N, d)
        Interior collocation points.
    boundary : Tensor of shape (M, d)
        Boundary points.
    boundary_values : Tensor of shape (M, 1)
        The solution on the boundary (Dirichlet condition).
    max_iter : int, default=2000
        Adam steps.
    learning_rate : float, default=1e-3
        Adam's learning rate.
    boundary_weight : float, default=1.0
        Weight of the boundary term.
    callback : callable, default=None
        Called as ``callback(step, loss)`` after every step (``step`` from 1); return
        True to stop early.

    Returns
    -------
    losses : list of float
        The training loss at every step.

    Raises
    ------
    FloatingPointError
        If the loss becomes NaN or infinite.

    Examples
    --------
    Solve ``u'' = -pi^2 sin(pi x)`` on [0, 1] with ``u(0) = u(1) = 0``:

    >>> import math, torch
    >>> from sklearn_gmnm.nn import GMNMMLP
    >>> from sklearn_gmnm.nn.pinn import fit_pinn, laplacian
    >>> _ = torch.manual_seed(0)
    >>> x = torch.linspace(0, 1, 64).unsqueeze(1)
    >>> model = GMNMMLP(1, 1, n_components=16).init_from_data(x, random_state=0)
    >>> def residual(model, x):
    ...     return laplacian(model(x), x) + math.pi ** 2 * torch.sin(math.pi * x)
    >>> losses = fit_pinn(model, residual, x, torch.tensor([[0.0], [1.0]]),
    ...                   torch.zeros(2, 1), max_iter=300, learning_rate=1e-2)
    >>> losses[-1] < 0.01 * losses[0]
    True
    """
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
        raise ValueError(f"max_iter must be a positive integer, got {max_iter!r}.")
    if boundary.shape[0] != boundary_values.shape[0]:
        raise ValueError(
            f"boundary has {boundary.shape[0]} points but boundary_values has "
            f"{boundary_values.shape[0]} rows."
        )
    interior = interior.detach().requires_grad_(True)
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
    losses = []
    for step in range(1, max_iter + 1):
        optimizer.zero_grad()
        r = residual(model, interior)  # (N, 1)
        predicted = model(boundary)  # (M, 1)
        if step == 1:
            _check_shapes(r, interior, predicted, boundary_values)
        loss = (
            r.square().mean()
            + boundary_weight * (predicted - boundary_values).square().mean()
        )
        value = loss.item()
        if not math.isfinite(value):  # before the step: the weights stay finite
            raise FloatingPointError(
                f"The PINN loss became {value} at step {step}; the model keeps the "
                f"weights it had then. Lower learning_rate (now {learning_rate}) or "
                "check the residual function."
            )
        loss.backward()
        optimizer.step()
        losses.append(value)
        if callback is not None and callback(step, value):
            break
    return losses


def _check_shapes(r, interior, predicted, boundary_values):
    """Refuse shapes that would broadcast into a wrong loss: (M, 1) predictions minus
    (M,) values is an (M, M) matrix, a loss that trains without an error."""
    if r.dim() == 0 or r.shape[0] != interior.shape[0]:
        raise ValueError(
            f"residual returned shape {tuple(r.shape)} for {interior.shape[0]} "
            "interior points: it must give one row per point, shape (N, 1)."
        )
    if predicted.shape != boundary_values.shape:
        raise ValueError(
            f"boundary_values has shape {tuple(boundary_values.shape)}, but the model "
            f"gives shape {tuple(predicted.shape)} at the boundary points: pass one "
            "row per point (for one output, boundary_values.reshape(-1, 1))."
        )
