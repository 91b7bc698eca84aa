"""Submit the training pipeline to Vertex AI Pipelines or to a KFP cluster, or dry-run it offline.

propensity submit --target vertex --project P --region R --pipeline-root gs://B/root \\
    --service-account SA --image REGION-docker.pkg.dev/P/REPO/propensity-pipeline:TAG \\
    --serving-image REGION-docker.pkg.dev/P/REPO/propensity-serving:TAG \\
    --data gs://B/data/customers.csv [--registry gs://B/registry] [--labels k=v,k2=v2] \\
    [--experiment NAME] [--canary PCT] [--no-cache] [--wait] [--dry-run]
propensity submit --target kfp --host http://localhost:8080 --image IMG --data URI --registry URI

``--dry-run`` needs no network and no credentials: it compiles (or reads) the template, parses it
into KFP's PipelineSpec proto, checks every parameter against the spec's inputs (names, required,
types) and the target's rules (gs:// paths for Vertex), builds the request the SDK would send
(``aiplatform.PipelineJob`` with anonymous credentials; for KFP the run body kfp.Client posts)
and prints it as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from components.shared.config import Config, ConfigError

TARGETS = ("vertex", "kfp")
DEPLOY_TARGETS = ("local", "vertex")
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


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add ``submit`` to the CLI (wired by pipelines/cli.py)."""
    from pipelines.cli import add_config_arguments

    parser = sub.add_parser(
        "submit",
        help="submit the training pipeline to Vertex AI or a KFP cluster (--dry-run: validate offline)",
        description=__doc__.split("\n\n")[0],
    )
    parser.add_argument("--target", choices=TARGETS, required=True)
    parser.add_argument("--dry-run", action="store_true", help="validate offline and print the request")
    parser.add_argument("--wait", action="store_true", help="wait for the run to finish; exit 1 if it fails")
    parser.add_argument("--timeout", type=float, default=None, help="seconds to wait (kfp; default one day)")
    add_config_arguments(parser)
    where = parser.add_argument_group("where")
    where.add_argument("--project", help="vertex: Google Cloud project id")
    where.add_argument("--region", help="vertex: region, e.g. europe-west4")
    where.add_argument("--host", help="kfp: the KFP API endpoint, e.g. http://localhost:8080")
    where.add_argument("--namespace", help="kfp: the Kubernetes namespace of a multi-user KFP")
    what = parser.add_argument_group("what")
    what.add_argument("--image", help="pipeline image URI written into every task (required for vertex)")
    what.add_argument("--template", help="an already compiled YAML (path, or Artifact Registry https:// URL)")
    what.add_argument("--out", type=Path, default=Path("build"), help="where the compiled YAML goes")
    what.add_argument(
        "--data", required=True, help="training data reachable from the tasks (gs:// on vertex)"
    )
    what.add_argument("--registry", help="model registry URI (default: PIPELINE_ROOT/registry for gs://)")
    what.add_argument("--pipeline-root", help="where artifacts go: gs://... (required for vertex)")
    what.add_argument("--deploy-target", choices=DEPLOY_TARGETS, help="default: vertex on vertex, else local")
    what.add_argument("--serving-image", help="vertex deploy: serving container URI (vertex.serving_image)")
    what.add_argument("--endpoint", help="vertex deploy: endpoint display name (vertex.endpoint_name)")
    what.add_argument("--canary", type=int, help="vertex deploy: traffic %% for the new version (1-99)")
    how = parser.add_argument_group("how")
    how.add_argument("--service-account", help="identity the run executes as")
    how.add_argument(
        "--labels", action="append", default=[], metavar="K=V[,K=V]", help="vertex: run labels (repeatable)"
    )
    how.add_argument("--experiment", help="vertex: Vertex AI Experiments name; kfp: KFP experiment name")
    how.add_argument("--no-cache", action="store_true", help="run every task again (overrides compile-time)")
    parser.set_defaults(handler=cmd_submit)


def cmd_submit(args: argparse.Namespace) -> int:
    plan = build_plan(args)
    if args.dry_run:
        print(json.dumps(dry_run_request(plan), indent=2, sort_keys=True, default=str))
        return 0
    return submit_vertex(plan) if plan.target == "vertex" else submit_kfp(plan)


# ---------------------------------------------------------------------------------------- plan


def parse_labels(items: list[str]) -> dict[str, str]:
    from components.deploy.vertex import check_labels

    labels: dict[str, str] = {}
    for item in items:
        for pair in filter(None, (p.strip() for p in item.split(","))):
            key, sep, value = pair.partition("=")
            if not sep or not key:
                raise ConfigError(f"--labels {pair!r} must look like key=value")
            labels[key] = value
    try:
        return check_labels(labels)
    except ValueError as exc:
        raise ConfigError(f"--labels: {exc}") from exc


def _vertex_settings(config: Config, args: argparse.Namespace) -> Config:
    """Fill the config's ``vertex`` section from the flags (flags win) and check it can deploy."""
    from components.deploy.vertex import vertex_config

    vertex_config(config)  # ConfigError naming the missing section when this build has none
    data = config.to_dict()
    section = data["vertex"]
    section["project"] = args.project or section.get("project") or ""
    section["location"] = args.region or section.get("location") or ""
    for flag, key in (
        ("serving_image", "serving_image"),
        ("endpoint", "endpoint_name"),
        ("canary", "canary_percent"),
    ):
        if getattr(args, flag) is not None:
            section[key] = getattr(args, flag)
    if args.experiment:
        section["experiment"] = args.experiment
    updated = Config.from_dict(data)
    vertex_config(updated).require_deployable()
    return updated


def _check_uri(flag: str, value: str | None, target: str) -> None:
    if value and not value.startswith("gs://"):
        raise ConfigError(f"{flag} {value}: {target} tasks run in the cloud and read gs:// URIs only")


def build_plan(args: argparse.Namespace) -> Plan:
    """Validate the flags, load the config, compile or read the template, check the parameters."""
    from pipelines.cli import code_version, load_config, new_run_name
    from pipelines.training import PIPELINE_NAME

    target = args.target
    deploy_target = args.deploy_target or ("vertex" if target == "vertex" else "local")
    if target == "vertex":
        missing = [f for f, v in (("--project", args.project), ("--region", args.region)) if not v]
        if missing:
            raise ConfigError(f"--target vertex needs {' and '.join(missing)}")
        if not args.pipeline_root:
            raise ConfigError("--target vertex needs --pipeline-root gs://BUCKET/PATH")
        for flag, value in (("--pipeline-root", args.pipeline_root), ("--data", args.data)):
            _check_uri(flag, value, "Vertex AI")
        from components.deploy.vertex import EXPERIMENT_RULE, valid_experiment

        if args.experiment and not valid_experiment(args.experiment):
            raise ConfigError(f"--experiment {args.experiment!r}: {EXPERIMENT_RULE}")
        if not args.image and not args.template:
            raise ConfigError(
                "--target vertex needs --image REGISTRY/propensity-pipeline:TAG (or --template)"
            )
    else:
        if not args.host:
            raise ConfigError("--target kfp needs --host URL of the KFP API (e.g. http://localhost:8080)")
        if args.labels:
            raise ConfigError("--labels: KFP runs have no labels (a Vertex AI feature)")
        if args.template and args.template.startswith(("https://", "gs://")):
            raise ConfigError("--target kfp submits a local --template file (kfp.Client uploads it)")
    if deploy_target == "vertex" and target != "vertex":
        raise ConfigError("--deploy-target vertex is only available with --target vertex")
    registry = args.registry or _default_registry(args.pipeline_root)
    if target == "vertex" or deploy_target == "vertex":
        _check_uri("--registry", registry, "Vertex AI")
    user_labels = parse_labels(args.labels)

    config = load_config(args)
    if deploy_target == "vertex":
        config = _vertex_settings(config, args)
    run_name = new_run_name()
    version = code_version()
    parameters = {
        "data_uri": args.data,
        "registry_uri": registry,
        "config_json": config.to_json(),
        "families": config.tune.families,
        "deploy_target": deploy_target,
        "run_name": run_name,
        "code_version": version,
    }
    template, local_template = _template(args)
    check_parameters(local_template, parameters)
    if target == "kfp" and args.no_cache:
        template = str(local_template := without_caching(local_template))
    labels: dict[str, str] = {}
    if target == "vertex":
        from components.deploy.vertex import label_value

        labels = {
            "pipeline": PIPELINE_NAME,
            "run-name": label_value(run_name),
            "code-version": label_value(version),
            "deploy-target": deploy_target,
            **user_labels,
        }
    return Plan(
        target=target,
        template=template,
        local_template=local_template,
        parameters=parameters,
        run_name=run_name,
        job_id=f"{PIPELINE_NAME}-{run_name.removeprefix('run-')}",
        pipeline_root=args.pipeline_root,
        service_account=args.service_account,
        enable_caching=False if args.no_cache else None,
        experiment=args.experiment,
        labels=labels,
        project=args.project,
        region=args.region,
        host=args.host,
        namespace=args.namespace,
        wait=args.wait,
        timeout=args.timeout,
    )


def _default_registry(pipeline_root: str | None) -> str:
    if pipeline_root and pipeline_root.startswith("gs://"):
        return pipeline_root.rstrip("/") + "/registry"
    raise ConfigError("--registry is required (a gs:// URI, or a path every task can reach)")


def _template(args: argparse.Namespace) -> tuple[str, Path]:
    """(what to submit, a local spec to validate): the given template, or one compiled now.

    A remote template cannot be read offline: the spec compiled from this checkout stands in for
    it when checking the parameters (the template was compiled from the same code by CI).
    """
    from pipelines.compile import DEFAULT_IMAGE, compile_training, validate_pipeline_yaml

    template = args.template
    if template and not template.startswith(("https://", "gs://")):
        path = Path(template)
        if not path.is_file():
            raise ConfigError(f"--template {template}: no such file")
        validate_pipeline_yaml(path)
        if args.image:
            _check_images(path, args.image)
        return str(path.resolve()), path.resolve()
    if template:
        out = Path(tempfile.mkdtemp(prefix="propensity-spec-"))
        return template, compile_training(out, args.image or DEFAULT_IMAGE)
    path = compile_training(args.out, args.image or DEFAULT_IMAGE)
    return str(path.resolve()), path.resolve()


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


def _check_images(path: Path, image: str) -> None:
    spec = _spec(path)
    from google.protobuf import json_format

    executors = json_format.MessageToDict(spec.deployment_spec).get("executors", {})
    images = {e.get("container", {}).get("image") for e in executors.values()} - {None}
    if images != {image}:
        raise ConfigError(
            f"--template {path} was compiled with image(s) {sorted(images)}, not --image {image}"
        )


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


if __name__ == "__main__":  # pragma: no cover - use `propensity submit`
    sys.exit("use: propensity submit ... (pipelines/cli.py)")
