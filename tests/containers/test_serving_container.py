"""The serving image as Vertex AI runs it: AIP_* variables, a gs:// bundle (GCS emulator on loopback)
or a read-only mounted one, an unrelated uid, SIGTERM at the end."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from components.model.bundle import load_bundle
from components.monitoring.prediction_log import PredictionLog
from components.shared import gcs as storage
from tests.containers.conftest import SERVING_UID, BuiltImages, TrainedInContainers
from tests.gcs_emulator import GcsProxy, anonymous_client, free_port, running_emulator, running_proxy

HEALTH_ROUTE = "/v1/models/propensity/health"
PREDICT_ROUTE = "/v1/models/propensity:predict"
STARTUP_SECONDS = 120.0


@dataclass
class ServingContainer:
    container: Any
    port: int
    started: float  # time.monotonic() just before `docker run`

    def url(self, route: str) -> str:
        return f"http://127.0.0.1:{self.port}{route}"

    def logs(self) -> str:
        return self.container.logs().decode(errors="replace")

    def statuses_until_healthy(self) -> tuple[list[int], float]:
        """Health answers (deduplicated, in order) until the first 200, and the seconds it took."""
        seen: list[int] = []
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            self.container.reload()
            if self.container.status == "exited":
                raise AssertionError(f"serving container exited:\n{self.logs()}")
            try:
                status = httpx.get(self.url(HEALTH_ROUTE), timeout=2).status_code
            except httpx.TransportError:
                time.sleep(0.05)
                continue
            if not seen or seen[-1] != status:
                seen.append(status)
            if status == 200:
                return seen, time.monotonic() - self.started
            time.sleep(0.05)
        raise AssertionError(f"not healthy after {STARTUP_SECONDS} s:\n{self.logs()}")

    def stop(self) -> int:
        """SIGTERM (what Vertex sends), wait for the graceful exit, return the exit code."""
        self.container.stop(timeout=30)
        return int(self.container.wait(timeout=60)["StatusCode"])


def start_serving(engine: Any, image: str, environment: dict[str, str], **run: Any) -> ServingContainer:
    port = free_port()
    env = {
        "AIP_HTTP_PORT": str(port),
        "AIP_HEALTH_ROUTE": HEALTH_ROUTE,
        "AIP_PREDICT_ROUTE": PREDICT_ROUTE,
        **environment,
    }
    started = time.monotonic()
    container = engine.containers.run(image, detach=True, network_mode="host", environment=env, **run)
    return ServingContainer(container, port, started)


@pytest.fixture
def serving(engine: Any) -> Iterator[list[ServingContainer]]:
    """Containers a test starts; removed afterwards whatever happened."""
    started: list[ServingContainer] = []
    yield started
    for server in started:
        server.container.remove(force=True)


def rows_of(trained: TrainedInContainers, example: dict[str, Any], count: int) -> tuple[pd.DataFrame, list]:
    """Training rows as a client sends them: only the fields of the endpoint's example, JSON values."""
    fields = list(example["instances"][0])
    frame = trained.data.dropna().head(count)[fields]
    instances = [
        {k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}
        for row in frame.to_dict("records")
    ]
    return frame, instances


def assert_predictions_match_in_process(
    server: ServingContainer, trained: TrainedInContainers, count: int = 25
) -> None:
    example = httpx.get(server.url("/example_request"), timeout=10).json()
    frame, instances = rows_of(trained, example, count)
    response = httpx.post(server.url(PREDICT_ROUTE), json={"instances": instances}, timeout=30)
    assert response.status_code == 200, response.text
    items = response.json()["predictions"]
    probabilities, calibrated = load_bundle(trained.version_dir).predict(frame)
    np.testing.assert_allclose([i["probability"] for i in items], probabilities, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(
        [i["calibrated_probability"] for i in items], calibrated, rtol=1e-9, atol=1e-12
    )
    assert {i["model_version"] for i in items} == {trained.version_dir.name}


@pytest.fixture(scope="module")
def gcs() -> Iterator[GcsProxy]:
    with running_emulator() as emulator, running_proxy(emulator.url) as proxy:
        yield proxy


def test_a_gs_bundle_is_503_while_it_loads_then_200_and_predicts_as_in_process(
    gcs: GcsProxy,
    images: BuiltImages,
    trained: TrainedInContainers,
    engine: Any,
    serving: list[ServingContainer],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs.url)
    client = anonymous_client()
    client.create_bucket("models")
    uri = "gs://models/marketing-propensity/v0001"
    storage.upload_dir(trained.version_dir, uri, client, last=["manifest.json"])
    # Hold the container's first read of the bucket until its health has answered once: 503 is
    # then certain, not a race with a fast download.
    released = threading.Event()
    gcs.before_once(lambda method, path: method == "GET" and "/b/models/" in path, lambda: released.wait(60))
    server = start_serving(
        engine,
        images.tag("serving"),
        {"AIP_STORAGE_URI": uri, "STORAGE_EMULATOR_HOST": gcs.url, "GOOGLE_CLOUD_PROJECT": "test"},
    )
    serving.append(server)
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        try:
            first = httpx.get(server.url(HEALTH_ROUTE), timeout=2).status_code
            break
        except httpx.TransportError:
            time.sleep(0.05)
    else:
        raise AssertionError(f"the endpoint never answered:\n{server.logs()}")
    assert first == 503
    released.set()
    statuses, seconds = server.statuses_until_healthy()
    assert statuses == [503, 200]
    print(f"serving container (gs:// bundle): docker run to healthy in {seconds:.1f} s")
    assert_predictions_match_in_process(server, trained)
    assert server.stop() == 0


def test_a_read_only_bundle_served_as_an_unrelated_uid_answers_logs_and_stops_gracefully(
    images: BuiltImages,
    trained: TrainedInContainers,
    engine: Any,
    serving: list[ServingContainer],
    tmp_path: Path,
) -> None:
    log_dir = tmp_path / "prediction_log"
    log_dir.mkdir()
    os.chown(log_dir, SERVING_UID, SERVING_UID)  # the endpoint's uid owns its log, nothing else
    model = str(trained.version_dir)
    server = start_serving(
        engine,
        images.tag("serving"),
        {"AIP_STORAGE_URI": model, "PREDICTION_LOG_DIR": str(log_dir)},
        user=f"{SERVING_UID}:{SERVING_UID}",
        volumes={model: {"bind": model, "mode": "ro"}, str(log_dir): {"bind": str(log_dir), "mode": "rw"}},
    )
    serving.append(server)
    statuses, seconds = server.statuses_until_healthy()
    assert statuses[-1] == 200
    print(f"serving container (mounted bundle): docker run to healthy in {seconds:.1f} s")
    assert_predictions_match_in_process(server, trained, count=5)

    example = httpx.get(server.url("/example_request"), timeout=10).json()["instances"][0]
    integer = next(k for k, v in example.items() if isinstance(v, int) and not isinstance(v, bool))
    bad = httpx.post(server.url(PREDICT_ROUTE), json={"instances": [{**example, integer: "seven"}]})
    assert bad.status_code == 422
    assert f"instances[0].{integer}" in bad.json()["error"]
    assert httpx.post(server.url(PREDICT_ROUTE), content=b"{not json").status_code == 400

    sent = {"req-one": 1, "req-two": 2, "req-five": 5}
    for request_id, count in sent.items():
        response = httpx.post(
            server.url(PREDICT_ROUTE),
            json={"instances": [example] * count},
            headers={"x-request-id": request_id},
        )
        assert response.status_code == 200, response.text
    assert server.stop() == 0
    logged = PredictionLog(log_dir).read()
    assert logged[logged["request_id"].isin(sent)].groupby("request_id").size().to_dict() == sent
    assert len(logged) == 5 + 8  # the 5 rows compared above, then the 8 sent: none lost on SIGTERM
    assert {p.stat().st_uid for p in log_dir.iterdir()} == {SERVING_UID}
    assert "prediction log: 13 record(s) written" in server.logs()
