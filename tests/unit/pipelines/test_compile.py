"""The compiled pipeline YAML: parsed by KFP's own proto and loader, with the image and the gate."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pipelines.compile import compile_all, validate_pipeline_yaml


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("build")
    paths = compile_all(out, "europe-docker.pkg.dev/p/r/propensity-pipeline:abc123")
    assert [p.name for p in paths] == ["training_pipeline.yaml", "prediction_pipeline.yaml"]
    return paths[0]


def test_spec_parses_into_pipeline_spec_proto(compiled: Path) -> None:
    spec = validate_pipeline_yaml(compiled)
    assert spec.pipeline_info.name == "propensity-training"
    params = spec.root.input_definitions.parameters
    assert {"data_uri", "registry_uri", "config_json", "families", "deploy_target"} <= set(params)


def test_every_executor_runs_in_the_configured_image_without_pip_installing_kfp(compiled: Path) -> None:
    document = yaml.safe_load(compiled.read_text())
    executors = document["deploymentSpec"]["executors"]
    assert len(executors) >= 12
    for name, executor in executors.items():
        container = executor["container"]
        assert container["image"] == "europe-docker.pkg.dev/p/r/propensity-pipeline:abc123", name
        assert "pip install" not in " ".join(container.get("command", [])), name


def _conditions_above(document: dict, tasks: dict, task_name: str, seen: tuple[str, ...] = ()) -> list | None:
    """The trigger conditions on the path from ``tasks`` down to the task named ``task_name``."""
    for name, task in tasks.items():
        here = (*seen, task.get("triggerPolicy", {}).get("condition", ""))
        if name == task_name:
            return [c for c in here if c]
        inner = document["components"][task["componentRef"]["name"]].get("dag")
        if inner:
            found = _conditions_above(document, inner["tasks"], task_name, here)
            if found is not None:
                return found
    return None


def test_deploy_runs_only_when_the_gate_passed(compiled: Path) -> None:
    document = yaml.safe_load(compiled.read_text())
    root_tasks = document["root"]["dag"]["tasks"]
    assert _conditions_above(document, root_tasks, "deploy") == [
        "inputs.parameter_values['pipelinechannel--gate-passed'] == true"
    ]
    assert _conditions_above(document, root_tasks, "record-rejection") == [
        "!(inputs.parameter_values['pipelinechannel--gate-passed'] == true)"
    ]
    assert _conditions_above(document, root_tasks, "gate") == []


def test_tasks_have_display_names_and_resource_requests(compiled: Path) -> None:
    document = yaml.safe_load(compiled.read_text())
    tasks = document["components"]["comp-exit-handler-1"]["dag"]["tasks"]  # the body of the run
    assert tasks["ingest"]["taskInfo"]["name"] == "Ingest and validate"
    resources = document["deploymentSpec"]["executors"]["exec-tune"]["container"]["resources"]
    assert resources["cpuRequest"] == 2.0 or resources.get("resourceCpuRequest") == "2"


def test_pvc_is_mounted_into_every_task_for_kind(tmp_path: Path) -> None:
    from pipelines.compile import PvcMount

    path = compile_all(tmp_path, "propensity-pipeline:local", PvcMount.parse("shared:/mnt/propensity"))[0]
    documents = list(yaml.safe_load_all(path.read_text()))
    platform = documents[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    executors = documents[0]["deploymentSpec"]["executors"]
    assert set(platform) == set(executors)
    for spec in platform.values():
        (mount,) = spec["pvcMount"]
        assert mount["mountPath"] == "/mnt/propensity" and mount["constant"] == "shared"


@pytest.mark.parametrize("text", ["shared", "shared:relative/path", ":/mnt/x"])
def test_bad_pvc_argument_names_the_expected_form(text: str) -> None:
    from pipelines.compile import PvcMount

    with pytest.raises(ValueError, match="CLAIM_NAME:/absolute/mount/path"):
        PvcMount.parse(text)


def test_vertex_artifacts_have_the_types_google_cloud_pipeline_components_uses(compiled: Path) -> None:
    """The console links a pipeline run to the Model Registry and the endpoint by the artifact
    types Google Cloud Pipeline Components declares (types/artifact_types.py: schema title
    ``google.VertexModel`` / ``google.VertexEndpoint``, schema version 0.0.1, metadata
    ``resourceName``); the test metrics are KFP's system types, which the console renders."""
    document = yaml.safe_load(compiled.read_text())
    components = document["components"]

    def output_types(component: str) -> dict[str, dict[str, str]]:
        outputs = components[component]["outputDefinitions"]["artifacts"]
        return {name: spec["artifactType"] for name, spec in outputs.items()}

    deploy = output_types("comp-deploy")
    assert deploy["vertex_model"] == {"schemaTitle": "google.VertexModel", "schemaVersion": "0.0.1"}
    assert deploy["vertex_endpoint"] == {"schemaTitle": "google.VertexEndpoint", "schemaVersion": "0.0.1"}
    evaluate = output_types("comp-evaluate")
    assert {"schemaTitle": "system.ClassificationMetrics", "schemaVersion": "0.0.1"} in evaluate.values()
    assert {"schemaTitle": "system.Metrics", "schemaVersion": "0.0.1"} in evaluate.values()
    assert output_types("comp-package")["bundle"]["schemaTitle"] == "system.Model"


@pytest.mark.parametrize("pipeline", ["training", "prediction"])
def test_every_run_ends_with_the_exit_task_that_tracks_a_failed_run(compiled: Path, pipeline: str) -> None:
    """Both pipelines are one ExitHandler: its exit task runs after the whole body, whatever its end,
    and receives the body's final status (so a failed run on Vertex or KFP is tracked)."""
    from kfp.pipeline_spec import pipeline_spec_pb2

    spec = validate_pipeline_yaml(compiled.parent / f"{pipeline}_pipeline.yaml")
    tasks = spec.root.dag.tasks
    assert set(tasks) == {"exit-handler-1", "record-failure"}
    exit_task = tasks["record-failure"]
    strategy = pipeline_spec_pb2.PipelineTaskSpec.TriggerPolicy.TriggerStrategy
    assert exit_task.trigger_policy.strategy == strategy.ALL_UPSTREAM_TASKS_COMPLETED
    assert list(exit_task.dependent_tasks) == ["exit-handler-1"]
    status = exit_task.inputs.parameters["status"]
    assert status.task_final_status.producer_task == "exit-handler-1"
    assert exit_task.inputs.parameters["pipeline_name"].runtime_value.constant.string_value == pipeline
    assert tasks["exit-handler-1"].task_info.name == f"{pipeline}-run"
