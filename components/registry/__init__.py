"""Versions and aliases of bundles, in a local directory or in GCS, opened from one URI."""
