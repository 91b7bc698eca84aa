"""Both images, built for real: the base each was built on, sizes, users, what the serving image holds."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.containers.conftest import BuiltImages

SERVING_LIMIT_BYTES = 700_000_000  # a Vertex endpoint pulls the image on every new replica
PIPELINE_LIMIT_BYTES = 1_700_000_000  # 2.12 GB before xgboost-cpu and the pruned test suites
IMAGE_USER = "10001:10001"
TRAINING_ONLY = ("kfp", "shap", "evidently", "optuna", "matplotlib", "google.cloud.aiplatform")


def run_python(engine: Any, image: str, code: str) -> str:
    output = engine.containers.run(image, entrypoint=["python", "-c", code], network_mode="host", remove=True)
    return output.decode().strip()


def test_make_images_says_and_records_which_base_each_image_was_built_on(
    images: BuiltImages, engine: Any
) -> None:
    base, kind = images.record["base"], images.record["base_kind"]
    assert kind in {"official", "standin", "given"}
    for name in ("pipeline", "serving"):
        tag = images.tag(name)
        assert f"built {tag} on {kind} base {base}" in images.output
        labels = engine.images.get(tag).labels
        assert labels["org.propensity.base"] == base and labels["org.propensity.base.kind"] == kind
    if kind == "standin":
        assert "cannot be pulled" in images.output  # the user is told why the stand-in was used


def test_the_serving_image_is_at_most_700_mb_and_the_pipeline_image_is_lean(images: BuiltImages) -> None:
    sizes = {name: images.record["images"][name]["size_bytes"] for name in ("pipeline", "serving")}
    print(f"image sizes: pipeline {sizes['pipeline'] / 1e6:.0f} MB, serving {sizes['serving'] / 1e6:.0f} MB")
    assert sizes["serving"] <= SERVING_LIMIT_BYTES
    assert sizes["pipeline"] <= PIPELINE_LIMIT_BYTES


@pytest.mark.parametrize("name", ["pipeline", "serving"])
def test_each_image_runs_as_its_fixed_non_root_user(images: BuiltImages, engine: Any, name: str) -> None:
    tag = images.tag(name)
    assert engine.images.get(tag).attrs["Config"]["User"] == IMAGE_USER
    ids = run_python(engine, tag, "import os; print(os.getuid(), os.getgid())")
    assert ids == "10001 10001"


def test_the_serving_image_holds_the_endpoint_and_not_the_training_stack(
    images: BuiltImages, engine: Any
) -> None:
    code = (
        "import importlib.util, json, sys\n"
        "import components.serving.server, pipelines.cli, xgboost, sklearn, google.cloud.storage\n"
        f"absent = [m for m in {TRAINING_ONLY!r} if importlib.util.find_spec(m) is None]\n"
        "print(json.dumps({'absent': absent, 'xgboost': xgboost.__version__}))"
    )
    found = json.loads(run_python(engine, images.tag("serving"), code))
    assert found["absent"] == list(TRAINING_ONLY)
    assert found["xgboost"]


def test_the_pipeline_image_runs_every_stage_library_on_cpu(images: BuiltImages, engine: Any) -> None:
    """xgboost-cpu trains and predicts; the heavy stage libraries import (kfp's executor too)."""
    code = (
        "import numpy as np, xgboost, shap, evidently, optuna, kfp.dsl.executor_main\n"
        "X = np.random.default_rng(0).normal(size=(200, 3)); y = (X[:, 0] > 0).astype(int)\n"
        "model = xgboost.XGBClassifier(n_estimators=20).fit(X, y)\n"
        "print(float((model.predict(X) == y).mean()))"
    )
    assert float(run_python(engine, images.tag("pipeline"), code)) > 0.9
