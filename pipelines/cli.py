"""propensity: one CLI for running, compiling and inspecting the pipelines.

python -m pipelines.cli run                       # default synthetic data, KFP local runner
python -m pipelines.cli run --preset telco        # the real IBM Telco churn table
python -m pipelines.cli run --data my.csv --config spec.yaml --set gate.min_f1=0.5
python -m pipelines.cli compile --image REGISTRY/propensity-pipeline:TAG
python -m pipelines.cli registry list | rollback [--to v0002]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from components.shared.config import PRESETS, Config, ConfigError
from components.shared.errors import BundleError, DataValidationError, RegistryError
from pipelines.containers import ContainerError, add_runner_arguments
from pipelines.local_runner import DEFAULT_TIMEOUT_SECONDS

DEFAULT_WORKDIR = Path(".propensity")
DEFAULT_ROWS = 2240
DEFAULT_SEED = 7


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except (ConfigError, DataValidationError, BundleError, RegistryError, ContainerError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:  # PipelineRunError and friends carry a complete message
        print(f"error: {exc}", file=sys.stderr)
        return 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="propensity", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

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
    run.add_argument("--json", action="store_true", help="print the summary JSON instead of the table")
    run.set_defaults(handler=cmd_run)

    comp = sub.add_parser("compile", help="compile the pipeline YAML and validate it")
    comp.add_argument("--out", type=Path, default=Path("build"))
    comp.add_argument("--image", default=None, help="pipeline image URI written into every task")
    comp.add_argument(
        "--pvc",
        default=None,
        metavar="CLAIM:/PATH",
        help="mount a PersistentVolumeClaim into every task (KFP on kind)",
    )
    comp.set_defaults(handler=cmd_compile)

    data = sub.add_parser("data", help="write the synthetic marketing data")
    data.add_argument(
        "--out", type=Path, required=True, help="a .csv/.parquet file, or a folder for part files"
    )
    data.add_argument("--rows", type=int, default=DEFAULT_ROWS)
    data.add_argument("--seed", type=int, default=DEFAULT_SEED)
    data.add_argument("--drift", type=float, default=0.0, help="population shift, 0 (none) to 1 (strong)")
    data.add_argument("--parts", type=int, default=1, help="with a folder: number of part files")
    data.set_defaults(handler=cmd_data)

    reg = sub.add_parser("registry", help="inspect the local model registry or roll the champion back")
    reg.add_argument("action", choices=["list", "rollback"])
    add_config_arguments(reg)
    reg.add_argument("--registry", type=Path, default=DEFAULT_WORKDIR / "registry")
    reg.add_argument(
        "--to", dest="to_version", help="rollback: the version to make champion (default: previous)"
    )
    reg.set_defaults(handler=cmd_registry)

    bench = sub.add_parser("bench", help="benchmarks: pipeline stage times, Telco vs a baseline")
    bench.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR / "bench")
    bench.add_argument("--skip-telco", action="store_true")
    bench.set_defaults(handler=cmd_bench)

    add_extension_commands(sub)
    return parser


def add_extension_commands(sub: argparse._SubParsersAction) -> None:
    """Commands that live next to the code they drive: the endpoint, submission to Vertex AI / KFP."""
    from pipelines import predict_cli, serve_cli, submit

    serve_cli.add_commands(sub)
    predict_cli.add_commands(sub)
    submit.add_commands(sub)


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", choices=sorted(PRESETS), default="marketing", help="dataset preset")
    parser.add_argument("--config", type=Path, help="YAML config / dataset spec (replaces the preset)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config field, e.g. gate.min_f1=0.5 (repeatable)",
    )


def load_config(args: argparse.Namespace) -> Config:
    config = Config.from_file(args.config) if args.config else PRESETS[args.preset]()
    return config.with_overrides(args.overrides)


def cmd_run(args: argparse.Namespace) -> int:
    from pipelines.containers import describe, plan_for
    from pipelines.local_runner import run_pipeline_locally

    config = load_config(args)
    workdir = args.workdir.resolve()
    data_uri = resolve_data(args, config, workdir)
    registry = (args.registry or workdir / "registry").resolve()
    run_name = new_run_name()
    run_dir = local_run_dir(args.pipeline_root, workdir, run_name)
    containers = plan_for(args, run_name, workdir, read_only=[data_uri], read_write=[str(registry)])
    arguments = {
        "data_uri": data_uri,
        "registry_uri": str(registry),
        "config_json": config.to_json(),
        "families": config.tune.families,
        "deploy_target": "local",
        "run_name": run_name,
        "code_version": code_version(),
    }
    print(f"propensity: training {config.registry_model_name!r} on {data_uri}")
    print(f"run {run_name}: artifacts in {run_dir}{describe(containers)}")
    result = run_pipeline_locally(
        arguments,
        run_dir,
        enable_caching=args.cache,
        timeout_seconds=args.timeout or None,
        containers=containers,
    )
    summary_path = run_dir / "pipeline_summary.json"
    summary_path.write_text(json.dumps(result.summary, indent=2))
    if args.json:
        print(json.dumps(result.summary, indent=2))
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
    if config.dataset.name == "telco":
        target = workdir / "data" / "telco" / "telco.parquet"
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            data.load_telco().to_parquet(target, index=False)
        return str(target)
    folder = workdir / "data" / f"marketing-{args.rows}"
    return str(data.ensure_default_data(folder, rows=args.rows, seed=DEFAULT_SEED).resolve())


def local_run_dir(pipeline_root: str | None, workdir: Path, run_name: str) -> Path:
    if pipeline_root and pipeline_root.startswith("gs://"):
        raise ConfigError(
            f"--pipeline-root {pipeline_root}: the local runner cannot write to GCS (it would silently treat "
            "the URI as a relative local path); use a local directory, or submit to Vertex AI"
        )
    return Path(pipeline_root).resolve() if pipeline_root else workdir / "runs" / run_name


def new_run_name() -> str:
    from datetime import UTC, datetime

    return "run-" + datetime.now(UTC).strftime("%Y%m%d-%H%M%S-%f")


def code_version() -> str:
    """The git commit of the code that trains, marked dirty when there are local edits."""
    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], cwd=here, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        from importlib.metadata import version

        return f"propensity-{version('propensity')}"
    return f"{sha}-dirty" if dirty else sha


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
        lines.append("registry: unchanged (nothing deployed)")
    lines.append(f"summary: {path}")
    return "\n".join(lines)


def cmd_compile(args: argparse.Namespace) -> int:
    from pipelines.compile import DEFAULT_IMAGE, PvcMount, compile_all

    try:
        pvc = PvcMount.parse(args.pvc) if args.pvc else None
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    for path in compile_all(args.out, args.image or DEFAULT_IMAGE, pvc):
        print(f"wrote and validated {path}")
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    from components.data import synthetic as data
    frame = data.generate_marketing(rows=args.rows, seed=args.seed, drift=args.drift)
    out: Path = args.out
    if out.suffix == ".parquet":
        out.parent.mkdir(parents=True, exist_ok=True)
        frame.to_parquet(out, index=False)
    elif out.suffix == ".csv":
        out.parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(out, index=False, sep="\t")
    else:
        data.write_parts(frame, out, parts=args.parts)
    print(f"wrote {len(frame)} rows to {out}")
    return 0


def cmd_registry(args: argparse.Namespace) -> int:
    from components.registry.local import LocalRegistry

    config = load_config(args)
    registry = LocalRegistry(args.registry.resolve())
    name = config.registry_model_name
    if args.action == "rollback":
        version = registry.rollback(name, args.to_version)
        print(f"{name}: champion is now {version}")
        return 0
    champion = registry.champion(name)
    for meta in registry.versions(name):
        test = meta.get("metrics", {})
        mark = "*" if meta["version"] == champion else " "
        auc, f1 = test.get("roc_auc", float("nan")), test.get("f1", float("nan"))
        print(f"{mark} {meta['version']}  {meta.get('created_at', '')}  roc_auc={auc:.4f}  f1={f1:.4f}")
    if champion is None:
        print(f"{name}: no champion yet")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from pipelines.bench import run_benchmarks

    return run_benchmarks(args.workdir.resolve(), skip_telco=args.skip_telco)


if __name__ == "__main__":
    sys.exit(main())
