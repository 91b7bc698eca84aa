from __future__ import annotations

import json
from pathlib import Path

import pytest

from components.shared.config import Config, ConfigError, telco_config


def test_defaults_keep_the_known_good_xgboost_grid_for_the_marketing_table() -> None:
    grid = Config().tune.grids["xgboost"]
    assert grid["n_estimators"] == [290, 300, 310]
    assert grid["gamma"] == [0.05, 0.1] and grid["reg_lambda"] == [2.5, 3.0]
    assert Config().tune.strategy["xgboost"] == "auto"  # grid on the marketing table, else Optuna
    assert "n_estimators" not in Config().tune.spaces["xgboost"]  # early stopping chooses it
    assert (Config().gate.min_roc_auc, Config().gate.min_f1) == (0.75, 0.60)


def test_json_round_trip_is_lossless() -> None:
    config = telco_config()
    assert Config.from_json(config.to_json()) == config


def test_ints_that_come_back_as_floats_are_accepted() -> None:
    data = Config().to_dict()
    data["split"]["seed"] = 42.0  # KFP returns ints as floats
    assert Config.from_dict(data).split.seed == 42


def test_yaml_file_with_numeric_positive_label(tmp_path: Path) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(
        "dataset:\n  name: churn\n  target: Exited\n  positive_label: 1\n  id_columns: [CustomerId]\n"
    )
    config = Config.from_file(path)
    assert config.dataset.positive_label == "1"
    assert config.dataset.id_columns == ["CustomerId"]
    assert config.registry_model_name == "churn-propensity"


def test_overrides_parse_values_as_yaml() -> None:
    config = Config().with_overrides(
        ["gate.min_f1=0.5", "tune.families=[xgboost, logreg]", "tune.n_trials.mlp=3"]
    )
    assert config.gate.min_f1 == 0.5
    assert config.tune.families == ["xgboost", "logreg"]
    assert config.tune.n_trials["mlp"] == 3


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        (["gate.min_fone=0.5"], "gate.min_fone"),
        (["nosuch.x=1"], "nosuch"),
        (["gate.min_f1"], "gate.min_f1"),
        (["gate.min_f1=high"], "gate.min_f1"),
        (["gate.min_roc_auc=1.5"], "gate.min_roc_auc"),
        (["tune.families=[xgboost, forest]"], "forest"),
        (["tune.strategy.xgboost=random"], "random"),
        (["split.test_size=0.6"], "split.test_size"),
        (["split.valid_size=0.15"], "split.valid_size"),  # gone: CV folds replace the validation split
        (["tune.time_budget_seconds=-1"], "tune.time_budget_seconds"),
        (["tune.cv_folds=1"], "tune.cv_folds"),
        (["calibration.enabled=maybe"], "calibration.enabled"),
    ],
)
def test_bad_values_name_the_field(overrides: list[str], fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment.replace(".", r"\.").replace("[", r"\[")):
        Config().with_overrides(overrides)


def test_unknown_field_in_file_names_file_and_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(json.dumps({"dataset": {"targ": "y"}}))
    with pytest.raises(ConfigError, match=r"bad\.yaml.*dataset\.targ"):
        Config.from_file(path)


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        Config.from_file(tmp_path / "none.yaml")
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        Config.from_file(tmp_path / "list.yaml")
