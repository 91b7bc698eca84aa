"""Model families: build an estimator from plain params, predict probabilities, save and load safely.

Every stage that touches a model (tune, train, calibrate, explain, bundle, serving) goes through
these few functions, so a family is defined in exactly one place. Params arrive as plain JSON
values (they travel between KFP components), which is why lists become tuples and integral floats
become ints here rather than in every caller. Models are never pickled: XGBoost uses its own
``.ubj`` format and scikit-learn models use skops with an explicit allow-list of extra types.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from scipy.special import expit
from sklearn.base import BaseEstimator
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier
from threadpoolctl import threadpool_limits
from xgboost import XGBClassifier

from components.model.bundle_format import FORMAT_VERSION, dump_skops, load_skops
from components.shared.errors import BundleError

FAMILIES: tuple[str, ...] = ("xgboost", "logreg", "mlp")  # the tuned families
BLEND = "blend"  # a stacked blend of tuned families: a model kind like the others, but not tuned
MODEL_KINDS: tuple[str, ...] = (*FAMILIES, BLEND)  # what a bundle or candidate can hold

XGBOOST_FILE = "model.ubj"
SKOPS_FILE = "model.skops"
BLEND_FILE = "blend.json"
BLEND_MEMBERS_DIR = "members"

# Types found in our saved sklearn models that skops does not trust by default (obtained with
# ``skops.io.get_untrusted_types`` on fitted models of each family and solver). Anything else in a
# file is refused at load time: a model file is code-adjacent input and must not run arbitrary code.
TRUSTED_TYPES: list[str] = [
    "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
    "sklearn.neural_network._stochastic_optimizers.SGDOptimizer",
]

# Params that must be ints: KFP and JSON round trips may hand them back as floats (300.0).
_INT_PARAMS = frozenset(
    {
        "n_estimators",
        "max_depth",
        "max_leaves",
        "max_bin",
        "max_iter",
        "n_iter_no_change",
        "batch_size",
        "early_stopping_rounds",
    }
)

# One XGBoost thread. Measured on the 2-core machines with other work running (the normal case:
# parallel tune tasks, a kind cluster, CI): the default 12-combo grid on the marketing matrix took
# 8 s with n_jobs=1 and 59 s with n_jobs=2 (274 s vs 35 s on 1,500 x 45), because OpenMP threads
# spin-wait for a core that is busy. On ~1k-row folds a second thread gains little even when idle.
# A config can still pass ``n_jobs`` as a param.
XGBOOST_N_JOBS = 1

_SKLEARN_CLASSES: dict[str, type[BaseEstimator]] = {"logreg": LogisticRegression, "mlp": MLPClassifier}


def _check_family(family: str, known: tuple[str, ...] = FAMILIES) -> None:
    if family not in known:
        raise ValueError(f"unknown model family {family!r} (known: {', '.join(known)})")


class BlendModel:
    """A stacked blend: ``p = sigmoid(intercept + sum_f weight_f * logit_f(x))`` over fitted members.

    Blending in log-odds keeps SHAP exact: the blend's contributions are the weighted sum of the
    members' log-odds contributions, and its base value ``intercept + sum_f weight_f * base_f``.
    The weights are non-negative (fitted by ``components.model.blend``); members with weight 0 are
    not kept, so serving pays only for the members that count.
    """

    classes_ = np.array([0, 1])

    def __init__(self, members: dict[str, Any], weights: dict[str, float], intercept: float) -> None:
        if not members or set(members) != set(weights):
            raise ValueError(f"blend members {sorted(members)} and weights {sorted(weights)} must match")
        for family in members:
            _check_family(family)
        self.members = {f: members[f] for f in FAMILIES if f in members}  # stable order
        self.weights = {f: float(weights[f]) for f in self.members}
        self.intercept = float(intercept)

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        total = np.full(len(X), self.intercept, dtype=np.float64)
        for family, model in self.members.items():
            total += self.weights[family] * predict_logit(model, X)
        return total

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        p = expit(self.decision_function(X))
        return np.column_stack([1.0 - p, p])

    def get_params(self, deep: bool = False) -> dict[str, Any]:
        """What the bundle records as the blend's params: weights, intercept, the members' params."""
        return {
            "intercept": self.intercept,
            "weights": dict(self.weights),
            "member_params": {f: m.get_params(deep=False) for f, m in self.members.items()},
        }


def _defaults(family: str, seed: int) -> dict[str, Any]:
    """Fixed settings per family; tuned params are applied on top of these.

    XGBoost gets one thread (see XGBOOST_N_JOBS) and nothing above it runs in parallel, so CV
    loops never nest parallelism. The MLP trains for a fixed, tuned number of epochs
    (``max_iter``) instead of scikit-learn's early stopping, which holds out 10% of an already
    small CV fold: on a 5,800-row table (Caravan) and a 700-row marketing sample that held-out
    tenth stopped training on noise (CV ROC-AUC 0.710 and 0.912 with it, 0.721 and 0.925 without).
    """
    if family == "xgboost":
        return {
            "tree_method": "hist",
            "n_jobs": XGBOOST_N_JOBS,
            "eval_metric": "logloss",
            "random_state": seed,
        }
    if family == "logreg":
        return {"max_iter": 2000, "random_state": seed}
    return {"early_stopping": False, "max_iter": 50, "random_state": seed}


def _normalise_param(name: str, value: Any) -> Any:
    """Turn JSON-shaped values into what the estimators expect."""
    if name == "hidden_layer_sizes":
        if isinstance(value, int | float):
            return (int(value),)
        return tuple(int(v) for v in value)
    if name in _INT_PARAMS and isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _new_estimator(family: str) -> BaseEstimator:
    if family == "xgboost":
        return XGBClassifier()
    return _SKLEARN_CLASSES[family]()


def make_estimator(family: str, params: dict[str, Any], seed: int) -> BaseEstimator:
    """An unfitted estimator of ``family`` with the fixed defaults overridden by ``params``.

    Unknown param names raise instead of being silently ignored (XGBoost would accept and ignore
    a typo), so a misspelt search space fails at the first trial, not after a bad model ships.
    """
    _check_family(family)
    estimator = _new_estimator(family)
    known = set(estimator.get_params())
    unknown = sorted(set(params) - known)
    if unknown:
        raise ValueError(f"unknown parameter(s) {', '.join(map(repr, unknown))} for model family {family!r}")
    settings = _defaults(family, seed)
    settings.update({name: _normalise_param(name, value) for name, value in params.items()})
    estimator.set_params(**settings)
    return estimator


def fit_model(
    family: str,
    params: dict[str, Any],
    X: np.ndarray,
    y: np.ndarray,
    seed: int,
    eval_set: tuple[np.ndarray, np.ndarray] | None = None,
) -> Any:
    """Build and fit an estimator with BLAS limited to one thread.

    On these small matrices BLAS threads gain nothing, and when the two cores are shared (parallel
    tune tasks, other jobs) OpenBLAS threads spin-wait: a logreg search measured 9-12 s with the
    default two threads against 0.5-0.9 s with one. XGBoost's threads follow its own n_jobs.
    ``eval_set`` (XGBoost only) is the validation data its early stopping watches.
    """
    estimator = make_estimator(family, params, seed)
    with threadpool_limits(limits=1, user_api="blas"), warnings.catch_warnings():
        # the MLP's epoch count is a tuned budget: stopping before convergence is intended
        warnings.simplefilter("ignore", ConvergenceWarning)
        if eval_set is None:
            estimator.fit(X, y)
        else:
            estimator.fit(X, y, eval_set=[eval_set], verbose=False)
    return estimator


def predict_proba(model: Any, X: np.ndarray) -> np.ndarray:
    """P(positive) as a 1-D float array; the positive class is label 1."""
    if _is_plain_binary(model):
        return expit(_plain_margin(model, X))
    if _is_binary_xgboost(model):
        return _xgb_output(model, X, margin=False)
    classes = list(getattr(model, "classes_", [0, 1]))
    proba = np.asarray(model.predict_proba(X), dtype=np.float64)
    return proba[:, classes.index(1)]


def predict_logit(model: Any, X: np.ndarray) -> np.ndarray:
    """Log-odds of the positive class, exact where the model has a margin (xgboost, logreg).

    Temperature scaling and SHAP work in log-odds space; taking the margin directly avoids the
    precision lost by ``log(p / (1 - p))`` when p saturates near 0 or 1.
    """
    if _is_binary_xgboost(model):
        return _xgb_output(model, X, margin=True)
    if isinstance(model, XGBClassifier):
        return np.asarray(model.predict(X, output_margin=True), dtype=np.float64).reshape(-1)
    if isinstance(model, LogisticRegression) and _is_plain_binary(model):
        return _plain_margin(model, X)
    if isinstance(model, LogisticRegression | BlendModel):
        return np.asarray(model.decision_function(X), dtype=np.float64).reshape(-1)
    p = np.clip(predict_proba(model, X), 1e-15, 1 - 1e-15)
    return np.log(p) - np.log1p(-p)


# The logistic regression and the MLP, evaluated as scikit-learn does (the same operations in the same
# order) without its per-call input validation, which costs more than the arithmetic on the
# endpoint's requests of a row or a hundred. Only the binary, fitted, float64 case takes this path.
_HIDDEN_ACTIVATIONS = {
    "relu": lambda z: np.maximum(z, 0, out=z),
    "tanh": lambda z: np.tanh(z, out=z),
    "logistic": lambda z: expit(z, out=z),
    "identity": lambda z: z,
}


def _is_plain_binary(model: Any) -> bool:
    classes = getattr(model, "classes_", None)
    if classes is None or len(classes) != 2 or list(classes) != [0, 1]:
        return False
    if type(model) is LogisticRegression:
        return model.coef_.shape[0] == 1
    if type(model) is MLPClassifier:
        return model.out_activation_ == "logistic" and model.activation in _HIDDEN_ACTIVATIONS
    return False


def xgb_iteration_range(model: Any) -> tuple[int, int]:
    """The trees ``XGBClassifier.predict`` uses: up to the best iteration when early stopping ran."""
    best = getattr(model, "best_iteration", None)
    return (0, int(best) + 1) if best is not None else (0, 0)


def _is_binary_xgboost(model: Any) -> bool:
    return type(model) is XGBClassifier and getattr(model, "n_classes_", 0) == 2


def _xgb_output(model: XGBClassifier, X: np.ndarray, margin: bool) -> np.ndarray:
    """Class 1's probability (or margin) from the same booster call ``XGBClassifier.predict_proba``
    makes, with the same arguments, without the wrapper's per-call configuration context and
    feature-name checks (a third of a one-row call): inputs here are the transformer's arrays."""
    predicted = model.get_booster().inplace_predict(
        X,
        iteration_range=xgb_iteration_range(model),
        predict_type="margin" if margin else "value",
        missing=model.missing,
        validate_features=False,
    )
    return np.asarray(predicted, dtype=np.float64).reshape(-1)


def _plain_margin(model: Any, X: np.ndarray) -> np.ndarray:
    """The log-odds of class 1 (for the MLP: the output unit before its logistic)."""
    X = np.asarray(X, dtype=np.float64)
    if type(model) is LogisticRegression:
        return (X @ model.coef_.T + model.intercept_).reshape(-1)
    activation = X
    hidden = _HIDDEN_ACTIVATIONS[model.activation]
    last = len(model.coefs_) - 1
    for i, (weights, bias) in enumerate(zip(model.coefs_, model.intercepts_, strict=True)):
        activation = activation @ weights
        activation += bias
        if i != last:
            activation = hidden(activation)
    return activation.reshape(-1)


def save_model(model: Any, family: str, directory: Path) -> list[str]:
    """Write the model into ``directory``; returns the file names written (relative)."""
    _check_family(family, MODEL_KINDS)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if family == BLEND:
        return _save_blend(model, directory)
    if family == "xgboost":
        model.save_model(directory / XGBOOST_FILE)
        return [XGBOOST_FILE]
    dump_skops(model, directory / SKOPS_FILE)
    return [SKOPS_FILE]


def load_model(family: str, directory: Path, format_version: int = FORMAT_VERSION) -> Any:
    """Load a model saved by :func:`save_model`, refusing files with unexpected types."""
    _check_family(family, MODEL_KINDS)
    directory = Path(directory)
    if family == BLEND:
        return _load_blend(directory, format_version)
    if family == "xgboost":
        path = directory / XGBOOST_FILE
        _require_file(path)
        model = XGBClassifier()
        model.load_model(path)
        model.set_params(n_jobs=XGBOOST_N_JOBS)
        return model
    path = directory / SKOPS_FILE
    _require_file(path)
    return _load_skops(path, _SKLEARN_CLASSES[family], format_version)


def _save_blend(model: BlendModel, directory: Path) -> list[str]:
    """blend.json (weights, intercept) plus each member in its own format under members/<family>/."""
    files = [BLEND_FILE]
    for family, member in model.members.items():
        written = save_model(member, family, directory / BLEND_MEMBERS_DIR / family)
        files += [f"{BLEND_MEMBERS_DIR}/{family}/{name}" for name in written]
    spec = {"intercept": model.intercept, "weights": model.weights, "members": list(model.members)}
    (directory / BLEND_FILE).write_text(json.dumps(spec, indent=2, sort_keys=True))
    return files


def _load_blend(directory: Path, format_version: int) -> BlendModel:
    path = directory / BLEND_FILE
    _require_file(path)
    try:
        spec = json.loads(path.read_text())
        members = {
            f: load_model(f, directory / BLEND_MEMBERS_DIR / f, format_version) for f in spec["members"]
        }
        return BlendModel(members, spec["weights"], spec["intercept"])
    except BundleError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise BundleError(f"blend file {path} is not a valid blend description: {exc}") from exc


def _require_file(path: Path) -> None:
    if not path.is_file():
        raise BundleError(f"model file {path} does not exist")


def _load_skops(path: Path, expected: type[BaseEstimator], format_version: int) -> BaseEstimator:
    """skops load with our allow-list only, and a check that the file holds the expected class."""
    model = load_skops(path, TRUSTED_TYPES, "model file", format_version)
    if type(model) is not expected:
        raise BundleError(f"model file {path} holds a {type(model).__name__}, expected {expected.__name__}")
    return model
