"""The argparse helpers the commands share: the config flags (--preset, --config, --set), their Config."""

from __future__ import annotations

import argparse
from pathlib import Path

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
