"""Drift monitoring: is the data the model now sees still like the data it was trained on?

The current data (a scored batch, or the recent prediction log) is compared with the reference
sample saved in the model bundle, column by column, with Evidently's ``DataDriftPreset`` using
distances whatever the sample size (normed Wasserstein for numbers and dates, Jensen-Shannon for
categories and low-cardinality numbers; see NUMERIC_METHOD). The share of drifted columns is
Evidently's ``DriftedColumnsCount`` value; above the configured threshold the prediction pipeline
retrains. The model's own output is watched too: the population stability index (PSI) of the
calibrated score against the bundle scoring its own reference sample.

Both inputs are sampled to a bounded number of rows first: Evidently's run time grows quickly with
rows and columns, and a 20k-row sample already detects any shift that matters for retraining.
Whether drift retrains, and on what, is ``retraining``'s decision.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from components.model.bundle import ModelBundle
from components.model.coercion import coerce_datetime
from components.shared.errors import DataValidationError
from components.shared.report import markdown_table

# Distances for every sample size, as Evidently chooses them for large samples: normed Wasserstein
# for numbers with more than LOW_CARDINALITY distinct values, Jensen-Shannon for categories and
# low-cardinality numbers (flags, counts of kids). Evidently's default switches to p-value tests
# (K-S, chi-square, Z) at <= 1000 rows, and those flag about one column in twenty on unchanged
# data: on a 600-row batch of the training population a quarter of the columns "drifted" and a
# retrain was triggered by noise. A distance (threshold 0.1) does not shrink with the sample size,
# so a small batch and a large one are judged alike.
NUMERIC_METHOD = "wasserstein"
CATEGORICAL_METHOD = "jensenshannon"
LOW_CARDINALITY = 5
PSI_BINS = 10
PSI_MODERATE, PSI_SIGNIFICANT = 0.1, 0.25  # the usual reading of PSI: < 0.1 stable, > 0.25 shifted
_EPS = 1e-6
SCORE_COLUMN = "calibrated_probability"


# ---------------------------------------------------------------------------------------- inputs


def sample_rows(frame: pd.DataFrame, max_rows: int, seed: int = 0) -> pd.DataFrame:
    """All rows when they fit, else a seeded random sample (reproducible drift numbers)."""
    if max_rows < 1:
        raise ValueError(f"max_rows must be at least 1, got {max_rows}")
    if len(frame) <= max_rows:
        return frame.reset_index(drop=True)
    return frame.sample(n=max_rows, random_state=seed).reset_index(drop=True)


def drift_columns(bundle: ModelBundle) -> dict[str, str]:
    """Raw input column -> 'numerical' or 'categorical' (dates are compared as day numbers)."""
    transformer = bundle.transformer
    kinds = {c: "numerical" for c in transformer.numeric_inputs}
    kinds.update({c: "numerical" for c in transformer.date_inputs})
    kinds.update({c: "categorical" for c in transformer.categorical_inputs})
    return {c: kinds[c] for c in transformer.input_columns if c in kinds}


def comparable_frame(frame: pd.DataFrame, bundle: ModelBundle) -> pd.DataFrame:
    """The drift columns in one representation for reference and current data alike.

    Numbers as float, dates as days since 1970 (parsed like the transformer parses them, so
    datetime64 from the reference and 'dd-mm-yyyy' strings from a batch compare), categories as
    strings. A column missing from ``frame`` is an error naming it.
    """
    kinds = drift_columns(bundle)
    missing = [c for c in kinds if c not in frame.columns]
    if missing:
        raise DataValidationError(f"drift check: the current data lacks column(s) {missing}")
    out: dict[str, Any] = {}
    transformer = bundle.transformer
    for column, kind in kinds.items():
        values = frame[column]
        if column in transformer.date_inputs:
            dates = coerce_datetime(
                values.reset_index(drop=True), transformer.date_format, transformer.dayfirst
            )
            out[column] = (dates.astype("datetime64[ns]").astype("int64") / 86_400e9).astype(np.float64)
            out[column][np.isnat(dates)] = np.nan
        elif kind == "numerical":
            out[column] = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        else:
            text = values.astype(object).where(values.notna(), None).to_numpy()
            out[column] = np.array([None if v is None else str(v) for v in text], dtype=object)
    return pd.DataFrame(out)


def drift_methods(reference: pd.DataFrame, kinds: dict[str, str]) -> dict[str, str]:
    """Column -> Evidently drift method (see NUMERIC_METHOD for why distances, and which)."""
    methods = {}
    for column, kind in kinds.items():
        few_values = reference[column].nunique(dropna=True) <= LOW_CARDINALITY
        methods[column] = CATEGORICAL_METHOD if kind == "categorical" or few_values else NUMERIC_METHOD
    return methods


def reference_scores(bundle: ModelBundle, reference: pd.DataFrame) -> np.ndarray:
    """The calibrated scores of the bundle on its own reference sample (the PSI baseline)."""
    _, calibrated = bundle.predict(reference)
    return calibrated


def current_from_log(
    log_dir: str | Path,
    hours: float,
    model_version: str | None = None,
    now: datetime | None = None,
) -> pd.DataFrame:
    """The prediction log's records of the last ``hours`` (optionally one model version)."""
    from components.monitoring.gcs_log import open_prediction_log

    since = (now or datetime.now(UTC)) - timedelta(hours=hours)
    records = open_prediction_log(log_dir).read(since=since, model_version=model_version)
    if records.empty:
        which = f" of model version {model_version}" if model_version else ""
        raise DataValidationError(
            f"prediction log {log_dir} has no records{which} in the last {hours:g} hours: nothing to check"
        )
    return records


# ----------------------------------------------------------------------------------------- PSI


def psi(reference: np.ndarray, current: np.ndarray, bins: int = PSI_BINS) -> float:
    """Population stability index of ``current`` against ``reference`` on reference-quantile bins.

    sum((c - r) * ln(c / r)) over bins, with empty bins given a tiny share so the log is finite.
    """
    reference = np.asarray(reference, dtype=np.float64)
    current = np.asarray(current, dtype=np.float64)
    reference, current = reference[np.isfinite(reference)], current[np.isfinite(current)]
    if not len(reference) or not len(current):
        return math.nan
    edges = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)))
    if len(edges) < 2:  # a constant reference: one bin for it, one for everything else
        edges = np.array([edges[0], np.nextafter(edges[0], np.inf)])
    inner = edges[1:-1]
    ref_share = np.bincount(np.searchsorted(inner, reference, side="right"), minlength=len(edges) - 1)
    cur_share = np.bincount(np.searchsorted(inner, current, side="right"), minlength=len(edges) - 1)
    r = np.maximum(ref_share / len(reference), _EPS)
    c = np.maximum(cur_share / len(current), _EPS)
    return float(np.sum((c - r) * np.log(c / r)))


def psi_level(value: float) -> str:
    if not math.isfinite(value):
        return "unknown"
    if value >= PSI_SIGNIFICANT:
        return "significant"
    return "moderate" if value >= PSI_MODERATE else "stable"


# -------------------------------------------------------------------------------------- report


@dataclass
class DriftResult:
    share: float  # Evidently's DriftedColumnsCount share
    drifted_count: int
    column_count: int
    threshold: float
    columns: list[dict[str, Any]]
    score_psi: float
    reference_rows: int
    current_rows: int
    current_total_rows: int
    source: str
    html: str = field(default="", repr=False)

    @property
    def drifted(self) -> bool:
        return self.share > self.threshold

    @property
    def drifted_columns(self) -> list[str]:
        return [c["column"] for c in self.columns if c["drifted"]]

    @property
    def reason(self) -> str:
        relation = ">" if self.drifted else "<="
        names = ", ".join(self.drifted_columns[:8]) or "none"
        verdict = "retrain if there are new labels" if self.drifted else "no retrain"
        return (
            f"{self.drifted_count} of {self.column_count} columns drifted (share {self.share:.3f} "
            f"{relation} threshold {self.threshold:g}): {verdict}; drifted: {names}; "
            f"score PSI {self.score_psi:.3f} ({psi_level(self.score_psi)})"
        )

    def to_dict(self) -> dict[str, Any]:
        data = {k: v for k, v in dataclasses.asdict(self).items() if k != "html"}
        data.update(
            drifted=self.drifted,
            reason=self.reason,
            drifted_columns=self.drifted_columns,
            score_psi_level=psi_level(self.score_psi),
        )
        return data


def _column_drift(metrics: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per-column results from the ValueDrift metrics: p-value tests drift when value <= threshold,
    distances when value >= threshold (Evidently's own rule)."""
    rows = []
    for metric in metrics:
        config = metric.get("config", {})
        if not config.get("type", "").endswith("ValueDrift"):
            continue
        method, threshold, value = config.get("method", ""), float(config.get("threshold")), metric["value"]
        value = float(value)
        p_value = "p_value" in method
        rows.append(
            {
                "column": config["column"],
                "method": method,
                "score": value,
                "threshold": threshold,
                "drifted": value <= threshold if p_value else value >= threshold,
            }
        )
    return rows


def run_drift_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    bundle: ModelBundle,
    threshold: float,
    current_scores: np.ndarray,
    reference_score_values: np.ndarray,
    source: str,
    current_total_rows: int | None = None,
    with_html: bool = True,
) -> DriftResult:
    """Evidently's data drift preset on the comparable columns, plus the PSI of the score."""
    from evidently import DataDefinition, Dataset, Report  # slow import: only where drift runs
    from evidently.presets import DataDriftPreset

    kinds = drift_columns(bundle)
    definition = DataDefinition(
        numerical_columns=[c for c, k in kinds.items() if k == "numerical"],
        categorical_columns=[c for c, k in kinds.items() if k == "categorical"],
    )
    cur = Dataset.from_pandas(comparable_frame(current, bundle), data_definition=definition)
    reference_values = comparable_frame(reference, bundle)
    ref = Dataset.from_pandas(reference_values, data_definition=definition)
    preset = DataDriftPreset(per_column_method=drift_methods(reference_values, kinds))
    snapshot = Report([preset]).run(current_data=cur, reference_data=ref)
    metrics = snapshot.dict()["metrics"]
    counted = next(m for m in metrics if m.get("config", {}).get("type", "").endswith("DriftedColumnsCount"))
    columns = _column_drift(metrics)
    return DriftResult(
        share=float(counted["value"]["share"]),
        drifted_count=int(counted["value"]["count"]),
        column_count=len(columns),
        threshold=float(threshold),
        columns=columns,
        score_psi=psi(reference_score_values, current_scores),
        reference_rows=len(reference),
        current_rows=len(current),
        current_total_rows=int(current_total_rows if current_total_rows is not None else len(current)),
        source=source,
        html=snapshot.get_html_str(as_iframe=False) if with_html else "",
    )


def drift_markdown(result: DriftResult) -> str:
    rows = [
        {
            "column": c["column"],
            "method": c["method"],
            "score": c["score"],
            "threshold": c["threshold"],
            "drifted": "yes" if c["drifted"] else "",
        }
        for c in sorted(result.columns, key=lambda c: (not c["drifted"], c["column"]))
    ]
    return "\n".join(
        [
            "# Drift check",
            "",
            f"- Current data: {result.source} ({result.current_rows} rows compared"
            f" of {result.current_total_rows})",
            f"- Reference: the model bundle's training sample ({result.reference_rows} rows)",
            f"- Share of drifted columns: **{result.share:.3f}** (threshold {result.threshold:g})",
            f"- Score PSI: {result.score_psi:.4f} ({psi_level(result.score_psi)})",
            f"- Decision: {result.reason}",
            "",
            "## Columns",
            markdown_table(rows),
        ]
    )
