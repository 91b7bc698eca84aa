"""The fitted scikit-learn steps of a feature transformer, compiled to plain numpy for the endpoint.

``FeatureTransformer.transform`` ends with two fitted pipelines: median imputation + standard
scaling for the numeric block, mode imputation + one-hot encoding for the categorical block. On one
row their per-call validation costs more than the arithmetic. ``compile_encoder`` derives, from the
fitted steps themselves, the constants that reproduce them (fill values, means and scales) and, for
each categorical column, where a category lands in the output: found by asking the fitted encoder
(one probe per category, and one with a value it never saw), so rare-category grouping and unknown
handling come from scikit-learn, not from a second implementation of its rules.

Only the step types fitted by ``components.model.features`` compile; anything else (an older or a
hand-made transformer) raises ``EncoderNotCompiled`` with the reason, and the endpoint keeps the
transformer's own steps. tests/unit/model/test_compiled_encoder.py holds the equality with the steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

ENCODER_VERSION = 1  # bump when the compiled form changes; recorded in the bundle and the model info
CHECK_TOLERANCE = 1e-9  # largest |compiled - fitted steps| accepted on the checked rows
CHECK_ROWS = 500  # reference rows the check encodes both ways (a few ms at load)
UNSEEN = "\x00propensity-unseen-category\x00"  # a value no training table holds


class EncoderNotCompiled(ValueError):
    """The transformer's steps are not ones this module reproduces; the message says which."""


@dataclass(frozen=True)
class NumericSteps:
    fill: np.ndarray  # the imputer's statistic per column
    mean: np.ndarray  # zeros when the scaler does not centre
    scale: np.ndarray  # ones when it does not scale

    def apply(self, block: np.ndarray) -> np.ndarray:
        block = np.array(block, dtype=np.float64)  # a copy: the fill writes into it
        missing = np.isnan(block)
        if missing.any():
            block[missing] = np.broadcast_to(self.fill, block.shape)[missing]
        block -= self.mean
        block /= self.scale
        return block


@dataclass(frozen=True)
class CategoricalSteps:
    fill: tuple[str, ...]  # the imputer's most frequent category per column
    positions: tuple[dict[str, int], ...]  # per column: category -> output column
    unseen: tuple[int | None, ...]  # per column: where an unseen category lands (None: nowhere)
    width: int

    def apply(self, block: np.ndarray) -> np.ndarray:
        rows = block.shape[0]
        out = np.zeros((rows, self.width), dtype=np.float64)
        columns = zip(self.fill, self.positions, self.unseen, strict=True)
        for j, (fill, positions, unseen) in enumerate(columns):
            for i in range(rows):
                value = block[i, j]
                if value is None or (type(value) is float and value != value):  # NaN: missing
                    value = fill
                column = positions.get(value, unseen)
                if column is not None:
                    out[i, column] = 1.0
        return out


@dataclass(frozen=True)
class CompiledEncoder:
    """Both blocks' steps as numpy; ``encode`` returns what the fitted steps return."""

    numeric: NumericSteps | None
    categorical: CategoricalSteps | None
    version: int = ENCODER_VERSION

    def encode(self, numeric_block: np.ndarray | None, categorical_block: np.ndarray | None) -> np.ndarray:
        blocks = []
        if self.numeric is not None and numeric_block is not None:
            blocks.append(self.numeric.apply(numeric_block))
        if self.categorical is not None and categorical_block is not None:
            blocks.append(self.categorical.apply(categorical_block))
        return blocks[0] if len(blocks) == 1 else np.hstack(blocks)


def compile_encoder(transformer: Any) -> CompiledEncoder:
    """The compiled steps of a fitted ``FeatureTransformer`` (raises ``EncoderNotCompiled``)."""
    numeric = _compile_numeric(transformer.numeric_pipeline)
    categorical = _compile_categorical(transformer.categorical_pipeline, transformer.categorical_features)
    if numeric is None and categorical is None:
        raise EncoderNotCompiled("the transformer has no fitted steps")
    return CompiledEncoder(numeric, categorical)


def _steps(pipeline: Any, expected: tuple[str, ...]) -> list[Any]:
    steps = [step for _, step in getattr(pipeline, "steps", [])]
    kinds = tuple(type(step).__name__ for step in steps)
    if kinds != expected:
        raise EncoderNotCompiled(f"steps {kinds} are not {expected}")
    return steps


def _compile_numeric(pipeline: Any) -> NumericSteps | None:
    if pipeline is None:
        return None
    imputer, scaler = _steps(pipeline, ("SimpleImputer", "StandardScaler"))
    if imputer.strategy != "median" or getattr(imputer, "add_indicator", False):
        raise EncoderNotCompiled(f"numeric imputer strategy {imputer.strategy!r} with indicator")
    fill = np.asarray(imputer.statistics_, dtype=np.float64)
    if not np.isfinite(fill).all():  # a column that was all missing: the imputer drops or keeps it
        raise EncoderNotCompiled("a numeric column has no fill value (all missing in training)")
    width = fill.shape[0]
    mean = np.zeros(width) if scaler.mean_ is None or not scaler.with_mean else np.asarray(scaler.mean_)
    scale = np.ones(width) if scaler.scale_ is None or not scaler.with_std else np.asarray(scaler.scale_)
    return NumericSteps(fill, mean.astype(np.float64), scale.astype(np.float64))


def _compile_categorical(pipeline: Any, columns: list[str]) -> CategoricalSteps | None:
    if pipeline is None:
        return None
    from components.model.features import onehot_names  # the transformer's own output layout

    imputer, onehot = _steps(pipeline, ("SimpleImputer", "OneHotEncoder"))
    if imputer.strategy != "most_frequent" or getattr(imputer, "add_indicator", False):
        raise EncoderNotCompiled(f"categorical imputer strategy {imputer.strategy!r} with indicator")
    if onehot.drop is not None or onehot.handle_unknown == "error":
        raise EncoderNotCompiled(f"one-hot drop={onehot.drop!r}, handle_unknown={onehot.handle_unknown!r}")
    fill = tuple(str(v) for v in imputer.statistics_)
    if len(columns) != len(fill):
        raise EncoderNotCompiled("categorical columns and imputer statistics are out of step")
    _, owners = onehot_names(pipeline, columns)
    base = np.array([[str(categories[0]) for categories in onehot.categories_]], dtype=object)
    positions, unseen = [], []
    for j, (column, categories) in enumerate(zip(columns, onehot.categories_, strict=True)):
        block = [i for i, owner in enumerate(owners) if owner == column]
        probes = [str(c) for c in categories] + [UNSEEN]
        rows = np.repeat(base, len(probes), axis=0)
        rows[:, j] = probes
        encoded = np.asarray(onehot.transform(rows), dtype=np.float64)[:, block]
        landed = [_landing(encoded[k], block, probe) for k, probe in enumerate(probes)]
        positions.append(dict(zip(probes[:-1], landed[:-1], strict=True)))
        unseen.append(landed[-1])
    return CategoricalSteps(fill, tuple(positions), tuple(unseen), len(owners))


def _landing(block_row: np.ndarray, block: list[int], probe: str) -> int | None:
    """The output column a probed category sets within its column's block (None: it sets none)."""
    hits = np.flatnonzero(block_row != 0.0)
    if hits.size == 0:
        return None
    if hits.size > 1 or block_row[hits[0]] != 1.0:
        raise EncoderNotCompiled(f"category {probe!r} does not encode to a single 1")
    return block[int(hits[0])]


def use_compiled_encoder(transformer: Any) -> str | None:
    """Make ``transformer`` encode with its fitted steps compiled to numpy from now on; returns
    None, or why they cannot be compiled (then the steps themselves stay in use)."""
    try:
        transformer.compiled = compile_encoder(transformer)
    except EncoderNotCompiled as exc:
        transformer.compiled = None
        return str(exc)
    except Exception as exc:  # steps of a kind the probes do not expect: keep them
        transformer.compiled = None
        return f"{type(exc).__name__}: {exc}"
    return None


_ABSENT = object()


def check_compiled_encoder(transformer: Any, rows: Any) -> dict[str, Any]:
    """Compile ``transformer``'s steps and hold them against the steps themselves on ``rows``.

    Returns the record a bundle keeps and the endpoint reports: ``{"compiled": True, "version",
    "rows_checked", "max_abs_difference"}``, or ``{"compiled": False, "version", "reason"}`` when
    the steps cannot be compiled or the compiled form differs from them. Whatever encoder the
    transformer had before is put back: checking never changes what it encodes with.
    """
    previous = transformer.__dict__.get("compiled", _ABSENT)
    transformer.compiled = None
    try:
        expected = transformer.transform(rows)
        reason = use_compiled_encoder(transformer)
        if reason is None:
            reason, difference = _difference(transformer.transform(rows), expected)
        if reason is not None:
            return {"compiled": False, "version": ENCODER_VERSION, "reason": reason}
        return {
            "compiled": True,
            "version": ENCODER_VERSION,
            "rows_checked": int(expected.shape[0]),
            "max_abs_difference": difference,
        }
    finally:
        if previous is _ABSENT:
            del transformer.compiled
        else:
            transformer.compiled = previous


def _difference(compiled: np.ndarray, expected: np.ndarray) -> tuple[str | None, float]:
    """(None, largest difference) when the two encodings agree, else (why not, inf)."""
    if compiled.shape != expected.shape:
        return f"compiled output has shape {compiled.shape}, the fitted steps {expected.shape}", np.inf
    both_nan = np.isnan(compiled) & np.isnan(expected)
    gaps = np.where(both_nan, 0.0, np.abs(compiled - expected))
    largest = float(np.max(gaps)) if gaps.size else 0.0
    if not largest <= CHECK_TOLERANCE:  # also catches a NaN on one side only
        rows = int(expected.shape[0])
        return f"compiled output differs from the fitted steps by {largest:.3g} on {rows} rows", np.inf
    return None, largest
