"""Helpers every subsystem may use: the typed config, user-facing errors, artifact files, reports, GCS I/O."""
