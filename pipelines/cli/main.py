"""propensity: one CLI for running, compiling and inspecting the pipelines.

python -m pipelines.cli run                       # default synthetic data, KFP local runner
python -m pipelines.cli run --preset telco        # the real IBM Telco churn table
python -m pipelines.cli run --data my.csv --config spec.yaml --set gate.min_f1=0.5
python -m pipelines.cli compile --image REGISTRY/propensity-pipeline:TAG
python -m pipelines.cli registry list | rollback [--to v0002]
python -m pipelines.cli retrain --labels outcomes.csv  # labels that arrived later
"""

from __future__ import annotations

import argparse
import sys

from components.shared.config import ConfigError
from components.shared.errors import BundleError, DataValidationError, RegistryError
from pipelines.cli import predict, retrain, run, serve, submit, tools
from pipelines.containers import ContainerError


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
    run.add_commands(sub)
    tools.add_commands(sub)  # compile, data, registry, bench
    serve.add_commands(sub)
    predict.add_commands(sub)  # predict, score
    retrain.add_commands(sub)
    submit.add_commands(sub)
    return parser
