# One bucket, three prefixes: pipeline-root/ (every run's artifacts, expiring), registry/ (model
# bundles and the champion alias, kept) and data/ (training and scoring data, kept).
resource "google_storage_bucket" "pipeline" {
  name     = local.bucket_name
  project  = var.project_id
  location = var.region

  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = var.force_destroy_bucket

  # An overwritten alias file or bundle can be restored from its previous version.
  versioning {
    enabled = true
  }

  lifecycle_rule {
    condition {
      age            = var.artifact_retention_days
      matches_prefix = ["pipeline-root/"]
    }
    action {
      type = "Delete"
    }
  }

  lifecycle_rule {
    condition {
      days_since_noncurrent_time = var.noncurrent_version_retention_days
      with_state                 = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_project_service.apis]
}
