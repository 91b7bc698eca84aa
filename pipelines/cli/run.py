"""``propensity run``: the training pipeline on the KFP local runner, and its summary table."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from components.shared.config import Config
from components.shared.errors import DataValidationError
from pipelines.cli.common import add_config_arguments, load_config
from pipelines.containers import add_runner_arguments
from pipelines.local_runner import DEFAULT_TIMEOUT_SECONDS
from pipelines.runs import (
    DEFAULT_ROWS,
    DEFAULT_SEED,
    DEFAULT_WORKDIR,
    add_tracking_argument,
    code_version,
    local_run_dir,
    new_run_name,
    run_tracking_failure,
    tracking_folders,
    tracking_line,
    tracking_uri,
)


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add ``run`` to the CLI's subparsers."""
    run = sub.add_parser(
        "run", help="run the training pipeline on the KFP local runner (tasks in this venv or the image)"
    )
    add_config_arguments(run)
    run.add_argument(
        "--data", help="CSV/Parquet file, folder of part files, or gs:// URI (default: synthetic)"
    )
    run.add_argument("--rows", type=int, default=DEFAULT_ROWS, help="rows of synthetic data to generate")
    run.add_argument("--registry", type=Path, help="local registry directory (default: WORKDIR/registry)")
    run.add_argument(
        "--workdir", type=Path, default=DEFAULT_WORKDIR, help="where data, runs and registry live"
    )
    run.add_argument(
        "--pipeline-root", help="where artifacts go (default: WORKDIR/runs/RUN); local paths only"
    )
    run.add_argument(
        "--cache", action="store_true", help="reuse outputs of identical tasks from earlier runs"
    )
    run.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT_SECONDS,
        help="fail the run, naming the running tasks, after this many seconds (0: no limit)",
    )
    add_runner_arguments(run)
    add_tracking_argument(run)
    run.add_argument("--json", action="store_true", help="print the summary JSON instead of the table")
    run.set_defaults(handler=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    from components.tracking.record import TRAINING, RunContext
    from pipelines.containers import describe, plan_for
    from pipelines.local_runner import run_pipeline_locally

    config = load_config(args)
    workdir = args.workdir.resolve()
    data_uri = resolve_data(args, config, workdir)
    registry = (args.registry or workdir / "registry").resolve()
    run_name = new_run_name()
    run_dir = local_run_dir(args.pipeline_root, workdir, run_name)
    tracking = tracking_uri(args.tracking_uri, workdir)
    containers = plan_for(
        args,
        run_name,
        workdir,
        read_only=[data_uri],
        read_write=[str(registry), *tracking_folders(tracking)],
    )
    context = RunContext(run_name, code_version(), args.runner, data_uri)
    arguments = {
        "data_uri": data_uri,
        "registry_uri": str(registry),
        "config_json": config.to_json(),
        "families": config.tune.families,
        "deploy_target": "local",
        "run_name": run_name,
        "code_version": context.code_version,
        "tracking_uri": tracking,
        "runner": context.runner,
    }
    print(f"propensity: training {config.registry_model_name!r} on {data_uri}")
    print(f"run {run_name}: artifacts in {run_dir}{describe(containers)}")
    result = run_tracking_failure(
        lambda: run_pipeline_locally(
            arguments,
            run_dir,
            enable_caching=args.cache,
            timeout_seconds=args.timeout or None,
            containers=containers,
            warm_tasks=not args.fresh_task_processes,
        ),
        TRAINING,
        config,
        tracking,
        context,
    )
    summary_path = run_dir / "pipeline_summary.json"
    summary_path.write_text(json.dumps(result.summary, indent=2))
    if args.json:
        print(json.dumps(result.summary, indent=2))
        if not (result.summary.get("tracking") or {}).get("logged"):
            print(tracking_line(result.summary.get("tracking")), file=sys.stderr)
    else:
        print(format_summary(result.summary, result.seconds, summary_path))
    return 0


def resolve_data(args: argparse.Namespace, config: Config, workdir: Path) -> str:
    """The user's data as an absolute path (tasks run elsewhere), or the preset's default data."""
    if args.data:
        if args.data.startswith("gs://"):
            return args.data
        path = Path(args.data).resolve()
        if not path.exists():
            raise DataValidationError(f"--data {args.data}: no such file or folder")
        return str(path)
    from components.data import synthetic as data
    from components.data.telco import load_telco

    if config.dataset.name == "telco":
        target = workdir / "data" / "telco" / "telco.parquet"
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            load_telco().to_parquet(target, index=False)
        return str(target)
    folder = workdir / "data" / f"marketing-{args.rows}"
    return str(data.ensure_default_data(folder, rows=args.rows, seed=DEFAULT_SEED).resolve())


def format_summary(summary: dict[str, Any], seconds: float, path: Path) -> str:
    test = summary["metrics"]["test"]
    lines = ["", f"champion: {summary['champion']}   (wall time {seconds:.1f}s)", ""]
    names = ["roc_auc", "pr_auc", "f1", "precision", "recall", "brier"]
    cv = summary["metrics"].get("cv", {})
    lines.append("  cv roc_auc: mean fold ROC-AUC on the development split (it chose); the others: test")
    lines.append("  family     " + f"{'cv roc_auc':>11}" + "".join(f"{n:>11}" for n in names))
    lines.append("  " + "-" * (22 + 11 * len(names)))
    for family, metrics in summary["metrics"]["families"].items():
        chosen = cv.get(family, {}).get("cv_roc_auc")
        cv_text = f"{chosen:>11.4f}" if chosen is not None else f"{'':>11}"
        lines.append(f"  {family:<11}" + cv_text + "".join(f"{metrics[n]:>11.4f}" for n in names))
    lines.append(f"  {'served':<11}{'':>11}" + "".join(f"{test[n]:>11.4f}" for n in names))
    lines.append(
        f"  served: threshold {test['threshold']:.3f}, ECE {test['ece']:.4f},"
        f" lift@10% {test['lift_at_10']:.2f},"
        f" calibration {'kept' if summary['calibration']['kept'] else 'not kept'}"
        f" (T={summary['calibration']['fitted_temperature']:.3f})"
    )
    lines.append("")
    gate = summary["gate"]
    lines.append(f"gate: {'PASSED' if gate['passed'] else 'FAILED'}")
    for check in gate["checks"]:
        lines.append(f"  [{'x' if check['passed'] else ' '}] {check['name']}: {check['detail']}")
    stability = summary["metrics"].get("threshold_stability")
    if stability:
        lines.append(
            f"  F1 per CV fold at the threshold: {stability['f1_min']:.4f} to {stability['f1_max']:.4f}"
            f" (std {stability['f1_std']:.4f}; the gate report says more)"
        )
    deployment = summary["deployment"]
    if deployment["deployed"]:
        lines.append(
            f"registry: {deployment['model_name']} {deployment['version']} is now champion"
            f" (previous: {deployment['previous_champion'] or 'none'})"
        )
    else:
        reasons = deployment.get("reasons") or ["nothing deployed"]
        lines.append(f"registry: unchanged ({'; '.join(reasons)})")
    lines.append(f"summary: {path}")
    lines.append(tracking_line(summary.get("tracking")))
    return "\n".join(lines)
