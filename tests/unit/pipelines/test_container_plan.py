"""`--runner docker` planning without an engine: what is mounted, as whom, and what is refused."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from components.shared.errors import DataValidationError
from pipelines.containers import ContainerPlan, add_runner_arguments, describe, plan_for, same_path_mounts


def test_the_workdir_and_each_path_outside_it_are_mounted_once_at_their_own_path(tmp_path: Path) -> None:
    workdir = tmp_path / "work"
    workdir.mkdir()
    data = tmp_path / "elsewhere" / "customers.csv"
    data.parent.mkdir()
    data.write_text("a\n1\n")
    registry = tmp_path / "shared" / "registry"
    inside = workdir / "data" / "x.parquet"
    inside.parent.mkdir()
    inside.write_text("")
    mounts = same_path_mounts(
        workdir, read_only=[str(data), str(inside), "gs://bucket/data", ""], read_write=[str(registry)]
    )
    assert mounts == ((str(workdir), False), (str(data), True), (str(registry), False))
    assert registry.is_dir()  # made by the user before a container could make it as root


def test_a_missing_input_or_a_relative_path_is_refused_naming_it(tmp_path: Path) -> None:
    with pytest.raises(DataValidationError, match=r"/nope\.csv: no such file or folder"):
        same_path_mounts(tmp_path, read_only=[str(tmp_path / "nope.csv")], read_write=[])
    with pytest.raises(DataValidationError, match=r"relative/registry: a task container can only be given"):
        same_path_mounts(tmp_path, read_only=[], read_write=["relative/registry"])


def test_the_plan_survives_the_trip_to_the_runner_process() -> None:
    plan = ContainerPlan(
        image="propensity-pipeline:local",
        user="1000:1000",
        run_label="run-1",
        mounts=(("/w", False), ("/d.csv", True)),
        environment={"HOME": "/tmp"},
    )
    assert ContainerPlan.from_json(plan.to_json()) == plan
    assert describe(plan) == "; each task in propensity-pipeline:local as 1000:1000"
    assert describe(None) == ""


def test_the_subprocess_runner_needs_no_plan_and_no_engine(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    add_runner_arguments(parser)
    args = parser.parse_args([])
    assert args.runner == "subprocess" and args.image == "propensity-pipeline:local"
    assert plan_for(args, "run-1", tmp_path) is None
    assert parser.parse_args(["--runner", "docker", "--image", "x:1"]).image == "x:1"
