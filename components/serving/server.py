"""Start-up: the endpoint's process, uvicorn serving the app, and its logging.

``propensity serve`` (``pipelines.cli.serve``) builds the settings, then calls
``configure_logging`` and ``run``; everything else about serving lives in the app it starts.
"""

from __future__ import annotations

import logging

from components.serving.app import ServingApp
from components.serving.settings import ServeSettings


def configure_logging(level: str = "INFO") -> None:
    """Plain one-line logs on stderr (what Cloud Logging ingests from a container)."""
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def run(settings: ServeSettings) -> None:
    """Serve until SIGINT/SIGTERM (uvicorn handles both; shutdown drains the prediction log)."""
    import uvicorn

    app = ServingApp(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,  # ours (propensity.access) has no client address and no inputs
        log_config=None,
        server_header=False,
        timeout_graceful_shutdown=10,
        backlog=1024,
    )
    uvicorn.Server(config).run()
