"""
The learned Gaussians of a GMNM layer in two dimensions
=======================================================

A :class:`~sklearn_gmnm.nn.GMNM` layer fits a two-dimensional function; its Gaussians,
read back with :meth:`~sklearn_gmnm.nn.GMNM.gaussians`, are drawn as ellipses (one
standard deviation along each projection) over the fitted function.
"""

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.patches import Ellipse

from sklearn_gmnm.nn import GMNM

torch.manual_seed(0)
x = torch.rand(2000, 2) * 2 - 1
target = torch.exp(
    -8 * ((x[:, :1] - 0.3) ** 2 + (x[:, 1:] + 0.2) ** 2)
) - 0.5 * torch.exp(-12 * (x[:, :1] + 0.4) ** 2 - 3 * (x[:, 1:] - 0.4) ** 2)

layer = GMNM(2, 1, n_components=12, n_projections=2)
layer.init_from_data(x, random_state=0)
optimizer = torch.optim.Adam(layer.parameters(), lr=0.01)
for _ in range(1500):
    optimizer.zero_grad()
    loss = torch.nn.functional.mse_loss(layer(x), target)
    loss.backward()
    optimizer.step()

grid = torch.stack(
    torch.meshgrid(
        torch.linspace(-1, 1, 120), torch.linspace(-1, 1, 120), indexing="xy"
    ),
    -1,
).reshape(-1, 2)
with torch.no_grad():
    surface = layer(grid).reshape(120, 120).numpy()
gaussians = layer.gaussians()

fig, ax = plt.subplots(figsize=(5, 4.5))
image = ax.imshow(surface, extent=(-1, 1, -1, 1), origin="lower", cmap="RdBu_r")
fig.colorbar(image, ax=ax, label="fitted value")
for center, precision, weight in zip(
    gaussians["centers"].numpy(),
    gaussians["precisions"].numpy(),
    gaussians["mixture_weights"].numpy()[0],
    strict=True,
):
    values, vectors = np.linalg.eigh(precision)
    widths = 2 / np.sqrt(np.maximum(values, 1e-6))  # diameter of one standard deviation
    angle = np.degrees(np.arctan2(vectors[1, 1], vectors[0, 1]))
    ax.add_patch(
        Ellipse(
            center,
            min(widths[1], 4),
            min(widths[0], 4),
            angle=angle,
            fill=False,
            color="k" if weight > 0 else "m",
            lw=1,
        )
    )
ax.set_xlim(-1, 1)
ax.set_ylim(-1, 1)
ax.set_title(f"12 Gaussians (black: weight > 0)\nMSE {loss.item():.1e}")
fig.tight_layout()
