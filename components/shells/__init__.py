"""The KFP components: thin shells that read artifacts, call a stage, and write artifacts."""
