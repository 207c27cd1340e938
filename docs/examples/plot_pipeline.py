"""
GMNM in a Pipeline on a mixed-type table
========================================

A DataFrame with numeric and categorical columns: the categories are one-hot encoded in a
``ColumnTransformer``, :class:`~sklearn_gmnm.GMNMRegressor` standardises the rest itself,
and the Pipeline is cross-validated like any scikit-learn model.
"""

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sklearn.compose import make_column_transformer
from sklearn.model_selection import cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder

from sklearn_gmnm import GMNMRegressor

rng = np.random.default_rng(0)
n = 600
frame = pd.DataFrame(
    {
        "size": rng.uniform(20, 200, n),
        "age": rng.uniform(0, 50, n),
        "city": rng.choice(["north", "south", "east"], n),
    }
)
price = (
    3 * frame["size"]
    - 0.02 * (frame["age"] - 25) ** 2 * frame["size"] / 50
    + frame["city"].map({"north": 80, "south": 0, "east": 40})
    + rng.normal(0, 10, n)
)

model = make_pipeline(
    make_column_transformer(
        (OneHotEncoder(sparse_output=False), ["city"]), remainder="passthrough"
    ),
    GMNMRegressor(max_iter=100, random_state=0),
)
predicted = cross_val_predict(model, frame, price, cv=5)
r2 = 1 - np.sum((price - predicted) ** 2) / np.sum((price - price.mean()) ** 2)

fig, ax = plt.subplots(figsize=(4.5, 4))
ax.scatter(price, predicted, s=8, alpha=0.6)
ax.plot([price.min(), price.max()], [price.min(), price.max()], color="k", lw=1)
ax.set_xlabel("true price")
ax.set_ylabel("cross-validated prediction")
ax.set_title(f"GMNMRegressor in a Pipeline, R2 = {r2:.3f}")
fig.tight_layout()
