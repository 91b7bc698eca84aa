# The Cloud Build trigger that runs cloudbuild.yaml on every push to the main branch, as the
# propensity-cloudbuild account, with the substitutions taken from this configuration. Made only when
# github_owner and github_repository are set; the Cloud Build GitHub app must already be installed on
# the repository (a one-time step in the console), and whoever applies this needs
# iam.serviceAccountUser on the build account.
resource "google_cloudbuild_trigger" "main" {
  count = var.github_owner != "" && var.github_repository != "" ? 1 : 0

  project     = var.project_id
  name        = "propensity-main"
  description = "propensity: test, build and push images, upload the template, run the pipeline on Vertex AI"
  filename    = "cloudbuild.yaml"

  service_account = google_service_account.cloudbuild.id
  substitutions   = local.cloudbuild_substitutions

  github {
    owner = var.github_owner
    name  = var.github_repository
    push {
      branch = var.trigger_branch_regex
    }
  }

  depends_on = [
    google_project_service.apis,
    google_project_iam_member.cloudbuild_log_writer,
  ]
}
