"""Deployment: register the gated bundle as a new immutable version and promote it.

Targets:

* ``local``: register in the registry named by ``registry_uri`` (a directory, or gs:// for a
  registry in GCS) and move ``champion`` to the new version.
* ``vertex``: register in a gs:// registry, upload that version to the Vertex AI Model Registry
  and deploy it to the endpoint (``components.deploy.vertex``), then move the registry alias, so the
  registry's champion is always what the endpoint serves. A canary deployment moves
  ``challenger`` instead: the champion stays the version serving most of the traffic. (The run,
  with the version it deployed, is tracked by the pipeline's summary step, not here.)

Both are safe to retry: a version this run already registered with the same bundle content (same
``run_name``, same manifest digest) is reused instead of registering the bundle again, so a retried
deploy task, or one interrupted between registering and promoting, finishes that version.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from components.model.bundle import BUNDLE_FILE, bundle_digest
from components.registry.uri import open_registry
from components.serving.settings import PREDICTION_LOG_ENV
from components.shared.config import Config
from components.shared.errors import IdenticalVersionError, RegistryError

DEPLOY_TARGETS = ("local", "vertex")


def deploy_bundle(
    bundle_dir: str | Path,
    decision: dict[str, Any],
    config: Config,
    registry_uri: str,
    target: str,
    run_name: str,
    *,
    vertex_sdk: Any = None,
    vertex_settings: Any = None,
) -> dict[str, Any]:
    """Register and promote. Refuses a bundle whose gate did not pass, whatever called it.

    ``vertex_sdk`` (default: google.cloud.aiplatform) and ``vertex_settings`` (default: the
    config's ``vertex`` section) are injectable for the tests.
    """
    if target not in DEPLOY_TARGETS:
        raise RegistryError(
            f"deploy_target {target!r} is not supported (supported: {', '.join(DEPLOY_TARGETS)})"
        )
    if not decision.get("passed"):
        raise RegistryError("refusing to deploy: the quality gate did not pass")
    metadata = {
        "run_name": run_name,
        "gate": decision,
        "dataset": config.dataset.name,
        "registered_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    try:
        if target == "vertex":
            return _deploy_vertex(
                Path(bundle_dir), metadata, config, registry_uri, run_name, vertex_sdk, vertex_settings
            )
        return _deploy_local(Path(bundle_dir), metadata, config, registry_uri, target)
    except IdenticalVersionError as exc:  # the gate passed, but the model is the champion already
        return {"deployed": False, "version": None, "target": target, "reasons": [str(exc)]}


def _deploy_local(
    bundle_dir: Path, metadata: dict[str, Any], config: Config, registry_uri: str, target: str
) -> dict[str, Any]:
    registry = open_registry(registry_uri)
    model_name = config.registry_model_name
    previous = registry.champion(model_name)
    version = register_once(registry, model_name, Path(bundle_dir), metadata)
    registry.set_alias(model_name, "champion", version)
    return {
        "deployed": True,
        "target": target,
        "model_name": model_name,
        "version": version,
        "alias": "champion",
        "previous_champion": previous,
        "registry_uri": registry_uri,
        "version_uri": str(registry.resolve(model_name, version)),
    }


def prediction_log_uri(registry_uri: str, model_name: str) -> str:
    """The prediction log's place in a registry: ``<registry>/<model>/prediction_log``."""
    return f"{registry_uri.rstrip('/')}/{model_name}/prediction_log"


def register_once(registry: Any, model_name: str, bundle_dir: Path, metadata: dict[str, Any]) -> str:
    """The version this run registered for this exact bundle before (a retry), else a new one."""
    digest = bundle_digest(bundle_dir)
    for record in reversed(registry.versions(model_name)):
        same_run = metadata.get("run_name") and record.get("run_name") == metadata["run_name"]
        if same_run and record.get("bundle_digest") == digest:
            return str(record["version"])
    return registry.register(model_name, bundle_dir, metadata)


def _deploy_vertex(
    bundle_dir: Path,
    metadata: dict[str, Any],
    config: Config,
    registry_uri: str,
    run_name: str,
    sdk: Any,
    settings: Any,
) -> dict[str, Any]:
    from components.deploy import vertex

    if not registry_uri.startswith("gs://"):
        raise RegistryError(
            f"deploy_target 'vertex' needs a gs:// registry_uri (Vertex AI reads the bundle from GCS), "
            f"got {registry_uri!r}"
        )
    settings = settings or vertex.vertex_config(config)
    settings.require_deployable()  # before registering: a config error leaves no orphan version
    sdk = sdk or vertex.load_sdk()
    registry = open_registry(registry_uri)
    model_name = config.registry_model_name
    previous = registry.champion(model_name)
    version = register_once(registry, model_name, bundle_dir, metadata)
    described = json.loads((bundle_dir / BUNDLE_FILE).read_text(encoding="utf-8"))
    labels = {
        "run-id": vertex.label_value(run_name or "unnamed"),
        "registry-version": version,
        "code-version": vertex.label_value(described.get("code_version") or "unknown"),
        "managed-by": "propensity",
    }
    artifact_uri = str(registry.resolve(model_name, version))
    # The endpoint writes its prediction log next to the model in the GCS registry (batched
    # objects), where the prediction pipeline's drift check (drift_source=log) reads it.
    environment = {PREDICTION_LOG_ENV: prediction_log_uri(registry_uri, model_name)}
    evaluation = vertex.model_evaluation(described.get("metrics") or {}, version)
    deployment = vertex.deploy_model(
        sdk, settings, model_name, version, artifact_uri, labels, environment, evaluation
    )
    alias = vertex.CHAMPION if deployment.canary_percent == 0 else vertex.CHALLENGER
    registry.set_alias(model_name, alias, version)
    return {
        "deployed": True,
        "target": "vertex",
        "model_name": model_name,
        "version": version,
        "alias": alias,
        "previous_champion": previous,
        "registry_uri": registry_uri,
        "version_uri": artifact_uri,
        "vertex": deployment.to_dict(),
        "vertex_model_uri": deployment.model_uri(),
        "vertex_endpoint_uri": deployment.endpoint_uri(),
        "prediction_log_uri": environment[PREDICTION_LOG_ENV],
    }
