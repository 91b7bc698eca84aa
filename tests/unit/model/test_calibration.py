"""Temperature scaling: recovers a known temperature and keeps it only when it helps."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.special import expit

from components.model.calibration import (
    MIN_IMPROVEMENT,
    CalibrationResult,
    apply_temperature,
    calibrate,
    fit_temperature,
    reliability_html,
)


def _sample(n: int = 20_000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """True log-odds z and labels drawn from sigmoid(z)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 1.5, n)
    y = (rng.uniform(size=n) < expit(z)).astype(int)
    return z, y


def test_overconfident_model_gets_t_about_3_and_keeps_it() -> None:
    z, y = _sample()
    p = expit(3.0 * z)
    assert fit_temperature(y, p) == pytest.approx(3.0, rel=0.10)
    result = calibrate(y, p, n_bins=10)
    assert result.kept
    assert result.temperature == result.fitted_temperature
    assert result.after["log_loss"] < result.before["log_loss"]
    assert result.after["ece"] < result.before["ece"]
    assert "was kept" in result.reason


def test_underconfident_model_gets_t_below_1() -> None:
    z, y = _sample(seed=1)
    assert fit_temperature(y, expit(0.5 * z)) == pytest.approx(0.5, rel=0.10)


def test_well_calibrated_model_decision_follows_log_loss() -> None:
    z, y = _sample(seed=2)
    p = expit(z)
    result = calibrate(y, p, n_bins=10)
    assert result.fitted_temperature == pytest.approx(1.0, rel=0.05)
    gain = result.before["log_loss"] - result.after["log_loss"]
    assert result.kept == (gain > MIN_IMPROVEMENT)
    assert result.temperature == (result.fitted_temperature if result.kept else 1.0)
    # whatever was decided, the change in log-loss is negligible
    assert abs(gain) < 1e-3


def test_temperature_that_does_not_help_is_not_kept() -> None:
    z, y = _sample(seed=3)
    p = expit(z)
    # a gain threshold no temperature can beat: the fit runs but T = 1 is served
    result = calibrate(y, p, n_bins=10, min_improvement=1.0)
    assert not result.kept
    assert result.temperature == 1.0
    assert result.fitted_temperature != 1.0
    assert "not kept" in result.reason


def test_cross_fitting_decides_on_rows_the_temperature_was_not_fitted_on() -> None:
    z, y = _sample(n=4000, seed=5)
    folds = np.arange(len(y)) % 5
    over = calibrate(y, expit(3 * z), n_bins=10, folds=folds)  # over-confident: T ~ 3 helps everywhere
    assert over.kept and over.temperature == pytest.approx(3.0, rel=0.1)
    assert "cross-fitted" in over.reason
    # an already calibrated model: in-sample the fit always "improves" a little, cross-fitted it does not
    well = calibrate(y, expit(z), n_bins=10, folds=folds, min_improvement=0.0)
    in_sample_gain = well.before["log_loss"] - well.after["log_loss"]
    assert in_sample_gain >= 0
    assert not well.kept and well.temperature == 1.0


def test_disabled() -> None:
    z, y = _sample(n=500)
    result = calibrate(y, expit(3 * z), n_bins=10, enabled=False)
    assert (result.kept, result.temperature, result.fitted_temperature) == (False, 1.0, 1.0)
    assert result.before == result.after
    assert "disabled" in result.reason


def test_apply_temperature() -> None:
    p = np.array([0.0, 0.01, 0.3, 0.5, 0.9, 1.0])
    assert np.array_equal(apply_temperature(p, 1.0), p)
    softened = apply_temperature(p, 2.0)
    assert np.all(np.diff(softened) >= 0)  # ranking unchanged
    assert softened[3] == pytest.approx(0.5)
    assert softened[4] < 0.9 and softened[1] > 0.01
    assert np.all((softened > 0) & (softened < 1))
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="temperature"):
            apply_temperature(p, bad)


def test_one_class_cannot_be_fitted() -> None:
    with pytest.raises(ValueError, match="labels are 1"):
        fit_temperature(np.ones(10, dtype=int), np.linspace(0.1, 0.9, 10))


def test_to_dict_is_json_safe() -> None:
    z, y = _sample(n=2000)
    data = calibrate(y, expit(2 * z), n_bins=10).to_dict()
    assert set(data) >= {"kept", "temperature", "fitted_temperature", "before", "after"}
    assert set(data["before"]) == set(data["after"]) == {"log_loss", "brier", "ece"}
    json.dumps(data, allow_nan=False)
    assert CalibrationResult(**data) == CalibrationResult(**json.loads(json.dumps(data)))


def test_reliability_html() -> None:
    z, y = _sample(n=2000)
    p = expit(3 * z)
    result = calibrate(y, p, n_bins=10)
    page = reliability_html(y, p, apply_temperature(p, result.fitted_temperature), result, n_bins=10)
    assert page.startswith("<!doctype html>")
    assert "<img" in page and "data:image/png;base64," in page
    assert f"{result.fitted_temperature:.4f}" in page
    assert "Calibration kept" in page
    for label in ("log-loss", "Brier", "ECE"):
        assert label in page
