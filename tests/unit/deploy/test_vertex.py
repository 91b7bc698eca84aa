"""The Vertex AI deploy logic (components/deploy/vertex.py) through the REAL aiplatform SDK.

Nothing here can reach Google Cloud. The SDK is not patched: ``aiplatform.init(api_endpoint=
"http://127.0.0.1:PORT", api_transport="rest", credentials=AnonymousCredentials())`` points it at the
loopback Vertex API of ``tests/vertex_api.py`` (fixture ``vertex_api``), so the SDK's own request
building (``UploadModelRequest``, container spec, ``DeployModelRequest``, machine spec, traffic keys),
its long-running-operation waits, its list pagers and its refreshes all run. The tests assert on the
API's request log and on its state (versions, aliases, deployed models, traffic).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import pytest
from google.api_core import exceptions
from google.cloud import aiplatform

from components.deploy import vertex
from components.deploy.targets import deploy_bundle
from components.shared.config import Config, ConfigError
from components.shared.errors import RegistryError
from tests.vertex_api import VertexApi, sdk_on_loopback

PROJECT, LOCATION = "proj", "europe-west4"
IMAGE = "europe-west4-docker.pkg.dev/proj/propensity/propensity-serving:abc"


def settings(**overrides: Any) -> vertex.VertexConfig:
    values = {"project": PROJECT, "location": LOCATION, "serving_image": IMAGE, **overrides}
    return vertex.VertexConfig(**values)


def labels(run: str = "run-20260101-120000-000001", version: str = "v0001") -> dict[str, str]:
    return {"run-id": run, "registry-version": version, "managed-by": "propensity"}


def deploy(version: str, run: str | None = None, **overrides: Any) -> vertex.VertexDeployment:
    uri = f"gs://bucket/registry/churn/versions/{version}"
    run = run or f"run-{version}"
    return vertex.deploy_model(aiplatform, settings(**overrides), "churn", version, uri, labels(run, version))


def deployed_ids(api: VertexApi) -> list[str]:
    (endpoint,) = api.endpoints.values()
    return [d["id"] for d in endpoint["deployedModels"]]


def raw(api: VertexApi, method: str, path: str, body: Any = None) -> tuple[int, dict[str, Any]]:
    """A request straight to the API (what the SDK would refuse to send is still answered)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"{api.url}/v1/{api.parent}/{path}", data=data, method=method)
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


# ------------------------------------------------------------------------------ deploy decisions


def test_first_deployment_creates_model_and_endpoint_with_all_traffic(vertex_api: VertexApi) -> None:
    result = deploy("v0001")

    (upload,) = vertex_api.calls("upload")
    body = upload.body
    assert "parentModel" not in body  # the first version of a new model
    model = body["model"]
    assert model["artifactUri"] == "gs://bucket/registry/churn/versions/v0001"
    assert model["containerSpec"] == {
        "imageUri": IMAGE,
        "ports": [{"containerPort": 8080}],
        "predictRoute": "/predict",
        "healthRoute": "/health",
    }
    assert model["labels"]["run-id"] == "run-v0001" and model["labels"]["registry-version"] == "v0001"
    assert model["versionAliases"] == ["v0001"]  # champion and default wait until it serves
    (create,) = vertex_api.calls("endpoints", "POST")
    assert create.body["displayName"] == "churn-endpoint" and result.endpoint_created
    (deployed,) = vertex_api.calls("deployModel")
    spec = deployed.body["deployedModel"]
    assert spec["dedicatedResources"]["machineSpec"] == {"machineType": "n1-standard-2"}
    assert spec["dedicatedResources"]["minReplicaCount"] == 1
    assert spec["model"] == f"{result.model_resource_name}@1"
    # every long-running operation was waited for through operations.get
    polled = [c.path for c in vertex_api.requests if "/operations/" in c.path]
    assert len(polled) == 3  # create endpoint, upload, deploy (merging aliases is not an LRO)
    assert result.parent_model is None and result.model_version_id == "1"
    assert vertex_api.aliases("churn") == {"default": "1", "champion": "1", "v0001": "1"}
    assert result.traffic_split == {result.deployed_model_id: 100}
    assert result.undeployed == [] and not result.reused_upload
    assert deployed_ids(vertex_api) == [result.deployed_model_id]


def test_new_version_uses_parent_model_moves_champion_and_retires_old_version(vertex_api: VertexApi) -> None:
    first = deploy("v0001")
    second = deploy("v0002")

    upload = vertex_api.calls("upload")[1]
    assert upload.body["parentModel"] == first.model_resource_name
    assert second.model_resource_name == first.model_resource_name  # same model, new version
    assert second.model_version_id == "2" and not second.endpoint_created
    aliases = vertex_api.aliases("churn")
    assert aliases["champion"] == "2" and aliases["default"] == "2"
    assert aliases["v0001"] == "1"  # other aliases stay where they were
    assert second.traffic_split == {second.deployed_model_id: 100}
    assert second.undeployed == [first.deployed_model_id]
    assert deployed_ids(vertex_api) == [second.deployed_model_id]
    assert len(vertex_api.endpoints) == 1 and len(vertex_api.models) == 1
    (undeploy,) = vertex_api.calls("undeployModel")
    assert undeploy.body["deployedModelId"] == first.deployed_model_id


def test_canary_keeps_champion_serving_most_traffic(vertex_api: VertexApi) -> None:
    first = deploy("v0001")
    canary = deploy("v0002", canary_percent=10)

    assert canary.canary_percent == 10 and canary.aliases == ["challenger", "v0002"]
    assert canary.traffic_split == {first.deployed_model_id: 90, canary.deployed_model_id: 10}
    assert canary.undeployed == []
    aliases = vertex_api.aliases("churn")
    assert aliases["champion"] == "1" and aliases["default"] == "1" and aliases["challenger"] == "2"
    assert vertex_api.calls("deployModel")[1].body["trafficSplit"] == {first.deployed_model_id: 90, "0": 10}

    promoted = deploy("v0003")  # a full rollout retires both earlier versions
    assert promoted.traffic_split == {promoted.deployed_model_id: 100}
    assert sorted(promoted.undeployed) == sorted([first.deployed_model_id, canary.deployed_model_id])
    assert vertex_api.aliases("churn")["champion"] == "3"


def test_canary_on_an_idle_endpoint_is_a_full_rollout(vertex_api: VertexApi) -> None:
    result = deploy("v0001", canary_percent=25)
    assert result.canary_percent == 0 and result.aliases[0] == "champion"
    assert result.traffic_split == {result.deployed_model_id: 100}


def test_versions_without_traffic_are_undeployed_even_during_a_canary(vertex_api: VertexApi) -> None:
    first = deploy("v0001")
    (endpoint,) = aiplatform.Endpoint.list()
    idle_model = aiplatform.Model.upload(
        serving_container_image_uri=IMAGE,
        artifact_uri="gs://bucket/x",
        parent_model=first.model_resource_name,
        is_default_version=False,
        display_name="churn",
    )
    endpoint.deploy(  # a 0% deployment: deployed, serving nothing
        idle_model, traffic_split={first.deployed_model_id: 100, "0": 0}, machine_type="n1-standard-2"
    )
    (idle,) = [i for i in deployed_ids(vertex_api) if i != first.deployed_model_id]

    canary = deploy("v0003", canary_percent=20)
    assert canary.undeployed == [idle]
    assert canary.traffic_split == {first.deployed_model_id: 80, canary.deployed_model_id: 20}


def test_models_and_endpoints_are_listed_page_by_page(vertex_api: VertexApi) -> None:
    vertex_api.page_size = 2
    for name in ("a", "b", "c", "d", "e"):
        aiplatform.Model.upload(
            serving_container_image_uri=IMAGE, artifact_uri=f"gs://b/{name}", display_name=name
        )
    assert sorted(m.display_name for m in aiplatform.Model.list()) == ["a", "b", "c", "d", "e"]
    tokens = [c.query.get("pageToken") for c in vertex_api.calls("models", "GET")]
    assert tokens == [None, "2", "4"]
    (found,) = aiplatform.Model.list(filter='display_name="d"')
    assert found.display_name == "d"


# ------------------------------------------------------------------------------ retries


def test_a_deploy_interrupted_before_the_traffic_switch_is_finished_by_the_retry(
    vertex_api: VertexApi,
) -> None:
    first = deploy("v0001")
    vertex_api.fail("POST", ":deployModel", code=500)  # the upload went through, the deploy did not
    with pytest.raises(exceptions.InternalServerError):
        deploy("v0002", run="run-2")
    aliases = vertex_api.aliases("churn")
    assert aliases["champion"] == "1" and aliases["default"] == "1"  # nothing named the unserved version
    assert aliases["v0002"] == "2" and deployed_ids(vertex_api) == [first.deployed_model_id]

    retried = deploy("v0002", run="run-2")
    assert len(vertex_api.calls("upload")) == 2  # v0001 and v0002, never a second v0002
    assert retried.reused_upload and retried.model_version_id == "2"
    listed = [c.query["filter"] for c in vertex_api.calls("listVersions")]
    assert 'labels.registry-version="v0002" AND labels.run-id="run-2"' in listed
    assert retried.traffic_split == {retried.deployed_model_id: 100}
    assert vertex_api.aliases("churn")["champion"] == "2"


def test_a_retry_after_the_traffic_switch_only_names_the_version(vertex_api: VertexApi) -> None:
    deploy("v0001")
    vertex_api.fail("POST", ":mergeVersionAliases", code=503, times=5)  # beyond the SDK's own retries
    with pytest.raises(exceptions.GoogleAPICallError):
        deploy("v0002", run="run-2")
    assert vertex_api.aliases("churn")["champion"] == "1"
    uploads, deploys = len(vertex_api.calls("upload")), len(vertex_api.calls("deployModel"))

    vertex_api._faults.clear()
    retried = deploy("v0002", run="run-2")
    assert len(vertex_api.calls("upload")) == uploads and len(vertex_api.calls("deployModel")) == deploys
    assert retried.reused_upload and retried.canary_percent == 0
    assert vertex_api.aliases("churn")["champion"] == "2"
    assert len(deployed_ids(vertex_api)) == 1

    again = deploy("v0002", run="run-2")  # a re-run of a finished deploy changes nothing
    assert again.deployed_model_id == retried.deployed_model_id
    assert len(vertex_api.calls("upload")) == uploads and len(vertex_api.calls("deployModel")) == deploys


def test_another_run_of_the_same_registry_version_uploads_its_own(vertex_api: VertexApi) -> None:
    deploy("v0001", run="run-a")
    deploy("v0001", run="run-b")  # labels differ: not the same upload
    assert len(vertex_api.calls("upload")) == 2


# ------------------------------------------------------------------------------ refusals


def test_labels_are_checked_before_anything_is_created(vertex_api: VertexApi) -> None:
    bad = {"run-id": "Run 2026/01/01"}
    with pytest.raises(ValueError, match="run-id"):
        vertex.deploy_model(aiplatform, settings(), "churn", "v0001", "gs://b/v0001", bad)
    assert vertex_api.requests == []
    assert vertex.label_value("Run 2026/01/01_x") == "run-2026-01-01_x"


def test_missing_settings_are_named_before_any_call(vertex_api: VertexApi) -> None:
    with pytest.raises(ConfigError, match=r"vertex\.serving_image"):
        vertex.deploy_model(aiplatform, settings(serving_image=""), "churn", "v0001", "gs://b/v", labels())
    with pytest.raises(ConfigError, match=r"vertex\.experiment"):
        vertex.deploy_model(aiplatform, settings(experiment="My Exp"), "churn", "v0001", "gs://b/v", labels())
    with pytest.raises(ConfigError, match="canary_percent"):
        vertex.deploy_model(aiplatform, settings(canary_percent=100), "churn", "v0001", "gs://b/v", labels())
    with pytest.raises(ValueError, match="gs://"):
        vertex.deploy_model(aiplatform, settings(), "churn", "v0001", "/local/dir", labels())
    assert vertex_api.requests == []


def test_ambiguous_display_names_are_refused(vertex_api: VertexApi) -> None:
    aiplatform.Endpoint.create(display_name="churn-endpoint")
    aiplatform.Endpoint.create(display_name="churn-endpoint")
    with pytest.raises(ValueError, match="several Vertex endpoints"):
        deploy("v0001")


def test_the_api_refuses_what_vertex_refuses(vertex_api: VertexApi) -> None:
    first = deploy("v0001")
    endpoint_path = "endpoints/" + next(iter(vertex_api.endpoints))
    model = f"{first.model_resource_name}@1"
    resources = {"machineSpec": {"machineType": "n1-standard-2"}, "minReplicaCount": 1}
    half = {"deployedModel": {"model": model, "dedicatedResources": resources}, "trafficSplit": {"0": 50}}
    status, body = raw(vertex_api, "POST", f"{endpoint_path}:deployModel", half)
    assert (
        status == 400
        and body["error"]["status"] == "INVALID_ARGUMENT"
        and "sum to 100" in body["error"]["message"]
    )
    status, body = raw(
        vertex_api, "POST", f"{endpoint_path}:deployModel", {"deployedModel": {"model": model}}
    )
    assert status == 400 and "dedicated_resources" in body["error"]["message"]
    status, body = raw(
        vertex_api, "POST", f"{endpoint_path}:undeployModel", {"deployedModelId": first.deployed_model_id}
    )
    assert status == 200  # the last model: the split ends up empty
    status, body = raw(vertex_api, "GET", "models?filter=" + urllib.request.quote("create_time>1"))
    assert status == 400 and "Unsupported filter" in body["error"]["message"]
    status, body = raw(vertex_api, "GET", "featurestores")
    assert status == 404 and body["error"]["status"] == "NOT_FOUND"
    with pytest.raises(exceptions.NotFound):
        aiplatform.Model("projects/proj/locations/europe-west4/models/999")
    with pytest.raises(exceptions.BadRequest, match="version alias"):
        aiplatform.Model.upload(
            serving_container_image_uri=IMAGE,
            artifact_uri="gs://b/x",
            display_name="x",
            version_aliases=["1"],
        )


def test_a_model_with_traffic_cannot_be_undeployed(vertex_api: VertexApi) -> None:
    first = deploy("v0001")
    canary = deploy("v0002", canary_percent=30)
    endpoint_path = "endpoints/" + next(iter(vertex_api.endpoints))
    status, body = raw(
        vertex_api,
        "POST",
        f"{endpoint_path}:undeployModel",
        {
            "deployedModelId": first.deployed_model_id,
            "trafficSplit": {first.deployed_model_id: 70, canary.deployed_model_id: 30},
        },
    )
    assert status == 400 and body["error"]["status"] == "FAILED_PRECONDITION"
    # the SDK moves the share first, and then it may go
    (endpoint,) = aiplatform.Endpoint.list()
    endpoint.undeploy(first.deployed_model_id)
    assert endpoint.traffic_split == {canary.deployed_model_id: 100}


# ------------------------------------------------------------------------------ deploy_bundle


def test_deploy_bundle_vertex_needs_a_gcs_registry_and_settings(tmp_path: Any) -> None:
    passed = {"passed": True}
    with sdk_on_loopback() as api:
        with pytest.raises(RegistryError, match="gs:// registry_uri"):
            deploy_bundle(tmp_path, passed, Config(), str(tmp_path), "vertex", "run-1", vertex_sdk=aiplatform)
        with pytest.raises(ConfigError, match=r"vertex\.project"):
            deploy_bundle(
                tmp_path,
                passed,
                Config(),
                "gs://b/reg",
                "vertex",
                "run-1",
                vertex_sdk=aiplatform,
                vertex_settings=vertex.VertexConfig(serving_image=IMAGE),
            )
        with pytest.raises(RegistryError, match="not supported"):
            deploy_bundle(tmp_path, passed, Config(), "gs://b/reg", "sagemaker", "run-1")
        assert api.requests == []


# ------------------------------------------------------------------------------ console


def test_the_version_carries_the_gates_test_metrics_as_a_model_evaluation(vertex_api: VertexApi) -> None:
    metrics = {
        "roc_auc": 0.93,
        "pr_auc": 0.74,
        "log_loss": 0.25,
        "f1": 0.64,
        "precision": 0.59,
        "recall": 0.7,
    }
    evaluation = vertex.model_evaluation({**metrics, "threshold": 0.36}, "v0001")
    uri = "gs://bucket/registry/churn/versions/v0001"
    result = vertex.deploy_model(
        aiplatform, settings(), "churn", "v0001", uri, labels(), evaluation=evaluation
    )

    version_key = f"{result.model_resource_name.rsplit('/', 1)[1]}@1"
    (imported,) = vertex_api.calls("import")
    assert imported.path.endswith(f"models/{version_key}/evaluations:import")
    (stored,) = vertex_api.evaluations[version_key]
    assert stored["metricsSchemaUri"] == vertex.CLASSIFICATION_METRICS_SCHEMA
    assert stored["metrics"]["auRoc"] == 0.93 and stored["metrics"]["auPrc"] == 0.74
    assert stored["metrics"]["confidenceMetrics"] == [
        {"confidenceThreshold": 0.36, "precision": 0.59, "recall": 0.7, "f1Score": 0.64}
    ]
    assert result.evaluation == stored["name"]
    # a retried deploy finds it and imports nothing more
    again = vertex.deploy_model(
        aiplatform, settings(), "churn", "v0001", uri, labels(), evaluation=evaluation
    )
    assert again.evaluation == stored["name"] and len(vertex_api.evaluations[version_key]) == 1
    assert vertex.model_evaluation({"f1": 0.6}, "v0002") is None  # too little to render: not imported


def test_an_alias_given_at_upload_moves_to_the_new_version(vertex_api: VertexApi) -> None:
    first = aiplatform.Model.upload(
        serving_container_image_uri=IMAGE,
        artifact_uri="gs://b/1",
        display_name="m",
        version_aliases=["stable"],
    )
    aiplatform.Model.upload(
        serving_container_image_uri=IMAGE,
        artifact_uri="gs://b/2",
        display_name="m",
        parent_model=first.resource_name,
        version_aliases=["stable"],
        is_default_version=False,
    )
    assert vertex_api.aliases("m") == {"default": "1", "stable": "2"}
    assert aiplatform.Model(first.resource_name, version="stable").version_id == "2"
    assert aiplatform.Model(first.resource_name).version_id == "1"  # the default version
