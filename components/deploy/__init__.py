"""Putting a gated bundle into use: register and promote it locally, or deploy it on Vertex AI."""
