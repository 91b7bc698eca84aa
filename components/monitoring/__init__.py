"""Watching a model in use: the prediction log, and drift against the reference data."""
