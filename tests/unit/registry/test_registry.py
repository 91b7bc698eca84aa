"""Local registry: numbered immutable versions, aliases, atomicity, concurrency, rollback."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from components.model.bundle import ModelBundle, load_bundle, save_bundle
from components.model.families import make_estimator
from components.model.features import fit_transformer
from components.registry import local as R
from components.shared.config import DatasetSpec, FeatureConfig
from components.shared.errors import BundleError, IdenticalVersionError, RegistryError

REPO = Path(__file__).resolve().parents[3]
MODEL = "tiny-propensity"


def _frame(rows: int = 200) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(size=rows), "c": rng.choice(["x", "y"], rows)})
    frame["y"] = (frame["a"] + (frame["c"] == "x") + 0.3 * rng.normal(size=rows) > 0.5).astype(int)
    return frame


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return _frame()


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory: pytest.TempPathFactory, frame: pd.DataFrame) -> Path:
    spec = DatasetSpec(name="tiny", target="y", id_columns=[], date_columns=[], drop_columns=[])
    transformer = fit_transformer(frame, spec, FeatureConfig(derived="none"))
    model = make_estimator("logreg", {"C": 1.0}, seed=0).fit(transformer.transform(frame), frame["y"])
    bundle = ModelBundle(
        transformer=transformer,
        model=model,
        family="logreg",
        threshold=0.5,
        metrics={"roc_auc": 0.9, "f1": 0.7},
        params={"C": 1.0},
        data_fingerprint="abc",
        code_version="t",
    )
    directory = tmp_path_factory.mktemp("bundle") / "bundle"
    save_bundle(bundle, directory)
    return directory


def variant(bundle_dir: Path, directory: Path, threshold: float) -> Path:
    """The same model with another threshold: other answers, so a version of its own."""
    bundle = load_bundle(bundle_dir)
    bundle.threshold = threshold
    save_bundle(bundle, directory)
    return directory


@pytest.fixture(scope="module")
def other_bundle_dirs(tmp_path_factory: pytest.TempPathFactory, bundle_dir: Path) -> list[Path]:
    root = tmp_path_factory.mktemp("variants")
    return [variant(bundle_dir, root / f"t{t}", t) for t in (0.55, 0.6)]


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_register_numbers_versions_and_records_metadata(
    tmp_path: Path, bundle_dir: Path, other_bundle_dirs: list[Path]
) -> None:
    registry = R.LocalRegistry(tmp_path)
    assert registry.versions(MODEL) == [] and registry.champion(MODEL) is None

    v1 = registry.register(MODEL, bundle_dir, {"run_name": "r1", "version": "v9999", "metrics": {"f1": 0.1}})
    assert v1 == "v0001"
    meta = registry.versions(MODEL)[0]
    assert meta["version"] == "v0001" and meta["model_name"] == MODEL  # caller cannot override identity
    assert meta["run_name"] == "r1" and meta["metrics"] == {"f1": 0.1}  # but can add and annotate
    assert meta["family"] == "logreg" and meta["data_fingerprint"] == "abc" and meta["code_version"] == "t"
    assert len(meta["bundle_digest"]) == 64 and meta["created_at"].endswith("+00:00")

    registry.set_alias(MODEL, "champion", v1)
    assert registry.champion(MODEL) == "v0001"
    assert registry.register(MODEL, other_bundle_dirs[0], {}) == "v0002"
    assert [m["version"] for m in registry.versions(MODEL)] == ["v0001", "v0002"]
    assert registry.resolve(MODEL) == tmp_path / MODEL / "versions" / "v0001"
    assert registry.resolve(MODEL, "v0002").name == "v0002"
    assert registry.resolve(MODEL, "latest").name == "v0002"
    assert registry.models() == [MODEL]
    loaded = registry.load(MODEL)
    assert loaded.family == "logreg" and loaded.threshold == 0.5


def test_versions_are_immutable(tmp_path: Path, bundle_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    registry = R.LocalRegistry(tmp_path)
    registry.register(MODEL, bundle_dir, {"run_name": "first"})
    before = snapshot(tmp_path / MODEL / "versions" / "v0001")
    registry.register(MODEL, bundle_dir, {"run_name": "second"})
    assert snapshot(tmp_path / MODEL / "versions" / "v0001") == before

    # even if numbering went wrong, an existing version is never overwritten
    monkeypatch.setattr(R.LocalRegistry, "_version_numbers", staticmethod(lambda model_dir: []))
    with pytest.raises(RegistryError, match=r"v0001 .* already exists"):
        registry.register(MODEL, bundle_dir, {"run_name": "third"})
    monkeypatch.undo()
    assert snapshot(tmp_path / MODEL / "versions" / "v0001") == before
    assert not list((tmp_path / MODEL).glob(".tmp-*"))


def test_unknown_references_and_invalid_names_are_errors(tmp_path: Path, bundle_dir: Path) -> None:
    registry = R.LocalRegistry(tmp_path)
    with pytest.raises(RegistryError, match="unknown model 'nothing-here'"):
        registry.resolve("nothing-here")
    registry.register(MODEL, bundle_dir, {})
    with pytest.raises(RegistryError, match="unknown version 'v0042'"):
        registry.resolve(MODEL, "v0042")
    with pytest.raises(RegistryError, match="unknown alias 'champion'"):
        registry.resolve(MODEL)
    with pytest.raises(RegistryError, match="unknown version 'v0042'"):
        registry.set_alias(MODEL, "champion", "v0042")
    with pytest.raises(RegistryError, match=r"invalid version '\.\./v0001'"):
        registry.set_alias(MODEL, "champion", "../v0001")
    with pytest.raises(RegistryError, match="invalid alias 'v0001'"):
        registry.set_alias(MODEL, "v0001", "v0001")
    assert registry.aliases(MODEL) == {}
    for bad in ("Bad_Name", "../escape", "-dash", ""):
        with pytest.raises(RegistryError, match="invalid model name"):
            registry.register(bad, bundle_dir, {})


def test_a_damaged_bundle_is_not_registered(tmp_path: Path, bundle_dir: Path) -> None:
    damaged = tmp_path / "damaged"
    shutil.copytree(bundle_dir, damaged)
    (damaged / "model.skops").write_bytes(b"not a model")
    registry = R.LocalRegistry(tmp_path / "reg")
    with pytest.raises(BundleError, match=r"model\.skops"):
        registry.register(MODEL, damaged, {})
    assert registry.versions(MODEL) == []
    assert not list((tmp_path / "reg" / MODEL).glob(".tmp-*"))


def test_interrupted_register_leaves_versions_and_champion_intact(
    tmp_path: Path, bundle_dir: Path, other_bundle_dirs: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = R.LocalRegistry(tmp_path)
    registry.register(MODEL, bundle_dir, {})
    registry.set_alias(MODEL, "champion", "v0001")
    before = snapshot(tmp_path / MODEL / "versions")

    def failing_rename(src, dst):
        raise OSError("power cut")

    monkeypatch.setattr(R.os, "rename", failing_rename)
    with pytest.raises(OSError, match="power cut"):
        registry.register(MODEL, other_bundle_dirs[0], {})
    monkeypatch.undo()

    assert [m["version"] for m in registry.versions(MODEL)] == ["v0001"]
    assert registry.champion(MODEL) == "v0001"
    assert snapshot(tmp_path / MODEL / "versions") == before
    assert registry.load(MODEL).family == "logreg"
    assert registry.register(MODEL, other_bundle_dirs[0], {}) == "v0002"


def test_interrupted_alias_write_keeps_the_old_alias(
    tmp_path: Path, bundle_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = R.LocalRegistry(tmp_path)
    registry.register(MODEL, bundle_dir, {})
    registry.register(MODEL, bundle_dir, {})
    registry.set_alias(MODEL, "champion", "v0001")

    def failing_replace(src, dst):
        raise OSError("power cut")

    monkeypatch.setattr(R.os, "replace", failing_replace)
    with pytest.raises(OSError, match="power cut"):
        registry.set_alias(MODEL, "champion", "v0002")
    monkeypatch.undo()
    assert registry.champion(MODEL) == "v0001"
    assert not list((tmp_path / MODEL).glob(".aliases.json.*"))
    assert len(registry.history(MODEL)) == 1


def _run_python(code: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_crash_mid_register_leaves_a_tmp_dir_that_is_ignored_then_cleaned(
    tmp_path: Path, bundle_dir: Path, other_bundle_dirs: list[Path]
) -> None:
    registry = R.LocalRegistry(tmp_path)
    registry.register(MODEL, bundle_dir, {})
    registry.set_alias(MODEL, "champion", "v0001")
    crashed = _run_python(
        f"""
        import os
        from components.registry import local as R
        R.os.rename = lambda src, dst: os._exit(9)  # the process dies just before the rename
        R.LocalRegistry({str(tmp_path)!r}).register({MODEL!r}, {str(other_bundle_dirs[0])!r}, {{}})
        """
    )
    assert crashed.returncode == 9, crashed.stderr
    leftovers = list((tmp_path / MODEL).glob(".tmp-*"))
    assert len(leftovers) == 1 and (leftovers[0] / "metadata.json").is_file()

    assert [m["version"] for m in registry.versions(MODEL)] == ["v0001"]
    assert registry.load(MODEL, "champion").family == "logreg"
    assert registry.register(MODEL, other_bundle_dirs[0], {}) == "v0002"
    assert not list((tmp_path / MODEL).glob(".tmp-*"))


def test_concurrent_registrations_get_distinct_versions(tmp_path: Path, bundle_dir: Path) -> None:
    registry = R.LocalRegistry(tmp_path)
    with ThreadPoolExecutor(max_workers=4) as pool:
        from_threads = list(pool.map(lambda i: registry.register(MODEL, bundle_dir, {"i": i}), range(4)))
    code = f"""
        from components.registry.local import LocalRegistry
        print(LocalRegistry({str(tmp_path)!r}).register({MODEL!r}, {str(bundle_dir)!r}, {{}}))
        """
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(code)],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    from_processes = []
    for process in processes:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
        from_processes.append(out.strip())

    found = from_threads + from_processes
    assert len(set(found)) == 6
    assert sorted(found) == [f"v{i:04d}" for i in range(1, 7)]
    assert [m["version"] for m in registry.versions(MODEL)] == sorted(found)


def test_rollback_unwinds_champion_history(
    tmp_path: Path, bundle_dir: Path, other_bundle_dirs: list[Path]
) -> None:
    registry = R.LocalRegistry(tmp_path)
    for directory in [bundle_dir, *other_bundle_dirs]:
        version = registry.register(MODEL, directory, {})
        registry.set_alias(MODEL, "champion", version, actor="ci")
    assert registry.champion(MODEL) == "v0003"

    assert registry.rollback(MODEL) == "v0002"
    assert registry.rollback(MODEL) == "v0001"
    with pytest.raises(RegistryError, match="no previous champion"):
        registry.rollback(MODEL)
    assert registry.rollback(MODEL, "v0003", actor="oncall") == "v0003"
    assert registry.champion(MODEL) == "v0003"

    history = registry.history(MODEL)
    assert [(h["from"], h["to"], h["action"]) for h in history] == [
        (None, "v0001", "set"),
        ("v0001", "v0002", "set"),
        ("v0002", "v0003", "set"),
        ("v0003", "v0002", "rollback"),
        ("v0002", "v0001", "rollback"),
        ("v0001", "v0003", "rollback"),
    ]
    assert history[0]["who"] == "ci" and history[-1]["who"] == "oncall" and history[0]["at"]
    lines = (tmp_path / MODEL / "alias_history.jsonl").read_text().splitlines()
    assert len(lines) == 6 and json.loads(lines[-1])["to"] == "v0003"


def test_rollback_without_a_previous_champion_is_an_error(tmp_path: Path, bundle_dir: Path) -> None:
    registry = R.LocalRegistry(tmp_path)
    registry.register(MODEL, bundle_dir, {})
    registry.set_alias(MODEL, "champion", "v0001")
    with pytest.raises(RegistryError, match="no previous champion"):
        registry.rollback(MODEL)
    with pytest.raises(RegistryError, match="unknown model"):
        registry.rollback("other-model")


def test_reading_never_writes(tmp_path: Path, bundle_dir: Path) -> None:
    registry = R.LocalRegistry(tmp_path)
    registry.register(MODEL, bundle_dir, {})
    registry.set_alias(MODEL, "champion", "v0001")
    before = snapshot(tmp_path)
    registry.versions(MODEL)
    registry.champion(MODEL)
    registry.history(MODEL)
    registry.resolve(MODEL, "latest")
    load_bundle(registry.resolve(MODEL))
    registry.load(MODEL)
    registry.versions("never-registered")
    registry.set_alias(MODEL, "champion", "v0001")  # no-op move: nothing written
    assert snapshot(tmp_path) == before
    assert not (tmp_path / "never-registered").exists()


def test_a_history_line_cut_short_by_a_crash_is_skipped(tmp_path: Path, bundle_dir: Path) -> None:
    registry = R.LocalRegistry(tmp_path)
    registry.register(MODEL, bundle_dir, {})
    registry.register(MODEL, bundle_dir, {})
    registry.set_alias(MODEL, "champion", "v0001")
    with open(tmp_path / MODEL / "alias_history.jsonl", "a") as handle:
        handle.write('{"alias": "champ')  # crash mid-append
    registry.set_alias(MODEL, "champion", "v0002")
    assert [h["to"] for h in registry.history(MODEL)] == ["v0001", "v0002"]
    assert registry.rollback(MODEL) == "v0001"


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_registry_files_get_the_umask_modes_not_private_temp_modes(
    tmp_path: Path, umask: int, frame: pd.DataFrame
) -> None:
    """An endpoint or container under another uid must read what was registered: no 0700/0600 left
    from the staging temp folders and files (bundle saved, registered, aliased, all under ``umask``)."""
    previous = os.umask(umask)
    try:
        spec = DatasetSpec(name="tiny", target="y", id_columns=[], date_columns=[], drop_columns=[])
        transformer = fit_transformer(frame, spec, FeatureConfig(derived="none"))
        model = make_estimator("logreg", {"C": 1.0}, seed=0).fit(transformer.transform(frame), frame["y"])
        bundle = ModelBundle(transformer=transformer, model=model, family="logreg", threshold=0.5)
        save_bundle(bundle, tmp_path / "bundle")
        registry = R.LocalRegistry(tmp_path / "registry")
        registry.set_alias(MODEL, "champion", registry.register(MODEL, tmp_path / "bundle", {}))
    finally:
        os.umask(previous)
    paths = [tmp_path / "bundle", *(tmp_path / "bundle").rglob("*"), *(tmp_path / "registry").rglob("*")]
    modes = {p: p.stat().st_mode & 0o777 for p in paths}
    wrong = {
        str(p.relative_to(tmp_path)): oct(mode)
        for p, mode in modes.items()
        if mode != (0o777 & ~umask if p.is_dir() else 0o666 & ~umask)
    }
    assert wrong == {}
    assert any(p.name == "metadata.json" for p in modes) and any(p.name == "v0001" for p in modes)


def test_a_version_identical_to_the_champion_is_refused(
    tmp_path: Path, bundle_dir: Path, other_bundle_dirs: list[Path]
) -> None:
    """The same model files, threshold and temperature as the champion: refused, nothing written,
    the alias stays; a bundle saved again later (new bundle.json, same model files) is the same model."""
    registry = R.LocalRegistry(tmp_path)
    registry.set_alias(MODEL, "champion", registry.register(MODEL, bundle_dir, {}))
    saved_again = tmp_path / "saved-again"
    bundle = load_bundle(bundle_dir)
    bundle.created_at = "2030-01-01T00:00:00+00:00"
    save_bundle(bundle, saved_again)
    assert (saved_again / "bundle.json").read_bytes() != (bundle_dir / "bundle.json").read_bytes()
    before = snapshot(tmp_path / MODEL)
    for directory in (bundle_dir, saved_again):
        with pytest.raises(IdenticalVersionError, match=r"byte-identical to champion v0001's") as info:
            registry.register(MODEL, directory, {})
        assert "transformer.skops, model.skops" in str(info.value)
        assert "champion alias stays on v0001" in str(info.value)
    assert snapshot(tmp_path / MODEL) == before  # no version, no temp folder, alias unchanged
    assert registry.champion(MODEL) == "v0001"

    # another threshold serves other answers: a version of its own
    assert registry.register(MODEL, other_bundle_dirs[0], {}) == "v0002"


def test_saving_a_bundle_twice_gives_byte_identical_model_files(tmp_path: Path, bundle_dir: Path) -> None:
    """skops files name objects by memory address and zip entries by time; both are fixed when saved."""
    for name in ("a", "b"):
        bundle = load_bundle(bundle_dir)
        save_bundle(bundle, tmp_path / name)
    for file in ("transformer.skops", "model.skops"):
        assert (
            (tmp_path / "a" / file).read_bytes()
            == (tmp_path / "b" / file).read_bytes()
            == (bundle_dir / file).read_bytes()
        )
