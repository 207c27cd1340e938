"""scikit-learn's estimator checks, on both estimators at their default parameters."""

from sklearn.utils.estimator_checks import parametrize_with_checks

from sklearn_gmnm import GMNMClassifier, GMNMRegressor


@parametrize_with_checks([GMNMRegressor(), GMNMClassifier()])
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)
