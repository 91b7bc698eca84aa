output "bucket_name" {
  description = "The bucket of pipeline-root/, registry/ and data/."
  value       = google_storage_bucket.pipeline.name
}

output "pipeline_root" {
  description = "gs:// pipeline root for Vertex AI runs (submit --pipeline-root, cloudbuild _PIPELINE_ROOT)."
  value       = local.pipeline_root
}

output "registry_uri" {
  description = "gs:// model registry (submit --registry, cloudbuild _REGISTRY_URI)."
  value       = local.registry_uri
}

output "data_uri" {
  description = "gs:// training data of scheduled and Cloud Build runs (cloudbuild _DATA_URI); upload the data here."
  value       = local.data_uri
}

output "docker_repository_url" {
  description = "Image prefix: push REGION-docker.pkg.dev/PROJECT/REPO/propensity-{pipeline,serving}:TAG."
  value       = local.docker_repository_url
}

output "kfp_repository_url" {
  description = "Host of the KFP template repository (upload target, RegistryClient host)."
  value       = local.kfp_repository_url
}

output "template_uri" {
  description = "Template the scheduled retraining runs (package/tag in the KFP repository)."
  value       = local.template_uri
}

output "pipeline_service_account" {
  description = "Email of the pipeline runner (submit --service-account, cloudbuild _SERVICE_ACCOUNT)."
  value       = google_service_account.pipeline.email
}

output "cloudbuild_service_account" {
  description = "Email of the Cloud Build account (the trigger's service account)."
  value       = google_service_account.cloudbuild.email
}

output "endpoint_service_account" {
  description = "Email of the account the Vertex AI endpoint's serving container runs as."
  value       = google_service_account.endpoint.email
}

output "scheduler_service_account" {
  description = "Email of the account Cloud Scheduler calls Vertex AI with."
  value       = google_service_account.scheduler.email
}

output "retraining_job" {
  description = "Cloud Scheduler job of the weekly retraining (null when disabled)."
  value       = var.enable_retraining_schedule ? google_cloud_scheduler_job.retraining[0].id : null
}

output "cloudbuild_trigger" {
  description = "Cloud Build trigger ID (null when github_owner/github_repository are not set)."
  value       = length(google_cloudbuild_trigger.main) > 0 ? google_cloudbuild_trigger.main[0].trigger_id : null
}

output "cloudbuild_substitutions" {
  description = "cloudbuild.yaml substitutions for this stack, e.g. for `gcloud builds triggers run --substitutions`."
  value       = local.cloudbuild_substitutions
}
