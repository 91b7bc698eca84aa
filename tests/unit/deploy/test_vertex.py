"""The Vertex AI deploy logic (components/deploy/vertex.py) against a faithful fake of the SDK calls it makes.

Nothing here can reach Google Cloud, so the fake below stands in for ``google.cloud.aiplatform``.
It is kept honest in three ways: every call is bound against the REAL SDK method's signature (an
argument the SDK does not accept fails here too); traffic is allocated and validated by the REAL
SDK's own static helpers (``Endpoint._validate_deploy_args``, ``_allocate_traffic``,
``_unallocate_traffic``); and deployed models are the real ``aiplatform.gapic.DeployedModel``
proto. What the fake models beyond that is documented in :class:`FakeAiplatform`.
"""

from __future__ import annotations

import inspect
import itertools
import re
from dataclasses import dataclass, field
from typing import Any

import pytest
from google.api_core import exceptions
from google.cloud import aiplatform as real

from components.deploy import vertex
from components.deploy.targets import deploy_bundle
from components.shared.config import Config, ConfigError
from components.shared.errors import RegistryError

PROJECT, LOCATION = "proj", "europe-west4"
IMAGE = "europe-west4-docker.pkg.dev/proj/propensity/propensity-serving:abc"
_FILTER_RE = re.compile(r'^display_name="([^"]+)"$')
_ALIAS_RE = re.compile(r"^[a-z][a-zA-Z0-9-]{0,126}[a-z0-9]$")
_RUN_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,127}$")


def _bind(method: Any, *args: Any, **kwargs: Any) -> None:
    """Fail like Python would if the real SDK method were called with these arguments."""
    inspect.signature(method).bind(*args, **kwargs)


@dataclass
class _ModelResource:
    model_id: str
    display_name: str
    project: str
    location: str
    versions: dict[str, dict[str, Any]] = field(default_factory=dict)  # version id -> record
    aliases: dict[str, str] = field(default_factory=dict)  # alias -> version id

    @property
    def resource_name(self) -> str:
        return f"projects/{self.project}/locations/{self.location}/models/{self.model_id}"


class FakeModel:
    """A view of one model version, with the attributes of ``aiplatform.Model`` that are read."""

    def __init__(self, resource: _ModelResource, version_id: str) -> None:
        self._resource, self.version_id = resource, version_id
        self.resource_name = resource.resource_name
        self.versioned_resource_name = f"{resource.resource_name}@{version_id}"
        self.display_name = resource.display_name

    @property
    def version_aliases(self) -> list[str]:
        return sorted(a for a, v in self._resource.aliases.items() if v == self.version_id)

    @property
    def labels(self) -> dict[str, str]:
        return dict(self._resource.versions[self.version_id]["labels"])

    @property
    def uri(self) -> str:
        return self._resource.versions[self.version_id]["artifact_uri"]


class FakeEndpoint:
    """An endpoint: deployed models (real DeployedModel protos) and a traffic split."""

    def __init__(self, fake: FakeAiplatform, endpoint_id: str, display_name: str, labels: dict[str, str]):
        self._fake, self.display_name, self.labels = fake, display_name, dict(labels or {})
        self.resource_name = f"projects/{fake.project}/locations/{fake.location}/endpoints/{endpoint_id}"
        self._deployed: list[Any] = []
        self._split: dict[str, int] = {}

    @property
    def traffic_split(self) -> dict[str, int]:
        return dict(self._split)

    def list_models(self) -> list[Any]:
        return list(self._deployed)

    def _check_invariant(self) -> None:
        ids = {d.id for d in self._deployed}
        assert set(self._split) <= ids, "traffic routed to a model that is not deployed"
        assert (not ids and not self._split) or sum(self._split.values()) == 100, self._split

    def deploy(self, model: FakeModel, **kwargs: Any) -> None:
        _bind(real.Endpoint.deploy, self, model, **kwargs)
        self._fake.calls.append(("Endpoint.deploy", {"model": model.versioned_resource_name, **kwargs}))
        pct, split = kwargs.get("traffic_percentage", 0), kwargs.get("traffic_split")
        real.Endpoint._validate_deploy_args(
            min_replica_count=kwargs.get("min_replica_count", 1),
            max_replica_count=kwargs.get("max_replica_count", 1),
            accelerator_type=None,
            deployed_model_display_name=kwargs.get("deployed_model_display_name"),
            traffic_split=split,
            traffic_percentage=pct,
            deployment_resource_pool=None,
            required_replica_count=None,
        )
        if not kwargs.get("machine_type"):  # custom containers need dedicated resources
            raise exceptions.InvalidArgument("Machine type is required for this model (custom container)")
        if model.version_id not in self._fake.resources[model.resource_name].versions:
            raise exceptions.NotFound(f"model {model.versioned_resource_name} not found")
        if split is None:  # the SDK's _deploy_call rules
            if not self._split:
                if pct == 0:
                    pct = 100
                elif pct < 100:
                    raise ValueError(
                        "There are currently no deployed models so the traffic percentage must be 100."
                    )
            split = real.Endpoint._allocate_traffic(traffic_split=dict(self._split), traffic_percentage=pct)
        new_id = str(next(self._fake.ids))
        self._deployed.append(
            real.gapic.DeployedModel(
                id=new_id,
                model=model.versioned_resource_name,
                model_version_id=model.version_id,
                display_name=kwargs.get("deployed_model_display_name") or model.display_name,
            )
        )
        self._split = {(new_id if k == "0" else k): v for k, v in split.items() if v or k == "0"}
        self._split = {k: v for k, v in self._split.items() if v}
        self._check_invariant()

    def undeploy(self, deployed_model_id: str, **kwargs: Any) -> None:
        _bind(real.Endpoint.undeploy, self, deployed_model_id, **kwargs)
        self._fake.calls.append(("Endpoint.undeploy", {"deployed_model_id": deployed_model_id, **kwargs}))
        if deployed_model_id not in {d.id for d in self._deployed}:
            raise exceptions.NotFound(f"deployed model {deployed_model_id} not found")
        if len(self._split) > 1 and self._split.get(deployed_model_id) == 100:
            raise ValueError("Undeploying would leave the remaining traffic split at 0%")
        split = dict(self._split)
        if deployed_model_id in split:  # the SDK's _undeploy redistributes the model's share
            split = real.Endpoint._unallocate_traffic(
                traffic_split=split, deployed_model_id=deployed_model_id
            )
            split.pop(deployed_model_id)
        self._deployed = [d for d in self._deployed if d.id != deployed_model_id]
        self._split = {k: v for k, v in split.items() if v}
        self._check_invariant()


class _ModelApi:
    def __init__(self, fake: FakeAiplatform) -> None:
        self._fake = fake

    def list(self, **kwargs: Any) -> list[FakeModel]:
        _bind(real.Model.list, **kwargs)
        self._fake.calls.append(("Model.list", kwargs))
        name = self._fake.display_name_filter(kwargs.get("filter"))
        return [
            FakeModel(r, r.aliases[vertex.DEFAULT_ALIAS])
            for r in self._fake.resources.values()
            if r.display_name == name and self._fake.here(kwargs)
        ]

    def upload(self, serving_container_image_uri: str | None = None, **kwargs: Any) -> FakeModel:
        _bind(real.Model.upload, serving_container_image_uri, **kwargs)
        self._fake.calls.append(
            ("Model.upload", {"serving_container_image_uri": serving_container_image_uri, **kwargs})
        )
        if not serving_container_image_uri:
            raise ValueError("serving_container_image_uri is required")
        if not str(kwargs.get("artifact_uri", "")).startswith("gs://"):
            raise exceptions.InvalidArgument("artifact_uri must be a gs:// directory")
        vertex.check_labels(kwargs.get("labels") or {})
        aliases = list(kwargs.get("version_aliases") or [])
        if len(set(aliases)) != len(aliases) or not all(_ALIAS_RE.match(a) for a in aliases):
            raise exceptions.InvalidArgument(f"invalid version aliases {aliases}")
        parent = kwargs.get("parent_model")
        if parent is None:
            resource = _ModelResource(
                str(next(self._fake.ids)),
                kwargs.get("display_name") or "model",
                self._fake.project,
                self._fake.location,
            )
            self._fake.resources[resource.resource_name] = resource
            version = "1"
        else:
            resource = self._fake.find_model(parent)
            version = str(max(int(v) for v in resource.versions) + 1)
        resource.versions[version] = {
            "artifact_uri": kwargs["artifact_uri"],
            "labels": dict(kwargs.get("labels") or {}),
            "image": serving_container_image_uri,
            "routes": (
                kwargs.get("serving_container_predict_route"),
                kwargs.get("serving_container_health_route"),
            ),
        }
        moving = aliases + (
            [vertex.DEFAULT_ALIAS] if version == "1" or kwargs.get("is_default_version", True) else []
        )
        for alias in moving:  # unique within a model: assigning it takes it from its holder
            resource.aliases[alias] = version
        return FakeModel(resource, version)


class _EndpointApi:
    def __init__(self, fake: FakeAiplatform) -> None:
        self._fake = fake

    def list(self, **kwargs: Any) -> list[FakeEndpoint]:
        _bind(real.Endpoint.list, **kwargs)
        self._fake.calls.append(("Endpoint.list", kwargs))
        name = self._fake.display_name_filter(kwargs.get("filter"))
        return [e for e in self._fake.endpoints if e.display_name == name and self._fake.here(kwargs)]

    def create(self, **kwargs: Any) -> FakeEndpoint:
        _bind(real.Endpoint.create, **kwargs)
        self._fake.calls.append(("Endpoint.create", kwargs))
        vertex.check_labels(kwargs.get("labels") or {})
        endpoint = FakeEndpoint(
            self._fake, str(next(self._fake.ids)), kwargs["display_name"], kwargs.get("labels")
        )
        self._fake.endpoints.append(endpoint)
        return endpoint


class FakeAiplatform:
    """In-memory stand-in for the ``google.cloud.aiplatform`` calls made by components/deploy/vertex.py.

    Models (Model Registry):
      * ``Model.list(filter='display_name="X"', project, location)``: only that filter form is
        understood (another one raises, so a changed query cannot silently match nothing); one
        result per model resource, viewed at its default version, as the SDK lists them.
      * ``Model.upload``: without ``parent_model`` a new model resource with version "1", which
        always gets the ``default`` alias; with ``parent_model`` (resource name or id; unknown:
        NotFound) version N+1 of it. ``is_default_version=True`` moves ``default``. Version
        aliases are unique within a model: assigning one that another version holds moves it
        (Vertex docs, "How to use model version aliases"). Alias format, label rules, a gs://
        artifact_uri and a serving image are required.
    Endpoints:
      * ``Endpoint.list`` (same filter form) and ``Endpoint.create`` (an empty endpoint).
      * ``endpoint.deploy``: the SDK's argument checks and traffic rules: an explicit split must
        sum to 100; otherwise ``traffic_percentage`` goes to the new model and the others are
        scaled by the SDK's ``_allocate_traffic``; on an endpoint with nothing deployed 0 means
        100 and anything else below 100 is refused. A machine type is required (custom
        container). Deployed models get fresh numeric ids.
      * ``endpoint.undeploy``: unknown id -> NotFound; the SDK's guard against leaving 0% for
        the others; the model's share is redistributed by the SDK's ``_unallocate_traffic``.
      * Invariant checked after every change: traffic only to deployed models, summing to 100
        (or an empty split when nothing is deployed).
    Experiments:
      * ``init(experiment=...)`` selects the experiment; ``start_run(run)`` needs one, a valid
        run id and a new name (AlreadyExists otherwise, unless ``resume=True``);
        ``log_params`` / ``log_metrics`` need an active run and number or string values;
        ``end_run`` completes it.
    Not modelled: long-running operations, IAM, quotas, regions other than the one given,
    private endpoints, model versions listing. ``calls`` records every call in order.
    """

    def __init__(self, project: str = PROJECT, location: str = LOCATION) -> None:
        self.project, self.location = project, location
        self.ids = itertools.count(1001)
        self.resources: dict[str, _ModelResource] = {}
        self.endpoints: list[FakeEndpoint] = []
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.experiment: str | None = None
        self.runs: dict[tuple[str, str], dict[str, Any]] = {}
        self.active: tuple[str, str] | None = None
        self.Model = _ModelApi(self)
        self.Endpoint = _EndpointApi(self)

    # ------------------------------------------------------------------ helpers for the fake

    @staticmethod
    def display_name_filter(text: str | None) -> str:
        match = _FILTER_RE.match(text or "")
        if not match:
            raise NotImplementedError(f"filter {text!r} is not modelled by the fake")
        return match.group(1)

    def here(self, kwargs: dict[str, Any]) -> bool:
        return kwargs.get("project") == self.project and kwargs.get("location") == self.location

    def find_model(self, name_or_id: str) -> _ModelResource:
        for resource in self.resources.values():
            if name_or_id in (resource.resource_name, resource.model_id):
                return resource
        raise exceptions.NotFound(f"parent model {name_or_id} not found")

    def model_named(self, display_name: str) -> _ModelResource:
        (resource,) = [r for r in self.resources.values() if r.display_name == display_name]
        return resource

    def calls_named(self, name: str) -> list[dict[str, Any]]:
        return [kwargs for called, kwargs in self.calls if called == name]

    # ------------------------------------------------------------------ experiments

    def init(self, **kwargs: Any) -> None:
        _bind(real.init, **kwargs)
        self.calls.append(("init", kwargs))
        if kwargs.get("experiment"):
            self.experiment = kwargs["experiment"]

    def start_run(self, run: str, **kwargs: Any) -> None:
        _bind(real.start_run, run, **kwargs)
        self.calls.append(("start_run", {"run": run, **kwargs}))
        if not self.experiment:
            raise ValueError(
                "No experiment set. Make sure to call aiplatform.init(experiment='my-experiment')"
            )
        if not _RUN_RE.match(run):
            raise ValueError(f"invalid run name {run!r}")
        key = (self.experiment, run)
        if key in self.runs and not kwargs.get("resume"):
            raise exceptions.AlreadyExists(f"Run {run} already exists in {self.experiment}")
        self.runs.setdefault(key, {"params": {}, "metrics": {}, "state": "RUNNING"})["state"] = "RUNNING"
        self.active = key

    def _log(self, kind: str, values: dict[str, Any]) -> None:
        if self.active is None:
            raise ValueError("No run set. Make sure to call aiplatform.start_run('my-run')")
        for key, value in values.items():
            if isinstance(value, bool) or not isinstance(value, int | float | str):
                raise TypeError(f"{kind} {key}={value!r}: only numbers and strings can be logged")
        self.runs[self.active][kind].update(values)

    def log_params(self, params: dict[str, Any]) -> None:
        _bind(real.log_params, params)
        self.calls.append(("log_params", {"params": params}))
        self._log("params", params)

    def log_metrics(self, metrics: dict[str, Any]) -> None:
        _bind(real.log_metrics, metrics)
        self.calls.append(("log_metrics", {"metrics": metrics}))
        self._log("metrics", metrics)

    def end_run(self, **kwargs: Any) -> None:
        _bind(real.end_run, **kwargs)
        self.calls.append(("end_run", kwargs))
        if self.active is not None:
            self.runs[self.active]["state"] = "COMPLETE"
        self.active = None


# --------------------------------------------------------------------------------------- fixtures


def settings(**overrides: Any) -> vertex.VertexConfig:
    values = {"project": PROJECT, "location": LOCATION, "serving_image": IMAGE, **overrides}
    return vertex.VertexConfig(**values)


def labels(run: str = "run-20260101-120000-000001", version: str = "v0001") -> dict[str, str]:
    return {"run-id": run, "registry-version": version, "managed-by": "propensity"}


def deploy(fake: FakeAiplatform, version: str, **overrides: Any) -> vertex.VertexDeployment:
    uri = f"gs://bucket/registry/churn/versions/{version}"
    run = f"run-{version}"
    return vertex.deploy_model(fake, settings(**overrides), "churn", version, uri, labels(run, version))


# ------------------------------------------------------------------------------------------ tests


def test_first_deployment_creates_model_and_endpoint_with_all_traffic() -> None:
    fake = FakeAiplatform()
    result = deploy(fake, "v0001")

    (upload,) = fake.calls_named("Model.upload")
    assert upload["parent_model"] is None  # the first version of a new model
    assert upload["artifact_uri"] == "gs://bucket/registry/churn/versions/v0001"
    assert upload["serving_container_image_uri"] == IMAGE
    assert upload["serving_container_predict_route"] == "/predict"
    assert upload["serving_container_ports"] == [8080]
    assert upload["labels"]["run-id"] == "run-v0001"
    assert (
        result.endpoint_created and fake.calls_named("Endpoint.create")[0]["display_name"] == "churn-endpoint"
    )
    assert result.parent_model is None and result.model_version_id == "1"
    model = fake.model_named("churn")
    assert model.aliases == {"default": "1", "champion": "1", "v0001": "1"}
    assert result.traffic_split == {result.deployed_model_id: 100}
    assert result.undeployed == []
    (deployed,) = fake.endpoints[0].list_models()
    assert deployed.model == result.versioned_model_name and deployed.model_version_id == "1"
    assert fake.calls_named("Endpoint.deploy")[0]["machine_type"] == "n1-standard-2"


def test_new_version_uses_parent_model_moves_champion_and_retires_old_version() -> None:
    fake = FakeAiplatform()
    first = deploy(fake, "v0001")
    second = deploy(fake, "v0002")

    upload = fake.calls_named("Model.upload")[1]
    assert upload["parent_model"] == first.model_resource_name
    assert second.model_resource_name == first.model_resource_name  # same model, new version
    assert second.model_version_id == "2" and not second.endpoint_created
    model = fake.model_named("churn")
    assert model.aliases["champion"] == "2" and model.aliases["default"] == "2"
    assert model.aliases["v0001"] == "1"  # other aliases stay where they were
    assert second.traffic_split == {second.deployed_model_id: 100}
    assert second.undeployed == [first.deployed_model_id]
    assert [d.id for d in fake.endpoints[0].list_models()] == [second.deployed_model_id]
    assert len(fake.endpoints) == 1 and len(fake.resources) == 1


def test_canary_keeps_champion_serving_most_traffic() -> None:
    fake = FakeAiplatform()
    first = deploy(fake, "v0001")
    canary = deploy(fake, "v0002", canary_percent=10)

    assert canary.canary_percent == 10
    assert canary.traffic_split == {first.deployed_model_id: 90, canary.deployed_model_id: 10}
    assert canary.undeployed == []
    model = fake.model_named("churn")
    assert model.aliases["champion"] == "1" and model.aliases["default"] == "1"
    assert model.aliases["challenger"] == "2"
    assert fake.calls_named("Model.upload")[1]["is_default_version"] is False

    promoted = deploy(fake, "v0003")  # a full rollout retires both earlier versions
    assert promoted.traffic_split == {promoted.deployed_model_id: 100}
    assert sorted(promoted.undeployed) == sorted([first.deployed_model_id, canary.deployed_model_id])
    assert model.aliases["champion"] == "3"


def test_canary_on_an_idle_endpoint_is_a_full_rollout() -> None:
    fake = FakeAiplatform()
    result = deploy(fake, "v0001", canary_percent=25)
    assert result.canary_percent == 0 and result.aliases[0] == "champion"
    assert result.traffic_split == {result.deployed_model_id: 100}


def test_versions_without_traffic_are_undeployed_even_during_a_canary() -> None:
    fake = FakeAiplatform()
    first = deploy(fake, "v0001")
    endpoint = fake.endpoints[0]
    idle_model = fake.Model.upload(
        IMAGE,
        artifact_uri="gs://bucket/x",
        parent_model=first.model_resource_name,
        is_default_version=False,
        display_name="churn",
        project=PROJECT,
        location=LOCATION,
    )
    endpoint.deploy(
        idle_model, traffic_split={first.deployed_model_id: 100, "0": 0}, machine_type="n1-standard-2"
    )
    (idle,) = [d.id for d in endpoint.list_models() if d.id != first.deployed_model_id]

    canary = deploy(fake, "v0003", canary_percent=20)
    assert canary.undeployed == [idle]
    assert canary.traffic_split == {first.deployed_model_id: 80, canary.deployed_model_id: 20}


def test_labels_are_checked_before_anything_is_created() -> None:
    fake = FakeAiplatform()
    bad = {"run-id": "Run 2026/01/01"}
    with pytest.raises(ValueError, match="run-id"):
        vertex.deploy_model(fake, settings(), "churn", "v0001", "gs://b/v0001", bad)
    assert fake.calls == []
    assert vertex.label_value("Run 2026/01/01_x") == "run-2026-01-01_x"


def test_missing_settings_are_named_before_any_call() -> None:
    fake = FakeAiplatform()
    with pytest.raises(ConfigError, match=r"vertex\.serving_image"):
        vertex.deploy_model(fake, settings(serving_image=""), "churn", "v0001", "gs://b/v", labels())
    with pytest.raises(ConfigError, match=r"vertex\.experiment"):
        vertex.deploy_model(fake, settings(experiment="My Exp"), "churn", "v0001", "gs://b/v", labels())
    with pytest.raises(ConfigError, match="canary_percent"):
        vertex.deploy_model(fake, settings(canary_percent=100), "churn", "v0001", "gs://b/v", labels())
    with pytest.raises(ValueError, match="gs://"):
        vertex.deploy_model(fake, settings(), "churn", "v0001", "/local/dir", labels())
    assert fake.calls == []


def test_ambiguous_display_names_are_refused() -> None:
    fake = FakeAiplatform()
    fake.Endpoint.create(display_name="churn-endpoint", project=PROJECT, location=LOCATION)
    fake.Endpoint.create(display_name="churn-endpoint", project=PROJECT, location=LOCATION)
    with pytest.raises(ValueError, match="several Vertex endpoints"):
        deploy(fake, "v0001")


def test_experiment_run_logs_params_and_metrics() -> None:
    fake = FakeAiplatform()
    config = settings(experiment="propensity-training")
    run = vertex.experiment_run_name("Run_2026.01 01", "v0003")
    assert run == "run-2026-01-01-v0003"
    logged = vertex.log_experiment(
        fake,
        config,
        run,
        params={"family": "xgboost", "calibrated": True, "model": {"max_depth": 4, "note": None}},
        metrics={"roc_auc": 0.81, "f1": 0.64, "name": "ignored"},
    )
    assert logged == run
    record = fake.runs[("propensity-training", run)]
    assert record["params"] == {"family": "xgboost", "calibrated": "true", "model.max_depth": 4}
    assert record["metrics"] == {"roc_auc": 0.81, "f1": 0.64}
    assert record["state"] == "COMPLETE"
    # run names are unique within an experiment: a retried deploy step resumes its run
    vertex.log_experiment(fake, config, run, {}, {"roc_auc": 0.82})
    assert [c["resume"] for n, c in fake.calls if n == "start_run" and "resume" in c] == [True]
    assert record["metrics"]["roc_auc"] == 0.82 and record["state"] == "COMPLETE"
    with pytest.raises(exceptions.AlreadyExists):
        fake.start_run(run)

    quiet = FakeAiplatform()
    assert vertex.log_experiment(quiet, settings(), run, {"a": 1}, {"b": 2}) is None
    assert quiet.calls == []


def test_the_fake_refuses_what_the_real_sdk_refuses() -> None:
    fake = FakeAiplatform()
    with pytest.raises(TypeError):  # an argument the real Model.upload does not have
        fake.Model.upload(
            IMAGE, artifact_uri="gs://b/x", version_alias=["x"], project=PROJECT, location=LOCATION
        )
    first = deploy(fake, "v0001")
    model = FakeModel(fake.model_named("churn"), "1")
    with pytest.raises(ValueError, match=r"add up to 100|needs to be 100"):
        fake.endpoints[0].deploy(
            model, traffic_split={first.deployed_model_id: 50, "0": 40}, machine_type="m"
        )
    with pytest.raises(ValueError, match="no deployed models"):
        FakeEndpoint(fake, "9", "e", {}).deploy(model, traffic_percentage=10, machine_type="m")
    with pytest.raises(NotImplementedError):
        fake.Model.list(filter="labels.a=b", project=PROJECT, location=LOCATION)


def test_deploy_bundle_vertex_needs_a_gcs_registry_and_settings(tmp_path: Any) -> None:
    passed = {"passed": True}
    with pytest.raises(RegistryError, match="gs:// registry_uri"):
        deploy_bundle(
            tmp_path, passed, Config(), str(tmp_path), "vertex", "run-1", vertex_sdk=FakeAiplatform()
        )
    if not hasattr(Config(), "vertex"):
        with pytest.raises(ConfigError, match="config section 'vertex'"):
            deploy_bundle(
                tmp_path, passed, Config(), "gs://b/reg", "vertex", "run-1", vertex_sdk=FakeAiplatform()
            )
    with pytest.raises(ConfigError, match=r"vertex\.project"):
        deploy_bundle(
            tmp_path,
            passed,
            Config(),
            "gs://b/reg",
            "vertex",
            "run-1",
            vertex_sdk=FakeAiplatform(),
            vertex_settings=vertex.VertexConfig(serving_image=IMAGE),
        )
    with pytest.raises(RegistryError, match="not supported"):
        deploy_bundle(tmp_path, passed, Config(), "gs://b/reg", "sagemaker", "run-1")
