"""Linear probe on pooled statistics: standardised features into a ridge classifier.

A ridge classifier's held-out scores are linear in its training labels, which makes
a speaker-level permutation test cost one matrix product per fold (see
``LinearProbe.permuted_predictions``) instead of one refit per permutation.
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import RidgeClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import check_is_fitted

from ser_audit.leakage.attackers.interface import Attacker


class LinearProbe(Attacker):
    """Standardised features, then a one-vs-rest ridge classifier (targets -1/+1) without intercept.

    Without an intercept on centred features the decision ignores the training set's class
    prior: the constant part of the targets lies in the null space of the centred Gram matrix.
    An attacker whose training fold happens to hold more women therefore does not lean
    towards "female" on a test fold that holds more men, which would push its accuracy below
    chance whenever folds are unbalanced (as they are under a label permutation).

    Args:
        regularisation: Ridge penalty per feature: ``alpha = regularisation * n_features``,
            so the penalty keeps its strength relative to the data whatever the layer's width.

    Example:
        >>> import numpy as np
        >>> X = np.r_[np.zeros((10, 2)), np.ones((10, 2))]; y = np.r_[[0] * 10, [1] * 10]
        >>> LinearProbe().fit(X, y).predict(X[:1]).tolist()
        [0]
    """

    architecture = "linear-probe"

    def __init__(self, regularisation: float = 0.1) -> None:
        self.regularisation = regularisation

    def fit(self, X: np.ndarray, y: np.ndarray) -> "LinearProbe":
        alpha = self.regularisation * X.shape[1]
        self.pipeline_ = make_pipeline(StandardScaler(), RidgeClassifier(alpha=alpha, fit_intercept=False)).fit(X, y)
        self.classes_ = self.pipeline_.classes_
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        check_is_fitted(self, "pipeline_")
        return self.pipeline_.predict(X)

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        check_is_fitted(self, "pipeline_")
        return self.pipeline_.decision_function(X)

    def parameter_count(self) -> int:
        check_is_fitted(self, "pipeline_")
        model = self.pipeline_[-1]
        return int(np.size(model.coef_) + np.size(model.intercept_))

    def permuted_predictions(
        self, X_train: np.ndarray, X_test: np.ndarray, label_sets: np.ndarray, classes: np.ndarray
    ) -> np.ndarray:
        """Test predictions of this probe refitted on each row of ``label_sets``, in closed form.

        Args:
            X_train: Training features ``[n_train, d]``.
            X_test: Test features ``[n_test, d]``.
            label_sets: ``[n_sets, n_train]`` class indices into ``classes``, one labelling per row.
            classes: The class labels.

        Returns:
            ``[n_sets, n_test]`` predicted labels, equal to ``clone(self).fit(X_train, classes[row]).predict(X_test)``.
        """
        # The probe's own scaler: it treats features that are constant up to rounding as constant (a dead layer,
        # silent audio); dividing their rounding noise by its tiny spread would hand the relabellings signal the
        # probe itself never sees, and a null unlike the statistic it tests.
        scaler = StandardScaler().fit(X_train)
        train, test = scaler.transform(X_train), scaler.transform(X_test)
        alpha = self.regularisation * X_train.shape[1]
        # The hat matrix [n_test, n_train] maps training targets to test scores; solve in whichever
        # of the dual (n_train) or primal (n_features) spaces is smaller.
        n_train, n_features = train.shape
        if n_train <= n_features:
            hat = np.linalg.solve(train @ train.T + alpha * np.eye(n_train), train @ test.T).T
        else:
            hat = test @ np.linalg.solve(train.T @ train + alpha * np.eye(n_features), train.T)
        n_classes = len(classes)
        targets = -np.ones(label_sets.shape + (n_classes,))
        np.put_along_axis(targets, label_sets[..., None], 1.0, axis=-1)
        if n_classes == 2:
            targets = targets[..., 1:]  # sklearn fits one column for two classes
        # One BLAS product over every labelling at once (einsum would not use BLAS here: 30x slower at 4,000 rows).
        n_sets, columns = len(label_sets), 1 if n_classes == 2 else n_classes
        scores = (hat @ targets.transpose(1, 0, 2).reshape(n_train, n_sets * columns)).reshape(
            len(test), n_sets, columns).transpose(1, 0, 2)
        if n_classes == 2:
            return classes[(scores[..., 0] > 0).astype(int)]  # sklearn: positive score = second class
        return classes[scores.argmax(-1)]
