"""Compile the pipelines to YAML and validate what was written with KFP's own proto and loader."""

from __future__ import annotations

from pathlib import Path

import yaml
from google.protobuf import json_format
from kfp import compiler, components
from kfp.pipeline_spec import pipeline_spec_pb2

from pipelines.training import DEFAULT_IMAGE, PvcMount, build_training_pipeline

__all__ = [
    "DEFAULT_IMAGE",
    "PvcMount",
    "compile_all",
    "compile_prediction",
    "compile_training",
    "validate_pipeline_yaml",
]


def compile_training(out_dir: Path, image: str = DEFAULT_IMAGE, pvc: PvcMount | None = None) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "training_pipeline.yaml"
    compiler.Compiler().compile(build_training_pipeline(image, pvc), str(path))
    validate_pipeline_yaml(path)
    return path


def compile_prediction(out_dir: Path, image: str = DEFAULT_IMAGE) -> Path:
    from pipelines.prediction import build_prediction_pipeline

    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "prediction_pipeline.yaml"
    compiler.Compiler().compile(build_prediction_pipeline(image), str(path))
    validate_pipeline_yaml(path)
    return path


def compile_all(out_dir: Path, image: str = DEFAULT_IMAGE, pvc: PvcMount | None = None) -> list[Path]:
    """The training pipeline (with the optional PVC for kind) and the prediction pipeline."""
    return [compile_training(out_dir, image, pvc), compile_prediction(out_dir, image)]


def validate_pipeline_yaml(path: Path) -> pipeline_spec_pb2.PipelineSpec:
    """Parse into PipelineSpec (unknown fields fail) and load it back as a KFP component."""
    documents = list(yaml.safe_load_all(path.read_text()))
    spec = json_format.ParseDict(documents[0], pipeline_spec_pb2.PipelineSpec())
    components.load_component_from_file(str(path))
    return spec
