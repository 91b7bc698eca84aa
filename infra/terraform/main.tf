# propensity on Google Cloud: the APIs, the bucket (pipeline root, registry, data), Artifact Registry
# (images and pipeline templates), least-privilege service accounts, the Cloud Build trigger and the
# weekly retraining schedule. See README.md beside this file.

locals {
  bucket_name   = var.bucket_name != "" ? var.bucket_name : "${var.project_id}-propensity"
  pipeline_root = "gs://${local.bucket_name}/pipeline-root"
  registry_uri  = "gs://${local.bucket_name}/registry"
  data_uri      = var.training_data_uri != "" ? var.training_data_uri : "gs://${local.bucket_name}/data/marketing"

  docker_repository_url = "${var.region}-docker.pkg.dev/${var.project_id}/${var.docker_repository_id}"
  kfp_repository_url    = "https://${var.region}-kfp.pkg.dev/${var.project_id}/${var.kfp_repository_id}"
  template_uri          = "${local.kfp_repository_url}/${var.pipeline_name}/${var.pipeline_template_tag}"

  # The substitutions of cloudbuild.yaml, from this configuration (tests check the keys match).
  cloudbuild_substitutions = {
    _REGION          = var.region
    _AR_REPO         = var.docker_repository_id
    _KFP_REPO        = var.kfp_repository_id
    _PIPELINE_ROOT   = local.pipeline_root
    _DATA_URI        = local.data_uri
    _REGISTRY_URI    = local.registry_uri
    _SERVICE_ACCOUNT = google_service_account.pipeline.email
    _EXPERIMENT      = var.experiment_name
  }
}

resource "google_project_service" "apis" {
  for_each = toset([
    "aiplatform.googleapis.com",
    "artifactregistry.googleapis.com",
    "cloudbuild.googleapis.com",
    "cloudresourcemanager.googleapis.com",
    "cloudscheduler.googleapis.com",
    "iam.googleapis.com",
    "storage.googleapis.com",
  ])

  project = var.project_id
  service = each.value

  # Other workloads in the project may use these APIs: destroying this stack must not turn them off.
  disable_on_destroy = false
}
