"""Deployment: register the gated bundle as a new immutable version and move the champion alias."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from components.config import Config
from components.errors import RegistryError
from components.registry_access import open_registry

DEPLOY_TARGETS = ("local",)


def deploy_bundle(
    bundle_dir: str | Path,
    decision: dict[str, Any],
    config: Config,
    registry_uri: str,
    target: str,
    run_name: str,
) -> dict[str, Any]:
    """Register and promote. Refuses a bundle whose gate did not pass, whatever called it."""
    if target not in DEPLOY_TARGETS:
        raise RegistryError(
            f"deploy_target {target!r} is not supported (supported: {', '.join(DEPLOY_TARGETS)})"
        )
    if not decision.get("passed"):
        raise RegistryError("refusing to deploy: the quality gate did not pass")
    registry = open_registry(registry_uri)
    model_name = config.registry_model_name
    previous = registry.champion(model_name)
    metadata = {
        "run_name": run_name,
        "gate": decision,
        "dataset": config.dataset.name,
        "registered_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    version = registry.register(model_name, Path(bundle_dir), metadata)
    registry.set_alias(model_name, "champion", version)
    return {
        "deployed": True,
        "target": target,
        "model_name": model_name,
        "version": version,
        "previous_champion": previous,
        "registry_uri": registry_uri,
        "version_uri": str(registry.resolve(model_name, version)),
    }
