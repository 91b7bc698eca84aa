"""The online endpoint: a raw ASGI app that serves a bundle under the Vertex AI container contract."""
