"""``propensity retrain``: retrain on outcomes that arrived after scoring, if they bring something new.

python -m pipelines.cli retrain --labels outcomes.csv          # joined by id to WORKDIR/prediction_log

The labels are joined by id to the prediction log (the inputs each customer was scored with); the
same decision as a drift retrain follows (``components.monitoring.retraining``): enough newly
labelled rows, both outcomes, training data unlike the champion's. Then the training pipeline runs
on the local runner on the reference plus the new rows (the configured window), part of the new
rows held out: its gate also compares challenger and champion on them.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pipelines.cli.common import add_config_arguments, labels_input, load_config, outcome_lines
from pipelines.containers import add_runner_arguments
from pipelines.local_runner import DEFAULT_TIMEOUT_SECONDS
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


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add ``retrain`` to the CLI's subparsers."""
    retrain = sub.add_parser(
        "retrain", help="retrain on labels that arrived later (joined by id to the prediction log)"
    )
    retrain.add_argument(
        "--labels", required=True, help="file, folder or gs:// prefix with the id column(s) and the target"
    )
    retrain.add_argument(
        "--workdir", type=Path, default=DEFAULT_WORKDIR, help="where runs, registry and log live"
    )
    retrain.add_argument("--registry", type=Path, help="local registry directory (default: WORKDIR/registry)")
    retrain.add_argument(
        "--log", type=Path, help="prediction log directory (default: WORKDIR/prediction_log)"
    )
    retrain.add_argument("--model-ref", default="champion", help="the model whose data is extended")
    retrain.add_argument(
        "--pipeline-root", help="where artifacts go (default: WORKDIR/runs/RUN); local paths only"
    )
    retrain.add_argument(
        "--timeout", type=float, default=DEFAULT_TIMEOUT_SECONDS, help="fail the run after this many seconds"
    )
    add_config_arguments(retrain)
    add_runner_arguments(retrain)
    add_tracking_argument(retrain)
    retrain.add_argument("--json", action="store_true", help="print the summary JSON instead of the table")
    retrain.set_defaults(handler=cmd_retrain)


def cmd_retrain(args: argparse.Namespace) -> int:
    from components.batch.champion import load_champion
    from components.batch.labels import join_labels
    from components.model.bundle import load_reference
    from components.monitoring.retraining import combine_labelled, plan_retraining, write_retrain_files
    from components.tracking.record import TRAINING, RunContext
    from pipelines.containers import describe, plan_for
    from pipelines.local_runner import run_pipeline_locally

    config = load_config(args)
    workdir = args.workdir.resolve()
    registry = (args.registry or workdir / "registry").resolve()
    log_dir = str((args.log or workdir / "prediction_log").resolve())
    labels_uri = labels_input(args.labels, log_dir)
    champion = load_champion(str(registry), config.registry_model_name, args.model_ref)
    monitoring, seed = config.monitoring, config.split.seed
    joined = join_labels(labels_uri, log_dir, champion.bundle, monitoring.reference_rows, seed)
    plan, data = plan_retraining(
        {"drifted": False, "reason": "retrain requested"},
        load_reference(champion.path),
        combine_labelled([joined.labelled], config.dataset.id_columns),
        config,
        champion.bundle,
        champion.version,
        code_version(),
        force=True,
    )
    plan.labels = joined.report()
    lines = [f"labels: {k}: {v}" for k, v in plan.labels.items() if k != "labels"]
    document: dict = {"decision": plan.to_dict(), "training": None}
    if data is None:
        lines.append(f"retrain: no ({plan.reason})")
        print(json.dumps(document, indent=2) if args.json else "\n".join(lines))
        return 0
    run_name = new_run_name()
    run_dir = local_run_dir(args.pipeline_root, workdir, run_name)
    table, holdout = write_retrain_files(data, run_dir / "retrain_data")
    tracking = tracking_uri(args.tracking_uri, workdir)
    containers = plan_for(
        args,
        run_name,
        workdir,
        read_only=[str(run_dir / "retrain_data")],
        read_write=[str(registry), *tracking_folders(tracking)],
    )
    context = RunContext(run_name, code_version(), args.runner, str(table))
    arguments = {
        "data_uri": str(table),
        "registry_uri": str(registry),
        "config_json": data.config.to_json(),
        "families": config.tune.families,
        "deploy_target": "local",
        "run_name": run_name,
        "code_version": context.code_version,
        "retrain_context": json.dumps(plan.provenance(str(holdout))),
        "tracking_uri": tracking,
        "runner": context.runner,
    }
    print(f"propensity: {plan.reason}")
    print(f"run {run_name}: artifacts in {run_dir}{describe(containers)}")
    result = run_tracking_failure(
        lambda: run_pipeline_locally(
            arguments,
            run_dir,
            timeout_seconds=args.timeout or None,
            containers=containers,
            warm_tasks=not args.fresh_task_processes,
        ),
        TRAINING,
        data.config,
        tracking,
        context,
    )
    document["training"] = result.summary
    (run_dir / "retrain_summary.json").write_text(json.dumps(document, indent=2))
    outcome = {"gate": result.summary["gate"], "deployment": result.summary["deployment"]}
    lines += [
        f"retrain: {plan.reason}",
        *outcome_lines(outcome),
        f"summary: {run_dir / 'retrain_summary.json'}",
        tracking_line(result.summary.get("tracking")),
    ]
    print(json.dumps(document, indent=2) if args.json else "\n".join(lines))
    return 0
