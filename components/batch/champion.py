"""The champion a batch is scored with: the registry's alias resolved once to a pinned version.

Every later step of a batch run (scoring, business value, drift, the summary) uses this exact
version, even if the alias moves while the run is going.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from components.model.bundle import ModelBundle
from components.registry.uri import open_registry
from components.shared.errors import RegistryError


@dataclass(frozen=True)
class Champion:
    """The bundle a batch is scored with, pinned to a version (the alias may move mid-run)."""

    model_name: str
    version: str
    path: Path
    bundle: ModelBundle


def load_champion(registry_uri: str, model_name: str, ref: str = "champion") -> Champion:
    """Resolve ``ref`` (alias or version) to a version and load it; clear errors when there is none."""
    registry = open_registry(registry_uri)
    if model_name not in registry.models():
        known = ", ".join(registry.models()) or "none"
        raise RegistryError(
            f"registry {registry_uri} has no model {model_name!r} (models: {known}); "
            "train one first with `propensity run`"
        )
    if ref == "champion" and registry.champion(model_name) is None:
        raise RegistryError(
            f"model {model_name!r} in registry {registry_uri} has no champion: "
            "no version passed the quality gate yet"
        )
    path = registry.resolve(model_name, ref)
    return Champion(model_name, path.name, path, registry.load(model_name, path.name))
