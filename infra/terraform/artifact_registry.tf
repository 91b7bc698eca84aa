# The pipeline and serving images (tagged with the commit SHA by Cloud Build).
resource "google_artifact_registry_repository" "docker" {
  project       = var.project_id
  location      = var.region
  repository_id = var.docker_repository_id
  format        = "DOCKER"
  description   = "propensity pipeline and serving images"

  # Only untagged manifests are cleaned up: a tagged image may still back a deployed model version,
  # which Vertex AI pulls again whenever it starts a replica.
  cleanup_policy_dry_run = false
  cleanup_policies {
    id     = "delete-untagged"
    action = "DELETE"
    condition {
      tag_state  = "UNTAGGED"
      older_than = "604800s" # 7 days
    }
  }

  depends_on = [google_project_service.apis]
}

# Compiled pipeline templates (KFP format): package propensity-training, tags sha-<commit> and latest.
resource "google_artifact_registry_repository" "kfp" {
  project       = var.project_id
  location      = var.region
  repository_id = var.kfp_repository_id
  format        = "KFP"
  description   = "propensity compiled pipeline templates"

  depends_on = [google_project_service.apis]
}
