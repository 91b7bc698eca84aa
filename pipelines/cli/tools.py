"""The small commands: ``compile`` (pipeline YAML), ``data`` (synthetic data), ``registry``, ``bench``."""

from __future__ import annotations

import argparse
from pathlib import Path

from components.shared.config import ConfigError
from pipelines.cli.common import add_config_arguments, load_config
from pipelines.runs import DEFAULT_ROWS, DEFAULT_SEED, DEFAULT_WORKDIR


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add ``compile``, ``data``, ``registry`` and ``bench`` to the CLI's subparsers."""
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
    from pipelines.bench.pipeline import run_benchmarks

    return run_benchmarks(args.workdir.resolve(), skip_telco=args.skip_telco)
