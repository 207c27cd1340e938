"""
Solving the Poisson equation with a GMNM network (a PINN)
=========================================================

:func:`~sklearn_gmnm.nn.pinn.fit_pinn` trains a network on the residual of a PDE. Here
``-laplace(u) = f`` on the unit square, with the solution
``u = sin(pi x) sin(pi y) + 0.2 sin(4 pi x) sin(4 pi y)`` (two scales) prescribed on the
boundary. One GMNM layer of 128 Gaussians, placed on the collocation points with
``init_from_data``, against a tanh MLP with more parameters, both trained with the same
1,500 Adam steps (the learning rate each preferred in ``benchmarks/paper/poisson.py``,
which runs the full comparison over seeds). Placing the Gaussians on the domain matters:
the default initialisation assumes standardised inputs, not a unit square.
"""

import math

import matplotlib.pyplot as plt
import torch
from torch import nn

from sklearn_gmnm.nn import GMNMMLP
from sklearn_gmnm.nn.pinn import fit_pinn, laplacian

torch.manual_seed(0)


def exact(p):
    x, y = p[:, :1], p[:, 1:]
    slow = torch.sin(math.pi * x) * torch.sin(math.pi * y)
    fast = torch.sin(4 * math.pi * x) * torch.sin(4 * math.pi * y)
    return slow + 0.2 * fast


def source(p):  # f = -laplace(u)
    x, y = p[:, :1], p[:, 1:]
    slow = torch.sin(math.pi * x) * torch.sin(math.pi * y)
    fast = torch.sin(4 * math.pi * x) * torch.sin(4 * math.pi * y)
    return 2 * math.pi**2 * slow + 0.2 * 32 * math.pi**2 * fast


def residual(model, p):
    return laplacian(model(p), p) + source(p)


interior = torch.rand(512, 2)
t = torch.rand(64, 1)
boundary = torch.cat(
    [
        torch.hstack([t, 0 * t]),
        torch.hstack([t, 0 * t + 1]),
        torch.hstack([0 * t, t]),
        torch.hstack([0 * t + 1, t]),
    ]
)

gmnm = GMNMMLP(2, 1, n_components=128)
gmnm.init_from_data(interior, overlap=1.0, random_state=0)
mlp = nn.Sequential(
    nn.Linear(2, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 1)
)

grid = torch.cartesian_prod(torch.linspace(0, 1, 81), torch.linspace(0, 1, 81))
truth = exact(grid)
errors = {}
for name, model, lr in [("GMNM", gmnm, 1e-2), ("tanh MLP", mlp, 3e-3)]:
    fit_pinn(
        model,
        residual,
        interior,
        boundary,
        exact(boundary),
        max_iter=1500,
        learning_rate=lr,
        boundary_weight=100.0,
    )
    with torch.no_grad():
        errors[name] = (model(grid) - truth).view(81, 81).T
    n_params = sum(p.numel() for p in model.parameters())
    relative = errors[name].norm() / truth.norm()
    print(f"{name}: {n_params} parameters, relative L2 error {relative:.4f}")

# %%
# The error of each network over the square (same colour scale):

limit = max(float(e.abs().max()) for e in errors.values())
fig, axes = plt.subplots(1, 2, figsize=(8, 3.5), constrained_layout=True)
for ax, (name, error) in zip(axes, errors.items(), strict=True):
    image = ax.imshow(
        error, origin="lower", extent=(0, 1, 0, 1), cmap="RdBu", vmin=-limit, vmax=limit
    )
    ax.set_title(f"{name}: u - u_exact")
fig.colorbar(image, ax=axes, shrink=0.8)
plt.show()
