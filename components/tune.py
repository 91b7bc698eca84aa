"""Hyper-parameter search per model family: grid or Optuna TPE, scored by stratified CV ROC-AUC.

The folds are built once per family and shared by every trial, so trials are compared on the same
data and a seed reproduces the whole search. Everything runs in one process on one core (see
``models.XGBOOST_N_JOBS``): on busy 2-core machines spin-waiting threads cost far more than they gain.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
import pandas as pd
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold

from components.config import TuneConfig
from components.errors import DataValidationError
from components.models import FAMILIES, fit_model, predict_proba

STRATEGIES = ("grid", "optuna")

Folds = list[tuple[np.ndarray, np.ndarray]]


@dataclass
class TuneResult:
    """Outcome of one family's search.

    ``best_params`` holds plain JSON types (lists, not tuples) so it can travel as a KFP
    parameter. ``trials`` has one row per trial: ``trial``, one column per param (list values are
    written as strings like ``"64-32"`` so the table stores cleanly in CSV/Parquet),
    ``mean_roc_auc``, ``std_roc_auc`` and ``seconds``.
    """

    family: str
    strategy: str
    best_params: dict[str, Any]
    best_score: float
    trials: pd.DataFrame


def tune_family(family: str, X: np.ndarray, y: np.ndarray, cfg: TuneConfig) -> TuneResult:
    """Search ``family``'s params with the strategy ``cfg.strategy[family]`` (default 'grid')."""
    if family not in FAMILIES:
        raise ValueError(f"unknown model family {family!r} (known: {', '.join(FAMILIES)})")
    strategy = cfg.strategy.get(family, "grid")
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown tuning strategy {strategy!r} for {family!r} (known: {STRATEGIES})")
    X = np.asarray(X, dtype=np.float64)
    y = _check_target(y, cfg.cv_folds)
    folds = _make_folds(y, cfg.cv_folds, cfg.seed)

    def score(params: dict[str, Any]) -> tuple[float, float]:
        return cross_val_auc(family, params, X, y, folds, cfg.seed)

    run = _run_grid(_grid_of(family, cfg), score) if strategy == "grid" else _run_optuna(family, cfg, score)
    return _result(family, strategy, run)


def _check_target(y: np.ndarray, folds: int) -> np.ndarray:
    """y must be 0/1 with at least ``folds`` rows of each class, or CV cannot be stratified."""
    y = np.asarray(y).astype(int).reshape(-1)
    counts = {label: int((y == label).sum()) for label in (0, 1)}
    if set(np.unique(y)) - {0, 1}:
        raise DataValidationError(f"target must hold 0/1, found values {sorted(set(np.unique(y)))}")
    if min(counts.values()) < folds:
        raise DataValidationError(
            f"tuning needs at least {folds} rows of each class for {folds}-fold CV, got {counts}"
        )
    return y


def _make_folds(y: np.ndarray, n_folds: int, seed: int) -> Folds:
    splitter = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(len(y)), y))


def cross_val_auc(
    family: str, params: dict[str, Any], X: np.ndarray, y: np.ndarray, folds: Folds, seed: int
) -> tuple[float, float]:
    """Mean and standard deviation of ROC-AUC over ``folds`` (a plain loop: no nested n_jobs)."""
    scores = []
    for train_idx, valid_idx in folds:
        model = fit_model(family, params, X[train_idx], y[train_idx], seed)
        scores.append(roc_auc_score(y[valid_idx], predict_proba(model, X[valid_idx])))
    return float(np.mean(scores)), float(np.std(scores))


def _grid_of(family: str, cfg: TuneConfig) -> dict[str, list[Any]]:
    grid = cfg.grids.get(family)
    if not grid:
        raise ValueError(f"tune.grids has no grid for family {family!r}")
    for name, values in grid.items():
        if not isinstance(values, list) or not values:
            raise ValueError(f"tune.grids.{family}.{name} must be a non-empty list, got {values!r}")
    return grid


def _run_grid(
    grid: dict[str, list[Any]], score: Callable[[dict[str, Any]], tuple[float, float]]
) -> list[dict[str, Any]]:
    """Every combination, in a stable order (keys sorted, values as listed)."""
    names = sorted(grid)
    rows = []
    for number, values in enumerate(itertools.product(*(grid[n] for n in names))):
        params = dict(zip(names, values, strict=True))
        rows.append(_timed_trial(number, params, score))
    return rows


def _timed_trial(
    number: int, params: dict[str, Any], score: Callable[[dict[str, Any]], tuple[float, float]]
) -> dict[str, Any]:
    start = time.perf_counter()
    mean, std = score(params)
    return {
        "trial": number,
        "params": _plain(params),
        "mean_roc_auc": mean,
        "std_roc_auc": std,
        "seconds": time.perf_counter() - start,
    }


def _run_optuna(
    family: str, cfg: TuneConfig, score: Callable[[dict[str, Any]], tuple[float, float]]
) -> list[dict[str, Any]]:
    """TPE search with a seeded sampler; sequential trials so the seed reproduces the search."""
    space = cfg.spaces.get(family)
    if not space:
        raise ValueError(f"tune.spaces has no search space for family {family!r}")
    n_trials = int(cfg.n_trials.get(family, 20))
    if n_trials < 1:
        raise ValueError(f"tune.n_trials.{family} must be at least 1, got {n_trials}")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=cfg.seed))
    rows: list[dict[str, Any]] = []

    def objective(trial: optuna.Trial) -> float:
        params = {name: _suggest(trial, family, name, spec) for name, spec in space.items()}
        row = _timed_trial(trial.number, params, score)
        rows.append(row)
        return row["mean_roc_auc"]

    study.optimize(objective, n_trials=n_trials, timeout=cfg.timeout_seconds)
    if not rows:  # the timeout is a cap, but a result needs at least one finished trial
        study.optimize(objective, n_trials=1)
    return rows


def _suggest(trial: optuna.Trial, family: str, name: str, spec: dict[str, Any]) -> Any:
    """One param from its spec ``{type: int|float|categorical, low, high, log, step, choices}``."""
    kind = spec.get("type")
    where = f"tune.spaces.{family}.{name}"
    try:
        if kind == "int":
            return trial.suggest_int(
                name,
                int(spec["low"]),
                int(spec["high"]),
                step=int(spec.get("step", 1)),
                log=bool(spec.get("log", False)),
            )
        if kind == "float":
            return trial.suggest_float(
                name,
                float(spec["low"]),
                float(spec["high"]),
                step=spec.get("step"),
                log=bool(spec.get("log", False)),
            )
    except KeyError as exc:
        raise ValueError(f"{where} needs {exc.args[0]!r}") from exc
    if kind == "categorical":
        return _suggest_categorical(trial, name, spec.get("choices"), where)
    raise ValueError(f"{where}.type must be int, float or categorical, got {kind!r}")


def _suggest_categorical(trial: optuna.Trial, name: str, choices: Any, where: str) -> Any:
    """Optuna needs hashable scalar choices: lists are offered as '64-32' strings and decoded."""
    if not isinstance(choices, list) or not choices:
        raise ValueError(f"{where}.choices must be a non-empty list, got {choices!r}")
    decode = {_encode_choice(c): c for c in choices}
    if len(decode) != len(choices):
        raise ValueError(f"{where}.choices has duplicates: {choices!r}")
    picked = trial.suggest_categorical(name, list(decode))
    return decode[picked]


def _encode_choice(choice: Any) -> Any:
    if isinstance(choice, list | tuple):
        return "-".join(str(v) for v in choice)
    return choice


def _plain(params: dict[str, Any]) -> dict[str, Any]:
    """JSON-friendly copy: tuples become lists, numpy scalars become Python scalars."""

    def convert(value: Any) -> Any:
        if isinstance(value, list | tuple):
            return [convert(v) for v in value]
        if isinstance(value, np.generic):
            return value.item()
        return value

    return {name: convert(value) for name, value in params.items()}


def _result(family: str, strategy: str, rows: list[dict[str, Any]]) -> TuneResult:
    """Best = highest mean ROC-AUC; ties go to the earliest trial (stable, reproducible)."""
    if not rows:
        raise ValueError(f"tuning {family!r} evaluated no trial")
    best = max(rows, key=lambda r: (r["mean_roc_auc"], -r["trial"]))
    table = pd.DataFrame(
        [
            {
                "trial": r["trial"],
                **{k: _encode_choice(v) for k, v in r["params"].items()},
                "mean_roc_auc": r["mean_roc_auc"],
                "std_roc_auc": r["std_roc_auc"],
                "seconds": r["seconds"],
            }
            for r in rows
        ]
    )
    return TuneResult(
        family=family,
        strategy=strategy,
        best_params=dict(best["params"]),
        best_score=float(best["mean_roc_auc"]),
        trials=table,
    )
