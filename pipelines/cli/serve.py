"""``propensity serve``: the online endpoint, locally (registry champion) or as the Vertex container.

Locally::

    propensity serve                                  # .propensity/registry, marketing-propensity
    propensity serve --registry /tmp/work/registry --token-file ~/.propensity-token

In the serving image Vertex AI sets ``AIP_HTTP_PORT``, ``AIP_HEALTH_ROUTE``, ``AIP_PREDICT_ROUTE``
and ``AIP_STORAGE_URI``; then ``propensity serve`` listens on 0.0.0.0:$AIP_HTTP_PORT and serves the
bundle at $AIP_STORAGE_URI without any registry. Flags given explicitly win over the environment.

Wired into the main CLI by ``add_commands``.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from components.serving.settings import PREDICTION_LOG_ENV
from components.shared.config import ConfigError
from pipelines.cli.common import add_config_arguments, load_config
from pipelines.runs import DEFAULT_WORKDIR

if TYPE_CHECKING:
    from components.serving.settings import ServeSettings

DEFAULT_REGISTRY = DEFAULT_WORKDIR / "registry"
LOG_DIR_ENV = PREDICTION_LOG_ENV
TOKEN_ENV = "PROPENSITY_TOKEN"


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add ``serve`` to the CLI's subparsers."""
    serve = sub.add_parser("serve", help="the online endpoint (Vertex AI custom-container contract)")
    add_config_arguments(serve)
    serve.add_argument(
        "--registry", type=Path, default=None, help=f"local registry directory (default {DEFAULT_REGISTRY})"
    )
    serve.add_argument("--model-name", help="registry model name (default: from --preset/--config)")
    serve.add_argument("--alias", default="champion", help="registry alias to serve and follow")
    serve.add_argument(
        "--bundle", help="serve this bundle directory or gs:// prefix instead (default: $AIP_STORAGE_URI)"
    )
    serve.add_argument("--host", help="default 127.0.0.1; 0.0.0.0 when AIP_HTTP_PORT is set")
    serve.add_argument("--port", type=int, help="default $AIP_HTTP_PORT or 8080")
    serve.add_argument("--token", help=f"require this bearer token (or ${TOKEN_ENV}); health stays open")
    serve.add_argument("--token-file", type=Path, help="read the bearer token from this file")
    serve.add_argument(
        "--log-dir",
        help=(
            f"prediction log directory or gs:// prefix (default <registry>/<model>/prediction_log, "
            f"or ${LOG_DIR_ENV})"
        ),
    )
    serve.add_argument("--no-prediction-log", action="store_true", help="do not log predictions")
    serve.add_argument("--max-instances", type=int, default=1000, help="instances per request")
    serve.add_argument(
        "--accept-unknown-fields",
        action="store_true",
        help="ignore instance fields the training file never had (default: 422 unknown field)",
    )
    serve.add_argument("--max-explain-instances", type=int, default=100, help="with explain=true")
    serve.add_argument("--poll-seconds", type=float, default=0.5, help="how often the alias is checked")
    serve.add_argument("--no-access-log", action="store_true", help="do not log one line per request")
    serve.add_argument("--log-level", default="INFO")
    serve.set_defaults(handler=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    from components.serving.server import configure_logging, run

    settings = settings_from_args(args, os.environ)
    configure_logging(args.log_level)
    run(settings)
    return 0


def settings_from_args(args: argparse.Namespace, environ: Mapping[str, str]) -> ServeSettings:
    """Flags over AIP_* variables over defaults (read here, at startup, never at import)."""
    from components.serving.settings import ServeSettings, settings_from_environment

    settings = settings_from_environment(ServeSettings(), environ)
    model_name = args.model_name or _config_model_name(args)
    registry = (args.registry or DEFAULT_REGISTRY).resolve()
    storage_uri = args.bundle or settings.storage_uri
    if storage_uri and not storage_uri.startswith("gs://"):
        storage_uri = str(Path(storage_uri).resolve())
    changes: dict[str, Any] = {
        "registry_root": None if storage_uri else registry,
        "model_name": model_name,
        "alias": args.alias,
        "storage_uri": storage_uri,
        "token": _token(args, environ),
        "log_dir": _log_dir(args, environ, registry, model_name, storage_uri),
        "max_instances": _positive(args.max_instances, "--max-instances"),
        "accept_unknown_fields": bool(args.accept_unknown_fields),
        "max_explain_instances": _positive(args.max_explain_instances, "--max-explain-instances"),
        "poll_seconds": _positive_seconds(args.poll_seconds),
        "access_log": not args.no_access_log,
    }
    if args.host:
        changes["host"] = args.host
    if args.port is not None:
        changes["port"] = args.port
    return replace(settings, **changes)


def _config_model_name(args: argparse.Namespace) -> str:
    return load_config(args).registry_model_name


def _positive(value: int, flag: str) -> int:
    if value < 1:
        raise ConfigError(f"{flag} must be at least 1, got {value}")
    return value


def _positive_seconds(value: float) -> float:
    if not value > 0:
        raise ConfigError(f"--poll-seconds must be more than 0, got {value}")
    return value


def _token(args: argparse.Namespace, environ: Mapping[str, str]) -> str | None:
    if args.token_file is not None:
        try:
            token = args.token_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"--token-file {args.token_file}: {exc}") from exc
        if not token:
            raise ConfigError(f"--token-file {args.token_file} is empty")
        return token
    return args.token or environ.get(TOKEN_ENV) or None


def _log_dir(
    args: argparse.Namespace,
    environ: Mapping[str, str],
    registry: Path,
    model_name: str,
    storage_uri: str | None,
) -> Path | str | None:
    if args.no_prediction_log:
        return None
    given = args.log_dir or environ.get(LOG_DIR_ENV)
    if given:
        return given.rstrip("/") if given.startswith("gs://") else Path(given).resolve()
    if storage_uri:
        return Path("prediction_log").resolve()
    return registry / model_name / "prediction_log"
