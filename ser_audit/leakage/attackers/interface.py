"""Attackers: classifiers from a tapped layer's activations to a private attribute.

Every attacker follows the scikit-learn estimator contract: ``__init__`` only stores
arguments, ``fit(X, y)`` returns self, learned state ends in ``_``, ``predict`` checks
that the attacker was fitted. That makes them cloneable and usable in grids.
"""

from __future__ import annotations

from sklearn.base import BaseEstimator, ClassifierMixin


class Attacker(ClassifierMixin, BaseEstimator):
    """Base class; subclasses set ``architecture`` (recorded in each result row) and ``family``."""

    architecture: str = "attacker"
    family: str = "any"  # "convolutional", "recurrent" or "any" (pooled statistics)
