"""``propensity runs`` (the tracked runs, newest first), ``runs compare A B`` and ``ui`` (the MLflow UI).

python -m pipelines.cli runs                        # recent runs: champion, test ROC-AUC, F1, gate, version
python -m pipelines.cli runs compare                # the two newest training runs, side by side
python -m pipelines.cli runs compare RUN_A RUN_B    # by run name or MLflow run id
python -m pipelines.cli ui                          # the MLflow UI on 127.0.0.1 for WORKDIR's store
"""

from __future__ import annotations

import argparse
import os
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from components.shared.config import ConfigError
from pipelines.runs import DEFAULT_WORKDIR, NO_TRACKING, TRACKING_FOLDER, tracking_uri

TRAINING = "training"
UI_VENV = ".venv-mlflow"  # full mlflow (the UI server), in its own venv: see the README, "Tracking"
DEFAULT_UI_PORT = 5000


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add ``runs`` (with ``compare``) and ``ui`` to the CLI's subparsers."""
    store = store_arguments(DEFAULT_WORKDIR, None)
    # after `compare` too; not given there, the value given before it stands (argparse would
    # otherwise let the subcommand's defaults replace `runs --workdir X`'s)
    again = store_arguments(argparse.SUPPRESS, argparse.SUPPRESS)

    runs = sub.add_parser("runs", parents=[store], help="the tracked runs, newest first; `runs compare A B`")
    runs.add_argument("-n", "--limit", type=int, default=20, help="how many runs to list")
    runs.set_defaults(handler=cmd_runs)
    actions = runs.add_subparsers(dest="runs_command")
    compare = actions.add_parser(
        "compare", parents=[again], help="two runs' params and metrics side by side (default: newest two)"
    )
    compare.add_argument("runs", nargs="*", metavar="RUN", help="run names or ids (0 or 2)")
    compare.add_argument("--all", action="store_true", help="also what did not change")
    compare.set_defaults(handler=cmd_compare)

    ui = sub.add_parser("ui", parents=[store], help="the MLflow UI on loopback for the tracking store")
    ui.add_argument("--host", default="127.0.0.1")
    ui.add_argument("--port", type=int, default=DEFAULT_UI_PORT)
    ui.add_argument(
        "--mlflow", type=Path, help=f"the full mlflow's executable (default: {UI_VENV}/bin/mlflow)"
    )
    ui.set_defaults(handler=cmd_ui)


def store_arguments(workdir: Any, default: Any) -> argparse.ArgumentParser:
    """--workdir, --tracking-uri, --experiment: which store and experiment a command reads."""
    store = argparse.ArgumentParser(add_help=False)
    store.add_argument("--workdir", type=Path, default=workdir, help="whose tracking store")
    store.add_argument(
        "--tracking-uri",
        default=default,
        help=f"an MLflow store URI (default: the SQLite store WORKDIR/{TRACKING_FOLDER}/mlflow.db)",
    )
    store.add_argument(
        "--experiment", default=default, help="one experiment (default: every experiment in the store)"
    )
    return store


def store_uri(args: argparse.Namespace) -> str:
    uri = tracking_uri(args.tracking_uri, args.workdir.resolve())
    if not uri or uri == "vertex":
        raise ConfigError(
            f"--tracking-uri {args.tracking_uri!r}: runs are read from an MLflow store"
            " (Vertex AI Experiments runs are in the Vertex console)"
            if uri
            else f"--tracking-uri {NO_TRACKING}: there is no store to read"
        )
    return uri


def read(args: argparse.Namespace, limit: int) -> list[Any]:
    from components.tracking.mlflow_backend import read_runs, sqlite_path

    uri = store_uri(args)
    database = sqlite_path(uri)
    if database is not None and not database.exists():
        raise ConfigError(f"no tracked runs yet: {database} does not exist (make run creates it)")
    return read_runs(uri, args.experiment, max_results=limit)


def cmd_runs(args: argparse.Namespace) -> int:
    runs = read(args, args.limit)
    if not runs:
        print("no tracked runs")
        return 0
    print(format_runs(runs))
    return 0


def format_runs(runs: list[Any]) -> str:
    header = ("started (UTC)", "run", "pipeline", "status", "champion", "roc_auc", "f1", "gate", "registry")
    rows = [header]
    for run in runs:
        tags, metrics = run.data.tags, run.data.metrics
        pipeline = tags.get("pipeline", "?")
        row = (_started(run), run.info.run_name, pipeline, run.info.status)
        if run.info.status == "FAILED":
            what = f"failed at {tags.get('failed_stage', '?')}: {tags.get('error', '')}"
            rows.append((*row, what[:90], "", "", "", ""))
        elif pipeline == TRAINING:
            rows.append(
                (
                    *row,
                    tags.get("champion", "-"),
                    _number(metrics.get("test.roc_auc")),
                    _number(metrics.get("test.f1")),
                    tags.get("gate", "-"),
                    tags.get("registry_version", "-"),
                )
            )
        else:
            share = _number(metrics.get("drift.share"), 3)
            what = (
                f"{int(metrics.get('scoring.rows', 0))} rows with {tags.get('model_version', '?')},"
                f" drift share {share}, retrain {tags.get('retrain', '?')}"
            )
            rows.append((*row, what, "", "", "", ""))
    return _table(rows)


def cmd_compare(args: argparse.Namespace) -> int:
    runs = read(args, 500)
    if len(args.runs) not in (0, 2):
        raise ConfigError(f"runs compare takes two runs (or none: the newest two), got {len(args.runs)}")
    if args.runs:
        chosen = [find_run(runs, ref) for ref in args.runs]
    else:
        training = [
            r for r in runs if r.data.tags.get("pipeline") == TRAINING and r.info.status == "FINISHED"
        ]
        if len(training) < 2:
            raise ConfigError(f"runs compare needs two finished training runs; the store has {len(training)}")
        chosen = [training[1], training[0]]  # older first: the second column is what changed to
    print(format_comparison(chosen[0], chosen[1], show_all=args.all))
    return 0


def find_run(runs: list[Any], ref: str) -> Any:
    """A run by id, id prefix (8+ characters) or run name; ambiguous or unknown: a clear error."""
    exact = [r for r in runs if r.info.run_id == ref]
    if exact:
        return exact[0]
    named = [r for r in runs if r.info.run_name == ref]
    if len(named) > 1:  # a prediction run and the training run it triggered share a name
        named = [r for r in named if r.data.tags.get("pipeline") == TRAINING] or named
    prefixed = [r for r in runs if len(ref) >= 8 and r.info.run_id.startswith(ref)]
    found = named or prefixed
    if len(found) == 1:
        return found[0]
    if not found:
        raise ConfigError(f"run {ref!r}: no tracked run has that name or id (propensity runs lists them)")
    ids = ", ".join(r.info.run_id for r in found)
    raise ConfigError(f"run {ref!r} is ambiguous ({ids}); give the run id")


def format_comparison(a: Any, b: Any, show_all: bool = False) -> str:
    """Params, tags and metrics of two runs; changed values marked with '*', metrics with B - A."""
    from components.tracking.record import HEADLINE_METRICS

    lines = [f"A: {a.info.run_name} ({a.info.run_id}, {_started(a)})"]
    lines.append(f"B: {b.info.run_name} ({b.info.run_id}, {_started(b)})")
    keep = {"champion", "gate", "registry_version", "code_version", "data_fingerprint", "runner", "data_uri"}
    sections = (
        (
            "tags",
            {k: v for k, v in a.data.tags.items() if k in keep},
            {k: v for k, v in b.data.tags.items() if k in keep},
        ),
        ("params", a.data.params, b.data.params),
    )
    for title, left, right in sections:
        rows = [(title, "A", "B", "")]
        for key in sorted(set(left) | set(right)):
            va, vb = left.get(key, "-"), right.get(key, "-")
            if va != vb or show_all:
                rows.append((key, _short(va), _short(vb), "*" if va != vb else ""))
        lines += ["", _table(rows) if len(rows) > 1 else f"{title}: the same"]
    ma, mb = a.data.metrics, b.data.metrics
    names = [m for m in HEADLINE_METRICS if m in ma or m in mb]
    names += sorted(k for k in set(ma) | set(mb) if k not in HEADLINE_METRICS)
    rows = [("metrics", "A", "B", "B - A")]
    for key in names:
        va, vb = ma.get(key), mb.get(key)
        changed = va is None or vb is None or abs(va - vb) > 1e-12
        if changed or show_all or key in HEADLINE_METRICS:
            delta = f"{vb - va:+.4f}" if va is not None and vb is not None else ""
            rows.append((key, _number(va), _number(vb), delta))
    lines += ["", _table(rows)]
    return "\n".join(lines)


def cmd_ui(args: argparse.Namespace) -> int:
    """Run the MLflow UI (full mlflow, its own venv) for the store until interrupted."""
    uri = store_uri(args)
    mlflow = args.mlflow or Path(__file__).resolve().parents[2] / UI_VENV / "bin" / "mlflow"
    if not Path(mlflow).exists():
        raise ConfigError(f"{mlflow} does not exist: `make ui` installs the MLflow UI into {UI_VENV}/")
    command = ui_command(Path(mlflow), uri, args.host, args.port)
    print(f"MLflow UI for {uri}: http://{args.host}:{args.port} (Ctrl-C stops it)", flush=True)
    # no usage telemetry, and no job workers (seven huey processes for GenAI judges), unless asked
    quiet = {"MLFLOW_DISABLE_TELEMETRY": "true", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    environment = {**quiet, **os.environ}
    try:
        return subprocess.call(command, env=environment)
    except KeyboardInterrupt:
        return 0


def ui_command(mlflow: Path, uri: str, host: str, port: int) -> list[str]:
    """``mlflow server`` on loopback for the store, serving the runs' artifacts from where they are."""
    return [
        str(mlflow),
        "server",
        "--backend-store-uri",
        uri,
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        "1",
    ]


def _started(run: Any) -> str:
    return datetime.fromtimestamp(run.info.start_time / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _number(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _short(text: str, width: int = 48) -> str:
    """At most ``width`` characters, keeping the end (a path's file name, a version's suffix)."""
    return text if len(text) <= width else "..." + text[-(width - 3) :]


def _table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    out = []
    for n, row in enumerate(rows):
        out.append(
            "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
        if n == 0:
            out.append("  ".join("-" * width for width in widths))
    return "\n".join(out)
