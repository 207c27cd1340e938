"""The one place where scikit-learn's private helpers are imported.

scikit-learn moves these between releases; keeping every such import here means a new
release breaks one file, not the whole package.
"""

from sklearn.base import _fit_context
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import (
    _check_sample_weight,
    check_is_fitted,
    validate_data,
)

__all__ = [
    "Interval",
    "StrOptions",
    "_check_sample_weight",
    "_fit_context",
    "check_is_fitted",
    "validate_data",
]
