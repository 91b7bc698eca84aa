"""Batch scoring with the champion: find and read a batch, validate it, score it, its business value."""
