"""
The learned Gaussians on a tabular problem
==========================================

On two columns of scikit-learn's diabetes table (body-mass index and a blood serum
measurement), a :class:`~sklearn_gmnm.GMNMRegressor` without an embedding places its
Gaussians directly in the plane of the two features.
:meth:`~sklearn_gmnm.GMNMRegressor.gaussians` reads them back in the features' own units,
and :func:`~sklearn_gmnm.inspection.plot_gaussians` draws them, coloured by their weight
in the predicted disease progression. With more features than projections per Gaussian,
each Gaussian is a ridge in most planes; two features keep the picture readable.
"""

import matplotlib.pyplot as plt
from sklearn.datasets import load_diabetes

from sklearn_gmnm import GMNMRegressor
from sklearn_gmnm.inspection import plot_gaussians

X, y = load_diabetes(return_X_y=True, as_frame=True)
X = X[["bmi", "s5"]]
est = GMNMRegressor(
    n_components=8, n_projections=2, embedding_dim=None, max_iter=300, random_state=0
).fit(X, y)
gaussians = est.gaussians()
print(gaussians["space"])
print("centres (bmi, s5):")
print(gaussians["centers"].round(3))
print("weights (target units):", gaussians["mixture_weights"][0].round(1))

fig, ax = plt.subplots(figsize=(5.5, 4.5))
ax.scatter(X["bmi"], X["s5"], s=4, c="0.6")
plot_gaussians(est, ax=ax)
ax.set_xlim(X["bmi"].min(), X["bmi"].max())
ax.set_ylim(X["s5"].min(), X["s5"].max())
ax.set_title(
    f"8 Gaussians over the data (R2 on the training set {est.score(X, y):.2f})"
)
fig.tight_layout()
