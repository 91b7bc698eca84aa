"""Open the model registry named by a URI: one place decides which backend a URI means."""

from __future__ import annotations

from pathlib import Path

from components.errors import RegistryError
from components.registry import LocalRegistry


def open_registry(uri: str) -> LocalRegistry:
    """A local directory registry. ``gs://`` registries are not supported by this backend yet."""
    if not uri:
        raise RegistryError("registry_uri is empty: name a registry directory")
    if uri.startswith("gs://"):
        raise RegistryError(
            f"registry_uri {uri!r}: a gs:// registry is not supported yet; use a local directory"
        )
    return LocalRegistry(Path(uri))
