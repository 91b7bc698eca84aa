"""Temperature scaling of binary probabilities, fitted on out-of-fold predictions.

One parameter T rescales the model's log-odds: p' = sigmoid(logit(p) / T). T > 1 softens an
over-confident model, T < 1 sharpens an under-confident one, and the ranking (ROC-AUC, P@K) never
changes. Temperature scaling helps over-confident models (boosted trees, MLPs) and can hurt well-fit
ones (logistic regression, the stacked blend), so it is kept only when it lowers the log-loss of
rows it was not fitted on: with the CV folds given, each fold is scaled by a T fitted on the
other folds (cross-fitting), and T is kept only if that cross-fitted log-loss beats T = 1.
"""

from __future__ import annotations

import html
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import expit, logit

from components.model.metrics import (
    brier_score,
    calibration_bins,
    check_binary_inputs,
    expected_calibration_error,
    log_loss,
)
from components.shared.report import figure_to_img_tag, html_page, html_table, pyplot

T_MIN = 0.05
T_MAX = 20.0
P_CLIP = 1e-7  # keeps logit(p) finite: |logit| <= ~16
# A log-loss gain smaller than this is floating-point noise (T ~ 1 on a well-fit model), not help.
MIN_IMPROVEMENT = 1e-6


def _logits(p: np.ndarray) -> np.ndarray:
    return logit(np.clip(np.asarray(p, dtype=np.float64), P_CLIP, 1.0 - P_CLIP))


def _temperature_nll(log_t: float, z: np.ndarray, y: np.ndarray) -> float:
    """Log-loss of sigmoid(z / T) written as softplus(s) - y*s, which never overflows."""
    s = z / math.exp(log_t)
    return float(np.mean(np.logaddexp(0.0, s) - y * s))


def fit_temperature(y: np.ndarray, p: np.ndarray) -> float:
    """The T in [T_MIN, T_MAX] that minimises the log-loss of sigmoid(logit(p) / T).

    Searched over log T: the loss is convex in 1/T, hence unimodal in log T, so a bounded scalar
    search finds the optimum; log scale gives equal precision for T = 0.1 and T = 10.
    """
    y, p = check_binary_inputs(y, p)
    positives = int(y.sum())
    if positives in (0, y.shape[0]):
        raise ValueError(f"cannot fit a temperature: all {y.shape[0]} labels are {1 if positives else 0}")
    z = _logits(p)
    result = minimize_scalar(
        _temperature_nll,
        bounds=(math.log(T_MIN), math.log(T_MAX)),
        args=(z, y.astype(np.float64)),
        method="bounded",
        options={"xatol": 1e-6},
    )
    return float(math.exp(result.x))


def apply_temperature(p: np.ndarray, t: float) -> np.ndarray:
    """sigmoid(logit(p) / t); t == 1 returns the probabilities unchanged (no clipping round trip).

    Serving calls this for every request with the bundle's temperature, so it stays cheap.
    """
    if isinstance(t, bool) or not isinstance(t, int | float) or not math.isfinite(t) or t <= 0:
        raise ValueError(f"temperature must be a finite number > 0, got {t!r}")
    p = np.asarray(p, dtype=np.float64)
    if p.size and (not np.all(np.isfinite(p)) or p.min() < 0.0 or p.max() > 1.0):
        raise ValueError("probabilities must be finite and lie in [0, 1]")
    if t == 1.0:
        return p.copy()
    return expit(_logits(p) / t)


def _scores(y: np.ndarray, p: np.ndarray, n_bins: int) -> dict[str, float]:
    return {
        "log_loss": log_loss(y, p),
        "brier": brier_score(y, p),
        "ece": expected_calibration_error(y, p, n_bins),
    }


@dataclass
class CalibrationResult:
    """What calibration decided and the validation scores it decided on.

    ``temperature`` is what serving applies (1.0 when not kept); ``fitted_temperature`` is what
    the fit found, kept for the report even when it was rejected. ``after`` holds the scores with
    the fitted temperature applied, whether or not it was kept.
    """

    kept: bool
    temperature: float
    fitted_temperature: float
    before: dict[str, float]
    after: dict[str, float]
    reason: str = field(default="")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types only (bool, float, str, dict) for metadata and the summary."""
        data = asdict(self)
        data["kept"] = bool(self.kept)
        data["temperature"] = float(self.temperature)
        data["fitted_temperature"] = float(self.fitted_temperature)
        data["before"] = {k: float(v) for k, v in self.before.items()}
        data["after"] = {k: float(v) for k, v in self.after.items()}
        return data


def cross_fitted(y: np.ndarray, p: np.ndarray, folds: np.ndarray) -> np.ndarray:
    """Each fold's probabilities scaled by a temperature fitted on the other folds only."""
    out = np.empty_like(p)
    for k in np.unique(folds):
        held = folds == k
        out[held] = apply_temperature(p[held], fit_temperature(y[~held], p[~held]))
    return out


def calibrate(
    y: np.ndarray,
    p: np.ndarray,
    n_bins: int,
    enabled: bool = True,
    min_improvement: float = MIN_IMPROVEMENT,
    folds: np.ndarray | None = None,
) -> CalibrationResult:
    """Fit T on ``(y, p)`` and keep it only if log-loss drops by more than ``min_improvement``
    (so a T of 1.0000001 on a well-fit model is not kept for noise). With ``folds``, the loss that
    decides is the cross-fitted one (see ``cross_fitted``), so the decision is not made on the
    rows T was fitted on.

    ``enabled=False`` skips the fit: T = 1 and identical before/after scores.
    """
    y, p = check_binary_inputs(y, p)
    before = _scores(y, p, n_bins)
    if not enabled:
        reason = (
            "Calibration is disabled in the configuration (calibration.enabled = false); "
            "the model's probabilities are used as they are."
        )
        return CalibrationResult(False, 1.0, 1.0, before, dict(before), reason)
    fitted = fit_temperature(y, p)
    after = _scores(y, apply_temperature(p, fitted), n_bins)
    judged = after["log_loss"] if folds is None else log_loss(y, cross_fitted(y, p, np.asarray(folds)))
    where = "log-loss" if folds is None else "cross-fitted out-of-fold log-loss"
    gain = before["log_loss"] - judged
    kept = gain > min_improvement
    if kept:
        reason = (
            f"The fitted temperature T = {fitted:.4f} was kept: it lowered the {where} from "
            f"{before['log_loss']:.5f} to {judged:.5f}."
        )
    else:
        reason = (
            f"The fitted temperature T = {fitted:.4f} was not kept: the {where} would go from "
            f"{before['log_loss']:.5f} to {judged:.5f}, not an improvement (by more than "
            f"{min_improvement:g}); the model's probabilities are used as they are (T = 1)."
        )
    return CalibrationResult(kept, fitted if kept else 1.0, fitted, before, after, reason)


def _reliability_figure(y: np.ndarray, p_before: np.ndarray, p_after: np.ndarray, n_bins: int) -> Any:
    """Reliability curves over the diagonal, with the bin counts as bars underneath."""
    plt = pyplot()

    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(6.5, 7), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    top.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect calibration")
    width = 1.0 / n_bins
    for offset, (name, probs, marker) in enumerate(
        (("before", p_before, "o"), ("after (fitted T)", p_after, "s"))
    ):
        bins = calibration_bins(y, probs, n_bins)
        pts = [
            (c, a)
            for c, a in zip(bins.mean_predicted, bins.observed_rate, strict=True)
            if c is not None and a is not None
        ]
        top.plot([c for c, _ in pts], [a for _, a in pts], marker=marker, label=name)
        lefts = np.asarray(bins.edges[:-1]) + width * (0.1 + 0.4 * offset)
        bottom.bar(lefts, bins.counts, width=width * 0.4, align="edge", label=name)
    top.set_xlim(0, 1)
    top.set_ylim(0, 1)
    top.set_ylabel("observed positive rate")
    top.set_title("Reliability diagram (out-of-fold predictions)")
    top.legend(loc="upper left")
    bottom.set_xlabel("mean predicted probability (equal-width bins)")
    bottom.set_ylabel("rows per bin")
    fig.tight_layout()
    return fig


def reliability_html(
    y: np.ndarray,
    p_before: np.ndarray,
    p_after: np.ndarray,
    result: CalibrationResult,
    n_bins: int,
) -> str:
    """One self-contained HTML page: diagram, before/after scores and the keep/reject decision.

    Pass ``p_after = apply_temperature(p_before, result.fitted_temperature)`` so the page also
    shows what a rejected temperature would have done.
    """
    y, p_before = check_binary_inputs(y, p_before)
    _, p_after = check_binary_inputs(y, p_after)
    img = figure_to_img_tag(_reliability_figure(y, p_before, p_after, n_bins), "reliability diagram")
    rows: list[dict[str, Any]] = [
        {
            "metric": "temperature",
            "before": "1.0000",
            "after (fitted)": f"{result.fitted_temperature:.4f}",
            "change": "",
            "applied": f"{result.temperature:.4f}",
        },
    ]
    for key, label in (("log_loss", "log-loss"), ("brier", "Brier"), ("ece", "ECE")):
        b, a = result.before[key], result.after[key]
        rows.append(
            {
                "metric": label,
                "before": f"{b:.5f}",
                "after (fitted)": f"{a:.5f}",
                "change": f"{a - b:+.5f}",
                "applied": f"{(a if result.kept else b):.5f}",
            }
        )
    decision = "kept" if result.kept else "not kept"
    reason = result.reason or (
        f"Validation log-loss with the fitted temperature: {result.before['log_loss']:.5f} -> "
        f"{result.after['log_loss']:.5f}; a temperature is kept only when it lowers it."
    )
    sections = [
        ("Decision", f"<p><b>Calibration {decision}.</b> {html.escape(reason)}</p>"),
        ("Scores on the out-of-fold predictions", html_table(rows)),
        ("Reliability diagram", f"{img}<p>{n_bins} equal-width bins; bars show rows per bin.</p>"),
    ]
    return html_page("Calibration (temperature scaling)", sections)
