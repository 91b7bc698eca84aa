"""The loaded model: a verified bundle plus what is derived from it once, and how it answers.

``load_model`` verifies a bundle directory and builds a ``LoadedModel`` (request schema, SHAP
background, raw-scale threshold, example request, compiled encoder); the ``LoadedModel`` scores,
explains, shapes the predictions and writes the documents (model info, example request, OpenAPI).
Nothing here knows about HTTP, batching or where bundles come from: the app, the batcher, the
in-process benchmark and the tests all call the same methods. ``limit_threads`` is the thread
setting scoring runs with (one BLAS/OpenMP thread), applied by the app at start-up and by the
benchmark.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from components.model.bundle import ModelBundle, bundle_digest, load_bundle, load_reference
from components.model.calibration import apply_temperature
from components.model.explain import contributions, fast_tree_shap, raw_mapping, summarize_background
from components.model.families import predict_proba
from components.model.treeshap import TreeShapTables
from components.monitoring.prediction_log import utc_timestamp
from components.serving.errors import request_error
from components.serving.openapi import build_openapi
from components.serving.schema import Parameters, ParsedRequest, RequestSchema
from components.serving.settings import DEFAULT_HEALTH_ROUTE, DEFAULT_PREDICT_ROUTE, ServeSettings
from components.shared.errors import BundleError

logger = logging.getLogger("propensity.serving")

# reference rows behind explanations (linear SHAP needs only their mean)
EXPLAIN_BACKGROUND = {"logreg": 1000, "mlp": 1000, "blend": 1000}
# Permutation SHAP (an MLP, alone or in a blend) at the endpoint: about this many model rows per
# explained row. One antithetic permutation pair walks 2 * (features + 1) masks, each averaged
# over the background, so the background is summarised into EXPLAIN_EVALUATIONS // (2 * (f + 1))
# weighted k-means centroids (12 for 38 features), within these bounds.
EXPLAIN_EVALUATIONS = 1000
BACKGROUND_CENTROIDS = (4, 50)
EXAMPLE_CANDIDATE_ROWS = 20
TREE_SHAP_CHECK_ROWS = 50  # reference rows the TreeSHAP tables are held against pred_contribs on
# An explanation expected to take at most this long is computed on the event loop: handing it to
# the explain thread and back costs more than that (about 2 ms at the server for one XGBoost row).
INLINE_EXPLAIN_MS = 2.0


@dataclass
class Scored:
    """Model output for a batch of rows: raw and calibrated probabilities (and features)."""

    probability: np.ndarray
    calibrated: np.ndarray
    features: np.ndarray


@dataclass
class LoadedModel:
    """A verified bundle plus everything derived from it once, so requests only compute."""

    bundle: ModelBundle
    version: str
    model_name: str
    digest: str
    source: str
    schema: RequestSchema
    background: np.ndarray
    raw_threshold: float
    example: dict[str, Any]
    routes: tuple[str, str] = (DEFAULT_HEALTH_ROUTE, DEFAULT_PREDICT_ROUTE)
    max_explain_instances: int = 100
    token_required: bool = False
    loaded_at: str = field(default_factory=utc_timestamp)
    encoder: dict[str, Any] = field(default_factory=dict)  # compiled or not, and why (model info)
    tree_shap: TreeShapTables | None = None  # the xgboost model's precomputed TreeSHAP, if built
    tree_shap_record: dict[str, Any] = field(default_factory=dict)  # built or not, and why
    raw_names: list[str] = field(default_factory=list)  # raw input columns explanations sum to
    raw_map: np.ndarray = field(default_factory=lambda: np.empty((0, 0)))  # features x raw_names
    explain_ms_per_row: float = math.inf  # measured at load: decides where explanations run
    background_weights: np.ndarray | None = None  # a summarised background's weights (MLP, blend)

    @property
    def threshold(self) -> float:
        return float(self.bundle.threshold)

    # ------------------------------------------------------------------ scoring

    def score(self, columns: dict[str, Sequence[Any]]) -> Scored:
        """Transform with the bundle's own transformer, predict, apply the temperature."""
        features = self.bundle.transformer.transform(self.schema.model_arrays(columns))
        probability = predict_proba(self.bundle.model, features)
        calibrated = apply_temperature(probability, self.bundle.temperature)
        return Scored(probability, calibrated, features)

    def explain(self, features: np.ndarray, top_k: int) -> list[dict[str, Any]]:
        """Top-k SHAP contributions per row by raw input column, in the model's log-odds.

        ``base_value + sum(all contributions) == logit(probability)`` (the model's own
        probability; the temperature divides both sides for the calibrated one).
        """
        bundle = self.bundle
        base, values = contributions(
            bundle.model, bundle.family, features, self.background, self.tree_shap, self.background_weights
        )
        names, raw = self.raw_names, values @ self.raw_map
        order = np.argsort(-np.abs(raw), axis=1, kind="stable")[:, :top_k]
        return [
            {
                "base_value": float(base[i]),
                "contributions": {names[j]: float(raw[i, j]) for j in order[i]},
            }
            for i in range(len(raw))
        ]

    def predictions(
        self, scored: Scored, params: Parameters, explanations: list[dict[str, Any]] | None = None
    ) -> list[dict[str, Any]]:
        """The response items. The label is the same decision whichever scale is served: the
        bundle threshold was chosen on calibrated probabilities, and with ``use_calibration``
        false it is mapped through the (monotone) temperature onto the raw scale.
        """
        labels = (scored.calibrated >= self.threshold).astype(int).tolist()
        raw = scored.probability.tolist()
        if params.use_calibration:
            calibrated, threshold = scored.calibrated.tolist(), self.threshold
        else:
            calibrated, threshold = [None] * len(raw), self.raw_threshold
        version = self.version
        items = [
            {
                "probability": p,
                "calibrated_probability": c,
                "label": label,
                "threshold": threshold,
                "model_version": version,
            }
            for p, c, label in zip(raw, calibrated, labels, strict=True)
        ]
        for item, explanation in zip(items, explanations or [], strict=False):
            item["explanation"] = explanation
        return items

    def explains_inline(self, rows: int) -> bool:
        """Whether explaining ``rows`` is cheap enough to do on the event loop (see INLINE_EXPLAIN_MS)."""
        return rows * self.explain_ms_per_row <= INLINE_EXPLAIN_MS

    def measure_explain(self, calls: int = 3) -> float:
        """Milliseconds to explain the example row (best of ``calls``): the cost per row, or
        infinity when the example cannot be explained (explanations then leave the event loop)."""
        try:
            parsed = self.schema.parse(orjson.dumps({"instances": [self.example]}))
            features = self.score(parsed.columns).features
            best = math.inf
            for _ in range(calls):
                started = time.perf_counter()
                self.explain(features, 5)
                best = min(best, (time.perf_counter() - started) * 1000)
            return best
        except Exception:
            logger.warning("could not time an explanation of the example row", exc_info=True)
            return math.inf

    def check_explain(self, parsed: ParsedRequest) -> None:
        n = len(parsed.instances)
        if parsed.parameters.explain and n > self.max_explain_instances:
            raise request_error(
                422,
                "instances",
                f"has {n} instances; with parameters.explain at most {self.max_explain_instances}",
            )

    def respond(self, body: bytes) -> tuple[ParsedRequest, Scored, bytes]:
        """The whole predict route without HTTP or batching (also the in-process benchmark)."""
        parsed = self.schema.parse(body)
        self.check_explain(parsed)
        scored = self.score(parsed.columns)
        explanations = (
            self.explain(scored.features, parsed.parameters.top_k) if parsed.parameters.explain else None
        )
        items = self.predictions(scored, parsed.parameters, explanations)
        return parsed, scored, orjson.dumps({"predictions": items})

    # ------------------------------------------------------------------ documents

    def info(self) -> dict[str, Any]:
        bundle = self.bundle
        calibration = dict(bundle.extra.get("calibration") or {})
        return {
            "model_name": self.model_name,
            "version": self.version,
            "family": bundle.family,
            "bundle_digest": self.digest,
            "source": self.source,
            "created_at": bundle.created_at,
            "loaded_at": self.loaded_at,
            "code_version": bundle.code_version,
            "metrics": bundle.metrics,
            "threshold": self.threshold,
            "raw_threshold": self.raw_threshold,
            "calibration": {
                "method": "temperature scaling",
                "temperature": float(bundle.temperature),
                "kept": calibration.get("kept", bundle.temperature != 1.0),
                "reason": calibration.get("reason", ""),
            },
            "encoder": self.encoder,
            "input_schema": {
                "fields": self.schema.describe_fields(),
                "id_columns": self.schema.id_columns,
                "max_instances": self.schema.max_instances,
                "max_explain_instances": self.max_explain_instances,
            },
            "explanation": {
                "space": "log-odds of the model probability (before the temperature)",
                "method": {"xgboost": "TreeSHAP", "logreg": "linear SHAP"}.get(
                    bundle.family, "permutation SHAP"
                ),
                "background_rows": len(self.background),
                "background": "reference rows"
                if self.background_weights is None
                else "weighted k-means centroids of the reference rows",
                "tree_shap_tables": self.tree_shap_record,
                "ms_per_row_at_load": round(self.explain_ms_per_row, 3),
                "on_the_event_loop_up_to_rows": int(INLINE_EXPLAIN_MS // self.explain_ms_per_row)
                if self.explain_ms_per_row > 0
                else self.max_explain_instances,
            },
            "library_versions": bundle.library_versions,
            "library_version_mismatches": bundle.version_mismatches(),
        }

    def example_request(self) -> dict[str, Any]:
        return {
            "instances": [self.example],
            "parameters": {"explain": False, "top_k": 5, "use_calibration": True},
        }

    def openapi(self) -> dict[str, Any]:
        return build_openapi(
            self.schema,
            title=f"propensity endpoint: {self.model_name}",
            version=self.version,
            routes=self.routes,
            example=self.example_request(),
            max_explain_instances=self.max_explain_instances,
            token_required=self.token_required,
        )


# =========================================================================== loading


def _logit(p: float) -> float:
    p = min(max(p, 1e-12), 1 - 1e-12)
    return math.log(p) - math.log1p(-p)


def raw_threshold(threshold: float, temperature: float) -> float:
    """The model-probability threshold equivalent to ``threshold`` on calibrated probabilities.

    calibrated = sigmoid(logit(p) / T) >= t  <=>  p >= sigmoid(T * logit(t)).
    """
    return 1.0 / (1.0 + math.exp(-temperature * _logit(threshold)))


def _compile_encoder(bundle: ModelBundle, directory: Path, reference: Any) -> dict[str, Any]:
    """Serve with the transformer's fitted steps compiled to numpy (components.model.compiled_encoder)
    when the bundle's record allows it and they match the steps on its reference rows; otherwise
    with the steps themselves and a log line saying why. Returns what ``/model_info`` reports."""
    from components.model.compiled_encoder import (
        CHECK_ROWS,
        ENCODER_VERSION,
        check_compiled_encoder,
        use_compiled_encoder,
    )

    recorded = bundle.extra.get("encoder")
    transformer = bundle.transformer
    same_version = isinstance(recorded, dict) and recorded.get("version") == ENCODER_VERSION
    if same_version and not recorded.get("compiled"):
        reason = f"at packaging: {recorded.get('reason')}"
        record = {"compiled": False, "version": ENCODER_VERSION, "reason": reason}
    elif reference is None or not len(reference):
        reason = use_compiled_encoder(transformer)  # nothing to check on: the unit tests' equality holds
        record = {"compiled": reason is None, "version": ENCODER_VERSION, "rows_checked": 0}
        if reason is not None:
            record["reason"] = reason
    else:
        record = check_compiled_encoder(transformer, reference.head(CHECK_ROWS))
        if record["compiled"]:
            use_compiled_encoder(transformer)
    record["recorded"] = recorded  # None for a bundle packaged before the record existed
    if not record["compiled"]:
        transformer.compiled = None
        logger.warning(
            "bundle %s: feature steps not compiled (%s); serving with scikit-learn",
            directory,
            record["reason"],
        )
    return record


def _reference(directory: Path) -> Any:
    """The bundle's reference sample, or None for a bundle written without one."""
    try:
        return load_reference(directory)
    except BundleError:
        return None


def _background(bundle: ModelBundle, reference: Any) -> np.ndarray:
    """Transformed reference rows for SHAP, computed once per load (xgboost needs none)."""
    rows = EXPLAIN_BACKGROUND.get(bundle.family, 0)
    if not rows or reference is None or not len(reference):
        return np.empty((0, len(bundle.feature_names)))
    sample = reference if len(reference) <= rows else reference.sample(n=rows, random_state=0)
    return bundle.transformer.transform(sample)


def _registry_metadata(directory: Path) -> dict[str, Any]:
    path = directory / "metadata.json"
    try:
        return orjson.loads(path.read_bytes()) if path.is_file() else {}
    except (OSError, orjson.JSONDecodeError):
        return {}


def load_model(
    directory: Path,
    settings: ServeSettings,
    version: str | None = None,
    model_name: str | None = None,
) -> LoadedModel:
    """Verify and load a bundle directory into a ``LoadedModel`` (raises ``BundleError``).

    The name is ``model_name`` (a registry source knows it), else the bundle's own (registry
    metadata, then the training config), else ``settings.model_name``.
    """
    directory = Path(directory)
    bundle = load_bundle(directory)  # checksums first, allow-listed types only
    reference = _reference(directory)
    encoder = _compile_encoder(bundle, directory, reference)
    meta = _registry_metadata(directory)
    digest = bundle_digest(directory)
    schema = RequestSchema.from_bundle(bundle, settings.max_instances, settings.accept_unknown_fields)
    candidates = [] if reference is None else reference.head(EXAMPLE_CANDIDATE_ROWS).to_dict("records")
    background = _background(bundle, reference)
    if len(background) == 0 and bundle.family != "xgboost":
        logger.warning("bundle %s has no reference data: explanations use a zero background", directory)
        background = np.zeros((1, len(bundle.feature_names)))
    background, background_weights = budgeted_background(bundle.family, bundle.model, background)
    tree_shap, tree_shap_record = _tree_shap(bundle, reference, directory)
    raw_names, raw_map = raw_mapping(bundle.feature_names, bundle.source_columns)
    loaded = LoadedModel(
        bundle=bundle,
        version=version or str(meta.get("version") or f"sha256-{digest[:12]}"),
        model_name=model_name
        or str(meta.get("model_name") or bundle.extra.get("model_name") or settings.model_name or "model"),
        digest=digest,
        source=str(directory),
        schema=schema,
        background=background,
        encoder=encoder,
        raw_threshold=raw_threshold(float(bundle.threshold), float(bundle.temperature)),
        example=schema.example_instance(candidates, bundle.extra.get("reference_stats") or {}),
        routes=(settings.health_route, settings.predict_route),
        max_explain_instances=settings.max_explain_instances,
        token_required=bool(settings.token),
        tree_shap=tree_shap,
        tree_shap_record=tree_shap_record,
        background_weights=background_weights,
        raw_names=raw_names,
        raw_map=raw_map,
    )
    loaded.explain_ms_per_row = loaded.measure_explain()
    return loaded


def budgeted_background(
    family: str, model: Any, background: np.ndarray
) -> tuple[np.ndarray, np.ndarray | None]:
    """For permutation SHAP (an MLP alone or in a blend), the background summarised into weighted
    centroids so that one explained row costs about EXPLAIN_EVALUATIONS model rows."""
    uses_mlp = family == "mlp" or "mlp" in getattr(model, "members", {})
    if not uses_mlp or len(background) == 0:
        return background, None
    low, high = BACKGROUND_CENTROIDS
    clusters = min(max(EXPLAIN_EVALUATIONS // (2 * (background.shape[1] + 1)), low), high)
    return summarize_background(background, clusters)


def _tree_shap(bundle: ModelBundle, reference: Any, directory: Path) -> tuple[TreeShapTables | None, dict]:
    """The precomputed TreeSHAP of the bundle's xgboost model (None for other families, or with
    a log line when it cannot be built or does not equal xgboost's own values)."""
    uses_xgboost = bundle.family == "xgboost" or "xgboost" in getattr(bundle.model, "members", {})
    if not uses_xgboost:
        return None, {"tables": False, "reason": f"no xgboost model in a {bundle.family} bundle"}
    if reference is not None and len(reference):
        X_check = bundle.transformer.transform(reference.head(TREE_SHAP_CHECK_ROWS))
    else:
        X_check = np.zeros((1, len(bundle.feature_names)))
    tables, record = fast_tree_shap(bundle.model, bundle.family, X_check)
    if tables is None:
        logger.warning("bundle %s: TreeSHAP tables not used (%s); explaining with xgboost", directory, record)
    return tables, record


def limit_threads() -> None:
    """One BLAS and one OpenMP thread per call: requests are small matrices, where more threads
    only spin and contend for two cores (an xgboost DMatrix built with the default all-cores
    OpenMP setting measured 15 ms against 0.2 ms with one thread, per explained row)."""
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=1)
    except Exception:  # an optional optimisation; never fail start-up for it
        logger.debug("could not limit BLAS/OpenMP threads", exc_info=True)
