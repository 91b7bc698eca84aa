"""Submission of a checked ``Plan``: the Vertex AI PipelineJob, the KFP run, and their dry-run requests.

The dry-run needs no network and no credentials: the template is parsed into KFP's PipelineSpec
proto, every parameter is checked against the spec's inputs (names, required, types), and the
request the SDK would send is built (``aiplatform.PipelineJob`` with anonymous credentials; for KFP
the run body kfp.Client posts). ``pipelines.cli.submit`` turns the ``propensity submit`` flags
into the ``Plan``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from components.shared.config import ConfigError

DEFAULT_WAIT_SECONDS = 24 * 3600.0
_PYTHON_TYPES: dict[str, tuple[type, ...]] = {
    "STRING": (str,),
    "NUMBER_INTEGER": (int,),
    "NUMBER_DOUBLE": (int, float),
    "BOOLEAN": (bool,),
    "LIST": (list,),
    "STRUCT": (dict,),
}


@dataclass
class Plan:
    """Everything a submission needs, validated; the same object feeds the dry-run and the real run."""

    target: str
    template: str  # what is submitted: a local YAML path or an Artifact Registry https:// URL
    local_template: Path  # a local copy of the spec (the template itself, or compiled from this code)
    parameters: dict[str, Any]
    run_name: str
    job_id: str
    pipeline_root: str | None
    service_account: str | None
    enable_caching: bool | None
    experiment: str | None
    labels: dict[str, str] = field(default_factory=dict)
    project: str | None = None
    region: str | None = None
    host: str | None = None
    namespace: str | None = None
    wait: bool = False
    timeout: float | None = None


def without_caching(path: Path) -> Path:
    """A copy of the template with caching off for EVERY task, nested ones included.

    kfp.Client's ``enable_caching=False`` only rewrites the root DAG's tasks, so tasks inside
    dsl.If / ParallelFor would still be served from the cache (found by the tests).
    """
    import yaml

    from pipelines.compile import validate_pipeline_yaml

    documents = list(yaml.safe_load_all(path.read_text()))
    spec = documents[0]
    dags = [spec["root"].get("dag", {})] + [c.get("dag", {}) for c in spec.get("components", {}).values()]
    for dag in dags:
        for task in dag.get("tasks", {}).values():
            task["cachingOptions"] = {**task.get("cachingOptions", {}), "enableCache": False}
    copy = path.with_name(path.stem + ".no-cache.yaml")
    copy.write_text(yaml.safe_dump_all(documents, sort_keys=True))
    validate_pipeline_yaml(copy)
    return copy


def _spec(path: Path) -> Any:
    from pipelines.compile import validate_pipeline_yaml

    return validate_pipeline_yaml(path)


def check_parameters(path: Path, values: dict[str, Any]) -> None:
    """Every value is a known input of the compiled pipeline, of its type; every required one is given."""
    from kfp.pipeline_spec import pipeline_spec_pb2

    spec = _spec(path)
    names = pipeline_spec_pb2.ParameterType.ParameterTypeEnum.Name
    inputs = spec.root.input_definitions.parameters
    unknown = sorted(set(values) - set(inputs))
    if unknown:
        raise ConfigError(f"{path}: the pipeline has no parameter(s) {unknown} (it takes {sorted(inputs)})")
    for name, definition in inputs.items():
        if name not in values:
            if not definition.is_optional and not definition.HasField("default_value"):
                raise ConfigError(f"{path}: required pipeline parameter {name!r} has no value")
            continue
        kind = names(definition.parameter_type)
        allowed = _PYTHON_TYPES.get(kind)
        value = values[name]
        wrong_bool = isinstance(value, bool) and kind in ("NUMBER_INTEGER", "NUMBER_DOUBLE")
        if allowed is None or not isinstance(value, allowed) or wrong_bool:
            raise ConfigError(
                f"pipeline parameter {name!r} must be {kind}, got {type(value).__name__} {value!r}"
            )


# ---------------------------------------------------------------------------------------- vertex


def vertex_job(plan: Plan, offline: bool) -> Any:
    """The ``aiplatform.PipelineJob`` (offline: anonymous credentials, the local spec)."""
    from google.cloud import aiplatform

    credentials = None
    if offline:
        from google.auth.credentials import AnonymousCredentials

        credentials = AnonymousCredentials()
    template = str(plan.local_template) if offline else plan.template
    try:
        return aiplatform.PipelineJob(
            display_name=plan.job_id,
            template_path=template,
            job_id=plan.job_id,
            pipeline_root=plan.pipeline_root,
            parameter_values=plan.parameters,
            enable_caching=plan.enable_caching,
            labels=plan.labels,
            project=plan.project,
            location=plan.region,
            credentials=credentials,
        )
    except ValueError as exc:  # the SDK's own parameter checks
        raise ConfigError(f"Vertex AI PipelineJob: {exc}") from exc


def vertex_request(plan: Plan) -> dict[str, Any]:
    """CreatePipelineJobRequest as PipelineJob.submit would send it (it sets serviceAccount itself)."""
    job = vertex_job(plan, offline=True)
    pipeline_job = job.to_dict()
    if plan.service_account:
        pipeline_job["serviceAccount"] = plan.service_account
    if plan.template != str(plan.local_template):
        pipeline_job["templateUri"] = plan.template
    return {
        "parent": f"projects/{plan.project}/locations/{plan.region}",
        "pipelineJobId": plan.job_id,
        "pipelineJob": pipeline_job,
    }


def submit_vertex(plan: Plan) -> int:
    from google.auth import exceptions as auth_exceptions

    try:
        job = vertex_job(plan, offline=False)
        job.submit(service_account=plan.service_account, experiment=plan.experiment)
    except auth_exceptions.DefaultCredentialsError as exc:
        raise RuntimeError(
            f"no Google credentials ({exc}): run `gcloud auth application-default login` "
            "or run as a service account"
        ) from exc
    print(f"submitted {job.resource_name}")
    print(
        f"console: https://console.cloud.google.com/vertex-ai/pipelines/locations/{plan.region}/runs/"
        f"{plan.job_id}?project={plan.project}"
    )
    if plan.wait:
        job.wait()  # raises RuntimeError when the run fails
        print(f"{plan.job_id}: {job.state.name}")
    return 0


# ---------------------------------------------------------------------------------------- kfp


def kfp_run_body(plan: Plan) -> dict[str, Any]:
    """The V2beta1Run body kfp.Client.create_run_from_pipeline_package posts (built offline).

    kfp.Client cannot be constructed offline (it calls the server's healthz), so this calls the
    same job-config builder the client uses; it does not touch the client's state.
    """
    import kfp_server_api
    from kfp.client import Client

    config = Client._create_job_config(
        None,  # type: ignore[arg-type]
        params=plan.parameters,
        pipeline_package_path=str(plan.local_template),
        pipeline_id=None,
        version_id=None,
        enable_caching=plan.enable_caching,
        cache_key=None,
        pipeline_root=plan.pipeline_root,
    )
    run = kfp_server_api.V2beta1Run(
        display_name=plan.run_name,
        pipeline_spec=config.pipeline_spec,
        runtime_config=config.runtime_config,
        service_account=plan.service_account,
    )
    return kfp_server_api.ApiClient().sanitize_for_serialization(run)


def submit_kfp(plan: Plan) -> int:
    import kfp

    client = kfp.Client(host=plan.host, **({"namespace": plan.namespace} if plan.namespace else {}))
    result = client.create_run_from_pipeline_package(
        pipeline_file=str(plan.local_template),
        arguments=plan.parameters,
        run_name=plan.run_name,
        experiment_name=plan.experiment,
        namespace=plan.namespace,
        pipeline_root=plan.pipeline_root,
        enable_caching=plan.enable_caching,
        service_account=plan.service_account,
    )
    print(f"submitted run {result.run_id} to {plan.host}")
    if not plan.wait:
        return 0
    # always a number: kfp 2.17 compares the elapsed seconds with its timedelta default (TypeError)
    run = result.wait_for_run_completion(timeout=plan.timeout or DEFAULT_WAIT_SECONDS)
    state = str(getattr(run, "state", "UNKNOWN"))
    print(f"run {result.run_id}: {state}")
    return 0 if state == "SUCCEEDED" else 1


# ---------------------------------------------------------------------------------------- dry run


def dry_run_request(plan: Plan) -> dict[str, Any]:
    """What would be sent, as JSON, plus the submit-time options that are not part of the body."""
    if plan.target == "vertex":
        return {
            "target": "vertex",
            "template": plan.template,
            "request": vertex_request(plan),
            "submit": {"service_account": plan.service_account, "experiment": plan.experiment},
        }
    return {
        "target": "kfp",
        "host": plan.host,
        "template": plan.template,
        "experiment_name": plan.experiment,
        "namespace": plan.namespace,
        "request": kfp_run_body(plan),
    }
