"""Gaussian Mixture-Inspired Nonlinear Modules (arXiv 2510.06660) for scikit-learn and torch.

``GMNMRegressor`` and ``GMNMClassifier`` are scikit-learn estimators; ``sklearn_gmnm.nn``
holds the torch layers.
"""

from importlib.metadata import PackageNotFoundError, version

from ._estimators import GMNMClassifier, GMNMRegressor
from ._net import DivergenceError, DivergenceWarning

try:
    __version__ = version("sklearn-gmnm")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

__all__ = [
    "DivergenceError",
    "DivergenceWarning",
    "GMNMClassifier",
    "GMNMRegressor",
    "__version__",
]
