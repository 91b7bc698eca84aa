variable "project_id" {
  description = "Google Cloud project that hosts everything (it must exist and have billing enabled)."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a project ID (6-30 lowercase letters, digits, hyphens), not a name or number."
  }
}

variable "region" {
  description = "Region of the bucket, the Artifact Registry repositories, Vertex AI and Cloud Scheduler."
  type        = string
  default     = "europe-west4"

  validation {
    condition     = can(regex("^[a-z]+-[a-z]+[0-9]+$", var.region))
    error_message = "region must be a region such as europe-west4 or us-central1, not a zone or multi-region."
  }
}

variable "bucket_name" {
  description = "Name of the bucket for the pipeline root, the model registry and data. Empty: PROJECT_ID-propensity."
  type        = string
  default     = ""

  validation {
    condition     = var.bucket_name == "" || can(regex("^[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]$", var.bucket_name))
    error_message = "bucket_name must be a valid bucket name (3-63 lowercase letters, digits, '.', '_', '-')."
  }
}

variable "artifact_retention_days" {
  description = "Days after which pipeline-run artifacts under pipeline-root/ are deleted (the registry and data are kept)."
  type        = number
  default     = 30

  validation {
    condition     = var.artifact_retention_days >= 1 && floor(var.artifact_retention_days) == var.artifact_retention_days
    error_message = "artifact_retention_days must be a whole number of days, at least 1."
  }
}

variable "noncurrent_version_retention_days" {
  description = "Days a replaced or deleted object version is kept (bucket versioning guards the registry against overwrites)."
  type        = number
  default     = 30

  validation {
    condition     = var.noncurrent_version_retention_days >= 1
    error_message = "noncurrent_version_retention_days must be at least 1."
  }
}

variable "force_destroy_bucket" {
  description = "Let `terraform destroy` delete the bucket with its objects (registry included). Keep false outside sandboxes."
  type        = bool
  default     = false
}

variable "docker_repository_id" {
  description = "ID of the Artifact Registry DOCKER repository of the pipeline and serving images (cloudbuild _AR_REPO)."
  type        = string
  default     = "propensity"

  validation {
    condition     = can(regex("^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$", var.docker_repository_id))
    error_message = "docker_repository_id must be lowercase letters, digits and hyphens, starting with a letter."
  }
}

variable "kfp_repository_id" {
  description = "ID of the Artifact Registry KFP repository of compiled pipeline templates (cloudbuild _KFP_REPO)."
  type        = string
  default     = "propensity-pipelines"

  validation {
    condition     = can(regex("^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$", var.kfp_repository_id))
    error_message = "kfp_repository_id must be lowercase letters, digits and hyphens, starting with a letter."
  }
}

variable "training_data_uri" {
  description = "Training data of the scheduled retraining: a gs:// file or folder of part files. Empty: gs://BUCKET/data/marketing."
  type        = string
  default     = ""

  validation {
    condition     = var.training_data_uri == "" || startswith(var.training_data_uri, "gs://")
    error_message = "training_data_uri must be a gs:// URI: Vertex AI tasks cannot read local paths."
  }
}

variable "enable_retraining_schedule" {
  description = "Create the Cloud Scheduler job that starts a training run from the latest template every week."
  type        = bool
  default     = true
}

variable "retraining_schedule" {
  description = "Cron expression of the scheduled retraining (default: Mondays 03:00)."
  type        = string
  default     = "0 3 * * 1"

  validation {
    condition     = length(split(" ", trimspace(var.retraining_schedule))) == 5
    error_message = "retraining_schedule must be a five-field cron expression, e.g. \"0 3 * * 1\"."
  }
}

variable "retraining_time_zone" {
  description = "IANA time zone of retraining_schedule."
  type        = string
  default     = "Etc/UTC"
}

variable "pipeline_template_tag" {
  description = "Tag of the template in the KFP repository that the scheduled run uses (Cloud Build moves `latest`)."
  type        = string
  default     = "latest"
}

variable "pipeline_name" {
  description = "Package name of the template in the KFP repository: the compiled pipeline's name."
  type        = string
  default     = "propensity-training"
}

variable "extra_pipeline_parameters" {
  description = "More parameter values for the scheduled run, merged over data_uri, registry_uri and deploy_target."
  type        = map(string)
  default     = {}
}

variable "github_owner" {
  description = "GitHub owner of the repository for the Cloud Build trigger. Empty: no trigger is made (run builds by hand)."
  type        = string
  default     = ""
}

variable "github_repository" {
  description = "GitHub repository name for the Cloud Build trigger (the Cloud Build GitHub app must be installed on it)."
  type        = string
  default     = ""
}

variable "trigger_branch_regex" {
  description = "Branches whose pushes start the Cloud Build trigger."
  type        = string
  default     = "^main$"
}

variable "experiment_name" {
  description = "Vertex AI Experiments experiment the Cloud Build runs are logged to (cloudbuild _EXPERIMENT)."
  type        = string
  default     = "propensity-training"
}

variable "labels" {
  description = "Labels put on every resource that takes labels."
  type        = map(string)
  default     = { app = "propensity" }
}
