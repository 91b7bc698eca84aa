"""What the endpoint is told to do: ``ServeSettings``, and the Vertex AI ``AIP_*`` variables applied to them.

Its own module because every other serving module reads the settings and none of them should read
the environment: no environment variable is read at import; ``ServeSettings`` carries everything,
built once at start-up by the CLI (``pipelines.cli.serve``) from flags and ``settings_from_environment``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from components.shared.config import ConfigError

DEFAULT_PORT = 8080
DEFAULT_HEALTH_ROUTE = "/health"
DEFAULT_PREDICT_ROUTE = "/predict"
PREDICTION_LOG_ENV = "PREDICTION_LOG_DIR"  # where the endpoint logs (a directory or a gs:// prefix)
MAX_BODY_BYTES = 1_572_864  # 1.5 MiB, Vertex AI's online prediction request limit


@dataclass(frozen=True)
class ServeSettings:
    """Everything the server needs; built by the CLI from flags and the AIP_* environment."""

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    health_route: str = DEFAULT_HEALTH_ROUTE
    predict_route: str = DEFAULT_PREDICT_ROUTE
    registry_root: Path | None = None  # serve <registry_root>/<model_name> at ``alias``
    model_name: str | None = None
    alias: str = "champion"
    storage_uri: str | None = None  # serve this bundle (gs:// or local directory) instead
    log_dir: Path | str | None = None  # a directory, or a gs:// prefix (batched objects)
    token: str | None = None
    max_instances: int = 1000
    accept_unknown_fields: bool = False  # ignore fields the training file never had instead of 422
    max_explain_instances: int = 100
    max_body_bytes: int = MAX_BODY_BYTES
    poll_seconds: float = 0.5
    access_log: bool = True


def settings_from_environment(settings: ServeSettings, environ: Mapping[str, str]) -> ServeSettings:
    """Apply the Vertex AI custom-container variables (AIP_*) that are set.

    With ``AIP_HTTP_PORT`` set the server is inside Vertex (or its image) and must listen on
    all interfaces; ``AIP_STORAGE_URI`` names the bundle to serve.
    """
    changes: dict[str, Any] = {}
    if environ.get("AIP_HTTP_PORT"):
        port = environ["AIP_HTTP_PORT"]
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"AIP_HTTP_PORT={port!r} is not a TCP port number")
        changes["port"] = int(port)
        changes["host"] = "0.0.0.0"
    if environ.get("AIP_HEALTH_ROUTE"):
        changes["health_route"] = environ["AIP_HEALTH_ROUTE"]
    if environ.get("AIP_PREDICT_ROUTE"):
        changes["predict_route"] = environ["AIP_PREDICT_ROUTE"]
    if environ.get("AIP_STORAGE_URI"):
        changes["storage_uri"] = environ["AIP_STORAGE_URI"]
    return replace(settings, **changes)
