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
import tempfile
from pathlib import Path

from components.shared.config import Config, ConfigError
from pipelines.cli.common import add_config_arguments, load_config
from pipelines.runs import code_version, new_run_name
from pipelines.submission import (
    Plan,
    check_parameters,
    dry_run_request,
    submit_kfp,
    submit_vertex,
    without_caching,
)

TARGETS = ("vertex", "kfp")
DEPLOY_TARGETS = ("local", "vertex")


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add ``submit`` to the CLI's subparsers."""
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
    how.add_argument(
        "--tracking-uri",
        help="where the pipeline tracks the run: 'vertex' (Vertex AI Experiments; the default on vertex),"
        " an MLflow server URI the tasks can reach (http://...), or 'none' (the default on kfp)",
    )
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
    tracking = _tracking_uri(args.tracking_uri, target)
    if target == "vertex" and args.experiment:  # the tracked run goes to the run's experiment too
        config = config.with_overrides([f"tracking.experiment={args.experiment}"])
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
        "tracking_uri": tracking,
        "runner": target,
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
        # on Vertex the job joins the config's experiment too, the one its tracked run goes to
        experiment=args.experiment or (config.vertex.experiment or None if target == "vertex" else None),
        labels=labels,
        project=args.project,
        region=args.region,
        host=args.host,
        namespace=args.namespace,
        wait=args.wait,
        timeout=args.timeout,
    )


def _tracking_uri(flag: str | None, target: str) -> str:
    """'vertex' by default on Vertex AI; nothing by default on KFP (a cluster has no store of ours)."""
    from components.tracking.track import MLFLOW_SCHEMES, VERTEX

    if flag is None:
        return VERTEX if target == "vertex" else ""
    if flag == "none":
        return ""
    if flag == VERTEX and target != "vertex":
        raise ConfigError("--tracking-uri vertex is only available with --target vertex")
    if flag != VERTEX and not flag.startswith(MLFLOW_SCHEMES):
        raise ConfigError(
            f"--tracking-uri {flag!r}: 'vertex', 'none' or an MLflow store URI (http://host:port)"
        )
    if flag.startswith("sqlite:"):
        raise ConfigError(f"--tracking-uri {flag!r}: a SQLite file is not shared by the cluster's tasks")
    return flag


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


def _check_images(path: Path, image: str) -> None:
    from pipelines.compile import validate_pipeline_yaml

    spec = validate_pipeline_yaml(path)
    from google.protobuf import json_format

    executors = json_format.MessageToDict(spec.deployment_spec).get("executors", {})
    images = {e.get("container", {}).get("image") for e in executors.values()} - {None}
    if images != {image}:
        raise ConfigError(
            f"--template {path} was compiled with image(s) {sorted(images)}, not --image {image}"
        )
