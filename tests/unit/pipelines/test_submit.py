"""`submit`: the request sent to Vertex AI / KFP, validated offline (dry-run), and a real KFP client
talking to a loopback stand-in of the KFP API server (the body it posts equals the dry-run's)."""

from __future__ import annotations

import argparse
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from components.shared.config import Config, ConfigError
from pipelines import submission
from pipelines.cli import submit

ROOT = "gs://bucket/pipeline-root"
IMAGE = "europe-west4-docker.pkg.dev/proj/propensity/propensity-pipeline:abc123"
SERVING = "europe-west4-docker.pkg.dev/proj/propensity/propensity-serving:abc123"
SA = "propensity-pipeline@proj.iam.gserviceaccount.com"
WIRED = hasattr(Config(), "vertex")  # the lead adds the config section `vertex`


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="propensity")
    submit.add_commands(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["submit", *argv])


def vertex_argv(tmp_path: Path, *extra: str) -> list[str]:
    return [
        "--target=vertex",
        "--project=proj",
        "--region=europe-west4",
        f"--pipeline-root={ROOT}",
        f"--service-account={SA}",
        f"--image={IMAGE}",
        "--data=gs://bucket/data/customers.csv",
        f"--out={tmp_path / 'build'}",
        *extra,
    ]


def dry_run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    args = parse([*argv, "--dry-run"])
    assert args.handler(args) == 0
    return json.loads(capsys.readouterr().out)


def tasks(pipeline_spec: dict[str, Any]) -> dict[str, Any]:
    """Every task of the DAG, including those inside conditions and loops."""
    found: dict[str, Any] = dict(pipeline_spec["root"]["dag"]["tasks"])
    for component in pipeline_spec["components"].values():
        found.update(component.get("dag", {}).get("tasks", {}))
    return found


def test_vertex_dry_run_prints_the_job_request(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = dry_run(
        vertex_argv(
            tmp_path,
            "--deploy-target=local",
            "--labels=commit=abc123,build=b-1",
            "--labels=source=cloud-build",
            "--set=gate.min_f1=0.55",
        ),
        capsys,
    )
    request = out["request"]
    job = request["pipelineJob"]
    assert request["parent"] == "projects/proj/locations/europe-west4"
    assert request["pipelineJobId"].startswith("propensity-training-")
    assert out["template"] == str((tmp_path / "build" / "training_pipeline.yaml").resolve())
    assert job["serviceAccount"] == SA
    assert job["runtimeConfig"]["gcsOutputDirectory"] == ROOT
    values = job["runtimeConfig"]["parameterValues"]
    assert values["data_uri"] == "gs://bucket/data/customers.csv"
    assert values["registry_uri"] == f"{ROOT}/registry"
    assert values["deploy_target"] == "local"
    assert values["families"] == ["xgboost", "logreg", "mlp"]
    assert json.loads(values["config_json"])["gate"]["min_f1"] == 0.55
    assert values["tracking_uri"] == "vertex" and values["runner"] == "vertex"  # Vertex AI Experiments
    assert values["run_name"].startswith("run-") and values["run_name"] == job["labels"]["run-name"]
    assert {"commit": "abc123", "build": "b-1", "source": "cloud-build"}.items() <= job["labels"].items()
    assert job["labels"]["pipeline"] == "propensity-training"
    spec = job["pipelineSpec"]
    executors = spec["deploymentSpec"]["executors"]
    assert {e["container"]["image"] for e in executors.values()} == {IMAGE}
    for executor in executors.values():  # resource requests reach the cluster runners
        assert executor["container"]["resources"]["cpuRequest"] > 0
        assert executor["container"]["resources"]["memoryRequest"] > 0
    every = tasks(spec)
    assert all(t["taskInfo"]["name"] for t in every.values())
    # no --no-cache: the compile-time settings stand (gate and deploy never cached)
    assert every["ingest"]["cachingOptions"].get("enableCache") is True
    assert not every["gate"]["cachingOptions"].get("enableCache", False)
    assert out["submit"] == {"service_account": SA, "experiment": None}


def test_no_cache_and_experiment(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = dry_run(vertex_argv(tmp_path, "--deploy-target=local", "--no-cache", "--experiment=exp-1"), capsys)
    every = tasks(out["request"]["pipelineJob"]["pipelineSpec"])
    assert every and not any(t.get("cachingOptions", {}).get("enableCache", False) for t in every.values())
    assert out["submit"]["experiment"] == "exp-1"
    config = json.loads(out["request"]["pipelineJob"]["runtimeConfig"]["parameterValues"]["config_json"])
    assert config["tracking"]["experiment"] == "exp-1"  # the tracked run goes to the same experiment


def test_the_configs_vertex_experiment_is_the_jobs_and_the_tracked_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = vertex_argv(tmp_path, "--deploy-target=local", "--set=vertex.experiment=nightly")
    out = dry_run(argv, capsys)
    assert out["submit"]["experiment"] == "nightly"
    parameters = out["request"]["pipelineJob"]["runtimeConfig"]["parameterValues"]
    assert Config.from_json(parameters["config_json"]).experiment_name == "nightly"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (["--data=/home/me/customers.csv"], "--data"),
        (["--pipeline-root=/tmp/root"], "--pipeline-root"),
        (["--registry=/tmp/registry"], "--registry"),
        (["--labels=Commit=abc"], "label key"),
        (["--labels=novalue"], "key=value"),
        (["--experiment=Nightly Runs"], "--experiment"),
        (["--tracking-uri=sqlite:////tmp/mlflow.db"], "not shared"),
        (["--tracking-uri=ftp://host"], "--tracking-uri"),
    ],
)
def test_vertex_refuses_what_cannot_run_there(tmp_path: Path, change: list[str], message: str) -> None:
    args = parse([*vertex_argv(tmp_path, "--deploy-target=local"), *change, "--dry-run"])
    with pytest.raises(ConfigError, match=message):
        args.handler(args)


def test_vertex_needs_project_region_and_image(tmp_path: Path) -> None:
    argv = [a for a in vertex_argv(tmp_path, "--deploy-target=local") if not a.startswith("--project")]
    with pytest.raises(ConfigError, match="--project"):
        submit.build_plan(parse(argv))
    argv = [a for a in vertex_argv(tmp_path, "--deploy-target=local") if not a.startswith("--image")]
    with pytest.raises(ConfigError, match="--image"):
        submit.build_plan(parse(argv))


def test_vertex_deploy_target_needs_deploy_settings(tmp_path: Path) -> None:
    args = parse([*vertex_argv(tmp_path), "--dry-run"])  # deploy target defaults to vertex
    with pytest.raises(ConfigError, match="vertex"):
        args.handler(args)


@pytest.mark.skipif(not WIRED, reason="config section `vertex` not wired into Config yet")
def test_vertex_deploy_settings_travel_in_the_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = dry_run(
        vertex_argv(tmp_path, f"--serving-image={SERVING}", "--canary=10", "--experiment=e"), capsys
    )
    values = out["request"]["pipelineJob"]["runtimeConfig"]["parameterValues"]
    assert values["deploy_target"] == "vertex"
    settings = json.loads(values["config_json"])["vertex"]
    assert settings["project"] == "proj" and settings["location"] == "europe-west4"
    assert settings["serving_image"] == SERVING and settings["canary_percent"] == 10
    assert settings["experiment"] == "e"


def test_parameters_are_checked_against_the_compiled_spec(tmp_path: Path) -> None:
    from pipelines.compile import compile_training

    path = compile_training(tmp_path, IMAGE)
    good = {"data_uri": "gs://b/d", "registry_uri": "gs://b/r", "families": ["logreg"]}
    submission.check_parameters(path, good)
    with pytest.raises(ConfigError, match="no parameter"):
        submission.check_parameters(path, {**good, "learning_rate": 0.1})
    with pytest.raises(ConfigError, match=r"families.*LIST"):
        submission.check_parameters(path, {**good, "families": "logreg"})
    with pytest.raises(ConfigError, match="required pipeline parameter 'registry_uri'"):
        submission.check_parameters(path, {"data_uri": "gs://b/d"})


def test_given_template_is_validated_and_submitted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pipelines.compile import compile_training

    template = compile_training(tmp_path / "t", IMAGE)
    out = dry_run(vertex_argv(tmp_path, "--deploy-target=local", f"--template={template}"), capsys)
    assert out["template"] == str(template.resolve())
    args = parse(
        [*vertex_argv(tmp_path, "--deploy-target=local", f"--template={template}"), "--image=other:1"]
    )
    with pytest.raises(ConfigError, match="compiled with image"):
        submit.build_plan(args)
    remote = "https://europe-west4-kfp.pkg.dev/proj/propensity-pipelines/propensity-training/sha-abc123"
    out = dry_run(vertex_argv(tmp_path, "--deploy-target=local", f"--template={remote}"), capsys)
    assert out["template"] == remote
    assert out["request"]["pipelineJob"]["templateUri"] == remote


def kfp_argv(tmp_path: Path, host: str, *extra: str) -> list[str]:
    return [
        "--target=kfp",
        f"--host={host}",
        "--image=propensity-pipeline:local",
        "--data=gs://bucket/data/customers.csv",
        "--registry=gs://bucket/registry",
        f"--out={tmp_path / 'build'}",
        *extra,
    ]


def test_kfp_dry_run_builds_the_run_body_without_a_server(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = dry_run(
        kfp_argv(
            tmp_path,
            "http://127.0.0.1:9",
            "--no-cache",
            f"--pipeline-root={ROOT}",
            "--service-account=runner",
        ),
        capsys,
    )
    body = out["request"]
    assert out["host"] == "http://127.0.0.1:9"  # nothing listens there: no request was made
    assert body["runtime_config"]["pipeline_root"] == ROOT
    params = body["runtime_config"]["parameters"]
    assert params["registry_uri"] == "gs://bucket/registry" and params["deploy_target"] == "local"
    assert params["tracking_uri"] == "" and params["runner"] == "kfp"  # no store unless one is given
    assert body["display_name"] == params["run_name"]
    assert body["service_account"] == "runner"
    every = tasks(body["pipeline_spec"])
    assert not any(t.get("cachingOptions", {}).get("enableCache", False) for t in every.values())


def test_kfp_refuses_labels_and_needs_a_host(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="labels"):
        submit.build_plan(parse(kfp_argv(tmp_path, "http://h", "--labels=a=b")))
    argv = [a for a in kfp_argv(tmp_path, "http://h") if not a.startswith("--host")]
    with pytest.raises(ConfigError, match="--host"):
        submit.build_plan(parse(argv))
    argv = [a for a in kfp_argv(tmp_path, "http://h") if not a.startswith("--registry")]
    with pytest.raises(ConfigError, match="--registry"):
        submit.build_plan(parse(argv))
    with pytest.raises(ConfigError, match="local --template"):
        submit.build_plan(parse(kfp_argv(tmp_path, "http://h", "--template=https://x/t")))


class KfpApiStub:
    """The few KFP v2beta1 API endpoints kfp.Client calls to submit and wait, recording requests."""

    def __init__(self, final_state: str) -> None:
        self.final_state = final_state
        self.requests: list[tuple[str, str, Any]] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def _reply(self, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                stub.requests.append(("GET", self.path, None))
                if self.path.startswith("/apis/v2beta1/healthz"):
                    self._reply({"multi_user": False})
                elif self.path.startswith("/apis/v2beta1/experiments"):
                    self._reply({"experiments": [], "total_size": 0})
                elif self.path.startswith("/apis/v2beta1/runs/run-1"):
                    self._reply({"run_id": "run-1", "display_name": "r", "state": stub.final_state})
                else:
                    self.send_error(404)

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                stub.requests.append(("POST", self.path, body))
                if self.path.startswith("/apis/v2beta1/experiments"):
                    self._reply({"experiment_id": "exp-1", "display_name": body["display_name"]})
                elif self.path.startswith("/apis/v2beta1/runs"):
                    self._reply({"run_id": "run-1", "display_name": body["display_name"], "state": "PENDING"})
                else:
                    self.send_error(404)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"


@pytest.fixture
def kfp_stub(request: pytest.FixtureRequest) -> Iterator[KfpApiStub]:
    stub = KfpApiStub(getattr(request, "param", "SUCCEEDED"))
    yield stub
    stub.server.shutdown()
    stub.server.server_close()


@pytest.mark.parametrize(("kfp_stub", "code"), [("SUCCEEDED", 0), ("FAILED", 1)], indirect=["kfp_stub"])
def test_kfp_client_posts_exactly_the_dry_run_body(tmp_path: Path, kfp_stub: KfpApiStub, code: int) -> None:
    plan = submit.build_plan(parse(kfp_argv(tmp_path, kfp_stub.url, "--experiment=nightly", "--wait")))
    assert submission.submit_kfp(plan) == code
    posted = {path.split("?")[0]: body for method, path, body in kfp_stub.requests if method == "POST"}
    assert posted["/apis/v2beta1/experiments"]["display_name"] == "nightly"
    run = posted["/apis/v2beta1/runs"]
    assert run.pop("experiment_id") == "exp-1"
    assert run == submission.kfp_run_body(plan)
    assert ("GET", "/apis/v2beta1/runs/run-1", None) in kfp_stub.requests


@pytest.fixture(scope="module")
def gcs_host() -> Iterator[str]:
    """The GCS emulator: PipelineJob.submit checks (and would create) the pipeline root's bucket."""
    from tests.gcs_emulator import running_emulator

    with running_emulator() as emulator:
        yield emulator.url


@pytest.mark.parametrize(("outcome", "code"), [("PIPELINE_STATE_SUCCEEDED", 0), ("PIPELINE_STATE_FAILED", 1)])
def test_vertex_submit_and_wait_through_the_real_sdk(
    tmp_path: Path,
    vertex_api: Any,
    gcs_host: str,
    monkeypatch: pytest.MonkeyPatch,
    outcome: str,
    code: int,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`submit --target vertex --wait`: the unpatched SDK (REST) against the loopback Vertex API."""
    from google.cloud.aiplatform.utils import resource_manager_utils

    from pipelines.cli import main
    from tests.gcs_emulator import anonymous_client

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_host)
    client = anonymous_client()
    bucket = client.lookup_bucket("bucket") or client.create_bucket("bucket")
    # The one call not served on loopback: submit checks that the pipeline root's bucket belongs to
    # the project through Cloud Resource Manager (another API, gRPC to its fixed host), and would
    # retry it for a minute. It answers the emulator bucket's project number, so the check passes.
    monkeypatch.setattr(
        resource_manager_utils, "get_project_number", lambda *a, **k: str(bucket.project_number)
    )

    vertex_api.pipeline_outcome = outcome
    argv = vertex_argv(tmp_path, "--deploy-target=local", "--labels=source=ci", "--experiment=exp-1")
    expected = dry_run(argv, capsys)["request"]
    assert main(["submit", *argv, "--wait"]) == code

    (created,) = vertex_api.calls("pipelineJobs", "POST")
    assert created.query["pipelineJobId"].startswith("propensity-training-")
    posted = created.body
    assert posted["serviceAccount"] == SA
    assert posted["runtimeConfig"]["gcsOutputDirectory"] == ROOT
    for key in ("data_uri", "registry_uri", "deploy_target", "families"):
        assert (
            posted["runtimeConfig"]["parameterValues"][key]
            == expected["pipelineJob"]["runtimeConfig"]["parameterValues"][key]
        )
    assert posted["labels"]["source"] == "ci" and posted["labels"]["pipeline"] == "propensity-training"
    assert posted["pipelineSpec"]["root"] == expected["pipelineJob"]["pipelineSpec"]["root"]
    # the run joined the experiment: its PipelineRun context is a child of the experiment's
    job_id = created.query["pipelineJobId"]
    run_context = vertex_api.metadata[f"{vertex_api.parent}/metadataStores/default/contexts/{job_id}"]
    assert run_context["parentContexts"] == [f"{vertex_api.parent}/metadataStores/default/contexts/exp-1"]
    assert vertex_api.calls(job_id, "GET")  # waited on the job's state
