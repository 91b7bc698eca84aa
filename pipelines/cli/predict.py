"""CLI commands of the prediction side: ``predict`` (the pipeline, locally) and ``score`` (in process).

python -m pipelines.cli predict --batch inference/             # newest part file, drift, retrain on drift
python -m pipelines.cli predict --batch inference/ --all-parts --csv --drift-source log
python -m pipelines.cli score --batch customers.parquet --out scored.parquet   # quick, no KFP

``add_commands(sub)`` adds both to the main parser (wired in ``pipelines.cli.main.build_parser``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pipelines.cli.common import add_config_arguments, input_uri, labels_input, load_config, outcome_lines
from pipelines.containers import add_runner_arguments
from pipelines.runs import (
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

SUMMARY_OUTPUT = "prediction_summary"


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add ``predict`` and ``score`` to the CLI's subparsers."""
    predict = sub.add_parser(
        "predict", help="batch prediction pipeline on the KFP local runner: score, value, drift, retrain"
    )
    _batch_arguments(predict)
    add_config_arguments(predict)
    predict.add_argument(
        "--log", help="prediction log directory or gs:// prefix (default: WORKDIR/prediction_log)"
    )
    predict.add_argument("--no-log", action="store_true", help="do not append to the prediction log")
    predict.add_argument(
        "--labels",
        help="outcomes that arrived later (file, folder or gs:// prefix with the id column(s) and the "
        "target): joined by id to the prediction log, they are new labelled rows for a drift retrain",
    )
    predict.add_argument("--csv", action="store_true", help="also write predictions.csv")
    predict.add_argument(
        "--drift-source",
        choices=["batch", "log"],
        default="batch",
        help="compare this batch, or the recent prediction log, with the training reference",
    )
    predict.add_argument(
        "--drift-window-hours", type=float, default=24.0, help="with --drift-source log: how far back"
    )
    predict.add_argument(
        "--pipeline-root", help="where artifacts go (default: WORKDIR/runs/RUN); local paths only"
    )
    add_runner_arguments(predict)
    add_tracking_argument(predict)
    predict.add_argument("--json", action="store_true", help="print the summary JSON instead of the table")
    predict.set_defaults(handler=cmd_predict)

    score = sub.add_parser("score", help="score a batch in process with the champion (no pipeline, no drift)")
    _batch_arguments(score)
    add_config_arguments(score)
    score.add_argument(
        "--out", type=Path, required=True, help="output folder, or a file ending in .parquet or .csv"
    )
    score.add_argument("--log", help="also append the rows to this prediction log directory or gs:// prefix")
    score.add_argument("--top", type=int, default=10, help="show this many customers by expected profit")
    score.set_defaults(handler=cmd_score)


def _batch_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--batch", required=True, help="CSV/Parquet file, folder of part files, or gs:// URI")
    parser.add_argument(
        "--all-parts", action="store_true", help="with a folder: score every part (default: the newest)"
    )
    parser.add_argument(
        "--workdir", type=Path, default=DEFAULT_WORKDIR, help="where runs, registry and log live"
    )
    parser.add_argument("--registry", type=Path, help="local registry directory (default: WORKDIR/registry)")
    parser.add_argument("--model-ref", default="champion", help="alias or version to score with")


def _log_location(given: str | None, workdir: Path) -> str:
    """A gs:// prefix as given, a local directory resolved (the default: WORKDIR/prediction_log)."""
    if given and given.startswith("gs://"):
        return given.rstrip("/")
    return str(Path(given or workdir / "prediction_log").expanduser().resolve())


def cmd_predict(args: argparse.Namespace) -> int:
    from components.batch.champion import load_champion
    from components.batch.reading import resolve_batch_uri
    from components.tracking.record import PREDICTION, RunContext
    from pipelines.containers import describe, plan_for
    from pipelines.local_runner import run_pipeline_locally

    config = load_config(args)
    workdir = args.workdir.resolve()
    registry = (args.registry or workdir / "registry").resolve()
    batch_uri = input_uri(args.batch)
    take = "all" if args.all_parts else "newest"
    if not batch_uri.startswith("gs://"):
        resolve_batch_uri(batch_uri, take)  # fail fast, before any task starts
    champion = load_champion(str(registry), config.registry_model_name, args.model_ref)
    run_name = new_run_name()
    run_dir = local_run_dir(args.pipeline_root, workdir, run_name)
    log_dir = "" if args.no_log else _log_location(args.log, workdir)
    labels_uri = labels_input(args.labels, log_dir)
    readable = [batch_uri, *([labels_uri] if labels_uri and not labels_uri.startswith("gs://") else [])]
    tracking = tracking_uri(args.tracking_uri, workdir)
    writable = [str(registry), *([log_dir] if log_dir and not log_dir.startswith("gs://") else [])]
    containers = plan_for(
        args, run_name, workdir, read_only=readable, read_write=[*writable, *tracking_folders(tracking)]
    )
    context = RunContext(run_name, code_version(), args.runner, batch_uri)
    arguments = {
        "batch_uri": batch_uri,
        "registry_uri": str(registry),
        "config_json": config.to_json(),
        "model_ref": champion.version,
        "batch_take": take,
        "write_csv": bool(args.csv),
        "prediction_log_uri": log_dir,
        "drift_source": args.drift_source,
        "drift_window_hours": float(args.drift_window_hours),
        "families": config.tune.families,
        "deploy_target": "local",
        "run_name": run_name,
        "code_version": context.code_version,
        "labels_uri": labels_uri,
        "tracking_uri": tracking,
        "runner": context.runner,
    }
    print(f"propensity: scoring {batch_uri} with {champion.model_name} {champion.version}")
    print(f"run {run_name}: artifacts in {run_dir}{describe(containers)}")
    result = run_tracking_failure(
        lambda: run_pipeline_locally(
            arguments,
            run_dir,
            pipeline="prediction",
            summary_output=SUMMARY_OUTPUT,
            containers=containers,
            warm_tasks=not args.fresh_task_processes,
        ),
        PREDICTION,
        config,
        tracking,
        context,
    )
    summary = with_retrain_outcome(result.summary, run_dir / "artifacts")
    path = run_dir / "prediction_summary.json"
    path.write_text(json.dumps(summary, indent=2))
    print(
        json.dumps(summary, indent=2)
        if args.json
        else format_prediction_summary(summary, result.seconds, path)
    )
    if args.json and not (summary.get("tracking") or {}).get("logged"):
        print(tracking_line(summary.get("tracking")), file=sys.stderr)
    return 0


def with_retrain_outcome(summary: dict[str, Any], artifacts_root: Path) -> dict[str, Any]:
    """Add the nested training run's gate and deployment (the pipeline summary cannot see them)."""
    if not summary["retrain"]["triggered"]:
        return summary
    found = sorted(artifacts_root.glob("*/summarize*/pipeline_summary"), key=lambda p: p.stat().st_mtime)
    if not found:
        summary["retrain"]["outcome"] = None
        return summary
    training = json.loads(found[-1].read_text())
    summary["retrain"]["outcome"] = {
        "training_summary": str(found[-1]),
        "gate": training["gate"],
        "deployment": training["deployment"],
        "test": training["metrics"]["test"],
    }
    return summary


def format_prediction_summary(summary: dict[str, Any], seconds: float, path: Path) -> str:
    scoring, model, value, drift = summary["scoring"], summary["model"], summary["business"], summary["drift"]
    rows = int(scoring["rows"])
    best, everyone = value["best"], value["everyone"]
    lines = [
        "",
        f"scored {rows} rows with {model['model_name']} {model['version']} ({model['family']})"
        f"   (wall time {seconds:.1f}s)",
        f"  predicted positive: {int(scoring['positive_labels'])} ({scoring['positive_rate']:.1%}),"
        f" mean calibrated probability {scoring['mean_calibrated_probability']:.3f}",
        f"campaign (contact cost {value['contact_cost']:g}, revenue {value['revenue_per_conversion']:g},"
        f" break-even p {value['breakeven_probability']:.3f}):",
        f"  contact the best {best['contacted']} ({best['share']:.1%}): expected profit"
        f" {best['expected_profit']:,.2f} vs {everyone['expected_profit']:,.2f} contacting everyone",
    ]
    if value.get("realised"):
        realised = value["realised"]
        lines.append(
            f"  realised on {realised['labelled_rows']} labelled rows: {realised['at_best_cutoff']:,.2f}"
            f" at that cut-off vs {realised['everyone']:,.2f} contacting everyone"
        )
    lines.append(f"drift: {drift['reason']}")
    lines += [f"ALERT: {alert}" for alert in summary.get("alerts", [])]
    lines += _retrain_lines(summary["retrain"])
    artifacts = summary["artifacts"]
    lines.append(f"reports: {Path(artifacts['business']).parent / 'business_report'} (HTML)")
    lines.append(f"         {Path(artifacts['drift']).parent / 'drift_report'} (Evidently HTML)")
    lines.append(f"predictions: {Path(artifacts['score']) / 'predictions.parquet'}")
    lines.append(f"summary: {path}")
    lines.append(tracking_line(summary.get("tracking")))
    return "\n".join(lines)


def _retrain_lines(retrain: dict[str, Any]) -> list[str]:
    labels = (retrain.get("decision") or {}).get("labels") or {}
    lines = [f"labels: {k}: {v}" for k, v in labels.items() if k != "labels"]
    if not retrain["triggered"]:
        alerted = retrain["reason"] == (retrain.get("decision") or {}).get("alert")
        return [*lines, "retrain: no (the ALERT above)" if alerted else f"retrain: no ({retrain['reason']})"]
    lines.append(f"retrain: {retrain['reason']}")
    return lines + outcome_lines(retrain.get("outcome"))


def cmd_score(args: argparse.Namespace) -> int:
    import tempfile

    from components.batch.business import rank_customers
    from components.batch.champion import load_champion
    from components.batch.scoring import run_batch_scoring
    from components.shared.report import markdown_table

    config = load_config(args)
    registry = (args.registry or args.workdir / "registry").resolve()
    champion = load_champion(str(registry), config.registry_model_name, args.model_ref)
    out: Path = args.out
    as_file = out.suffix in {".parquet", ".csv"}
    with tempfile.TemporaryDirectory(prefix="score-") as tmp:
        target_dir = Path(tmp) if as_file else out
        run = run_batch_scoring(
            input_uri(args.batch),
            champion,
            target_dir,
            take="all" if args.all_parts else "newest",
            csv=out.suffix == ".csv",
            log_dir=args.log,
        )
        written = _place(run.paths, out) if as_file else list(run.paths.values())
    monitoring = config.monitoring
    ranked = rank_customers(run.predictions, monitoring.contact_cost, monitoring.revenue_per_conversion)
    print(
        f"scored {run.batch.rows} rows from {run.batch.source} with {champion.model_name} {champion.version}"
        f" at {run.rows_per_second:,.0f} rows/s; wrote {', '.join(written)}"
    )
    for note in run.batch.notes:
        print(f"  note: {note}")
    if run.log_path:
        print(f"  appended to the prediction log: {run.log_path}")
    columns = ["rank", "id", "calibrated_probability", "expected_profit"]
    print(
        f"top {args.top} by expected profit (cost {monitoring.contact_cost:g}, revenue"
        f" {monitoring.revenue_per_conversion:g}):"
    )
    print(markdown_table(ranked.head(args.top)[columns].to_dict("records"), columns))
    return 0


def _place(paths: dict[str, str], out: Path) -> list[str]:
    """Move the requested file format to ``out``."""
    import shutil

    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(paths["csv" if out.suffix == ".csv" else "parquet"], out)
    return [str(out)]
