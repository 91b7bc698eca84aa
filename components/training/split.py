"""Stage 2 of training: stratified, seeded development ("train") / test split.

The test split is held out until evaluation. Model selection, calibration and the threshold use
k-fold cross-validation on the development split (see ``components.training.tune.make_folds``), which uses
every development row once for validation instead of a small fixed validation split.
Stratifying keeps the class balance equal across splits; the seed makes reruns identical.
"""

from __future__ import annotations

import pandas as pd
from sklearn.model_selection import train_test_split

from components.shared.config import SplitConfig
from components.shared.errors import DataValidationError

MIN_ROWS_PER_CLASS = 2  # fewer and ROC-AUC / calibration on that split are undefined or noise


def split_frame(df: pd.DataFrame, target: str, cfg: SplitConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split into (train, test); ``cfg.test_size`` is the test fraction of all rows."""
    _check_target(df, target)
    _check_sizes(cfg)
    try:
        train, test = train_test_split(
            df, test_size=cfg.test_size, stratify=df[target], random_state=cfg.seed
        )
    except ValueError as exc:  # sklearn: a class too small to stratify, or an empty split
        raise DataValidationError(
            f"cannot split {len(df)} rows stratified on {target!r} (class counts "
            f"{_counts(df, target)}) with test_size={cfg.test_size}: {exc}"
        ) from exc
    splits = {"train": train, "test": test}
    for name, part in splits.items():
        counts = _counts(part, target)
        if min(counts.values()) < MIN_ROWS_PER_CLASS:
            raise DataValidationError(
                f"split {name!r} would have too few rows of a class ({counts}, at least "
                f"{MIN_ROWS_PER_CLASS} each needed); use more data or larger split sizes"
            )
    return tuple(part.reset_index(drop=True) for part in splits.values())  # type: ignore[return-value]


def _check_target(df: pd.DataFrame, target: str) -> None:
    if target not in df.columns:
        raise DataValidationError(f"target column {target!r} not found; columns: {list(df.columns)}")
    values = set(pd.unique(df[target].dropna()))
    if df[target].isna().any() or not values <= {0, 1}:
        raise DataValidationError(
            f"target column {target!r} must hold int 0/1 without missing values (run validate first); "
            f"found {sorted(map(str, values))[:10]}"
        )


def _check_sizes(cfg: SplitConfig) -> None:
    if not 0 < cfg.test_size < 1:
        raise DataValidationError(f"split size test_size={cfg.test_size} must be in (0, 1)")


def _counts(df: pd.DataFrame, target: str) -> dict[int, int]:
    return {label: int((df[target] == label).sum()) for label in (0, 1)}
