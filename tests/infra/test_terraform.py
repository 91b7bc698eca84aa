"""infra/terraform parsed with python-hcl2: resources, least privilege, variables, outputs, and the
agreement with cloudbuild.yaml, the Vertex AI API and the compiled pipeline.

`terraform validate` needs the provider plugin, which `terraform init` downloads from the Terraform
registry (unreachable here); `terraform fmt -check` runs when a terraform binary is on PATH.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import hcl2
import pytest
import yaml
from google.cloud.aiplatform_v1.types import PipelineJob

from pipelines.training import PIPELINE_NAME, build_training_pipeline

REPO = Path(__file__).resolve().parents[2]
TF_DIR = REPO / "infra" / "terraform"
BASIC_ROLES = {"roles/owner", "roles/editor", "roles/viewer"}


def load(path: Path) -> dict[str, Any]:
    """One file as plain Python values (strings unquoted, no comment or block markers)."""
    with path.open() as handle:
        options_type = getattr(hcl2, "SerializationOptions", None)
        if options_type is None:  # python-hcl2 < 8 has no options and gives plain values already
            return hcl2.load(handle)
        options = options_type(with_comments=False, explicit_blocks=False, strip_string_quotes=True)
        return hcl2.load(handle, serialization_options=options)


def load_all() -> dict[str, list[dict[str, Any]]]:
    merged: dict[str, list[dict[str, Any]]] = {}
    files = sorted(TF_DIR.glob("*.tf"))
    assert files
    for path in files:
        for key, blocks in load(path).items():
            merged.setdefault(key, []).extend(blocks)
    return merged


TF = load_all()


def resources(kind: str) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for block in TF.get("resource", []):
        for name, body in block.get(kind, {}).items():
            found[name] = body
    return found


def all_resources() -> dict[str, dict[str, dict[str, Any]]]:
    kinds: dict[str, dict[str, dict[str, Any]]] = {}
    for block in TF.get("resource", []):
        for kind, named in block.items():
            kinds.setdefault(kind, {}).update(named)
    return kinds


def locals_() -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for block in TF.get("locals", []):
        merged.update(block)
    return merged


def variables() -> dict[str, dict[str, Any]]:
    return {name: body for block in TF.get("variable", []) for name, body in block.items()}


def default(name: str) -> Any:
    return variables()[name]["default"]


def first(block: Any) -> dict[str, Any]:
    """A nested block comes back as a one-element list."""
    return block[0] if isinstance(block, list) else block


def test_the_expected_resources_exist() -> None:
    kinds = all_resources()
    for kind in (
        "google_project_service",
        "google_storage_bucket",
        "google_artifact_registry_repository",
        "google_service_account",
        "google_cloud_scheduler_job",
        "google_cloudbuild_trigger",
    ):
        assert kind in kinds, kind
    formats = {body["format"] for body in resources("google_artifact_registry_repository").values()}
    assert formats == {"DOCKER", "KFP"}
    accounts = {body["account_id"] for body in resources("google_service_account").values()}
    assert accounts == {
        "propensity-pipeline",
        "propensity-cloudbuild",
        "propensity-endpoint",
        "propensity-scheduler",
    }


def test_the_needed_apis_are_enabled_and_stay_on_after_destroy() -> None:
    apis = resources("google_project_service")["apis"]
    enabled = set(re.findall(r"[a-z]+\.googleapis\.com", str(apis["for_each"])))
    assert {
        "aiplatform.googleapis.com",
        "artifactregistry.googleapis.com",
        "cloudbuild.googleapis.com",
        "storage.googleapis.com",
        "cloudscheduler.googleapis.com",
        "iam.googleapis.com",
    } <= enabled
    assert apis["disable_on_destroy"] is False


def test_the_bucket_is_private_uniform_versioned_and_expires_run_artifacts() -> None:
    bucket = resources("google_storage_bucket")["pipeline"]
    assert bucket["uniform_bucket_level_access"] is True
    assert bucket["public_access_prevention"] == "enforced"
    assert first(bucket["versioning"])["enabled"] is True
    rules = [first(rule) for rule in bucket["lifecycle_rule"]]
    expiring = [r for r in rules if "pipeline-root/" in str(first(r["condition"]).get("matches_prefix"))]
    assert expiring and first(expiring[0]["action"])["type"] == "Delete"
    # Nothing else expires by age: the registry and the data are kept.
    for rule in rules:
        condition = first(rule["condition"])
        assert "age" not in condition or condition.get("matches_prefix") == ["pipeline-root/"]
    assert locals_()["pipeline_root"].endswith("/pipeline-root"), "the prefix the lifecycle rule names"


def iam_grants() -> list[tuple[str, str, str, str]]:
    """(resource kind, role, member expression, scope expression) of every grant."""
    grants = []
    for kind, named in all_resources().items():
        if "_iam_" not in kind:
            continue
        for body in named.values():
            scope = str(
                body.get("bucket")
                or body.get("repository")
                or body.get("service_account_id")
                or body.get("project")
            )
            grants.append((kind, body["role"], str(body["member"]), scope))
    return grants


def test_no_basic_roles_and_no_authoritative_iam() -> None:
    text = " ".join(path.read_text() for path in TF_DIR.glob("*.tf"))
    for role in BASIC_ROLES:
        assert f'"{role}"' not in text, role
    for kind in all_resources():
        assert not kind.endswith(("_iam_policy", "_iam_binding")), f"{kind} would replace others' grants"
    assert all(role not in BASIC_ROLES for _, role, _, _ in iam_grants())


def test_project_level_roles_are_only_those_without_a_narrower_scope() -> None:
    project_roles = {role for kind, role, _, _ in iam_grants() if kind == "google_project_iam_member"}
    assert project_roles <= {"roles/aiplatform.user", "roles/logging.logWriter"}
    for kind, role, _, _ in iam_grants():
        if role.startswith("roles/storage."):
            assert kind == "google_storage_bucket_iam_member", f"{role} must be granted on the bucket only"


def grants_of(account: str) -> set[tuple[str, str]]:
    """(role, scope) of the grants to one service account (by its local name)."""
    return {
        (role, scope)
        for _, role, member, scope in iam_grants()
        if member == f"${{local.{account}_member}}" or f"google_service_account.{account}." in member
    }


def test_each_account_has_exactly_the_documented_least_privilege_roles() -> None:
    bucket = "${google_storage_bucket.pipeline.name}"
    docker = "${google_artifact_registry_repository.docker.name}"
    kfp = "${google_artifact_registry_repository.kfp.name}"
    runner = "${google_service_account.pipeline.name}"
    endpoint = "${google_service_account.endpoint.name}"
    project = "${var.project_id}"
    assert grants_of("pipeline") == {
        ("roles/aiplatform.user", project),
        ("roles/storage.objectAdmin", bucket),
        ("roles/artifactregistry.reader", docker),
        ("roles/artifactregistry.reader", kfp),
        ("roles/iam.serviceAccountUser", runner),
        ("roles/iam.serviceAccountUser", endpoint),
    }
    assert grants_of("cloudbuild") == {
        ("roles/artifactregistry.writer", docker),
        ("roles/artifactregistry.writer", kfp),
        ("roles/aiplatform.user", project),
        ("roles/logging.logWriter", project),
        ("roles/iam.serviceAccountUser", runner),
        ("roles/storage.legacyBucketReader", bucket),
    }
    assert grants_of("endpoint") == {
        ("roles/storage.objectViewer", bucket),
        ("roles/storage.objectCreator", bucket),
    }
    assert grants_of("scheduler") == {
        ("roles/aiplatform.user", project),
        ("roles/iam.serviceAccountUser", runner),
        ("roles/artifactregistry.reader", kfp),
    }


def test_the_endpoint_may_only_create_prediction_log_objects() -> None:
    text = (TF_DIR / "iam.tf").read_text()
    block = text[text.index('"endpoint_prediction_log_creator"') :].split("\n}\n", 1)[0]
    assert 'role   = "roles/storage.objectCreator"' in block  # create, never overwrite or delete
    assert 'extract(\\"/objects/registry/{model}/prediction_log/\\")' in block


def test_every_variable_has_a_description_and_a_type() -> None:
    assert variables()
    for name, body in variables().items():
        assert str(body.get("description", "")).strip(), f"variable {name} has no description"
        assert str(body.get("type", "")).strip(), f"variable {name} has no type"


def test_every_output_has_a_description_and_the_key_outputs_exist() -> None:
    outputs = {name: body for block in TF["output"] for name, body in block.items()}
    for name, body in outputs.items():
        assert str(body.get("description", "")).strip(), f"output {name} has no description"
    assert {
        "pipeline_root",
        "registry_uri",
        "docker_repository_url",
        "kfp_repository_url",
        "pipeline_service_account",
        "cloudbuild_substitutions",
    } <= set(outputs)


def test_the_readme_documents_every_variable_and_output() -> None:
    readme = (TF_DIR / "README.md").read_text()
    outputs = [name for block in TF["output"] for name in block]
    for name in [*variables(), *outputs]:
        assert f"| `{name}` |" in readme, f"{name} is missing from infra/terraform/README.md"


def test_the_google_provider_is_pinned() -> None:
    required = first(first(TF["terraform"])["required_providers"])
    google = required["google"]
    assert google["source"] == "hashicorp/google"
    assert re.fullmatch(r"~> \d+\.\d+(\.\d+)?|= ?\d+\.\d+\.\d+", google["version"]), google["version"]


def json_fields(message: Any) -> set[str]:
    return {field.json_name for field in message.pb().DESCRIPTOR.fields}


def test_the_scheduled_run_is_a_valid_pipeline_job_request_for_this_pipeline() -> None:
    job = first(resources("google_cloud_scheduler_job")["retraining"])
    target = first(job["http_target"])
    assert target["http_method"] == "POST"
    assert re.fullmatch(
        r"https://\$\{var\.region\}-aiplatform\.googleapis\.com/v1/projects/\$\{var\.project_id\}"
        r"/locations/\$\{var\.region\}/pipelineJobs",
        target["uri"],
    )
    assert first(target["oauth_token"])["scope"] == "https://www.googleapis.com/auth/cloud-platform"
    assert "google_service_account.scheduler.email" in first(target["oauth_token"])["service_account_email"]
    assert target["body"] == "${base64encode(jsonencode(local.retraining_job))}"

    request = locals_()["retraining_job"]
    assert set(request) <= json_fields(PipelineJob), set(request) - json_fields(PipelineJob)
    runtime = first(request["runtimeConfig"])
    assert set(runtime) <= json_fields(PipelineJob.RuntimeConfig)
    assert request["templateUri"] == "${local.template_uri}"
    assert "google_service_account.pipeline.email" in request["serviceAccount"]

    assert locals_()["retraining_parameters"].startswith("${merge(local.retraining_base_parameters, ")
    parameters = first(locals_()["retraining_base_parameters"])
    pipeline_inputs = set(build_training_pipeline("x:1").component_spec.inputs)
    assert {"data_uri", "registry_uri", "deploy_target"} <= set(parameters) <= pipeline_inputs
    assert parameters["deploy_target"] == "vertex"


def test_the_template_is_the_one_cloud_build_uploads() -> None:
    assert default("pipeline_name") == PIPELINE_NAME
    assert default("pipeline_template_tag") == "latest"
    upload = (REPO / "cloudbuild.yaml").read_text()
    assert "tags=sha-${SHORT_SHA},latest" in upload


def test_the_trigger_sets_exactly_the_substitutions_cloudbuild_yaml_defines() -> None:
    cloudbuild = yaml.safe_load((REPO / "cloudbuild.yaml").read_text())
    defined = cloudbuild["substitutions"]
    ours = locals_()["cloudbuild_substitutions"]
    assert set(ours) == set(defined)
    trigger = resources("google_cloudbuild_trigger")["main"]
    assert trigger["substitutions"] == "${local.cloudbuild_substitutions}"
    assert trigger["filename"] == "cloudbuild.yaml"
    assert trigger["service_account"] == "${google_service_account.cloudbuild.id}"
    # cloudbuild.yaml's defaults name what this configuration creates by default.
    assert defined["_REGION"] == default("region")
    assert defined["_AR_REPO"] == default("docker_repository_id")
    assert defined["_KFP_REPO"] == default("kfp_repository_id")
    assert defined["_EXPERIMENT"] == default("experiment_name")
    runner = resources("google_service_account")["pipeline"]["account_id"]
    assert defined["_SERVICE_ACCOUNT"] == f"{runner}@${{PROJECT_ID}}.iam.gserviceaccount.com"
    assert '"${var.project_id}-propensity"' in locals_()["bucket_name"]
    assert defined["_PIPELINE_ROOT"] == "gs://${PROJECT_ID}-propensity/pipeline-root"


def test_terraform_fmt_is_clean() -> None:
    terraform = shutil.which("terraform")
    if terraform is None:
        pytest.skip("no terraform binary on PATH")
    env = {k: v for k, v in os.environ.items() if k != "TF_CLI_CONFIG_FILE"}
    result = subprocess.run(
        [terraform, "fmt", "-check", "-diff", "-recursive", str(TF_DIR)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
