"""Benchmarks (``make bench``): measured figures, never asserted by unit tests.

1. The default run (synthetic marketing data, default config) on the KFP local runner: wall time
   and per-stage times, with tasks forked warm (the default) and each a new process (as kfp).
2. The real Telco churn table: the champion's test ROC-AUC against a default
   HistGradientBoostingClassifier trained on the very same train split.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import roc_auc_score

from components.shared.config import Config, telco_config

if TYPE_CHECKING:
    from pipelines.containers import ContainerPlan
    from pipelines.local_runner import LocalRun


def run_benchmarks(workdir: Path, skip_telco: bool = False) -> int:
    workdir.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"default_run": bench_default_run(workdir)}
    from pipelines.bench.mlserver import compare_with_endpoint, find_xgboost_candidate
    from pipelines.bench.serving import bench_serving, newest_candidates

    results["serving"] = bench_serving(
        workdir / "default" / "registry",
        Config().registry_model_name,
        candidates=newest_candidates(workdir / "default"),
    )
    results["mlserver"] = compare_with_endpoint(
        workdir / "default" / "registry",
        Config().registry_model_name,
        Path(results["default_run"]["bundle"]),
        find_xgboost_candidate(workdir / "default"),
        workdir / "mlserver",
    )
    from pipelines.bench.prediction import bench_batch_scoring

    results["batch_scoring"] = bench_batch_scoring(workdir / "prediction", workdir / "default" / "registry")
    if not skip_telco:
        results["telco"] = bench_telco(workdir)
    out = workdir / "results.json"
    out.write_text(json.dumps(results, indent=2))
    print(f"\nresults: {out}")
    return 0


def train_locally(
    config: Config,
    data_uri: str,
    workdir: Path,
    name: str,
    containers: ContainerPlan | None = None,
    warm_tasks: bool = True,
) -> LocalRun:
    """One training run into WORKDIR/NAME (its own registry); ``containers``: tasks in the image;
    ``warm_tasks`` False: every task a new process, as kfp starts them."""
    from pipelines.local_runner import run_pipeline_locally
    from pipelines.runs import code_version, new_run_name

    run_name = new_run_name()
    run_dir = workdir / name / run_name
    arguments = {
        "data_uri": data_uri,
        "registry_uri": str(workdir / name / "registry"),
        "config_json": config.to_json(),
        "families": config.tune.families,
        "deploy_target": "local",
        "run_name": run_name,
        "code_version": code_version(),
    }
    return run_pipeline_locally(
        arguments, run_dir, echo=lambda line: None, containers=containers, warm_tasks=warm_tasks
    )


def bench_default_run(workdir: Path) -> dict[str, Any]:
    from components.data.synthetic import ensure_default_data

    data_dir = ensure_default_data(workdir / "data" / "marketing-2240")
    fresh = train_locally(Config(), str(data_dir.resolve()), workdir, "default-fresh", warm_tasks=False)
    described_fresh = describe_run("the venv, each a new process (--fresh-task-processes)", fresh)
    run = train_locally(Config(), str(data_dir.resolve()), workdir, "default")
    described = describe_run("the venv, forked warm (the default)", run)
    print(
        f"  warm / fresh task processes: wall {run.seconds / fresh.seconds:.2f},"
        f" sum of task start-ups {start_up(described) / start_up(described_fresh):.2f}"
    )
    return {**described, "fresh_task_processes": described_fresh}


def start_up(described: dict[str, Any]) -> float:
    """Sum over tasks of wall minus body: process start, imports, artifact I/O."""
    return sum(row["wall"] - row["body"] for row in described["tasks"])


def describe_run(where: str, run: LocalRun) -> dict[str, Any]:
    """Print and return a run's wall time and each task's wall beside its stage body."""
    summary = run.summary
    bodies = {k: v for k, v in summary["stage_seconds"].items() if v is not None}
    rows = task_rows(bodies, run.task_seconds)
    body_sum = sum(bodies.values())
    test = summary["metrics"]["test"]
    print(
        f"\ndefault run, tasks in {where}: {run.seconds:.1f} s wall (goal <= 30 s), champion"
        f" {summary['champion']}, test ROC-AUC {test['roc_auc']:.4f}, F1 {test['f1']:.4f};"
        f" wall / sum of stage bodies {run.seconds / body_sum:.2f} (goal <= 1.6)"
    )
    print(f"  {'task':<14}{'wall':>8}{'body':>8}{'start-up':>10}   (start-up: process, imports, I/O)")
    for name, wall, body in rows:
        print(f"  {name:<14}{wall:>7.2f}s{body:>7.2f}s{wall - body:>9.2f}s")
    print(f"  sum of stage bodies {body_sum:.1f} s (the tune tasks run side by side)")
    version_dir = run.run_dir.parent / "registry" / summary["deployment"]["model_name"] / "versions"
    return {
        "wall_seconds": run.seconds,
        "sum_of_stage_bodies": body_sum,
        "wall_over_bodies": run.seconds / body_sum,
        "tasks": [{"task": n, "wall": w, "body": b} for n, w, b in rows],
        "test": test,
        "bundle": str(version_dir / summary["deployment"]["version"]),
    }


def task_rows(bodies: dict[str, float], walls: dict[str, list[float]]) -> list[tuple[str, float, float]]:
    """(stage, task wall, stage body) for each task. The three tuning tasks share the task name
    'tune' in the runner's log: their walls are paired with the tune-* bodies by size."""
    rows = []
    for task, times in walls.items():
        names = sorted((k for k in bodies if k == task or k.startswith(f"{task}-")), key=bodies.__getitem__)
        for name, wall in zip(names, sorted(times), strict=False):
            rows.append((name, wall, bodies[name]))
    return rows


def bench_telco(workdir: Path) -> dict[str, Any]:
    from components.data.telco import load_telco

    data_path = workdir / "data" / "telco.parquet"
    data_path.parent.mkdir(parents=True, exist_ok=True)
    load_telco().to_parquet(data_path, index=False)
    config = telco_config()
    run = train_locally(config, str(data_path), workdir, "telco")
    summary, seconds, run_dir = run.summary, run.seconds, run.run_dir
    split_dir = next((run_dir / "artifacts").glob("*/split"))
    baseline = hgb_baseline_auc(split_dir, config.dataset.target)
    champion = summary["metrics"]["test"]["roc_auc"]
    print(
        f"telco: champion {summary['champion']} test ROC-AUC {champion:.4f} vs default "
        f"HistGradientBoostingClassifier {baseline:.4f} on the same split "
        f"(ratio {champion / baseline:.4f}); run {seconds:.1f}s"
    )
    return {
        "champion": summary["champion"],
        "champion_roc_auc": champion,
        "hgb_roc_auc": baseline,
        "ratio": champion / baseline,
        "wall_seconds": seconds,
        "gate_passed": summary["gate"]["passed"],
    }


def hgb_baseline_auc(split_dir: Path, target: str) -> float:
    """A default HGB on the same train split, categoricals as pandas categories (its native path)."""
    train = pd.read_parquet(split_dir / "train")
    test = pd.read_parquet(split_dir / "test")
    features = [c for c in train.columns if c != target]
    X_train, X_test = as_categories(train[features]), as_categories(test[features], train[features])
    start = time.perf_counter()
    model = HistGradientBoostingClassifier(categorical_features="from_dtype", random_state=0)
    model.fit(X_train, train[target])
    _ = time.perf_counter() - start
    return float(roc_auc_score(test[target], model.predict_proba(X_test)[:, 1]))


def as_categories(frame: pd.DataFrame, reference: pd.DataFrame | None = None) -> pd.DataFrame:
    reference = frame if reference is None else reference
    out = frame.copy()
    for column in out.columns:
        if out[column].dtype == object or str(out[column].dtype) in {"category", "bool", "string"}:
            levels = sorted(reference[column].dropna().astype(str).unique())
            out[column] = pd.Categorical(
                out[column].astype(str).where(out[column].notna()), categories=levels
            )
        elif str(out[column].dtype).startswith("datetime"):
            out[column] = out[column].astype("int64")
    return out
