# Weekly retraining: Cloud Scheduler calls the Vertex AI REST API (projects.locations.pipelineJobs.create)
# with an OAuth token of the scheduler account. The run uses the template Cloud Build last tagged
# `latest` in the KFP repository (Vertex AI downloads the spec from templateUri), runs as the pipeline
# runner, and its quality gate decides whether the new model replaces the champion.
#
# Why not a Terraform-native Vertex AI schedule: the provider's google_vertex_ai_schedule was
# deprecated in 7.x as an accidental duplicate and removed in 8.0. Cloud Scheduler plus the stable
# pipelineJobs REST API works on every provider version.

locals {
  retraining_base_parameters = {
    data_uri      = local.data_uri
    registry_uri  = local.registry_uri
    deploy_target = "vertex"
  }
  retraining_parameters = merge(local.retraining_base_parameters, var.extra_pipeline_parameters)

  retraining_job = {
    displayName    = "${var.pipeline_name}-scheduled"
    templateUri    = local.template_uri
    serviceAccount = google_service_account.pipeline.email
    labels = merge(var.labels, {
      source = "cloud-scheduler"
    })
    runtimeConfig = {
      gcsOutputDirectory = local.pipeline_root
      parameterValues    = local.retraining_parameters
    }
  }
}

resource "google_cloud_scheduler_job" "retraining" {
  count = var.enable_retraining_schedule ? 1 : 0

  project     = var.project_id
  region      = var.region
  name        = "${var.pipeline_name}-weekly"
  description = "Weekly propensity retraining run on Vertex AI Pipelines (template tag ${var.pipeline_template_tag})."
  schedule    = var.retraining_schedule
  time_zone   = var.retraining_time_zone

  # A failed call (e.g. the API briefly unavailable) is retried up to three times.
  attempt_deadline = "120s"
  retry_config {
    retry_count          = 3
    min_backoff_duration = "60s"
    max_backoff_duration = "600s"
  }

  http_target {
    http_method = "POST"
    uri         = "https://${var.region}-aiplatform.googleapis.com/v1/projects/${var.project_id}/locations/${var.region}/pipelineJobs"
    headers = {
      "Content-Type" = "application/json"
    }
    body = base64encode(jsonencode(local.retraining_job))

    oauth_token {
      service_account_email = google_service_account.scheduler.email
      scope                 = "https://www.googleapis.com/auth/cloud-platform"
    }
  }

  depends_on = [
    google_project_service.apis,
    google_project_iam_member.scheduler_aiplatform_user,
    google_service_account_iam_member.scheduler_acts_as_pipeline,
  ]
}
