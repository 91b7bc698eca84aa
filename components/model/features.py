"""Stage 3: the fitted feature transformer, the single piece of feature code training and serving share.

Training fits it on the validated train frame; the model bundle carries it; the endpoint calls the
same ``transform`` on a DataFrame built from raw JSON instances. So ``transform`` owns every step
from raw columns to the float matrix: selecting the inputs, coercing JSON-shaped values (numbers as
strings, ISO or ``dd-mm-yyyy`` dates, ``None``), the marketing derived features, dates as day counts,
imputation, scaling and one-hot encoding. Nothing of this is repeated anywhere else.

The learned parts are scikit-learn pieces: one ``Pipeline`` (``SimpleImputer`` median +
``StandardScaler``) for the numeric block and one (``SimpleImputer`` most frequent +
``OneHotEncoder`` with rare categories grouped) for the categorical block. They are applied to two
numpy blocks rather than through a ``ColumnTransformer`` on a DataFrame, because serving scores
single rows and the DataFrame/ColumnTransformer machinery costs several milliseconds per call
there (see ``FeatureTransformer.transform``). The transformer is saved with skops, never pickle,
behind an explicit allow-list of types.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sklearn
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from components.model.bundle_format import FORMAT_VERSION, dump_skops, load_skops
from components.model.coercion import (
    RawRows,
    coerce_datetime,
    column_values,
    days_before,
    to_category_strings,
    to_float,
)
from components.model.derived import (
    DERIVED_SOURCES,
    MARKETING_DATE_COLUMNS,
    MARKETING_SOURCE_COLUMNS,
    REPLACED_BY_DERIVED,
    derive,
    uses_marketing_features,
)
from components.shared.config import DatasetSpec, FeatureConfig
from components.shared.errors import BundleError, DataValidationError

# --- serialisation allow-list ---------------------------------------------------------------------

# Types in a saved transformer that skops does not trust by default, found with
# ``skops.io.get_untrusted_types`` on transformers fitted on marketing-like and telco-like frames
# (numeric, string, boolean, categorical and date columns; numeric-only and categorical-only).
# ``numpy.dtype`` is SimpleImputer's ``_fit_dtype``. What skops trusts by default is plain data
# (builtins, numpy arrays) and scikit-learn estimators.
# Any other type in a file is refused at load time: a transformer file is input, and loading it
# must not run arbitrary code.
TRUSTED_TYPES: list[str] = [
    "components.model.features.FeatureTransformer",
    "numpy.dtype",
]

# --- the transformer ------------------------------------------------------------------------------


class FeatureTransformer:
    """Fitted raw-frame -> float64 matrix transform, with the names serving and explanations need.

    ``input_columns``: raw columns ``transform`` requires (target, id and drop columns excluded;
    extra columns are ignored). ``feature_names``: the encoded output columns. ``source_columns``:
    encoded name -> raw input columns it comes from. ``dropped_columns``: candidate features left
    out at fit time -> reason. Built by ``fit_transformer``; the constructor only stores.
    """

    def __init__(
        self,
        numeric_inputs: list[str],
        categorical_inputs: list[str],
        date_inputs: list[str],
        derive_marketing: bool,
        reference_date: str,
        min_birth_year: int,
        date_format: str | None,
        dayfirst: bool,
    ) -> None:
        self.numeric_inputs = numeric_inputs
        self.categorical_inputs = categorical_inputs
        self.date_inputs = date_inputs
        self.derive_marketing = derive_marketing
        self.reference_date = reference_date
        self.min_birth_year = min_birth_year
        self.date_format = date_format
        self.dayfirst = dayfirst
        self.input_columns: list[str] = [*numeric_inputs, *categorical_inputs, *date_inputs]
        self.numeric_features: list[str] = []
        self.categorical_features: list[str] = []
        self.numeric_pipeline: Pipeline | None = None
        self.categorical_pipeline: Pipeline | None = None
        self.log_features: list[str] = []
        self.feature_names: list[str] = []
        self.source_columns: dict[str, list[str]] = {}
        self.dropped_columns: dict[str, str] = {}

    def prepare(self, raw: RawRows) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """Raw frame -> (numeric feature arrays, categorical arrays) before imputation and encoding.

        Coerces JSON-shaped values, adds the marketing features and turns dates into days before
        the reference date. Works column by column on numpy arrays: on one row this is several
        times cheaper than building intermediate DataFrames.
        """
        self._check_columns(raw)
        reference = pd.Timestamp(self.reference_date)
        coerced = {c: to_float(column_values(raw, c)) for c in self.numeric_inputs}
        dates = {c: coerce_datetime(raw[c], self.date_format, self.dayfirst) for c in self.date_inputs}
        numeric: dict[str, np.ndarray] = {}
        replaced: set[str] = set()
        if self.derive_marketing:
            numeric.update(derive({**coerced, **dates}, reference, self.min_birth_year, self.dayfirst))
            replaced = set(REPLACED_BY_DERIVED)
        for name, values in coerced.items():
            if name not in replaced:
                numeric.setdefault(name, values)
        for name, values in dates.items():
            if name not in replaced:
                numeric.setdefault(f"{name}_days", days_before(values, reference))
        categorical = {c: to_category_strings(column_values(raw, c)) for c in self.categorical_inputs}
        return numeric, categorical

    def _check_columns(self, raw: RawRows) -> int:
        """Raise naming missing columns (or ragged mapping columns); return the number of rows."""
        present = set(raw.columns if isinstance(raw, pd.DataFrame) else raw.keys())
        missing = [c for c in self.input_columns if c not in present]
        if missing:
            raise DataValidationError(f"missing input column(s): {', '.join(missing)}")
        if not isinstance(raw, pd.DataFrame):
            lengths = {c: len(raw[c]) for c in self.input_columns}
            if len(set(lengths.values())) > 1:
                raise DataValidationError(f"input columns have different lengths: {lengths}")
            return next(iter(lengths.values()), 0)
        return len(raw)

    def numeric_block(self, numeric: Mapping[str, np.ndarray]) -> np.ndarray:
        """The kept numeric columns, heavy-tailed ones as ``log1p`` (see ``skewed_columns``)."""
        logged = set(getattr(self, "log_features", ()))  # bundles from before the log step have none
        return np.column_stack(
            [_signed_log1p(numeric[c]) if c in logged else numeric[c] for c in self.numeric_features]
        )

    def transform(self, raw: RawRows) -> np.ndarray:
        """The float64 feature matrix (rows x len(feature_names)) of ``raw``.

        ``raw`` is a DataFrame or, cheaper for serving, a mapping of column -> list of values
        (building a one-row DataFrame costs about 0.4 ms, as much as half of this method).

        The fitted steps are applied one by one (``step.transform``) instead of through
        ``Pipeline.transform``, whose per-call fitted/param/routing checks cost about 0.2 ms per
        pipeline on one row; the steps were checked when fitted. Inputs are finite or NaN (see
        ``to_float``) and imputed before scaling, so sklearn's finiteness scan is skipped too.
        """
        if self._check_columns(raw) == 0:
            return np.empty((0, len(self.feature_names)), dtype=np.float64)  # sklearn rejects 0 rows
        numeric, categorical = self.prepare(raw)
        compiled = getattr(self, "compiled", None)
        if compiled is not None:  # the endpoint's path: the same steps as numpy constants
            return compiled.encode(
                self.numeric_block(numeric) if self.numeric_pipeline is not None else None,
                _object_block(categorical, self.categorical_features)
                if self.categorical_pipeline is not None
                else None,
            )
        blocks = []
        with sklearn.config_context(assume_finite=True):
            if self.numeric_pipeline is not None:
                block = self.numeric_block(numeric)
                blocks.append(_apply_steps(self.numeric_pipeline, block))
            if self.categorical_pipeline is not None:
                block = np.column_stack([categorical[c] for c in self.categorical_features])
                blocks.append(_apply_steps(self.categorical_pipeline, block))
        out = blocks[0] if len(blocks) == 1 else np.hstack(blocks)
        return np.asarray(out, dtype=np.float64)


def _object_block(columns: Mapping[str, np.ndarray], names: list[str]) -> np.ndarray:
    block = np.empty((len(columns[names[0]]) if names else 0, len(names)), dtype=object)
    for j, name in enumerate(names):
        block[:, j] = columns[name]
    return block


def _signed_log1p(values: np.ndarray) -> np.ndarray:
    """sign(x) * log1p(|x|): monotone, defined everywhere, so unseen negatives at serving are fine."""
    return np.sign(values) * np.log1p(np.abs(values))


# Money and count columns (Income, spend, balances) are heavy-tailed: after plain scaling a few
# customers sit 10-50 standard deviations out and dominate linear models and MLPs, while trees do
# not care. Columns this skewed are log-scaled before scaling; a monotone map leaves trees unchanged.
SKEW_LIMIT = 2.0
MIN_DISTINCT_FOR_LOG = 10  # flags and small counts stay as they are


def skewed_columns(numeric: Mapping[str, np.ndarray], names: Sequence[str]) -> list[str]:
    """Non-negative columns with many distinct values whose sample skewness exceeds SKEW_LIMIT."""
    chosen = []
    for name in names:
        values = numeric[name][np.isfinite(numeric[name])]
        if values.size < 3 or values.min() < 0 or np.unique(values).size < MIN_DISTINCT_FOR_LOG:
            continue
        std = values.std()
        if std > 0 and float(np.mean(((values - values.mean()) / std) ** 3)) > SKEW_LIMIT:
            chosen.append(name)
    return chosen


def _apply_steps(pipeline: Pipeline, X: np.ndarray) -> np.ndarray:
    """``pipeline.transform(X)`` without the per-call wrapper overhead (same steps, same order)."""
    for _, step in pipeline.steps:
        X = step.transform(X)
    return X


# --- fitting --------------------------------------------------------------------------------------


def _column_kind(name: str, values: pd.Series, spec: DatasetSpec) -> str:
    """'date', 'numeric' or 'categorical' from the validated frame's dtype."""
    kind = values.dtype.kind
    if name in spec.date_columns or kind == "M":
        return "date"
    if kind in "iuf":
        return "numeric"
    if kind in "bOSU" or isinstance(values.dtype, pd.CategoricalDtype | pd.StringDtype):
        return "categorical"
    raise DataValidationError(f"column {name!r} has unsupported dtype {values.dtype} for a feature")


def _classify_inputs(train: pd.DataFrame, spec: DatasetSpec, derive: bool) -> dict[str, list[str]]:
    """Candidate raw feature columns by kind; the target, id and drop columns are never features.

    With the marketing features on, their sources are read as numbers / dates whatever their
    train dtype, because that is how ``derive`` reads them.
    """
    excluded = {spec.target, *spec.id_columns, *spec.drop_columns}
    kinds: dict[str, list[str]] = {"numeric": [], "categorical": [], "date": []}
    for column in train.columns:
        name = str(column)
        if name in excluded:
            continue
        if derive and name in MARKETING_SOURCE_COLUMNS:
            kinds["date" if name in MARKETING_DATE_COLUMNS else "numeric"].append(name)
        else:
            kinds[_column_kind(name, train[column], spec)].append(name)
    if not any(kinds.values()):
        raise DataValidationError("the training frame has no feature columns besides target/id/drop")
    return kinds


def _constant_columns(columns: Mapping[str, np.ndarray]) -> dict[str, str]:
    """Columns with at most one distinct present value: after imputation they would be constant."""
    dropped: dict[str, str] = {}
    for name, values in columns.items():
        present = pd.Series(values).dropna()
        if present.empty:
            dropped[name] = "entirely missing in training data"
        elif present.nunique() == 1:
            value = present.iloc[0]
            value = value.item() if isinstance(value, np.generic) else value
            dropped[name] = f"constant in training data (value {value!r})"
    return dropped


def _prepared_sources(t: FeatureTransformer) -> dict[str, list[str]]:
    """Prepared column -> raw input columns it is computed from."""
    sources = {name: list(cols) for name, cols in DERIVED_SOURCES.items()} if t.derive_marketing else {}
    for name in [*t.numeric_inputs, *t.categorical_inputs]:
        sources.setdefault(name, [name])
    for name in t.date_inputs:
        sources.setdefault(f"{name}_days", [name])
    return sources


def _numeric_pipeline() -> Pipeline:
    return Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())])


def _min_frequency(value: float) -> float | int | None:
    """Config value -> OneHotEncoder's: <= 0 means no grouping, >= 1 a row count, else a fraction."""
    if value <= 0:
        return None
    return int(value) if value >= 1 else float(value)


def _categorical_pipeline(cfg: FeatureConfig) -> Pipeline:
    """Mode imputation, then one-hot with rare categories grouped into one '<col>_infrequent_sklearn'.

    Unknown categories at serving map to the infrequent column when the column has one, otherwise
    to all zeros; neither fails.
    """
    onehot = OneHotEncoder(
        handle_unknown="infrequent_if_exist",
        min_frequency=_min_frequency(cfg.rare_category_min_frequency),
        max_categories=cfg.max_categories if cfg.max_categories > 0 else None,
        sparse_output=False,
    )
    return Pipeline([("impute", SimpleImputer(strategy="most_frequent")), ("onehot", onehot)])


def onehot_names(pipeline: Pipeline, columns: list[str]) -> tuple[list[str], list[str]]:
    """One-hot output names and the categorical column of each, in output order.

    Each column yields one output per kept category plus one shared output for its infrequent
    categories; counting this way avoids parsing ``<col>_<category>`` names, which is ambiguous
    when column names contain underscores.
    """
    onehot: OneHotEncoder = pipeline.named_steps["onehot"]
    names = [str(n) for n in onehot.get_feature_names_out(columns)]
    owners: list[str] = []
    rare_lists = getattr(onehot, "infrequent_categories_", None) or [None] * len(columns)  # no grouping
    for column, categories, rare in zip(columns, onehot.categories_, rare_lists, strict=True):
        owners.extend([column] * (len(categories) - (len(rare) - 1 if rare is not None else 0)))
    if len(owners) != len(names):
        raise RuntimeError("one-hot feature names and their columns are out of step")
    return names, owners


def _stack(columns: Mapping[str, np.ndarray], names: list[str]) -> np.ndarray:
    return np.column_stack([columns[c] for c in names])


def fit_transformer(train: pd.DataFrame, spec: DatasetSpec, cfg: FeatureConfig) -> FeatureTransformer:
    """Fit the transformer on the validated train frame (never on valid/test: no leakage).

    Columns are typed from the train dtypes. Candidate features with at most one distinct value in
    train are dropped and recorded; raw columns that feed no kept feature are not required later.
    """
    derive = uses_marketing_features(
        [c for c in map(str, train.columns) if c not in {spec.target, *spec.id_columns, *spec.drop_columns}],
        cfg,
    )
    kinds = _classify_inputs(train, spec, derive)
    settings: dict[str, Any] = {
        "derive_marketing": derive,
        "reference_date": cfg.reference_date,
        "min_birth_year": cfg.min_birth_year,
        "date_format": spec.date_format,
        "dayfirst": spec.dayfirst,
    }
    candidate = FeatureTransformer(kinds["numeric"], kinds["categorical"], kinds["date"], **settings)
    numeric, categorical = candidate.prepare(train)
    dropped = _constant_columns({**numeric, **categorical})
    sources = _prepared_sources(candidate)
    numeric_names = [c for c in numeric if c not in dropped]
    categorical_names = [c for c in categorical if c not in dropped]
    if not numeric_names and not categorical_names:
        raise DataValidationError("every candidate feature is constant or empty in the training data")
    needed = {c for name in [*numeric_names, *categorical_names] for c in sources[name]}
    if derive:
        needed.update(MARKETING_SOURCE_COLUMNS)  # derive reads all of them
    inputs = {kind: [c for c in columns if c in needed] for kind, columns in kinds.items()}
    t = FeatureTransformer(inputs["numeric"], inputs["categorical"], inputs["date"], **settings)
    t.input_columns = [c for c in map(str, train.columns) if c in needed]  # in file order
    t.numeric_features, t.categorical_features = numeric_names, categorical_names
    t.dropped_columns = dropped
    _fit_blocks(t, numeric, categorical, cfg)
    t.source_columns = {
        name: list(sources[owner]) for name, owner in zip(t.feature_names, _owners(t), strict=True)
    }
    return t


def _fit_blocks(
    t: FeatureTransformer,
    numeric: Mapping[str, np.ndarray],
    categorical: Mapping[str, np.ndarray],
    cfg: FeatureConfig,
) -> None:
    """Fit the numeric and categorical pipelines on the kept prepared columns; set feature_names."""
    names: list[str] = []
    if t.numeric_features:
        if cfg.log_skewed:
            t.log_features = skewed_columns(numeric, t.numeric_features)
        t.numeric_pipeline = _numeric_pipeline().fit(t.numeric_block(numeric))
        names += t.numeric_features
    if t.categorical_features:
        t.categorical_pipeline = _categorical_pipeline(cfg).fit(_stack(categorical, t.categorical_features))
        names += onehot_names(t.categorical_pipeline, t.categorical_features)[0]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise DataValidationError(f"encoded feature name(s) {', '.join(duplicated)} clash; rename the column")
    t.feature_names = names


def _owners(t: FeatureTransformer) -> list[str]:
    """The prepared column behind each encoded feature, in output order."""
    owners = list(t.numeric_features)
    if t.categorical_pipeline is not None:
        owners += onehot_names(t.categorical_pipeline, t.categorical_features)[1]
    return owners


# --- persistence ----------------------------------------------------------------------------------


def save_transformer(transformer: FeatureTransformer, path: Path) -> None:
    """Write the transformer as a skops file (no pickle: loading it cannot run arbitrary code)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    dump_skops(transformer, path)


def load_transformer(path: Path, format_version: int = FORMAT_VERSION) -> FeatureTransformer:
    """Load a skops file, refusing any type outside skops' defaults and ``TRUSTED_TYPES``
    (an older bundle's type paths are renamed first: ``bundle_format``)."""
    transformer = load_skops(path, TRUSTED_TYPES, "transformer file", format_version)
    if not isinstance(transformer, FeatureTransformer):
        raise BundleError(
            f"transformer file {path} holds a {type(transformer).__name__}, not a FeatureTransformer"
        )
    return transformer
