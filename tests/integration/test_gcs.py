"""GCS paths against a real GCS JSON API: gcp-storage-emulator on loopback (see tests/gcs_emulator.py).

Every test talks HTTP to the emulator through the test proxy, which adds what the emulator lacks
(generation preconditions, as GCS enforces them) and injects transient failures on demand.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from google.api_core import exceptions
from google.api_core.retry import Retry

from components.data.reading import read_table
from components.deploy.targets import deploy_bundle
from components.deploy.vertex import VertexConfig
from components.model.bundle import load_bundle, save_bundle
from components.registry.gcs import GcsRegistry
from components.registry.local import LocalRegistry
from components.registry.uri import open_registry, version_dir
from components.shared import gcs as storage
from components.shared.config import Config
from components.shared.errors import BundleError, DataValidationError, IdenticalVersionError, RegistryError
from tests.conftest import FAST_OVERRIDES, TrainedRegistry
from tests.gcs_emulator import GcsProxy, anonymous_client, running_emulator, running_proxy
from tests.vertex_api import VertexApi

pytestmark = pytest.mark.integration
MODEL = "marketing-propensity"


@pytest.fixture(scope="module")
def proxy() -> Iterator[GcsProxy]:
    with running_emulator() as emulator, running_proxy(emulator.url) as proxy:
        yield proxy


@dataclass
class Gcs:
    proxy: GcsProxy
    client: Any
    bucket: str

    def uri(self, *parts: str) -> str:
        return storage.join(f"gs://{self.bucket}", *parts)

    def registry(self, cache: Path, prefix: str = "registry") -> GcsRegistry:
        """A registry with its own client (as another process would have)."""
        return GcsRegistry(self.uri(prefix), client=anonymous_client(), cache_dir=cache)


@pytest.fixture
def gcs(proxy: GcsProxy, monkeypatch: pytest.MonkeyPatch) -> Gcs:
    proxy.reset()
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", proxy.url)
    client = anonymous_client()
    bucket = f"test-{uuid.uuid4().hex[:12]}"
    client.create_bucket(bucket)
    return Gcs(proxy, client, bucket)


def bundle_dir(trained: TrainedRegistry) -> Path:
    return LocalRegistry(trained.root).resolve(trained.model_name)


def variants(trained: TrainedRegistry, folder: Path, count: int) -> list[Path]:
    """The trained bundle, then copies with other thresholds (other answers: versions of their own)."""
    made = [bundle_dir(trained)]
    for step in range(1, count):
        bundle = load_bundle(bundle_dir(trained))
        bundle.threshold = min(0.99, bundle.threshold + 0.01 * step)
        save_bundle(bundle, folder / f"variant-{step}")
        made.append(folder / f"variant-{step}")
    return made


def scores(bundle: Any, frame: pd.DataFrame) -> np.ndarray:
    return np.asarray(bundle.predict(frame.drop(columns=["Response"]).head(50))[1])


# ------------------------------------------------------------------------------------- datasets


def test_read_table_from_a_gcs_file_and_a_folder_of_parts(gcs: Gcs, tmp_path: Path) -> None:
    from components.data.synthetic import generate_marketing

    frame = generate_marketing(rows=300, seed=3)
    local = tmp_path / "customers.csv"
    frame.to_csv(local, index=False)
    storage.write_bytes(gcs.uri("data/customers.csv"), local.read_bytes(), gcs.client)
    parts = [frame.iloc[0:100], frame.iloc[100:200], frame.iloc[200:]]
    for name, part in zip(["p1", "p10", "p2"], parts, strict=True):
        path = tmp_path / f"{name}.parquet"
        part.to_parquet(path, index=False)
        storage.write_bytes(gcs.uri(f"data/parts/{name}.parquet"), path.read_bytes(), gcs.client)
    storage.write_bytes(gcs.uri("data/parts/_SUCCESS"), b"", gcs.client)  # not data: skipped
    storage.write_bytes(gcs.uri("data/parts/old/stale.csv"), b"a,b\n1,2\n", gcs.client)  # nested: skipped

    # no client passed: ingest makes its own, which finds the emulator via STORAGE_EMULATOR_HOST
    single, sources = read_table(gcs.uri("data/customers.csv"))
    pd.testing.assert_frame_equal(single, pd.read_csv(local))
    assert sources == [gcs.uri("data/customers.csv")]

    merged, sources = read_table(gcs.uri("data/parts"))
    assert sources == [gcs.uri(f"data/parts/{n}.parquet") for n in ("p1", "p2", "p10")]  # natural order
    expected = pd.concat([parts[0], parts[2], parts[1]], ignore_index=True)
    pd.testing.assert_frame_equal(merged, expected)

    with pytest.raises(DataValidationError, match="does not exist"):
        read_table(gcs.uri("data/nothing-here.csv"))


def test_labels_from_a_gcs_prefix_join_the_prediction_log(
    gcs: Gcs, trained_registry: TrainedRegistry, tmp_path: Path
) -> None:
    """``--labels gs://bucket/outcomes/``: every part read through the JSON API, joined by id."""
    from components.batch.champion import load_champion
    from components.batch.labels import join_labels
    from components.batch.scoring import run_batch_scoring
    from components.data.synthetic import generate_marketing

    batch = generate_marketing(rows=60, seed=21)
    batch.drop(columns=["Response"]).to_csv(tmp_path / "batch.csv", index=False)
    champion = load_champion(str(trained_registry.root), MODEL)
    run_batch_scoring(str(tmp_path / "batch.csv"), champion, tmp_path / "out", log_dir=tmp_path / "log")
    for name, part in (("p1.csv", batch.iloc[:30]), ("p2.csv", batch.iloc[30:50])):
        storage.write_bytes(
            gcs.uri("outcomes", name), part[["ID", "Response"]].to_csv(index=False).encode(), gcs.client
        )
    joined = join_labels(gcs.uri("outcomes") + "/", tmp_path / "log", champion.bundle, max_rows=1000, seed=0)
    assert joined.label_rows == joined.joined == 50 and joined.unmatched == 0
    assert sorted(joined.labelled["ID"]) == sorted(batch["ID"].iloc[:50])
    assert (
        joined.labelled.set_index("ID")["Response"].to_dict()
        == batch.set_index("ID")["Response"].iloc[:50].to_dict()
    )


# ------------------------------------------------------------------------------------- registry


def test_register_load_and_refuse_tampered_bundles(
    gcs: Gcs, trained_registry: TrainedRegistry, tmp_path: Path
) -> None:
    source = bundle_dir(trained_registry)
    registry = open_registry(gcs.uri("registry"))
    assert isinstance(registry, GcsRegistry)
    registry = gcs.registry(tmp_path / "cache")
    version = registry.register(MODEL, source, {"run_name": "run-1"})
    registry.set_alias(MODEL, "champion", version)
    assert version == "v0001" and registry.champion(MODEL) == "v0001"
    assert registry.resolve(MODEL) == gcs.uri("registry", MODEL, "versions", "v0001")
    (record,) = registry.versions(MODEL)
    assert record["version"] == "v0001" and record["run_name"] == "run-1"

    loaded = registry.load(MODEL)
    expected = scores(load_bundle(source), trained_registry.data)
    np.testing.assert_allclose(scores(loaded, trained_registry.data), expected)
    assert version_dir(registry, MODEL) == registry.local_copy(MODEL)

    # a modified object is refused by checksum, naming the gs:// location
    tampered = gcs.uri("registry", MODEL, "versions", "v0001", "transformer.skops")
    storage.write_bytes(tampered, storage.read_bytes(tampered, gcs.client) + b"x", gcs.client)
    with pytest.raises(BundleError, match=r"transformer\.skops in gs://.*does not match its checksum"):
        gcs.registry(tmp_path / "fresh-cache").load(MODEL)
    # the verified local copy made before the tampering still loads (versions are immutable)
    np.testing.assert_allclose(scores(registry.load(MODEL), trained_registry.data), expected)

    # manifest and file rewritten consistently: caught by the digest recorded at registration
    manifest_uri = gcs.uri("registry", MODEL, "versions", "v0001", "manifest.json")
    manifest = json.loads(storage.read_bytes(manifest_uri, gcs.client))
    import hashlib

    data = storage.read_bytes(tampered, gcs.client)
    manifest["files"]["transformer.skops"] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    storage.write_bytes(manifest_uri, json.dumps(manifest).encode(), gcs.client)
    with pytest.raises(BundleError, match="digest recorded at registration"):
        gcs.registry(tmp_path / "third-cache").load(MODEL)


def test_incomplete_versions_are_ignored(gcs: Gcs, trained_registry: TrainedRegistry, tmp_path: Path) -> None:
    registry = gcs.registry(tmp_path / "cache")
    registry.register(MODEL, bundle_dir(trained_registry))
    # a writer that died after claiming v0002 and uploading some files, before metadata.json
    storage.write_bytes(gcs.uri("registry", MODEL, "versions", "v0002", ".claim"), b"{}", gcs.client)
    storage.write_bytes(gcs.uri("registry", MODEL, "versions", "v0002", "bundle.json"), b"{}", gcs.client)
    assert [v["version"] for v in registry.versions(MODEL)] == ["v0001"]
    assert registry.resolve(MODEL, "latest").endswith("/v0001")
    with pytest.raises(RegistryError, match="unknown version 'v0002'"):
        registry.set_alias(MODEL, "champion", "v0002")
    assert registry.register(MODEL, bundle_dir(trained_registry)) == "v0003"  # never reuses v0002


def test_same_behaviour_as_the_local_registry(
    gcs: Gcs, trained_registry: TrainedRegistry, tmp_path: Path
) -> None:
    sources = variants(trained_registry, tmp_path, 3)
    local, remote = LocalRegistry(tmp_path / "local"), gcs.registry(tmp_path / "cache")
    seen: dict[str, list[Any]] = {"local": [], "gcs": []}
    for name, registry in (("local", local), ("gcs", remote)):
        log = seen[name]
        for source in sources:
            version = registry.register(MODEL, source)
            registry.set_alias(MODEL, "champion", version)
        log.append(registry.rollback(MODEL))
        log.append(registry.rollback(MODEL))
        registry.set_alias(MODEL, "champion", "v0003")
        log.append(registry.rollback(MODEL, "v0002"))
        registry.set_alias(MODEL, "staging", "v0001")
        log.append(registry.aliases(MODEL))
        log.append([(h["alias"], h["from"], h["to"], h["action"]) for h in registry.history(MODEL)])
        log.append([v["version"] for v in registry.versions(MODEL)])
        log.append(registry.models())
        registry.set_alias(MODEL, "champion", "v0001")
        before = (registry.versions(MODEL), registry.aliases(MODEL), len(registry.history(MODEL)))
        with pytest.raises(IdenticalVersionError, match="byte-identical to champion v0001's") as caught:
            registry.register(MODEL, sources[0])  # the champion's model again: refused, nothing moves
        log.append(str(caught.value))
        assert (registry.versions(MODEL), registry.aliases(MODEL), len(registry.history(MODEL))) == before
        for bad in (
            lambda r=registry: r.resolve("unknown-model"),
            lambda r=registry: r.resolve(MODEL, "v0042"),
            lambda r=registry: r.resolve(MODEL, "nope"),
            lambda r=registry: r.set_alias(MODEL, "v0001", "v0001"),
            lambda r=registry: r.set_alias(MODEL, "Bad Alias", "v0001"),
        ):
            with pytest.raises(RegistryError) as caught:
                bad()
            log.append(str(caught.value).replace(str(tmp_path / "local"), "ROOT").replace(remote.uri, "ROOT"))
    assert seen["gcs"] == seen["local"]
    assert seen["gcs"][0:3] == ["v0002", "v0001", "v0002"]


# ------------------------------------------------------------------------------- serving bundle


def test_localize_loads_the_serving_bundle_from_aip_storage_uri(
    gcs: Gcs, trained_registry: TrainedRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = bundle_dir(trained_registry)
    uploaded = storage.upload_dir(source, gcs.uri("models/churn/1"), gcs.client, last=["manifest.json"])
    assert uploaded[-1] == "manifest.json"
    monkeypatch.setenv("AIP_STORAGE_URI", gcs.uri("models/churn/1"))

    import os

    local = storage.localize(os.environ["AIP_STORAGE_URI"], cache_dir=tmp_path / "cache")
    assert local.is_dir() and (local / "manifest.json").is_file()
    expected = scores(load_bundle(source), trained_registry.data)
    np.testing.assert_allclose(scores(load_bundle(local), trained_registry.data), expected)
    # a second start replaces the copy (no stale files survive)
    (local / "stale.txt").write_text("left over")
    assert storage.localize(gcs.uri("models/churn/1/"), cache_dir=tmp_path / "cache") == local
    assert not (local / "stale.txt").exists()

    one = storage.localize(gcs.uri("models/churn/1/bundle.json"), cache_dir=tmp_path / "cache2")
    assert json.loads(one.read_text()) == json.loads((source / "bundle.json").read_text())
    assert storage.localize(str(source)) == source  # a local path is used as is
    with pytest.raises(FileNotFoundError, match="no object or prefix"):
        storage.localize(gcs.uri("models/missing"), cache_dir=tmp_path / "cache3")


# ------------------------------------------------------------------------------ transient errors


def test_transient_errors_are_retried_and_others_are_not(
    gcs: Gcs, trained_registry: TrainedRegistry, tmp_path: Path
) -> None:
    uri = gcs.uri("data/x.json")
    proxy = gcs.proxy
    proxy.fail("POST", "/upload/", status=None)  # connection dropped without an answer
    proxy.fail("POST", "/upload/", status=503)
    storage.write_bytes(uri, b"payload", gcs.client)
    assert proxy.count("POST", "/upload/") == 3

    proxy.fail("GET", "/download/", status=503, times=2)
    proxy.fail("GET", "/download/", status=429)
    assert storage.read_bytes(uri, gcs.client) == b"payload"
    assert proxy.count("GET", "/download/") == 4

    proxy.fail("GET", "/o?", status=500)  # listing
    assert storage.list_names(gcs.uri("data"), gcs.client) == ["x.json"]

    proxy.fail("GET", "/download/", status=403)
    before = proxy.count("GET", "/download/")
    with pytest.raises(exceptions.Forbidden):
        storage.read_bytes(uri, gcs.client)
    assert proxy.count("GET", "/download/") == before + 1  # not retried

    proxy.fail("GET", "/download/", status=503, times=1000)
    with pytest.raises(exceptions.RetryError):
        storage.read_bytes(
            uri, gcs.client, retry=Retry(predicate=storage.is_transient, initial=0.01, timeout=0.5)
        )
    proxy.reset()

    # a whole registry round trip and an ingest read through flaky downloads
    registry = gcs.registry(tmp_path / "cache")
    version = registry.register(MODEL, bundle_dir(trained_registry))
    proxy.fail("GET", "/download/", status=503, times=3)
    registry.load(MODEL, version)
    trained_registry.data.head(100).to_csv(tmp_path / "d.csv", index=False)
    storage.write_bytes(gcs.uri("d.csv"), (tmp_path / "d.csv").read_bytes(), gcs.client)
    proxy.fail("GET", "/download/", status=502, times=2)
    assert len(read_table(gcs.uri("d.csv"))[0]) == 100


# ---------------------------------------------------------------------------------- concurrency


def test_concurrent_alias_moves_and_registrations_lose_nothing(
    gcs: Gcs, trained_registry: TrainedRegistry, tmp_path: Path
) -> None:
    source = bundle_dir(trained_registry)
    first = gcs.registry(tmp_path / "c0")

    versions: list[str] = []
    errors: list[BaseException] = []

    def register() -> None:
        try:
            versions.append(gcs.registry(tmp_path / "c1").register(MODEL, source))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=register) for _ in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert not errors and sorted(versions) == ["v0001", "v0002", "v0003", "v0004"]
    assert [v["version"] for v in first.versions(MODEL)] == sorted(versions)

    def move(alias: str, version: str) -> None:
        try:
            gcs.registry(tmp_path / "c2").set_alias(MODEL, alias, version)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=move, args=(f"team-{i}", versions[i % 4])) for i in range(8)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert not errors
    assert first.aliases(MODEL) == {f"team-{i}": versions[i % 4] for i in range(8)}
    assert len(first.history(MODEL)) == 8

    # deterministic race: another writer moves an alias between our read and our write
    gcs.proxy.reset()
    gcs.proxy.before_once(
        lambda method, path: method == "POST" and "ifGenerationMatch=" in path,
        lambda: gcs.registry(tmp_path / "c3").set_alias(MODEL, "champion", "v0002"),
    )
    first.set_alias(MODEL, "staging", "v0003")
    assert gcs.proxy.precondition_failures >= 1  # our first write was refused, then redone
    aliases = first.aliases(MODEL)
    assert aliases["champion"] == "v0002" and aliases["staging"] == "v0003"


# --------------------------------------------------------------------------- deploy (vertex target)


def test_vertex_deploy_registers_in_gcs_then_moves_the_alias(
    gcs: Gcs,
    trained_registry: TrainedRegistry,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    vertex_api: VertexApi,
) -> None:
    """deploy_bundle with the real aiplatform SDK (REST) on the loopback Vertex API, registry in GCS."""
    from google.cloud import aiplatform

    monkeypatch.setattr(storage, "default_cache_dir", lambda: tmp_path / "cache")
    settings = VertexConfig(
        project="proj", location="europe-west4", serving_image="serving:1", experiment="propensity"
    )
    config = Config.from_dict({"model_name": MODEL})
    registry_uri = gcs.uri("registry")

    sources = variants(trained_registry, tmp_path, 3)

    def deploy(run: str, source: Path, **changes: Any) -> dict[str, Any]:
        chosen = VertexConfig(**{**settings.__dict__, **changes})
        return deploy_bundle(
            source,
            {"passed": True},
            config,
            registry_uri,
            "vertex",
            run,
            vertex_sdk=aiplatform,
            vertex_settings=chosen,
        )

    record = deploy("run-20260101-000000-000001", sources[0])
    registry = GcsRegistry(registry_uri, client=gcs.client, cache_dir=tmp_path / "cache")
    assert record["version"] == "v0001" and registry.champion(MODEL) == "v0001"
    (upload,) = vertex_api.calls("upload")
    assert upload.body["model"]["artifactUri"] == record["version_uri"]
    assert record["version_uri"] == gcs.uri("registry", MODEL, "versions", "v0001")
    assert upload.body["model"]["labels"]["run-id"] == "run-20260101-000000-000001"
    assert upload.body["model"]["labels"]["registry-version"] == "v0001"
    log_uri = gcs.uri("registry", MODEL, "prediction_log")  # where the endpoint logs, read by drift
    assert upload.body["model"]["containerSpec"]["env"] == [{"name": "PREDICTION_LOG_DIR", "value": log_uri}]
    assert record["prediction_log_uri"] == log_uri
    assert record["vertex"]["traffic_split"] == {record["vertex"]["deployed_model_id"]: 100}
    assert record["vertex_model_uri"].endswith(record["vertex"]["versioned_model_name"])
    # the run is tracked by the summary step; the deploy step logs no Experiments run of its own
    assert not vertex_api.calls("contexts") and "experiment_run" not in record

    canary = deploy("run-20260101-000000-000002", sources[1], canary_percent=10)
    assert canary["alias"] == "challenger" and canary["vertex"]["canary_percent"] == 10
    assert registry.champion(MODEL) == "v0001" and registry.aliases(MODEL)["challenger"] == "v0002"
    assert sorted(canary["vertex"]["traffic_split"].values()) == [10, 90]

    # Vertex refuses the deployment: the version is registered, but neither champion moves
    vertex_api.fail("POST", ":deployModel", code=400)
    with pytest.raises(exceptions.BadRequest):
        deploy("run-20260101-000000-000003", sources[2])
    assert registry.champion(MODEL) == "v0001" and vertex_api.aliases(MODEL)["champion"] == "1"
    assert [v["version"] for v in registry.versions(MODEL)][-1] == "v0003"

    # the retried task finishes that deployment: same registry version, no second upload
    uploads = len(vertex_api.calls("upload"))
    retried = deploy("run-20260101-000000-000003", sources[2])
    assert retried["version"] == "v0003" and [v["version"] for v in registry.versions(MODEL)][-1] == "v0003"
    assert len(vertex_api.calls("upload")) == uploads and retried["vertex"]["reused_upload"]
    assert registry.champion(MODEL) == "v0003" and vertex_api.aliases(MODEL)["champion"] == "3"

    # the champion's own model again (another run): not registered, nothing uploaded, no alias moved
    again = deploy("run-20260101-000000-000004", sources[2])
    assert again["deployed"] is False and again["version"] is None
    assert "byte-identical to champion v0003's" in again["reasons"][0]
    assert len(vertex_api.calls("upload")) == uploads
    assert [v["version"] for v in registry.versions(MODEL)][-1] == "v0003"
    assert registry.champion(MODEL) == "v0003" and vertex_api.aliases(MODEL)["champion"] == "3"


def test_local_pipeline_reads_gcs_data_and_keeps_its_registry_in_gcs(
    gcs: Gcs, trained_registry: TrainedRegistry, tmp_path: Path
) -> None:
    """The real pipeline (KFP local runner): ingest reads gs://, gate and deploy use the GCS registry."""
    from pipelines.local_runner import run_pipeline_locally

    trained_registry.data.to_csv(tmp_path / "customers.csv", index=False)
    storage.write_bytes(gcs.uri("data/customers.csv"), (tmp_path / "customers.csv").read_bytes(), gcs.client)
    config = Config().with_overrides([*FAST_OVERRIDES, "tune.families=[logreg]", f"model_name={MODEL}"])
    arguments = {
        "data_uri": gcs.uri("data/customers.csv"),
        "registry_uri": gcs.uri("registry"),
        "config_json": config.to_json(),
        "families": ["logreg"],
        "deploy_target": "local",
        "run_name": "run-gcs",
        "code_version": "test",
    }
    result = run_pipeline_locally(arguments, tmp_path / "run", echo=lambda _: None)
    deployment = result.summary["deployment"]
    assert deployment["deployed"], result.summary["gate"]
    assert deployment["version_uri"] == gcs.uri("registry", MODEL, "versions", "v0001")
    registry = GcsRegistry(gcs.uri("registry"), client=gcs.client, cache_dir=tmp_path / "cache")
    assert registry.champion(MODEL) == "v0001"
    assert registry.versions(MODEL)[0]["run_name"] == "run-gcs"


# --------------------------------------------------------------------------- prediction log in GCS


def test_gcs_prediction_log_batches_objects_and_reads_like_the_local_log(gcs: Gcs, tmp_path: Path) -> None:
    from components.monitoring.gcs_log import GcsPredictionLog
    from components.monitoring.prediction_log import PredictionLog

    uri = gcs.uri("log")
    log = GcsPredictionLog(uri, client=gcs.client, batch_seconds=0.2, batch_records=3)
    local = PredictionLog(tmp_path / "local")

    def record(i: int) -> dict[str, Any]:
        return {
            "request_id": f"r{i}",
            "timestamp": f"2026-12-0{1 + i % 2}T10:00:00.{i:06d}+00:00",
            "model_version": "v0001" if i < 4 else "v0002",
            "probability": i / 10,
            "label": i % 2,
            "inputs": {"Income": 1000.0 * i, "Education": "PhD"},
        }

    log.append_records([record(0)])
    log.sync()  # younger than batch_seconds: still waiting
    assert storage.list_names(uri, gcs.client) == []
    log.append_records([record(1), record(2)])  # the batch is full: one object
    assert len(storage.list_names(uri, gcs.client)) == 1
    log.append_records([record(3)])
    time.sleep(0.25)
    log.sync()  # old enough: uploaded
    log.append_records([record(4)])
    gcs.proxy.fail("POST", "/upload/", status=403)  # a refused upload keeps the records for later
    with pytest.raises(exceptions.Forbidden):
        log.close()
    log.close()
    names = storage.list_names(uri, gcs.client)
    assert len(names) == 3 and all(n.startswith("endpoint-") and n.endswith(".jsonl") for n in names)
    assert gcs.proxy.count("POST", "ifGenerationMatch=0") >= 3  # parts are never overwritten
    frame = pd.DataFrame({"model_version": ["v0002"], "probability": [0.5], "label": [1], "Income": [5.0]})
    part = log.append_frame(frame)
    assert part.startswith(uri + "/batch-") and part.endswith(".parquet")

    for i in range(5):
        local.append_records([record(i)])
    local.append_frame(frame)
    remote, here = log.read(), local.read()
    assert remote["request_id"].tolist()[:5] == [f"r{i}" for i in (0, 2, 4, 1, 3)]  # by timestamp
    pd.testing.assert_frame_equal(
        remote.drop(columns=["request_id", "timestamp"]), here.drop(columns=["request_id", "timestamp"])
    )
    assert log.read(model_version="v0001")["request_id"].tolist() == ["r0", "r2", "r1", "r3"]


def test_the_loop_in_the_cloud_endpoint_log_in_gcs_feeds_drift_and_retraining(
    gcs: Gcs, trained_registry: TrainedRegistry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A Vertex-style endpoint (`propensity serve`, AIP_* variables, the bundle at a gs:// version
    of the registry) writes its prediction log to GCS; the prediction pipeline (`predict
    --drift-source log --log gs://...`) reads it from there, finds the drift and retrains."""
    from components.data.synthetic import generate_marketing
    from components.deploy.targets import prediction_log_uri
    from components.monitoring.gcs_log import GcsPredictionLog
    from pipelines.cli import main
    from tests.integration.test_serving import copy_registry, free_port, instances_from, start_server

    registry = GcsRegistry(gcs.uri("registry"), client=gcs.client, cache_dir=tmp_path / "cache")
    version = registry.register(MODEL, bundle_dir(trained_registry), {"run_name": "run-cloud"})
    log_uri = prediction_log_uri(gcs.uri("registry"), MODEL)  # what the deploy step sets on Vertex
    port = free_port()
    environment = {
        "AIP_HTTP_PORT": str(port),
        "AIP_HEALTH_ROUTE": "/health",
        "AIP_PREDICT_ROUTE": "/predict",
        "AIP_STORAGE_URI": registry.resolve(MODEL, version),
        "PREDICTION_LOG_DIR": log_uri,
        "STORAGE_EMULATOR_HOST": gcs.proxy.url,
    }
    shifted = generate_marketing(rows=600, seed=41, drift=1.0)
    instances = instances_from(shifted.drop(columns=["Response"]), list(shifted.columns))
    server = start_server(tmp_path / "endpoint", env=environment, port=port)
    try:
        for start in range(0, len(instances), 100):
            response = httpx.post(server.url + "/predict", json={"instances": instances[start : start + 100]})
            assert response.status_code == 200, response.text
    finally:
        server.stop()  # SIGTERM, as Vertex sends it: the last batch goes up
    endpoint_parts = [n for n in storage.list_names(log_uri, gcs.client) if n.startswith("endpoint-")]
    assert endpoint_parts and "prediction log: 600 record(s) written" in server.log_text()
    logged = GcsPredictionLog(log_uri, client=gcs.client).read()
    assert len(logged) == 600 and set(logged["model_version"]) == {version}
    assert set(logged["source"]) == {"endpoint"}

    # the prediction pipeline scores an unshifted, labelled batch; drift is measured on the log
    batch = tmp_path / "batch.parquet"
    generate_marketing(rows=300, seed=42).to_parquet(batch, index=False)
    local_registry = copy_registry(trained_registry.root, tmp_path / "registry")
    argv = ["predict", "--json", "--workdir", str(tmp_path / "work"), "--batch", str(batch)]
    argv += ["--registry", str(local_registry), "--log", log_uri, "--drift-source", "log"]
    for item in [*FAST_OVERRIDES, f"model_name={MODEL}"]:
        argv += ["--set", item]
    capsys.readouterr()
    assert main(argv) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    summary = json.loads(out[out.index("\n{") + 1 :])
    drift = summary["drift"]
    assert drift["current_total_rows"] == 900  # 600 endpoint records + this batch's 300, from GCS
    assert "prediction log" in drift["source"]
    assert drift["drifted"] is True and drift["share"] > 0.15
    assert {"Income", "Year_Birth"} <= set(drift["drifted_columns"])
    parts = storage.list_names(log_uri, gcs.client)
    assert len([n for n in parts if n.startswith("batch-")]) == 1  # the batch's own part, in GCS
    assert summary["retrain"]["triggered"] is True
    outcome = summary["retrain"]["outcome"]
    assert outcome is not None, "the nested training pipeline wrote no summary"
    # the gate's decision on this seeded data: the retrained model passes the absolute thresholds
    # but is worse than the champion on its own test split (0.937 against 0.953), so it is blocked
    gate = outcome["gate"]
    assert gate["passed"] is False and gate["champion_version"] == "v0001"
    assert [c["name"] for c in gate["checks"] if not c["passed"]] == ["not worse than champion"]
    assert outcome["deployment"]["deployed"] is False
    assert [v["version"] for v in LocalRegistry(local_registry).versions(MODEL)] == ["v0001"]
    assert LocalRegistry(local_registry).champion(MODEL) == "v0001"
