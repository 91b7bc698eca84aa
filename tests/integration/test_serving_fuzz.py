"""Schema-driven fuzzing of the live endpoint: schemathesis reads /openapi.json and sends valid and
invalid requests (positive and negative data) to every operation. No request may end in a 5xx, and
every answer must match the documented status codes, content type and response schema.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_serving import copy_registry, start_server

pytestmark = pytest.mark.integration
CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"


def schemathesis_command() -> list[str]:
    st = Path(sys.executable).with_name("st")
    return [str(st)] if st.exists() else [shutil.which("st") or "st"]


@pytest.mark.parametrize("token", [None, "fuzz-token"])
def test_fuzzing_the_openapi_spec_finds_no_server_error(
    trained_registry: Any, tmp_path: Path, token: str | None
) -> None:
    root = copy_registry(trained_registry.root, tmp_path / "registry")
    args = ["--registry", str(root), "--model-name", trained_registry.model_name, "--max-instances", "20"]
    args += ["--log-dir", str(tmp_path / "log"), *(["--token", token] if token else [])]
    server = start_server(tmp_path, *args)
    command = [
        *schemathesis_command(),
        "run",
        f"{server.url}/openapi.json",
        "--checks",
        CHECKS,
        "--mode",
        "all",
        "--max-examples",
        "60",
        "--seed",
        "20261122",
        "--generation-database",
        "none",
        "--workers",
        "1",
        "--request-timeout",
        "30",
        "--no-color",
    ]
    if token:
        command += ["--header", f"Authorization: Bearer {token}"]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=240, cwd=tmp_path)
    finally:
        server.stop()
    report = result.stdout[-6000:] + result.stderr[-2000:]
    assert result.returncode == 0, report
    assert "passed" in result.stdout
    log = server.log_text()
    assert "internal error" not in log and " 500 " not in log, log[-4000:]
    assert " POST /predict 200 " in log  # the fuzzer also got valid requests through
