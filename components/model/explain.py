"""SHAP explanations in log-odds space: global importance, dependence and per-case waterfalls.

Everything is computed in margin (log-odds) space because that is where SHAP values are additive
for every family: ``values.sum(1) + base == logit(p)``. Each family gets the cheapest *exact* (or
exactly additive) method available:

- xgboost: xgboost's own TreeSHAP (``pred_contribs=True``), exact and about 1k rows/s per core;
  path-dependent, so the background is not needed (tree covers play its role). The endpoint uses
  the same values from tables built once per load (``fast_tree_shap``, components.model.treeshap).
- logreg: linear SHAP ``w * (x - mean(background))`` (what ``shap.LinearExplainer`` computes under
  feature independence), exact; a scaler in front of the classifier is folded into ``w``.
- blend: ``logit = intercept + sum_f w_f * logit_f``, so its SHAP values are the weighted sum of
  its members' values and its base value ``intercept + sum_f w_f * base_f``: exact (additive) in
  the blend's log-odds whenever the members' are.
- mlp: antithetic permutation SHAP on the logit (the estimator of ``shap.PermutationExplainer``,
  in numpy to avoid shap's numba compile) over a background of at most ``MAX_BACKGROUND`` rows;
  additive by construction, cost grows with sample x background x features.

Sample sizes are the caller's decision (``ExplainConfig``); nothing here reads files or env vars.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from components.model.calibration import apply_temperature
from components.model.families import BLEND, MODEL_KINDS, predict_logit, predict_proba, xgb_iteration_range
from components.model.treeshap import TreeShapTables
from components.shared.config import ExplainConfig
from components.shared.report import figure_to_img_tag, html_page, html_table, pyplot

# Permutation SHAP (mlp) costs rows x background x (2 * features + 2) x permutations model rows
# (300 x 50 x 92 x 1 = 1.4M rows, a few seconds). Global mean |SHAP| from one antithetic
# permutation over 50 background rows correlated 0.999 with 5 permutations over 100 rows.
MAX_BACKGROUND = 50
PERMUTATIONS = 1
KINDS = (
    ("true_positive", "True positive", 1, True),
    ("false_positive", "False positive", 0, True),
    ("false_negative", "False negative", 1, False),
    ("true_negative", "True negative", 0, False),
)


# --------------------------------------------------------------------------- model access


def _booster(model: Any) -> Any:
    """The xgboost Booster behind an XGBClassifier (or the Booster itself)."""
    import xgboost as xgb

    if isinstance(model, xgb.Booster):
        return model
    if hasattr(model, "get_booster"):
        return model.get_booster()
    raise TypeError(f"family 'xgboost' needs an XGBClassifier or Booster, got {type(model).__name__}")


def _xgb_dmatrix(model: Any, X: np.ndarray) -> Any:
    """A DMatrix that matches how the model was trained (missing value, feature names).

    Built with the model's own thread count: DMatrix defaults to all cores, which costs ~15 ms per
    call for one row on a busy 2-core machine instead of ~0.2 ms.
    """
    import xgboost as xgb

    booster = _booster(model)
    missing = getattr(model, "missing", np.nan)
    return xgb.DMatrix(
        np.asarray(X, dtype=np.float64),
        missing=np.nan if missing is None else missing,
        feature_names=booster.feature_names,
        nthread=int(getattr(model, "n_jobs", None) or 1),
    )


def model_logit(model: Any, family: str, X: np.ndarray) -> np.ndarray:
    """The model's output in log-odds: the quantity whose SHAP values are additive."""
    _check_family(family)
    return predict_logit(model, np.asarray(X, dtype=np.float64))


# --------------------------------------------------------------------------- SHAP per family


def _check_family(family: str) -> None:
    if family not in MODEL_KINDS:
        raise ValueError(f"unknown model family {family!r} (known: {list(MODEL_KINDS)})")


def _xgb_contribs(model: Any, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    contribs = _booster(model).predict(
        _xgb_dmatrix(model, X), pred_contribs=True, iteration_range=xgb_iteration_range(model)
    )
    contribs = np.asarray(contribs, dtype=np.float64)
    return contribs[:, -1].copy(), contribs[:, :-1]


def _linear_coefficients(model: Any, n_features: int) -> tuple[np.ndarray, float]:
    """``logit(x) = x @ w + b`` for a linear classifier, folding any affine preprocessing in.

    Preprocessing steps of a Pipeline (e.g. StandardScaler) are affine, so probing them at the
    origin and the unit vectors gives their exact matrix; this keeps linear SHAP exact without
    knowing which scaler families.py chose.
    """
    final = model.steps[-1][1] if hasattr(model, "steps") else model
    if not hasattr(final, "coef_"):
        raise TypeError(f"family 'logreg' needs a linear classifier with coef_, got {type(final).__name__}")
    w = np.asarray(final.coef_, dtype=np.float64).ravel()
    b = float(np.ravel(final.intercept_)[0])
    if hasattr(model, "steps") and len(model.steps) > 1:
        prefix = model[:-1]
        origin = np.asarray(prefix.transform(np.zeros((1, n_features))), dtype=np.float64)
        matrix = np.asarray(prefix.transform(np.eye(n_features)), dtype=np.float64) - origin
        b = b + float(origin.ravel() @ w)
        w = matrix @ w
    return w, b


def _linear_shap(
    model: Any, X: np.ndarray, background: np.ndarray, weights: np.ndarray | None = None
) -> tuple[np.ndarray, float]:
    w, b = _linear_coefficients(model, X.shape[1])
    mean = np.average(np.asarray(background, dtype=np.float64), axis=0, weights=weights)
    return (X - mean) * w, float(mean @ w + b)


def _bounded_background(background: np.ndarray, seed: int = 0) -> np.ndarray:
    background = np.asarray(background, dtype=np.float64)
    if len(background) <= MAX_BACKGROUND:
        return background
    rows = np.random.default_rng(seed).choice(len(background), MAX_BACKGROUND, replace=False)
    return background[np.sort(rows)]


def _permutation_masks(order: np.ndarray) -> np.ndarray:
    """Masks along one permutation path: row k has the first k features of ``order`` switched on."""
    n = len(order)
    masks = np.zeros((n + 1, n), dtype=bool)
    for k in range(1, n + 1):
        masks[k] = masks[k - 1]
        masks[k, order[k - 1]] = True
    return masks


def _path_values(
    model: Any, x: np.ndarray, masks: np.ndarray, background: np.ndarray, weights: np.ndarray
) -> np.ndarray:
    """Mean logit over the (weighted) background with the masked-on features taken from ``x``."""
    mixed = np.where(masks[:, None, :], x[None, None, :], background[None, :, :])
    logits = model_logit(model, "mlp", mixed.reshape(-1, x.shape[0]))
    return logits.reshape(len(masks), len(background)) @ weights


def _permutation_shap(
    model: Any, X: np.ndarray, background: np.ndarray, seed: int = 0, weights: np.ndarray | None = None
) -> tuple[np.ndarray, float]:
    """Antithetic permutation SHAP with an independent (interventional) background.

    The estimator of ``shap.PermutationExplainer``: walk a random feature order forwards and
    backwards, crediting each feature with the change of the mean logit when it is switched
    from background to ``x``. Each walk telescopes from ``E[logit(background)]`` to
    ``logit(x)``, so the values are exactly additive whatever the number of permutations.
    Written in numpy because shap's version JIT-compiles numba code on its first call in every
    process (5-12 s here), which would dominate an explain task or a serving request.

    ``weights``: a weighted background (``summarize_background``), used as given; without them
    at most ``MAX_BACKGROUND`` rows of ``background``, equally weighted. Many small matrix products:
    run it with one BLAS thread (``explain`` limits it; the endpoint runs with one thread), 2-4x
    faster than several competing ones. Not limited here: ``threadpool_limits`` costs about 3 ms
    per call, most of one explained row at the endpoint.
    """
    if weights is None:
        background = _bounded_background(background)
        weights = np.full(len(background), 1.0 / len(background))
    background = np.asarray(background, dtype=np.float64)
    rng = np.random.default_rng(seed)
    n = X.shape[1]
    values = np.zeros_like(X)
    for i, x in enumerate(X):
        for _ in range(PERMUTATIONS):
            order = rng.permutation(n)
            for path in (order, order[::-1]):
                f = _path_values(model, x, _permutation_masks(path), background, weights)
                values[i, path] += np.diff(f)
    base = float(model_logit(model, "mlp", background) @ weights)
    values /= 2 * PERMUTATIONS
    return values, base


def shap_values(model: Any, family: str, X: np.ndarray, background: np.ndarray) -> tuple[np.ndarray, float]:
    """SHAP values (rows x features, log-odds) and the base value they add up from."""
    base, values = contributions(model, family, X, background)
    return values, float(base[0]) if len(base) else float("nan")


def contributions(
    model: Any,
    family: str,
    X: np.ndarray,
    background: np.ndarray,
    tree_shap: TreeShapTables | None = None,
    background_weights: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-row base values and SHAP values, for serving (same maths as ``shap_values``).

    Per-row bases because xgboost reports the bias per row; for the other families it is the
    same number repeated, so callers can treat all families alike. ``tree_shap``: the xgboost
    model's (or blend member's) precomputed tables (``fast_tree_shap``), used instead of
    ``pred_contribs`` when given. ``background_weights``: the background is a weighted summary
    (``summarize_background``) instead of equally weighted rows.
    """
    _check_family(family)
    X = np.atleast_2d(np.asarray(X, dtype=np.float64))
    if family == BLEND:
        return _blend_contribs(model, X, background, tree_shap, background_weights)
    if family == "xgboost":
        return tree_shap.contributions(X) if tree_shap is not None else _xgb_contribs(model, X)
    if family == "logreg":
        values, base = _linear_shap(model, X, background, background_weights)
    else:
        values, base = _permutation_shap(model, X, background, weights=background_weights)
    return np.full(len(X), base), values


def _blend_contribs(
    model: Any,
    X: np.ndarray,
    background: np.ndarray,
    tree_shap: TreeShapTables | None,
    background_weights: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Weighted sum of the members' contributions (and bases), in the blend's log-odds."""
    base = np.full(len(X), float(model.intercept))
    values = np.zeros_like(X)
    for family, member in model.members.items():
        member_base, member_values = contributions(
            member, family, X, background, tree_shap, background_weights
        )
        weight = model.weights[family]
        base += weight * member_base
        values += weight * member_values
    return base, values


def summarize_background(
    background: np.ndarray, clusters: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """``clusters`` k-means centroids of ``background`` and each one's share of its rows.

    The budgeted background of permutation SHAP at serving: its cost is linear in the background
    rows, and a weighted summary keeps the expectation it estimates close with far fewer model
    calls (what ``shap.kmeans`` offers KernelExplainer). Centroids are the means of their final
    clusters, so the weighted mean is the sample's mean exactly (linear SHAP is unchanged).
    """
    from sklearn.cluster import KMeans

    background = np.asarray(background, dtype=np.float64)
    if len(background) <= clusters:
        return background, np.full(len(background), 1.0 / max(len(background), 1))
    labels = KMeans(n_clusters=clusters, n_init=1, random_state=seed).fit_predict(background)
    used = np.unique(labels)
    centroids = np.vstack([background[labels == c].mean(axis=0) for c in used])
    return centroids, np.array([np.mean(labels == c) for c in used])


def fast_tree_shap(
    model: Any, family: str, X_check: np.ndarray
) -> tuple[TreeShapTables | None, dict[str, Any]]:
    """TreeSHAP tables (components.model.treeshap) for the xgboost model of a bundle, itself or a
    blend's member, held against ``pred_contribs`` on ``X_check``; with what the endpoint reports.

    ``(None, record)`` when there is no xgboost model, the tables cannot be built, or they differ
    from xgboost's own values: callers then explain with ``pred_contribs``.
    """
    from components.model.treeshap import TreeShapNotBuilt, build_tree_shap, verify

    xgb_model = model if family == "xgboost" else getattr(model, "members", {}).get("xgboost")
    if family not in ("xgboost", BLEND) or xgb_model is None:
        return None, {"tables": False, "reason": f"no xgboost model in a {family} bundle"}
    missing = getattr(xgb_model, "missing", np.nan)
    if missing is not None and not np.isnan(missing):
        return None, {"tables": False, "reason": f"the model's missing value is {missing!r}, not NaN"}
    X_check = np.atleast_2d(np.asarray(X_check, dtype=np.float64))
    iterations = xgb_iteration_range(xgb_model)
    expected = _booster(xgb_model).predict(
        _xgb_dmatrix(xgb_model, X_check), pred_contribs=True, iteration_range=iterations
    )
    try:
        tables = build_tree_shap(_booster(xgb_model), iterations, float(expected[0, -1]))
    except TreeShapNotBuilt as exc:
        return None, {"tables": False, "reason": str(exc)}
    gap = verify(tables, expected, X_check)
    if not gap <= tables.tolerance:
        allowed = f"{tables.tolerance:.3g}"
        reason = f"tables differ from pred_contribs by {gap:.3g} (> {allowed}) on {len(X_check)} rows"
        return None, {"tables": False, "reason": reason}
    record = {"tables": True, "rows_checked": len(X_check), "max_abs_difference": gap}
    record["tolerance"] = tables.tolerance
    return tables, {**record, "megabytes": round(tables.nbytes / 2**20, 1)}


# --------------------------------------------------------------------------- raw-column view


def aggregate_to_raw(
    values: np.ndarray, feature_names: Sequence[str], source_columns: dict[str, list[str]]
) -> tuple[list[str], np.ndarray]:
    """Sum encoded contributions per raw input column.

    A one-hot or scaled feature has a single source column and adds to it. A derived feature
    built from several raw columns (e.g. a total of spends) is split *equally* among them: SHAP
    cannot tell which input drove it, and an equal split keeps every row's sum unchanged, so the
    raw view stays additive (``raw.sum(1) == values.sum(1)``). A feature without a source entry
    counts as its own raw column. Raw columns keep the order in which they first appear.
    """
    values = np.atleast_2d(np.asarray(values, dtype=np.float64))
    if values.shape[1] != len(feature_names):
        raise ValueError(
            f"values have {values.shape[1]} columns but {len(feature_names)} feature names were given"
        )
    raw_names, mapping = raw_mapping(feature_names, source_columns)
    return raw_names, values @ mapping


def raw_mapping(
    feature_names: Sequence[str], source_columns: dict[str, list[str]]
) -> tuple[list[str], np.ndarray]:
    """The raw column names and the (features x raw columns) matrix ``aggregate_to_raw`` applies:
    built once per bundle by the endpoint."""
    raw_names: list[str] = []
    index: dict[str, int] = {}
    weights: list[list[tuple[int, float]]] = []
    for name in feature_names:
        sources = list(dict.fromkeys(source_columns.get(name) or [name]))
        share = 1.0 / len(sources)
        for raw in sources:
            if raw not in index:
                index[raw] = len(raw_names)
                raw_names.append(raw)
        weights.append([(index[raw], share) for raw in sources])
    mapping = np.zeros((len(feature_names), len(raw_names)))
    for row, pairs in enumerate(weights):
        for col, share in pairs:
            mapping[row, col] += share
    return raw_names, mapping


def mean_abs_importance(values: np.ndarray, names: Sequence[str]) -> dict[str, float]:
    """Global importance as mean |SHAP| per feature, sorted from most to least important."""
    scores = np.abs(np.atleast_2d(values)).mean(axis=0)
    order = sorted(range(len(names)), key=lambda i: (-scores[i], names[i]))
    return {names[i]: float(scores[i]) for i in order}


# --------------------------------------------------------------------------- report


@dataclass
class ExplainResult:
    importance_encoded: dict[str, float]
    importance_raw: dict[str, float]
    base_value: float
    html: str
    representatives: dict[str, int | None] = field(default_factory=dict)  # kind -> sample row

    def to_dict(self) -> dict[str, Any]:
        """The JSON-friendly part (the page is written separately as an HTML artifact)."""
        return {
            "importance_encoded": dict(self.importance_encoded),
            "importance_raw": dict(self.importance_raw),
            "base_value": float(self.base_value),
            "representatives": dict(self.representatives),
        }


def representative_rows(y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, int | None]:
    """One row per confusion-matrix cell: the one whose probability is the cell's median.

    The median case is typical of its cell, whereas the most extreme one is usually an outlier.
    """
    y = np.asarray(y).astype(int).ravel()
    p = np.asarray(p, dtype=np.float64).ravel()
    predicted = p >= threshold
    chosen: dict[str, int | None] = {}
    for key, _, label, positive in KINDS:
        rows = np.flatnonzero((y == label) & (predicted == positive))
        if rows.size == 0:
            chosen[key] = None
            continue
        median = np.median(p[rows])
        chosen[key] = int(rows[np.argmin(np.abs(p[rows] - median))])
    return chosen


def _explanation(values: np.ndarray, base: float, X: np.ndarray, names: Sequence[str]) -> Any:
    import shap

    return shap.Explanation(
        values=values, base_values=np.full(len(values), base), data=X, feature_names=list(names)
    )


def _plot(draw: Any, alt: str, size: tuple[float, float] | None = None) -> str:
    """Run one shap plotting call on a fresh figure and return it as an embedded image."""
    plt = pyplot()

    plt.close("all")
    plt.figure(figsize=size)
    try:
        draw()
        return figure_to_img_tag(plt.gcf(), alt)
    finally:
        plt.close("all")


def _summary_section(expl: Any) -> str:
    import shap

    img = _plot(lambda: shap.plots.beeswarm(expl, max_display=20, show=False), "SHAP summary")
    return (
        "<p>Each dot is one sampled row; position is its SHAP value (log-odds) for that "
        "feature, colour is the feature's value.</p>" + img
    )


def _dependence_section(expl: Any, names: Sequence[str]) -> str:
    import shap

    parts = []
    for name in names:
        j = expl.feature_names.index(name)
        parts.append(
            _plot(lambda j=j: shap.plots.scatter(expl[:, j], show=False), f"dependence {name}", (5, 3.5))
        )
    return "".join(parts) or "<p>(no features)</p>"


def _waterfall_section(
    expl: Any, chosen: dict[str, int | None], y: np.ndarray, p: np.ndarray, threshold: float
) -> str:
    import shap

    parts = [
        f"<p>Decision threshold {threshold:.4g}; for each kind the row with the median "
        "probability of that kind is shown. Values are in log-odds.</p>"
    ]
    for key, title, _, _ in KINDS:
        row = chosen.get(key)
        parts.append(f"<h3 id='{key}'>{title}</h3>")
        if row is None:
            parts.append(f"<p>A {title.lower()} does not occur in the sample.</p>")
            continue
        parts.append(f"<p>Sample row {row}: label {int(y[row])}, probability {float(p[row]):.4f}.</p>")
        parts.append(
            _plot(
                lambda row=row: shap.plots.waterfall(expl[row], max_display=12, show=False),
                f"waterfall {title}",
            )
        )
    return "".join(parts)


def _raw_table(importance_raw: dict[str, float]) -> str:
    total = sum(importance_raw.values()) or 1.0
    rows = [
        {"raw column": name, "mean |SHAP| (log-odds)": value, "share %": 100 * value / total}
        for name, value in importance_raw.items()
    ]
    note = (
        "<p>Encoded features are summed per raw input column; a derived feature is split "
        "equally among the raw columns it is built from.</p>"
    )
    return note + html_table(rows)


def explain(
    model: Any,
    family: str,
    X_sample: np.ndarray,
    X_background: np.ndarray,
    feature_names: Sequence[str],
    source_columns: dict[str, list[str]],
    y_sample: np.ndarray,
    p_sample: np.ndarray,
    threshold: float,
    top_dependence: int = 10,
    notes: Sequence[str] = (),
) -> ExplainResult:
    """Global importance (encoded and raw) plus one self-contained HTML page of SHAP plots.

    ``p_sample``/``threshold`` only pick the representative cases (use the served probabilities
    and the served threshold); the SHAP values always explain the model's own log-odds.
    """
    X_sample = np.asarray(X_sample, dtype=np.float64)
    names = list(feature_names)
    from threadpoolctl import threadpool_limits  # a scikit-learn dependency

    with threadpool_limits(limits=1, user_api="blas"):  # see _permutation_shap
        values, base = shap_values(model, family, X_sample, X_background)
    raw_names, raw_values = aggregate_to_raw(values, names, source_columns)
    importance_encoded = mean_abs_importance(values, names)
    importance_raw = mean_abs_importance(raw_values, raw_names)
    y = np.asarray(y_sample).astype(int).ravel()
    p = np.asarray(p_sample, dtype=np.float64).ravel()
    chosen = representative_rows(y, p, threshold)
    expl = _explanation(values, base, X_sample, names)
    top = list(importance_encoded)[: max(0, top_dependence)]
    sections = [
        (
            "Overview",
            f"<p>Model family {html.escape(family)}; {len(X_sample)} sampled rows; "
            f"base value {base:.4f} (log-odds).</p>"
            + "".join(f"<p>{html.escape(note)}</p>" for note in notes),
        ),
        ("Summary (beeswarm)", _summary_section(expl)),
        ("Raw-column importance", _raw_table(importance_raw)),
        (f"Dependence plots (top {len(top)})", _dependence_section(expl, top)),
        ("Representative cases (waterfall)", _waterfall_section(expl, chosen, y, p, threshold)),
    ]
    return ExplainResult(
        importance_encoded=importance_encoded,
        importance_raw=importance_raw,
        base_value=base,
        html=html_page("SHAP explanations", sections),
        representatives=chosen,
    )


def _sample_rows(n_rows: int, size: int, seed: int) -> np.ndarray:
    if n_rows <= size:
        return np.arange(n_rows)
    return np.sort(np.random.default_rng(seed).choice(n_rows, size, replace=False))


def explain_champion(
    model: Any,
    family: str,
    transformer: Any,
    raw_train: Any,
    raw_test: Any,
    y_test: np.ndarray,
    calibration: dict[str, Any],
    cfg: ExplainConfig,
    seed: int = 0,
) -> ExplainResult:
    """The pipeline's explain stage: bounded, seeded samples of test (explained) and train (background).

    Test rows are explained because they are what the reported metrics describe; the background
    comes from train, the data the model learned its expectations on. Representative cases are
    picked on the served (calibrated) probability with the served threshold.
    """
    sample = _sample_rows(len(raw_test), cfg.sample_size, seed)
    background = _sample_rows(len(raw_train), cfg.background_size, seed + 1)
    X_sample = transformer.transform(raw_test.iloc[sample])
    X_background = transformer.transform(raw_train.iloc[background])
    temperature = float(calibration.get("temperature", 1.0))
    p_served = apply_temperature(predict_proba(model, X_sample), temperature)
    notes = []
    if temperature != 1.0:
        notes.append(
            f"Served probabilities are calibrated: sigmoid(log-odds / {temperature:.4g}). Contributions "
            "below are on the model's own log-odds; calibration rescales them all by the same factor."
        )
    return explain(
        model,
        family,
        X_sample,
        X_background,
        transformer.feature_names,
        transformer.source_columns,
        np.asarray(y_test)[sample],
        p_served,
        float(calibration["threshold"]),
        cfg.top_dependence,
        notes=notes,
    )
