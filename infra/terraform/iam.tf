# Four service accounts, each with only what its job needs. Grants are additive (*_iam_member), scoped
# to the bucket, repository or service account they concern wherever Google Cloud allows it; only
# Vertex AI and logging need project-level roles. No basic role (owner, editor, viewer) anywhere.

locals {
  pipeline_member   = "serviceAccount:${google_service_account.pipeline.email}"
  cloudbuild_member = "serviceAccount:${google_service_account.cloudbuild.email}"
  endpoint_member   = "serviceAccount:${google_service_account.endpoint.email}"
  scheduler_member  = "serviceAccount:${google_service_account.scheduler.email}"
}

# --- the pipeline runner: every task of every Vertex AI pipeline run runs as this account ----------
resource "google_service_account" "pipeline" {
  project      = var.project_id
  account_id   = "propensity-pipeline"
  display_name = "propensity pipeline runner"
  description  = "Runs the propensity Vertex AI pipelines: reads data, writes artifacts and the registry, deploys models."

  depends_on = [google_project_service.apis]
}

# Vertex AI: pipeline jobs, ML metadata, experiments, model uploads, endpoints and deployments.
resource "google_project_iam_member" "pipeline_aiplatform_user" {
  project = var.project_id
  role    = "roles/aiplatform.user"
  member  = local.pipeline_member
}

# Artifacts, data and registry: this bucket only.
resource "google_storage_bucket_iam_member" "pipeline_bucket_object_admin" {
  bucket = google_storage_bucket.pipeline.name
  role   = "roles/storage.objectAdmin"
  member = local.pipeline_member
}

resource "google_artifact_registry_repository_iam_member" "pipeline_docker_reader" {
  project    = var.project_id
  location   = var.region
  repository = google_artifact_registry_repository.docker.name
  role       = "roles/artifactregistry.reader"
  member     = local.pipeline_member
}

# A run created from a template in the KFP repository reads it as the pipeline's service account.
resource "google_artifact_registry_repository_iam_member" "pipeline_kfp_reader" {
  project    = var.project_id
  location   = var.region
  repository = google_artifact_registry_repository.kfp.name
  role       = "roles/artifactregistry.reader"
  member     = local.pipeline_member
}

# Jobs the pipeline starts (custom jobs, batch predictions) run as the runner itself.
resource "google_service_account_iam_member" "pipeline_acts_as_itself" {
  service_account_id = google_service_account.pipeline.name
  role               = "roles/iam.serviceAccountUser"
  member             = local.pipeline_member
}

# The deploy step deploys model versions that run as the endpoint account.
resource "google_service_account_iam_member" "pipeline_acts_as_endpoint" {
  service_account_id = google_service_account.endpoint.name
  role               = "roles/iam.serviceAccountUser"
  member             = local.pipeline_member
}

# --- Cloud Build: tests, builds and pushes images, uploads the template, submits the run -----------
resource "google_service_account" "cloudbuild" {
  project      = var.project_id
  account_id   = "propensity-cloudbuild"
  display_name = "propensity Cloud Build"
  description  = "Builds and pushes the propensity images, uploads the pipeline template, submits Vertex AI runs."

  depends_on = [google_project_service.apis]
}

resource "google_artifact_registry_repository_iam_member" "cloudbuild_docker_writer" {
  project    = var.project_id
  location   = var.region
  repository = google_artifact_registry_repository.docker.name
  role       = "roles/artifactregistry.writer"
  member     = local.cloudbuild_member
}

resource "google_artifact_registry_repository_iam_member" "cloudbuild_kfp_writer" {
  project    = var.project_id
  location   = var.region
  repository = google_artifact_registry_repository.kfp.name
  role       = "roles/artifactregistry.writer"
  member     = local.cloudbuild_member
}

# Creates the pipeline job and its experiment run.
resource "google_project_iam_member" "cloudbuild_aiplatform_user" {
  project = var.project_id
  role    = "roles/aiplatform.user"
  member  = local.cloudbuild_member
}

# A build that runs as a user-specified service account must be allowed to write its logs.
resource "google_project_iam_member" "cloudbuild_log_writer" {
  project = var.project_id
  role    = "roles/logging.logWriter"
  member  = local.cloudbuild_member
}

# The run it submits runs as the pipeline runner.
resource "google_service_account_iam_member" "cloudbuild_acts_as_pipeline" {
  service_account_id = google_service_account.pipeline.name
  role               = "roles/iam.serviceAccountUser"
  member             = local.cloudbuild_member
}

# The Vertex AI SDK checks, before submitting, that the pipeline root's bucket exists and belongs to
# the project (storage.buckets.get): bucket metadata and listing only, no object contents.
resource "google_storage_bucket_iam_member" "cloudbuild_bucket_reader" {
  bucket = google_storage_bucket.pipeline.name
  role   = "roles/storage.legacyBucketReader"
  member = local.cloudbuild_member
}

# --- the endpoint: the deployed serving container runs as this account ------------------------------
resource "google_service_account" "endpoint" {
  project      = var.project_id
  account_id   = "propensity-endpoint"
  display_name = "propensity endpoint"
  description  = "Runs the propensity serving container on the Vertex AI endpoint: reads model bundles."

  depends_on = [google_project_service.apis]
}

resource "google_storage_bucket_iam_member" "endpoint_bucket_object_viewer" {
  bucket = google_storage_bucket.pipeline.name
  role   = "roles/storage.objectViewer"
  member = local.endpoint_member
}

# The endpoint writes its prediction log as new objects under registry/<model>/prediction_log/
# (never overwriting one): create-only, and only there.
resource "google_storage_bucket_iam_member" "endpoint_prediction_log_creator" {
  bucket = google_storage_bucket.pipeline.name
  role   = "roles/storage.objectCreator"
  member = local.endpoint_member

  condition {
    title       = "prediction-log-only"
    description = "Only objects under registry/<model>/prediction_log/"
    expression  = "resource.name.extract(\"/objects/registry/{model}/prediction_log/\") != \"\""
  }
}

# --- Cloud Scheduler: starts the weekly retraining run ------------------------------------------------
resource "google_service_account" "scheduler" {
  project      = var.project_id
  account_id   = "propensity-scheduler"
  display_name = "propensity retraining scheduler"
  description  = "Calls Vertex AI pipelineJobs.create for the weekly propensity retraining run."

  depends_on = [google_project_service.apis]
}

resource "google_project_iam_member" "scheduler_aiplatform_user" {
  project = var.project_id
  role    = "roles/aiplatform.user"
  member  = local.scheduler_member
}

resource "google_service_account_iam_member" "scheduler_acts_as_pipeline" {
  service_account_id = google_service_account.pipeline.name
  role               = "roles/iam.serviceAccountUser"
  member             = local.scheduler_member
}

resource "google_artifact_registry_repository_iam_member" "scheduler_kfp_reader" {
  project    = var.project_id
  location   = var.region
  repository = google_artifact_registry_repository.kfp.name
  role       = "roles/artifactregistry.reader"
  member     = local.scheduler_member
}
