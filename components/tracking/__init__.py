"""Every run as one tracked run: params, metrics, tags and reports, in MLflow or Vertex AI Experiments."""
