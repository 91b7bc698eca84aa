"""The blend candidate: a stacked logistic regression on the families' out-of-fold log-odds.

``p = sigmoid(b + sum_f w_f * z_f)`` with ``w_f >= 0``, fitted by minimising log-loss. Stacking on
log-odds (rather than averaging probabilities) is what keeps the blend explainable exactly (SHAP of
a weighted sum of members is the weighted sum of their SHAP values) and calibrated by
construction; non-negative weights stop two correlated members from cancelling each other out.

Its cross-validated score is honest: for each fold the weights are fitted on the other folds'
out-of-fold predictions and applied to that fold, so no row is scored by weights fitted on it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit

# A little L2 on the weights keeps the fit well-posed when members are nearly collinear.
L2 = 1e-4


@dataclass
class Stacker:
    intercept: float
    weights: np.ndarray  # one per member column, >= 0

    def logit(self, Z: np.ndarray) -> np.ndarray:
        return self.intercept + np.asarray(Z, dtype=np.float64) @ self.weights


def _loss_and_gradient(theta: np.ndarray, Z: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean log-loss of sigmoid(b + Z w) (+ L2 on w) and its gradient; softplus form never overflows."""
    s = theta[0] + Z @ theta[1:]
    loss = float(np.mean(np.logaddexp(0.0, s) - y * s)) + L2 * float(theta[1:] @ theta[1:])
    residual = (expit(s) - y) / len(y)
    gradient = np.concatenate([[residual.sum()], Z.T @ residual + 2 * L2 * theta[1:]])
    return loss, gradient


def fit_stacker(Z: np.ndarray, y: np.ndarray) -> Stacker:
    """Non-negative stacking weights and an intercept, by L-BFGS-B on log-loss."""
    Z = np.asarray(Z, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    if Z.ndim != 2 or Z.shape[0] != len(y) or Z.shape[1] == 0:
        raise ValueError(f"member log-odds must be rows x members matching y, got {Z.shape} and {len(y)}")
    start = np.concatenate([[0.0], np.full(Z.shape[1], 1.0 / Z.shape[1])])
    bounds = [(None, None)] + [(0.0, None)] * Z.shape[1]
    result = minimize(_loss_and_gradient, start, args=(Z, y), jac=True, method="L-BFGS-B", bounds=bounds)
    weights = np.clip(result.x[1:], 0.0, None)
    return Stacker(intercept=float(result.x[0]), weights=weights)


def cross_fitted_logit(Z: np.ndarray, y: np.ndarray, folds: np.ndarray) -> np.ndarray:
    """The blend's out-of-fold log-odds: each fold scored by weights fitted on the other folds."""
    Z = np.asarray(Z, dtype=np.float64)
    out = np.empty(len(y), dtype=np.float64)
    for k in np.unique(folds):
        held = folds == k
        out[held] = fit_stacker(Z[~held], y[~held]).logit(Z[held])
    return out
