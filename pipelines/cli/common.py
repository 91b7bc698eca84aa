"""What the commands share: the config flags (--preset, --config, --set) and their Config, input URIs,
the --labels input and the lines that report a training run started by a command."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from components.shared.config import PRESETS, Config


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


def input_uri(batch: str) -> str:
    """Absolute (tasks run elsewhere), or a gs:// URI as given."""
    return batch if batch.startswith("gs://") else str(Path(batch).expanduser().resolve())


def labels_input(labels: str | None, log_dir: str) -> str:
    """The --labels input as a URI the tasks can read; refused early when it cannot be joined."""
    from components.shared.errors import DataValidationError

    if not labels:
        return ""
    if not log_dir:
        raise DataValidationError("--labels joins outcomes to the prediction log: drop --no-log")
    uri = input_uri(labels)
    if not uri.startswith("gs://") and not Path(uri).exists():
        raise DataValidationError(f"--labels {labels}: no such file or folder")
    return uri


def outcome_lines(outcome: dict[str, Any] | None) -> list[str]:
    """The nested (or requested) training run: its gate, both champion comparisons, the registry."""
    if not outcome:
        return ["retrain: triggered, but its summary was not found"]
    gate, deployment = outcome["gate"], outcome["deployment"]
    lines = [f"retrain: training pipeline ran; gate {'PASSED' if gate['passed'] else 'FAILED'}"]
    lines += [f"  [{'x' if c['passed'] else ' '}] {c['name']}: {c['detail']}" for c in gate.get("checks", [])]
    if deployment["deployed"]:
        lines.append(f"  registry: {deployment['model_name']} {deployment['version']} is now champion")
    else:
        reasons = gate["reasons"] or deployment.get("reasons") or ["not deployed"]
        lines.append(f"  registry: unchanged ({'; '.join(reasons)})")
    return lines
