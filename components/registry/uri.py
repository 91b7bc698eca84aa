"""Open the model registry named by a URI: one place decides which backend a URI means."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from components.registry.local import CHAMPION, LocalRegistry
from components.shared.errors import RegistryError

if TYPE_CHECKING:
    from components.registry.gcs import GcsRegistry


def open_registry(uri: str) -> LocalRegistry | GcsRegistry:
    """A ``gs://bucket/prefix`` registry in GCS, or a local directory registry."""
    if not uri:
        raise RegistryError("registry_uri is empty: name a registry directory or a gs:// URI")
    if uri.startswith("gs://"):
        from components.registry.gcs import GcsRegistry  # lazy: pulls in google-cloud-storage

        try:
            return GcsRegistry(uri)
        except ValueError as exc:
            raise RegistryError(f"registry_uri {uri!r}: {exc}") from exc
    return LocalRegistry(Path(uri))


def version_dir(registry: LocalRegistry | GcsRegistry, model_name: str, ref: str = CHAMPION) -> Path:
    """A local directory with the files of a version (a verified download for a GCS registry).

    ``resolve`` returns a local path for a LocalRegistry but a gs:// URI for a GcsRegistry; code
    that needs the files (e.g. ``bundle.load_reference``) uses this instead.
    """
    if isinstance(registry, LocalRegistry):
        return registry.resolve(model_name, ref)
    return registry.local_copy(model_name, ref)
