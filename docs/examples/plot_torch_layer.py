"""
The GMNM layer inside your own torch network
============================================

:class:`sklearn_gmnm.nn.GMNM` is a ``torch.nn.Module`` like ``nn.Linear``: it takes
``(N, *, in_features)`` and composes with any other layer. Here a small network — a linear
map to 8 features, then a GMNM head — learns a function of 6 inputs next to the same
network with a ReLU MLP head of about the same size, trained by the same loop.
"""

import matplotlib.pyplot as plt
import torch
from torch import nn

from sklearn_gmnm.nn import GMNM

torch.manual_seed(0)
x = torch.randn(4000, 6)
y = torch.sin(2 * x[:, :1]) * torch.exp(-(x[:, 1:2] ** 2)) + 0.3 * x[:, 2:3] * x[:, 3:4]
x_train, y_train, x_test, y_test = x[:3000], y[:3000], x[3000:], y[3000:]


def count(model):
    return sum(p.numel() for p in model.parameters())


gmnm_net = nn.Sequential(nn.Linear(6, 8), GMNM(8, 1, n_components=48, n_projections=2))
relu_net = nn.Sequential(
    nn.Linear(6, 8), nn.Linear(8, 128), nn.ReLU(), nn.Linear(128, 1)
)
curves = {}
for name, model in [("GMNM head", gmnm_net), ("ReLU head", relu_net)]:
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    curves[name] = []
    for _ in range(60):
        for batch in torch.randperm(3000).split(100):
            optimizer.zero_grad()
            nn.functional.mse_loss(model(x_train[batch]), y_train[batch]).backward()
            optimizer.step()
        with torch.no_grad():
            curves[name].append(nn.functional.mse_loss(model(x_test), y_test).item())
    print(f"{name}: {count(model)} parameters, test MSE {curves[name][-1]:.4f}")

fig, ax = plt.subplots(figsize=(5, 3.5))
for name, curve in curves.items():
    model = gmnm_net if name == "GMNM head" else relu_net
    ax.plot(curve, label=f"{name} ({count(model)} parameters)")
ax.set_yscale("log")
ax.set_xlabel("epoch")
ax.set_ylabel("test MSE")
ax.legend()
fig.tight_layout()
