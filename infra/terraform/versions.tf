terraform {
  required_version = ">= 1.5, < 2.0"

  required_providers {
    google = {
      source = "hashicorp/google"
      # 7.x: every resource used here exists in it unchanged. 8.0 removed and changed resources,
      # none of which are used here, but the upgrade should be a reviewed change of this line.
      version = "~> 7.0"
    }
  }
}

provider "google" {
  project = var.project_id
  region  = var.region

  default_labels = var.labels
}
