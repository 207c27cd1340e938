"""scikit-learn's estimator checks, on both estimators at their default parameters
(and, where a GPU exists, with ``device='cuda'`` as well)."""

import torch
from sklearn.utils.estimator_checks import parametrize_with_checks

from sklearn_gmnm import GMNMClassifier, GMNMRegressor

ESTIMATORS = [GMNMRegressor(), GMNMClassifier()]
if torch.cuda.is_available():
    ESTIMATORS += [GMNMRegressor(device="cuda"), GMNMClassifier(device="cuda")]


@parametrize_with_checks(ESTIMATORS)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)
