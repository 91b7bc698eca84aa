"""deploy_bundle on the local target: a retried deploy finishes its version instead of adding one."""

from __future__ import annotations

from pathlib import Path

from components.deploy.targets import deploy_bundle
from components.registry.local import LocalRegistry
from components.shared.config import Config
from tests.unit.registry.test_registry import bundle_dir, frame  # noqa: F401 - fixtures


def test_a_retried_deploy_reuses_the_version_its_run_registered(tmp_path: Path, bundle_dir: Path) -> None:  # noqa: F811
    config = Config.from_dict({"model_name": "tiny-propensity"})
    registry_dir = tmp_path / "registry"
    first = deploy_bundle(bundle_dir, {"passed": True}, config, str(registry_dir), "local", "run-1")
    retried = deploy_bundle(bundle_dir, {"passed": True}, config, str(registry_dir), "local", "run-1")
    assert first["version"] == retried["version"] == "v0001"
    registry = LocalRegistry(registry_dir)
    assert [v["version"] for v in registry.versions("tiny-propensity")] == ["v0001"]
    # another run with the same bundle is refused as identical to the champion (not a retry)
    other = deploy_bundle(bundle_dir, {"passed": True}, config, str(registry_dir), "local", "run-2")
    assert other["deployed"] is False and "byte-identical" in other["reasons"][0]
    assert [v["version"] for v in registry.versions("tiny-propensity")] == ["v0001"]
