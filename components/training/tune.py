"""Hyper-parameter search per model family: grid or Optuna TPE, scored by stratified k-fold ROC-AUC.

The search runs on the whole development split (everything but the test rows). The folds are a
pure function of the labels and the seed (``make_folds``), so every family, every trial and the
train stage that builds the blend see the very same folds, and a seed reproduces the search. The
winning trial's out-of-fold log-odds are returned with it: the train stage compares, blends,
calibrates and picks the threshold on those, so no row is ever scored by a model fitted on it.
(The feature transformer is fitted once on the whole development split before the folds: its
imputation medians, scales and category frequencies see every fold, the target never. That small,
unsupervised leak is accepted for one transformer per run.)

XGBoost under Optuna uses early stopping: every fold trains up to ``tune.max_estimators`` trees
and stops ``tune.early_stopping_rounds`` after its best validation log-loss; the trial's tree count
is the one that minimises the *mean* log-loss curve over the folds (as ``xgb.cv`` does), every fold
is scored at that count, and the refit on all development rows uses it.

Everything runs in one process on one core (see ``families.XGBOOST_N_JOBS``): on busy 2-core machines
spin-waiting threads cost far more than they gain.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optuna
import pandas as pd
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold

from components.model.families import FAMILIES, fit_model, predict_logit
from components.shared.config import TuneConfig
from components.shared.errors import DataValidationError

STRATEGIES = ("grid", "optuna")


@dataclass
class CvOutcome:
    """One configuration scored by k-fold CV: fold AUCs, out-of-fold log-odds, params as refit."""

    fold_scores: list[float]
    oof_logit: np.ndarray
    params: dict[str, Any]

    @property
    def mean(self) -> float:
        return float(np.mean(self.fold_scores))


@dataclass
class TuneResult:
    """Outcome of one family's search.

    ``best_params`` holds plain JSON types (lists, not tuples) so it can travel as a KFP
    parameter; for early-stopped XGBoost it includes the chosen ``n_estimators``. ``trials`` has
    one row per trial: ``trial``, one column per param (list values as strings like ``"64-32"``),
    ``mean_roc_auc``, ``std_roc_auc``, ``fold_<k>_roc_auc`` and ``seconds``. ``oof_logit`` are the
    best trial's out-of-fold log-odds, one per development row, and ``folds`` the fold of each row.
    """

    family: str
    strategy: str
    best_params: dict[str, Any]
    best_score: float
    fold_scores: list[float]
    oof_logit: np.ndarray
    folds: np.ndarray
    trials: pd.DataFrame
    budget_seconds: float | None = None
    stopped_by_budget: bool = False
    notes: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- folds and budget


def make_folds(y: np.ndarray, n_folds: int, seed: int) -> np.ndarray:
    """The fold number (0..n_folds-1) of every row: stratified, shuffled, a function of (y, seed)."""
    y = np.asarray(y).astype(int).reshape(-1)
    folds = np.empty(len(y), dtype=np.int64)
    splitter = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    for number, (_, valid_idx) in enumerate(splitter.split(np.zeros(len(y)), y)):
        folds[valid_idx] = number
    return folds


def fold_indices(folds: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train rows, validation rows) per fold, in fold order."""
    return [(np.flatnonzero(folds != k), np.flatnonzero(folds == k)) for k in range(int(folds.max()) + 1)]


def family_budget(cfg: TuneConfig, family: str, families: list[str]) -> float | None:
    """This family's share of ``tune.time_budget_seconds`` (shares normalised over the run's families)."""
    if cfg.time_budget_seconds is None or cfg.time_budget_seconds <= 0:
        return None
    shares = {f: float(cfg.budget_share.get(f, 1.0)) for f in families}
    total = sum(shares.values()) or 1.0
    return float(cfg.time_budget_seconds) * shares.get(family, 1.0) / total


def resolve_strategy(family: str, cfg: TuneConfig, marketing: bool) -> str:
    """``auto``: the seed's known-good XGBoost grid on the marketing table, Optuna TPE elsewhere."""
    strategy = cfg.strategy.get(family, "auto")
    if strategy == "auto":
        return "grid" if family == "xgboost" and marketing else "optuna"
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown tuning strategy {strategy!r} for {family!r} (known: auto, grid, optuna)")
    return strategy


# --------------------------------------------------------------------------- the search


def tune_family(
    family: str,
    X: np.ndarray,
    y: np.ndarray,
    cfg: TuneConfig,
    *,
    marketing: bool = False,
    budget_seconds: float | None = None,
) -> TuneResult:
    """Search ``family``'s params; ``budget_seconds`` caps the search's wall time (None: no cap).

    A trial that starts before the deadline finishes; at least one trial always runs.
    """
    if family not in FAMILIES:
        raise ValueError(f"unknown model family {family!r} (known: {', '.join(FAMILIES)})")
    strategy = resolve_strategy(family, cfg, marketing)
    X = np.asarray(X, dtype=np.float64)
    y = _check_target(y, cfg.cv_folds)
    folds = make_folds(y, cfg.cv_folds, cfg.seed)
    early = family == "xgboost" and strategy == "optuna" and cfg.early_stopping_rounds > 0
    deadline = None if budget_seconds is None else time.monotonic() + budget_seconds
    search = _Search(family, X, y, folds, cfg, early)
    if strategy == "grid":
        _run_grid(_grid_of(family, cfg), search, deadline)
    else:
        _run_optuna(family, cfg, search, deadline)
    return search.result(strategy, budget_seconds)


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


class _Search:
    """Scores trials, keeps the table and the best trial's out-of-fold predictions."""

    def __init__(
        self, family: str, X: np.ndarray, y: np.ndarray, folds: np.ndarray, cfg: TuneConfig, early: bool
    ) -> None:
        self.family, self.X, self.y, self.folds, self.cfg, self.early = family, X, y, folds, cfg, early
        self.rows: list[dict[str, Any]] = []
        self.best: CvOutcome | None = None
        self.stopped_by_budget = False
        self.prefix_trees: int | None = None  # see share_tree_prefixes
        self._longest: dict[str, list[tuple[Any, np.ndarray]]] = {}

    def share_tree_prefixes(self, longest: int) -> None:
        """Score XGBoost grid points that differ only in n_estimators on one fit per fold.

        Boosting appends trees and never changes earlier ones (the sampling of tree i depends only
        on the seed and the trees before it), so a model of n trees is the first n trees of one of
        ``longest`` trees: predicting with ``iteration_range=(0, n)`` gives the same scores as
        fitting it (tested), for a third of the fits of the default grid.
        """
        self.prefix_trees = longest

    def trial(self, params: dict[str, Any]) -> float:
        start = time.perf_counter()
        if self.early:
            cfg = self.cfg
            outcome = cross_validate_early_stopping(
                params, self.X, self.y, self.folds, cfg.seed, cfg.max_estimators, cfg.early_stopping_rounds
            )
        elif self.prefix_trees is not None:
            outcome = self._cross_validate_prefix(params)
        else:
            outcome = cross_validate(self.family, params, self.X, self.y, self.folds, self.cfg.seed)
        row = {
            "trial": len(self.rows),
            "params": _plain(outcome.params),
            "mean_roc_auc": outcome.mean,
            "std_roc_auc": float(np.std(outcome.fold_scores)),
            "fold_scores": outcome.fold_scores,
            "seconds": time.perf_counter() - start,
        }
        self.rows.append(row)
        if self.best is None or outcome.mean > self.best.mean:  # ties: the earliest trial stays
            self.best = outcome
        return outcome.mean

    def _cross_validate_prefix(self, params: dict[str, Any]) -> CvOutcome:
        """``cross_validate`` for XGBoost, from the fold models of the longest tree count."""
        others = {k: v for k, v in params.items() if k != "n_estimators"}
        key = repr(sorted(others.items()))
        if key not in self._longest:
            settings = {**others, "n_estimators": self.prefix_trees}
            self._longest[key] = [
                (fit_model("xgboost", settings, self.X[train], self.y[train], self.cfg.seed), valid)
                for train, valid in fold_indices(self.folds)
            ]
        n_trees = int(params["n_estimators"])
        oof = np.empty(len(self.y), dtype=np.float64)
        scores = []
        for model, valid in self._longest[key]:
            margin = model.predict(self.X[valid], output_margin=True, iteration_range=(0, n_trees))
            oof[valid] = np.asarray(margin, dtype=np.float64).reshape(-1)
            scores.append(float(roc_auc_score(self.y[valid], oof[valid])))
        return CvOutcome(scores, oof, dict(params))

    def result(self, strategy: str, budget: float | None) -> TuneResult:
        if self.best is None:
            raise ValueError(f"tuning {self.family!r} evaluated no trial")
        best_row = max(self.rows, key=lambda r: (r["mean_roc_auc"], -r["trial"]))
        table = pd.DataFrame(
            [
                {
                    "trial": r["trial"],
                    **{k: _encode_choice(v) for k, v in r["params"].items()},
                    "mean_roc_auc": r["mean_roc_auc"],
                    "std_roc_auc": r["std_roc_auc"],
                    **{f"fold_{k + 1}_roc_auc": s for k, s in enumerate(r["fold_scores"])},
                    "seconds": r["seconds"],
                }
                for r in self.rows
            ]
        )
        notes = []
        if self.stopped_by_budget:
            notes.append(f"stopped by the time budget ({budget:.0f} s) after {len(self.rows)} trial(s)")
        return TuneResult(
            family=self.family,
            strategy=strategy,
            best_params=dict(best_row["params"]),
            best_score=float(best_row["mean_roc_auc"]),
            fold_scores=list(best_row["fold_scores"]),
            oof_logit=self.best.oof_logit,
            folds=self.folds,
            trials=table,
            budget_seconds=budget,
            stopped_by_budget=self.stopped_by_budget,
            notes=notes,
        )


def cross_validate(
    family: str, params: dict[str, Any], X: np.ndarray, y: np.ndarray, folds: np.ndarray, seed: int
) -> CvOutcome:
    """Fit on each fold's training rows, score its validation rows (a plain loop: no nested n_jobs)."""
    oof = np.empty(len(y), dtype=np.float64)
    scores = []
    for train_idx, valid_idx in fold_indices(folds):
        model = fit_model(family, params, X[train_idx], y[train_idx], seed)
        oof[valid_idx] = predict_logit(model, X[valid_idx])
        scores.append(float(roc_auc_score(y[valid_idx], oof[valid_idx])))
    return CvOutcome(scores, oof, dict(params))


def cross_validate_early_stopping(
    params: dict[str, Any],
    X: np.ndarray,
    y: np.ndarray,
    folds: np.ndarray,
    seed: int,
    max_estimators: int,
    patience: int,
) -> CvOutcome:
    """XGBoost CV with one tree count for all folds: the minimum of the mean validation log-loss.

    Each fold stops ``patience`` rounds after its own best, so every curve reaches at least its
    best + patience; the common count is searched where all curves exist. Scoring every fold at
    one count (not each at its own best) keeps the CV score nearly free of early-stopping optimism.
    """
    settings = {**params, "n_estimators": int(params.get("n_estimators", max_estimators))}
    settings.update({"early_stopping_rounds": patience, "eval_metric": "logloss"})
    fitted = []
    for train_idx, valid_idx in fold_indices(folds):
        model = fit_model(
            "xgboost", settings, X[train_idx], y[train_idx], seed, eval_set=(X[valid_idx], y[valid_idx])
        )
        fitted.append((model, valid_idx))
    curves = [np.asarray(m.evals_result()["validation_0"]["logloss"]) for m, _ in fitted]
    length = min(len(c) for c in curves)
    n_trees = int(np.argmin(np.mean([c[:length] for c in curves], axis=0))) + 1
    oof = np.empty(len(y), dtype=np.float64)
    scores = []
    for model, valid_idx in fitted:
        margin = model.predict(X[valid_idx], output_margin=True, iteration_range=(0, n_trees))
        oof[valid_idx] = np.asarray(margin, dtype=np.float64).reshape(-1)
        scores.append(float(roc_auc_score(y[valid_idx], oof[valid_idx])))
    return CvOutcome(scores, oof, {**params, "n_estimators": n_trees})


def _grid_of(family: str, cfg: TuneConfig) -> dict[str, list[Any]]:
    grid = cfg.grids.get(family)
    if not grid:
        raise ValueError(f"tune.grids has no grid for family {family!r}")
    for name, values in grid.items():
        if not isinstance(values, list) or not values:
            raise ValueError(f"tune.grids.{family}.{name} must be a non-empty list, got {values!r}")
    return grid


def _past(deadline: float | None) -> bool:
    return deadline is not None and time.monotonic() >= deadline


def _run_grid(grid: dict[str, list[Any]], search: _Search, deadline: float | None) -> None:
    """Every combination in a stable order (keys sorted, values as listed), until the deadline."""
    names = sorted(grid)
    if search.family == "xgboost" and len(grid.get("n_estimators", [])) > 1:
        search.share_tree_prefixes(max(int(n) for n in grid["n_estimators"]))
    for values in itertools.product(*(grid[n] for n in names)):
        if search.rows and _past(deadline):
            search.stopped_by_budget = True
            return
        search.trial(dict(zip(names, values, strict=True)))


def _run_optuna(family: str, cfg: TuneConfig, search: _Search, deadline: float | None) -> None:
    """TPE with a seeded sampler, sequential trials; the configured start points are tried first."""
    space = cfg.spaces.get(family)
    if not space:
        raise ValueError(f"tune.spaces has no search space for family {family!r}")
    n_trials = int(cfg.n_trials.get(family, 20))
    if n_trials < 1:
        raise ValueError(f"tune.n_trials.{family} must be at least 1, got {n_trials}")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(seed=cfg.seed, n_startup_trials=min(10, max(3, n_trials // 4)))
    study = optuna.create_study(direction="maximize", sampler=sampler)
    for start in cfg.start_points.get(family, []):
        study.enqueue_trial(_start_params(start, space), skip_if_exists=True)

    def objective(trial: optuna.Trial) -> float:
        params = {name: _suggest(trial, family, name, spec) for name, spec in space.items()}
        return search.trial(params)

    def stop_at_deadline(study: optuna.Study, _trial: Any) -> None:
        if _past(deadline):
            search.stopped_by_budget = len(search.rows) < n_trials
            study.stop()

    study.optimize(objective, n_trials=n_trials, callbacks=[stop_at_deadline])


def _start_params(start: dict[str, Any], space: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The start point's values that fit the space (a user's narrower space drops the others)."""
    fitting = {}
    for name, value in start.items():
        spec = space.get(name)
        if spec is None:
            continue
        if spec.get("type") == "categorical":
            encoded = _encode_choice(value)
            if encoded in [_encode_choice(c) for c in spec.get("choices") or []]:
                fitting[name] = encoded
        elif "low" in spec and "high" in spec and float(spec["low"]) <= float(value) <= float(spec["high"]):
            fitting[name] = value
    return fitting


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
