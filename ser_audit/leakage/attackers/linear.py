"""Linear probe on pooled statistics: the simplest attacker, and the first-slice default."""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import check_is_fitted

from ser_audit.leakage.attackers.interface import Attacker


class LinearProbe(Attacker):
    """Standardised features, L2-regularised multinomial logistic regression.

    Args:
        regularisation: Inverse L2 strength ``C`` of scikit-learn's LogisticRegression.
        max_iter: Solver iterations.
        seed: Solver seed.

    Example:
        >>> import numpy as np
        >>> X = np.r_[np.zeros((10, 2)), np.ones((10, 2))]; y = np.r_[[0] * 10, [1] * 10]
        >>> LinearProbe().fit(X, y).predict(X[:1]).tolist()
        [0]
    """

    architecture = "linear-probe"

    def __init__(self, regularisation: float = 0.1, max_iter: int = 2000, seed: int = 0) -> None:
        self.regularisation = regularisation
        self.max_iter = max_iter
        self.seed = seed

    def fit(self, X: np.ndarray, y: np.ndarray) -> "LinearProbe":
        self.pipeline_ = make_pipeline(
            StandardScaler(),
            LogisticRegression(C=self.regularisation, max_iter=self.max_iter, random_state=self.seed),
        ).fit(X, y)
        self.classes_ = self.pipeline_.classes_
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        check_is_fitted(self, "pipeline_")
        return self.pipeline_.predict(X)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        check_is_fitted(self, "pipeline_")
        return self.pipeline_.predict_proba(X)

    def parameter_count(self) -> int:
        check_is_fitted(self, "pipeline_")
        model = self.pipeline_[-1]
        return int(model.coef_.size + model.intercept_.size)
