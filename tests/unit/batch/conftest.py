"""Shared by the batch tests: a real champion built in-process, batch files, a scoring run.

The champion is built from validated marketing data, a fitted transformer and a logistic
regression (``build_bundle``), registered in a local registry, so the tests need no pipeline run;
it is built once for the whole package.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from components.batch.champion import Champion, load_champion
from components.batch.scoring import ScoringRun, run_batch_scoring
from components.data.synthetic import generate_marketing
from components.data.validation import validate
from components.model.bundle import ModelBundle, build_bundle, save_bundle
from components.model.families import make_estimator
from components.model.features import fit_transformer
from components.registry.local import LocalRegistry
from components.shared.config import Config

MODEL = "marketing-propensity"


@dataclass(frozen=True)
class BuiltRegistry:
    root: Path
    bundle: ModelBundle
    train: pd.DataFrame  # the validated training frame (also the bundle's reference)


def make_registry(
    root: Path,
    rows: int = 800,
    seed: int = 1,
    threshold: float = 0.4,
    family: str = "logreg",
    params: dict | None = None,
) -> BuiltRegistry:
    """A registry whose champion v0001 is a ``family`` bundle (logreg by default) trained on
    synthetic marketing data."""
    config = Config()
    validated = validate(generate_marketing(rows=rows, seed=seed), config.dataset, source="train.csv")
    frame = validated.frame
    transformer = fit_transformer(frame, config.dataset, config.features)
    model = make_estimator(family, {"C": 1.0} if params is None else params, seed=0)
    model.fit(transformer.transform(frame), frame[config.dataset.target].to_numpy())
    bundle = build_bundle(
        transformer=transformer,
        model=model,
        family=family,
        calibration={"threshold": threshold, "temperature": 1.3},
        evaluation={"test": {"roc_auc": 0.9, "f1": 0.7}},
        importance={},
        input_schema=validated.schema,
        train_frame=frame,
        config=config,
        code_version="test",
        reference_frame=frame,
    )
    save_bundle(bundle, root / "bundle")
    registry = LocalRegistry(root / "registry")
    version = registry.register(MODEL, root / "bundle")
    registry.set_alias(MODEL, "champion", version)
    return BuiltRegistry(root / "registry", registry.load(MODEL), frame)


@pytest.fixture(scope="package")
def reg(tmp_path_factory: pytest.TempPathFactory) -> BuiltRegistry:
    return make_registry(tmp_path_factory.mktemp("scoring"))


@pytest.fixture(scope="package")
def champion(reg: BuiltRegistry) -> Champion:
    return load_champion(str(reg.root), MODEL)


def batch_file(tmp_path: Path, frame: pd.DataFrame, name: str = "batch.csv") -> str:
    path = tmp_path / name
    if name.endswith(".parquet"):
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False, sep="\t" if name.endswith(".tsv") else ",")
    return str(path)


def score_file(champion: Champion, uri: str, out: Path, **kwargs: object) -> ScoringRun:
    return run_batch_scoring(uri, champion, out, **kwargs)  # type: ignore[arg-type]
