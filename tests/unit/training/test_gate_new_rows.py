"""The gate after a drift retrain: challenger vs champion on the newly labelled rows held out of training."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from components.data.synthetic import generate_marketing
from components.data.validation import validate
from components.model.bundle import ModelBundle, build_bundle
from components.model.families import make_estimator
from components.model.features import fit_transformer
from components.shared.config import Config
from components.training.gate import NEW_ROWS_CHECK, decide
from tests.unit.batch.conftest import MODEL, BuiltRegistry, make_registry

CONFIG = Config().with_overrides([f"model_name={MODEL}"])
EVALUATION = {"test": {"roc_auc": 0.99, "f1": 0.7}}  # above the champion on its own data


@pytest.fixture(scope="module")
def reg(tmp_path_factory: pytest.TempPathFactory) -> BuiltRegistry:
    return make_registry(tmp_path_factory.mktemp("gate"), rows=600, seed=1)


def new_rule(rows: int, seed: int) -> pd.DataFrame:
    """Drifted customers who answer by a new rule (long-unseen customers respond)."""
    frame = validate(generate_marketing(rows=rows, seed=seed, drift=1.0), CONFIG.dataset, "new").frame
    return frame.assign(Response=(frame["Recency"] > 55).astype(int))


def challenger_trained_on(frame: pd.DataFrame) -> ModelBundle:
    transformer = fit_transformer(frame, CONFIG.dataset, CONFIG.features)
    model = make_estimator("logreg", {"C": 1.0}, seed=0)
    model.fit(transformer.transform(frame), frame["Response"].to_numpy())
    return build_bundle(
        transformer=transformer,
        model=model,
        family="logreg",
        calibration={"threshold": 0.5, "temperature": 1.0},
        evaluation=EVALUATION,
        importance={},
        input_schema={},
        train_frame=frame,
        config=CONFIG,
        code_version="test",
    )


def gate(reg: BuiltRegistry, held_out: pd.DataFrame, challenger: ModelBundle, registry: Path | None = None):
    return decide(EVALUATION, reg.train, CONFIG, str(registry or reg.root), held_out, challenger)


def test_a_challenger_that_learnt_the_new_rule_is_better_where_the_drift_is(reg: BuiltRegistry) -> None:
    challenger = challenger_trained_on(pd.concat([reg.train, new_rule(400, seed=3)], ignore_index=True))
    result = gate(reg, new_rule(150, seed=4), challenger)
    check = next(c for c in result.checks if c.name == NEW_ROWS_CHECK)
    assert check.passed and check.value > check.threshold + 0.2, check  # the champion ranks them badly
    assert (
        "on 150 newly labelled rows held out of training" in check.detail and "champion v0001" in check.detail
    )
    assert result.passed
    assert [c["data"] for c in result.comparisons] == [
        f"test split ({len(reg.train)} rows)",
        "new labelled rows, held out (150 rows)",
    ]
    assert "## Challenger vs champion" in result.markdown and "new labelled rows, held out" in result.markdown
    assert result.to_dict()["comparisons"] == result.comparisons


def test_not_better_on_the_new_rows_is_not_deployed(reg: BuiltRegistry) -> None:
    """Outcomes that are the champion's own ranking: it scores ROC-AUC 1 there; nothing beats that."""
    held_out = new_rule(150, seed=5)
    _, champion_scores = reg.bundle.predict(held_out.drop(columns=["Response"]))
    held_out["Response"] = (champion_scores > pd.Series(champion_scores).median()).astype(int)
    challenger = challenger_trained_on(pd.concat([reg.train, new_rule(400, seed=3)], ignore_index=True))
    result = gate(reg, held_out, challenger)
    check = next(c for c in result.checks if c.name == NEW_ROWS_CHECK)
    assert not check.passed and check.threshold == 1.0 and "<= champion v0001 1.0000" in check.detail
    assert not result.passed and any(r.startswith(NEW_ROWS_CHECK) for r in result.failed_reasons)


def test_held_out_rows_of_one_outcome_show_nothing(reg: BuiltRegistry) -> None:
    held_out = new_rule(120, seed=6).assign(Response=1)
    result = gate(reg, held_out, reg.bundle)
    check = next(c for c in result.checks if c.name == NEW_ROWS_CHECK)
    assert not check.passed and "one outcome only" in check.detail and not result.passed


def test_without_a_champion_there_is_nothing_to_compare(reg: BuiltRegistry, tmp_path: Path) -> None:
    result = gate(reg, new_rule(120, seed=6), reg.bundle, registry=tmp_path / "empty")
    check = next(c for c in result.checks if c.name == NEW_ROWS_CHECK)
    assert check.passed and check.detail == "no champion to compare with" and result.comparisons == []
