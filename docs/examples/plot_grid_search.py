"""
Choosing the number of Gaussians with GridSearchCV
==================================================

:class:`~sklearn_gmnm.GMNMRegressor` is a scikit-learn estimator, so its parameters are
searched like any other's. Here ``n_components`` and ``n_projections`` on the diabetes
table, 3-fold cross-validated (``n_jobs`` spreads the fits over worker processes; one here,
so the example's output stays in this page).
"""

import warnings

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_diabetes
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV

from sklearn_gmnm import GMNMRegressor

warnings.filterwarnings("ignore", category=ConvergenceWarning)  # 60 epochs: a demo
X, y = load_diabetes(return_X_y=True)
grid = {"n_components": [4, 16, 64], "n_projections": [1, 2]}
search = GridSearchCV(GMNMRegressor(max_iter=60, random_state=0), grid, cv=3).fit(X, y)
print("best:", search.best_params_, f"R2 {search.best_score_:.3f}")

scores = search.cv_results_["mean_test_score"].reshape(3, 2)  # (n_components, k)
fig, ax = plt.subplots(figsize=(5, 3.5))
for column, k in enumerate(grid["n_projections"]):
    ax.plot(grid["n_components"], scores[:, column], marker="o", label=f"k = {k}")
ax.set_xscale("log", base=2)
ax.set_xticks(grid["n_components"], [str(m) for m in grid["n_components"]])
ax.set_xlabel("n_components")
ax.set_ylabel("mean cross-validated R2")
ax.legend()
ax.set_title("GridSearchCV over the GMNM network")
fig.tight_layout()
assert np.isfinite(scores).all()
