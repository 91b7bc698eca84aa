"""Benchmarks, measured and never asserted: pipeline runs, endpoint, batch scoring, containers, quality."""
