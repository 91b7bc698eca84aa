"""Deploy a registered bundle to Vertex AI: a Model Registry version, an endpoint, a traffic split.

Written against the few calls of the ``google.cloud.aiplatform`` SDK listed in :class:`VertexSdk`
(the module itself; the tests run the real SDK over REST against a loopback Vertex API,
``tests/vertex_api.py``). The steps, each safe to repeat, so that a retried or re-run deploy for
the same registry version finishes the earlier one instead of starting over:

1. ``Endpoint.list`` finds the endpoint, ``Endpoint.create`` makes it when missing.
2. ``Model.list`` finds the model by display name. Its versions are searched by label
   (``registry-version`` and ``run-id``): an earlier upload of this registry version by this run
   is reused. Otherwise the bundle is uploaded as a new version (``parent_model``) or as the first
   version of a new model, with the serving image, the bundle's gs:// directory as
   ``artifact_uri``, the labels, the container's environment (where it logs its predictions), and
   only the registry version as alias (``v0003``), not default. The gate's test metrics are
   imported into the version as a model evaluation, once.
3. Unless that version already serves traffic on the endpoint, ``endpoint.deploy`` gives it 100%
   of the traffic, or the canary percentage (the SDK scales the versions already serving down
   proportionally). A canary on an endpoint that serves nothing yet is a full rollout.
4. Only then, with the version serving, its aliases move: ``champion`` and ``default`` for a full
   rollout, ``challenger`` for a canary (aliases are unique per model, so Vertex takes them from the
   previous holder). A deploy interrupted before this point leaves the previous champion named.
5. Deployed models left with 0% traffic are undeployed (they cost replicas and serve nothing).

No google-cloud import at module level: importing this module is cheap and needs no credentials.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from components.shared.config import EXPERIMENT_RULE, VertexConfig, valid_experiment  # noqa: F401 - re-exported

CHAMPION = "champion"
CHALLENGER = "challenger"
DEFAULT_ALIAS = "default"  # Vertex's own alias of a model's default version
_ALIAS_RE = re.compile(r"^[a-z][a-zA-Z0-9-]{0,126}[a-z0-9]$")
_LABEL_KEY_RE = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
_LABEL_VALUE_RE = re.compile(r"^[a-z0-9_-]{0,63}$")
# The schema the Vertex console renders a classification evaluation with (Model Registry, Evaluate tab).
CLASSIFICATION_METRICS_SCHEMA = (
    "gs://google-cloud-aiplatform/schema/modelevaluation/classification_metrics_1.0.0.yaml"
)


class VertexSdk(Protocol):
    """The subset of ``google.cloud.aiplatform`` used here (the module satisfies it).

    ``Model.list(filter, project, location)``, ``Model.upload(...)``, ``Model(name, version)``,
    ``models.ModelRegistry(name).list_versions(filter)`` / ``.add_version_aliases(...)``,
    ``Endpoint.list(...)``,
    ``Endpoint.create(...)``; on an endpoint: ``traffic_split``, ``list_models()``,
    ``deploy(...)``, ``undeploy(deployed_model_id)``. (Runs are tracked in Vertex AI Experiments
    by ``components.tracking``, from every run's summary step, not here.)
    """

    Model: Any
    Endpoint: Any
    models: Any  # ``models.ModelRegistry(model).list_versions(filter)`` / ``.add_version_aliases``


def vertex_config(config: Any) -> VertexConfig:
    """The ``vertex`` section of a Config, as a VertexConfig (ConfigError when the build has none)."""
    from components.shared.config import ConfigError

    section = getattr(config, "vertex", None)
    if section is None:
        raise ConfigError(
            "deploy_target 'vertex' needs the config section 'vertex' "
            "(project, location, serving_image, ...), which this configuration does not have"
        )
    return section if isinstance(section, VertexConfig) else VertexConfig(**asdict(section))


@dataclass
class VertexDeployment:
    """What was done, for the deployment record and the pipeline's Vertex artifacts."""

    model_resource_name: str  # projects/P/locations/L/models/ID
    model_version_id: str
    versioned_model_name: str  # ...models/ID@VERSION
    endpoint_resource_name: str
    deployed_model_id: str
    traffic_split: dict[str, int]
    aliases: list[str]
    parent_model: str | None  # None: this was the first version of a new model
    endpoint_created: bool
    undeployed: list[str] = field(default_factory=list)
    canary_percent: int = 0
    location: str = ""
    reused_upload: bool = False  # an earlier try had uploaded this registry version
    evaluation: str | None = None  # the ModelEvaluation resource holding the gate's test metrics

    def model_uri(self) -> str:
        return f"https://{self.location}-aiplatform.googleapis.com/v1/{self.versioned_model_name}"

    def endpoint_uri(self) -> str:
        return f"https://{self.location}-aiplatform.googleapis.com/v1/{self.endpoint_resource_name}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def label_value(text: str) -> str:
    """A GCP label value: lowercase letters, digits, '_' and '-', at most 63 characters."""
    return re.sub(r"[^a-z0-9_-]", "-", str(text).lower())[:63]


def check_labels(labels: dict[str, str]) -> dict[str, str]:
    """Refuse labels GCP would reject (named, instead of a 400 halfway through a deployment)."""
    if len(labels) > 64:
        raise ValueError(f"at most 64 labels are allowed, got {len(labels)}")
    for key, value in labels.items():
        if not _LABEL_KEY_RE.match(key):
            raise ValueError(
                f"label key {key!r}: a lowercase letter, then lowercase letters, digits, '_', '-' (<= 63)"
            )
        if not isinstance(value, str) or not _LABEL_VALUE_RE.match(value):
            raise ValueError(f"label {key}={value!r}: lowercase letters, digits, '_' and '-', at most 63")
    return labels


def _check_aliases(aliases: list[str]) -> list[str]:
    for alias in aliases:
        if not _ALIAS_RE.match(alias):
            raise ValueError(f"invalid Vertex version alias {alias!r}")
    return aliases


def _find_one(found: list[Any], kind: str, display_name: str) -> Any | None:
    """The single resource with that display name, None if none; several is ambiguous: refuse."""
    if len(found) > 1:
        names = ", ".join(sorted(r.resource_name for r in found))
        raise ValueError(f"several Vertex {kind}s are named {display_name!r} ({names}); rename or delete one")
    return found[0] if found else None


def _base_name(resource: str) -> str:
    return resource.split("@", 1)[0]


def deploy_model(
    sdk: VertexSdk,
    settings: VertexConfig,
    model_name: str,
    registry_version: str,
    artifact_uri: str,
    labels: dict[str, str],
    environment: dict[str, str] | None = None,
    evaluation: dict[str, Any] | None = None,
) -> VertexDeployment:
    """Upload ``artifact_uri`` as a model version (once), deploy it, name it, retire idle versions.

    ``environment``: the serving container's variables (e.g. where it writes its prediction log).
    ``evaluation``: a ModelEvaluation (``model_evaluation``) imported into the version once, so the
    console shows the gate's test metrics on it.
    """
    settings.require_deployable()
    if not artifact_uri.startswith("gs://"):
        raise ValueError(f"Vertex AI reads model artifacts from GCS; {artifact_uri!r} is not a gs:// URI")
    check_labels(labels)
    _check_aliases([registry_version])
    where = {"project": settings.project, "location": settings.location}
    endpoint_name = settings.endpoint_name or f"{model_name}-endpoint"

    endpoint = _find_one(
        sdk.Endpoint.list(filter=f'display_name="{endpoint_name}"', **where), "endpoint", endpoint_name
    )
    created = endpoint is None
    if created:
        endpoint = sdk.Endpoint.create(display_name=endpoint_name, labels=labels, **where)

    parent = _find_one(sdk.Model.list(filter=f'display_name="{model_name}"', **where), "model", model_name)
    parent_name = _base_name(parent.resource_name) if parent is not None else None
    model = _earlier_upload(sdk, parent_name, registry_version, labels, where)
    reused = model is not None
    if model is None:
        model = sdk.Model.upload(
            display_name=model_name,
            parent_model=parent_name,
            is_default_version=False,  # default and champion move once the version serves
            version_aliases=[registry_version],
            version_description=f"registry {registry_version}, run {labels.get('run-id', 'unknown')}",
            labels=labels,
            serving_container_image_uri=settings.serving_image,
            artifact_uri=artifact_uri,
            serving_container_predict_route=settings.predict_route,
            serving_container_health_route=settings.health_route,
            serving_container_ports=[settings.port],
            serving_container_environment_variables=environment or None,
            sync=True,
            **where,
        )

    evaluation_name = import_evaluation_once(model, evaluation) if evaluation else None
    deployed_id = _serving_id(endpoint, model)
    canary = 0
    if deployed_id is None:
        serving = {k: v for k, v in endpoint.traffic_split.items() if v > 0}
        canary = settings.canary_percent if serving else 0  # nothing serving: nothing to canary against
        endpoint.deploy(
            model=model,
            deployed_model_display_name=f"{model_name}-{registry_version}",
            traffic_percentage=100 if canary == 0 else canary,
            machine_type=settings.machine_type,
            min_replica_count=settings.min_replicas,
            max_replica_count=settings.max_replicas,
            service_account=settings.service_account or None,
            sync=True,
        )
        deployed_id = _serving_id(endpoint, model)
        if deployed_id is None:
            raise RuntimeError(f"{model.versioned_resource_name} is not serving on {endpoint.resource_name}")
    else:  # an earlier try deployed it: its share says whether that was a canary
        share = endpoint.traffic_split.get(deployed_id, 0)
        canary = 0 if share == 100 else share
    role = [CHAMPION, DEFAULT_ALIAS] if canary == 0 else [CHALLENGER]
    sdk.models.ModelRegistry(_base_name(model.resource_name), **where).add_version_aliases(
        role, version=str(model.version_id)
    )
    undeployed = _undeploy_idle(endpoint, keep=deployed_id)
    return VertexDeployment(
        model_resource_name=_base_name(model.resource_name),
        model_version_id=str(model.version_id),
        versioned_model_name=f"{_base_name(model.resource_name)}@{model.version_id}",
        endpoint_resource_name=endpoint.resource_name,
        deployed_model_id=deployed_id,
        traffic_split=dict(endpoint.traffic_split),
        aliases=[role[0], registry_version],
        parent_model=parent_name,
        endpoint_created=created,
        undeployed=undeployed,
        canary_percent=canary,
        location=settings.location,
        reused_upload=reused,
        evaluation=evaluation_name,
    )


def model_evaluation(metrics: dict[str, Any], registry_version: str) -> dict[str, Any] | None:
    """The test metrics of the gate as a Vertex ModelEvaluation (classification schema); None
    without the three the schema centres on (ROC-AUC, PR-AUC, log-loss)."""
    if not all(isinstance(metrics.get(k), int | float) for k in ("roc_auc", "pr_auc", "log_loss")):
        return None
    at_threshold = {
        "confidenceThreshold": metrics.get("threshold"),
        "precision": metrics.get("precision"),
        "recall": metrics.get("recall"),
        "f1Score": metrics.get("f1"),
    }
    return {
        "display_name": f"test split, registry {registry_version}",
        "metrics_schema_uri": CLASSIFICATION_METRICS_SCHEMA,
        "metrics": {
            "auRoc": float(metrics["roc_auc"]),
            "auPrc": float(metrics["pr_auc"]),
            "logLoss": float(metrics["log_loss"]),
            "confidenceMetrics": [{k: float(v) for k, v in at_threshold.items() if v is not None}],
        },
    }


def import_evaluation_once(model: Any, evaluation: dict[str, Any]) -> str:
    """Import ``evaluation`` into the model version unless a retry already did (same display name)."""
    parent = f"{_base_name(model.resource_name)}@{model.version_id}"
    client = model.api_client
    for existing in client.list_model_evaluations(parent=parent):
        if existing.display_name == evaluation["display_name"]:
            return str(existing.name)
    return str(client.import_model_evaluation(parent=parent, model_evaluation=evaluation).name)


def version_filter(labels: dict[str, str]) -> str:
    """The list filter matching a version by its ``registry-version`` and ``run-id`` labels."""
    keys = [k for k in ("registry-version", "run-id") if k in labels]
    return " AND ".join(f'labels.{k}="{labels[k]}"' for k in keys)


def _earlier_upload(
    sdk: VertexSdk,
    parent_name: str | None,
    registry_version: str,
    labels: dict[str, str],
    where: dict[str, str],
) -> Any | None:
    """The version an earlier try uploaded for this registry version and run, None if none."""
    if parent_name is None:
        return None
    wanted = {**labels, "registry-version": registry_version}
    found = sdk.models.ModelRegistry(parent_name, **where).list_versions(filter=version_filter(wanted))
    if not found:
        return None
    newest = max(found, key=lambda info: int(info.version_id))
    return sdk.Model(model_name=parent_name, version=str(newest.version_id), **where)


def _serving_id(endpoint: Any, model: Any) -> str | None:
    """The DeployedModel id of ``model``'s version when it receives traffic, else None."""
    split = endpoint.traffic_split
    for deployed in endpoint.list_models():
        same_model = _base_name(deployed.model) == _base_name(model.resource_name)
        if (
            same_model
            and str(deployed.model_version_id) == str(model.version_id)
            and split.get(str(deployed.id))
        ):
            return str(deployed.id)
    return None


def _undeploy_idle(endpoint: Any, keep: str) -> list[str]:
    """Undeploy every deployed model that receives no traffic (never the one just deployed)."""
    split = endpoint.traffic_split
    idle = [str(d.id) for d in endpoint.list_models() if str(d.id) != keep and split.get(str(d.id), 0) == 0]
    for deployed_id in idle:
        endpoint.undeploy(deployed_model_id=deployed_id)
    return idle


def load_sdk() -> VertexSdk:
    """The real SDK (imported here: slow, and only the vertex target needs it)."""
    from google.cloud import aiplatform

    return aiplatform  # type: ignore[return-value]
