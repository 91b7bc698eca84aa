"""Should drift retrain, and on what? Only on something new.

A drift retrain that learns from the data the champion already learnt from produces the same model
again (and a registry of identical versions). So the decision needs, besides drift:

* newly labelled rows: labelled rows (the batch's own, or labels that arrived later and were
  joined to the prediction log) that are not exact copies of rows of the champion's reference
  data; at least ``monitoring.min_new_labels`` of them, with both outcomes;
* training data that differs from the champion's: the table the retrain would ingest, validated
  and fingerprinted exactly as the training pipeline's ingest will, compared with the dataset
  fingerprint the champion's bundle records, together with the config and the code version.

The new rows are split (stratified, seeded): ``monitoring.new_rows_holdout`` of them are held out
of training, so the gate can compare challenger and champion where the drift is; the rest join the
training table under the configured window (``monitoring.retrain_window``): the reference plus the
new rows, the most recent N rows, or the rows of the last N days (the reference counts as dated at
the champion's training).
"""

from __future__ import annotations

import dataclasses
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from components.model.bundle import ModelBundle, data_fingerprint
from components.shared.config import Config
from components.shared.errors import DataValidationError

OBSERVED_AT = "__observed_at"  # when a new row was seen (scored); dropped before training
# Config sections that do not shape the trained model: differing there is not "something new".
_NOT_TRAINING = ("monitoring", "vertex", "tracking", "task_timeout_seconds")


@dataclass
class RetrainPlan:
    """The decision and the numbers behind it (prediction summary, decision artifact, bundle)."""

    retrain: bool
    reason: str
    drifted: bool
    labelled_rows: int  # labelled rows offered: the batch's and those joined from labels
    new_rows: int  # of them, not already in the champion's data
    min_new_labels: int
    window: str
    base_model_version: str
    alert: str | None = None  # drift detected but nothing trained: the line users must see
    training_rows: int = 0
    reference_rows_used: int = 0
    train_new_rows: int = 0
    holdout_rows: int = 0
    dataset_fingerprint: str | None = None
    labels: dict[str, Any] = field(default_factory=dict)  # the label join report, when labels came

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def provenance(self, holdout_uri: str) -> dict[str, Any]:
        """What the retrained bundle records about its data (``retrain_context``)."""
        return {
            "holdout_uri": holdout_uri,
            "window": self.window,
            "base_model_version": self.base_model_version,
            "training_rows": self.training_rows,
            "reference_rows": self.reference_rows_used,
            "new_rows_trained_on": self.train_new_rows,
            "new_rows_held_out": self.holdout_rows,
            "reason": self.reason,
        }


@dataclass
class RetrainData:
    """What a retrain learns from (``table``), what its gate judges on (``holdout``), and the config."""

    table: pd.DataFrame
    holdout: pd.DataFrame
    config: Config


# ------------------------------------------------------------------------------- new rows


def aligned_like(
    new: pd.DataFrame, reference: pd.DataFrame, required: list[str] | None = None
) -> pd.DataFrame:
    """``new`` in the reference's columns and dtypes where they convert cleanly (ints, dates).

    ``required`` (the model's inputs, ids and target; default: every reference column) must be
    there; other reference columns the new rows lack (the prediction log keeps only model inputs)
    are left empty.
    """
    needed = list(reference.columns) if required is None else required
    missing = [c for c in reference.columns if c not in new.columns and c in needed]
    if missing:
        raise DataValidationError(f"the labelled rows lack column(s) {missing} of the reference data")
    out = new.reindex(columns=list(reference.columns))
    for column in reference.columns:
        try:
            out[column] = out[column].astype(reference[column].dtype)
        except (TypeError, ValueError):
            continue
    return out


def _row_hashes(frame: pd.DataFrame) -> np.ndarray:
    return pd.util.hash_pandas_object(frame, index=False).to_numpy()


def new_labelled_rows(
    reference: pd.DataFrame, labelled: pd.DataFrame | None, required: list[str] | None = None
) -> pd.DataFrame:
    """The labelled rows that the champion's reference does not already hold, row for row.

    A customer seen again with other values or another outcome is new (that row then replaces the
    old one in the training table); an exact copy of a reference row is not. Repeated rows count
    once (the last). ``OBSERVED_AT`` is kept when present.
    """
    if labelled is None or not len(labelled):
        return reference.iloc[:0].copy()
    aligned = aligned_like(labelled, reference, required)
    fresh = ~np.isin(_row_hashes(aligned), _row_hashes(reference))
    if OBSERVED_AT in labelled.columns:
        aligned[OBSERVED_AT] = pd.to_datetime(labelled[OBSERVED_AT].to_numpy(), utc=True)
    kept = aligned[fresh]
    repeated = pd.Series(_row_hashes(kept[list(reference.columns)])).duplicated(keep="last").to_numpy()
    return kept[~repeated].reset_index(drop=True)


def split_holdout(
    new: pd.DataFrame, share: float, target: str, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(rows to train on, rows held out for the gate): a seeded split stratified by outcome."""
    rng = np.random.default_rng(seed)
    held: list[int] = []
    for _, group in new.groupby(target, sort=True):
        count = round(share * len(group))
        held += rng.choice(group.index.to_numpy(), size=count, replace=False).tolist()
    mask = new.index.isin(held)
    return new[~mask].reset_index(drop=True), new[mask].reset_index(drop=True)


def combine_labelled(frames: list[pd.DataFrame], id_columns: list[str]) -> pd.DataFrame:
    """Labelled rows from several sources; a customer labelled twice keeps the later source's row."""
    frames = [f for f in frames if f is not None and len(f)]
    if not frames:
        return pd.DataFrame()
    combined = pd.concat(frames, ignore_index=True)
    ids = [c for c in id_columns if c in combined.columns]
    if ids:
        combined = combined.drop_duplicates(ids, keep="last")
    return combined.reset_index(drop=True)


# --------------------------------------------------------------------------------- window


def _without_seen_again(reference: pd.DataFrame, new: pd.DataFrame, id_columns: list[str]) -> pd.DataFrame:
    """Reference rows of customers not among the new rows: the newer row wins, and a customer held
    out for the gate is not trained on through an older row either."""
    ids = [c for c in id_columns if c in reference.columns][:1]
    if not ids or not len(new):
        return reference
    return reference[~reference[ids[0]].isin(set(new[ids[0]].dropna()))]


def training_window(
    reference: pd.DataFrame,
    train_new: pd.DataFrame,
    config: Config,
    trained_at: datetime,
    now: datetime,
    held_out: pd.DataFrame | None = None,
) -> tuple[pd.DataFrame, int]:
    """(the training table, how many reference rows it kept) under ``monitoring.retrain_window``.

    reference+new: every reference row plus the new ones. recent_rows: the newest N rows, new rows
    first (newest first), then a seeded sample of the reference (its rows carry no dates of their
    own). recent_days: new rows seen in the last N days, and the reference if the champion was
    trained within them. Reference rows of customers among the new or held-out rows are left out.
    """
    monitoring, seed = config.monitoring, config.split.seed
    seen_again = pd.concat([f for f in (train_new, held_out) if f is not None], ignore_index=True)
    base = _without_seen_again(reference, seen_again, config.dataset.id_columns)
    new = train_new
    if OBSERVED_AT in new.columns:
        new = new.sort_values(OBSERVED_AT, ascending=False, kind="stable")
    if monitoring.retrain_window == "recent_rows":
        new = new.head(monitoring.retrain_recent_rows)
        room = max(0, monitoring.retrain_recent_rows - len(new))
        base = base.sample(n=min(room, len(base)), random_state=seed)
    elif monitoring.retrain_window == "recent_days":
        since = pd.Timestamp(now - timedelta(days=monitoring.retrain_recent_days))
        if OBSERVED_AT in new.columns:
            new = new[(pd.to_datetime(new[OBSERVED_AT], utc=True) >= since).to_numpy()]
        base = base if trained_at >= since else base.iloc[:0]
    new = new.drop(columns=[OBSERVED_AT], errors="ignore")
    table = pd.concat([base, new], ignore_index=True) if len(new) else base.reset_index(drop=True)
    return table, len(base)


# ------------------------------------------------------------------------------- identity


def retraining_config(config: Config, columns: list[str]) -> Config:
    """The config that reads a retraining table: the target is already 0/1 (positive label ``1``)
    and the validated table no longer holds the dropped columns."""
    dataset = dataclasses.replace(
        config.dataset,
        positive_label="1",
        drop_columns=[c for c in config.dataset.drop_columns if c in columns],
    )
    return dataclasses.replace(config, dataset=dataset)


def training_settings(config: dict[str, Any], columns: list[str]) -> dict[str, Any]:
    """The parts of a config that shape the model, in retraining form (comparable across runs)."""
    settings = {k: v for k, v in config.items() if k not in _NOT_TRAINING}
    dataset = dict(settings.get("dataset") or {})
    dataset["positive_label"] = "1"
    dataset["drop_columns"] = [c for c in dataset.get("drop_columns") or [] if c in columns]
    settings["dataset"] = dataset
    return settings


def ingested_fingerprint(table: pd.DataFrame, config: Config, source: str = "retraining table") -> str:
    """The fingerprint the training pipeline's ingest will give ``table`` (the same calls: written,
    read, validated, written and read again), so it compares with a bundle's dataset fingerprint.
    Also fails early, naming the problem, when ingest would refuse the table."""
    from components.data.reading import read_table  # lazy: the reading stack
    from components.data.validation import validate
    from components.shared.artifacts import read_frame, write_frame

    with tempfile.TemporaryDirectory(prefix="retrain-fingerprint-") as tmp:
        path = Path(tmp) / "retrain.parquet"
        write_frame(table, path)
        frame, _ = read_table(str(path), spec=config.dataset)
        validated = validate(frame, config.dataset, source=source)
        write_frame(validated.frame, Path(tmp) / "dataset.parquet")
        return data_fingerprint(read_frame(Path(tmp) / "dataset.parquet"))


def _same_training(
    champion: ModelBundle, fingerprint: str, config: Config, code_version: str, columns: list[str]
) -> bool:
    recorded = champion.extra.get("dataset_fingerprint")
    if not recorded or recorded != fingerprint or champion.code_version != code_version:
        return False
    champion_config = champion.extra.get("config") or {}
    return training_settings(champion_config, columns) == training_settings(config.to_dict(), columns)


# ------------------------------------------------------------------------------- decision


def plan_retraining(
    drift: dict[str, Any],
    reference: pd.DataFrame,
    labelled: pd.DataFrame | None,
    config: Config,
    champion: ModelBundle,
    champion_version: str,
    code_version: str,
    *,
    force: bool = False,
    now: datetime | None = None,
) -> tuple[RetrainPlan, RetrainData | None]:
    """Decide whether to retrain (drift, or ``force`` for an explicit retrain) and build its data."""
    spec, monitoring = config.dataset, config.monitoring
    if spec.target not in reference.columns:
        raise DataValidationError(f"the bundle's reference data lacks the target column {spec.target!r}")
    required = [*spec.id_columns, *champion.input_columns, spec.target]
    new = new_labelled_rows(reference, labelled, [c for c in required if c in reference.columns])
    plan = RetrainPlan(
        retrain=False,
        reason="",
        drifted=bool(drift.get("drifted")),
        labelled_rows=0 if labelled is None else len(labelled),
        new_rows=len(new),
        min_new_labels=monitoring.min_new_labels,
        window=monitoring.retrain_window,
        base_model_version=champion_version,
    )
    if not plan.drifted and not force:
        plan.reason = f"no drift: {drift.get('reason', 'share below the threshold')}"
        return plan, None
    trigger = "drift detected" if plan.drifted else "retrain requested"
    if len(new) < monitoring.min_new_labels:
        return _hold(
            plan,
            f"{trigger}, retraining needs labels: {len(new)} labelled rows < minimum "
            f"{monitoring.min_new_labels} (monitoring.min_new_labels); {plan.labelled_rows} labelled rows "
            "offered, rows already in the champion's data do not count",
        ), None
    classes = sorted(set(new[spec.target].dropna().astype(int))) if len(new) else []
    if len(new) and len(classes) < 2:
        return _hold(
            plan,
            f"{trigger}, retraining needs both outcomes: all {len(new)} new labelled rows "
            f"have {spec.target} = {classes[0]}",
        ), None
    train_new, holdout = split_holdout(new, monitoring.new_rows_holdout, spec.target, config.split.seed)
    trained_at = _parse_time(champion.created_at)
    table, kept = training_window(reference, train_new, config, trained_at, now or datetime.now(UTC), holdout)
    retrain_config = retraining_config(config, list(table.columns))
    fingerprint = ingested_fingerprint(table, retrain_config)
    plan.training_rows, plan.reference_rows_used = len(table), kept
    plan.train_new_rows, plan.holdout_rows = len(table) - kept, len(holdout)
    plan.dataset_fingerprint = fingerprint
    if _same_training(champion, fingerprint, retrain_config, code_version, list(table.columns)):
        return _hold(
            plan,
            f"{trigger}, nothing to retrain: the training data would be identical to "
            f"champion {champion_version}'s (data fingerprint {fingerprint[:12]}), with the same "
            f"config and code version {code_version}",
        ), None
    plan.retrain = True
    plan.reason = (
        f"{trigger}: retraining on {len(table)} rows ({kept} of the reference, {plan.train_new_rows} new, "
        f"window {monitoring.retrain_window}); {len(holdout)} new labelled rows held out for the gate"
    )
    holdout = holdout.drop(columns=[OBSERVED_AT], errors="ignore")
    return plan, RetrainData(table=table, holdout=holdout, config=retrain_config)


TABLE_FILE, HOLDOUT_FILE = "retrain.parquet", "holdout.parquet"


def write_retrain_files(data: RetrainData, directory: str | Path) -> tuple[Path, Path]:
    """The training table and the held-out new rows as Parquet in ``directory``."""
    from components.shared.artifacts import write_frame

    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    write_frame(data.table, folder / TABLE_FILE)
    write_frame(data.holdout, folder / HOLDOUT_FILE)
    return folder / TABLE_FILE, folder / HOLDOUT_FILE


def _hold(plan: RetrainPlan, reason: str) -> RetrainPlan:
    plan.reason = reason
    plan.alert = reason if plan.drifted else None
    return plan


def _parse_time(text: str) -> datetime:
    """A bundle's created_at (ISO 8601); unknown counts as long ago."""
    try:
        stamp = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return datetime.min.replace(tzinfo=UTC)
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)


def plan_markdown(plan: RetrainPlan) -> str:
    """The decision as a page (a Markdown artifact beside the drift report)."""
    lines = ["# Retraining decision", ""]
    if plan.alert:
        lines += [f"**ALERT: {plan.alert}**", ""]
    lines += [
        f"- Decision: {'retrain' if plan.retrain else 'no retrain'}: {plan.reason}",
        f"- Drift above the threshold: {'yes' if plan.drifted else 'no'}",
        f"- Labelled rows offered: {plan.labelled_rows}; new (not in champion {plan.base_model_version}'s "
        f"data): {plan.new_rows}; minimum: {plan.min_new_labels}",
        f"- Window: {plan.window}",
    ]
    if plan.retrain:
        lines += [
            f"- Training table: {plan.training_rows} rows ({plan.reference_rows_used} reference, "
            f"{plan.train_new_rows} new)",
            f"- Held out for the gate's comparison on the new rows: {plan.holdout_rows}",
        ]
    if plan.labels:
        lines += [
            "",
            "## Labels joined to the prediction log",
            *[f"- {k}: {v}" for k, v in plan.labels.items()],
        ]
    return "\n".join(lines) + "\n"
