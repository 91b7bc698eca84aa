"""Exact TreeSHAP of an xgboost model for a few rows at a time: tables per leaf, built once per load.

xgboost's ``pred_contribs`` runs Lundberg's path algorithm for every row, tree and leaf (about
1.8 ms for one row of a 300-tree model here): the endpoint's explanation cost. Yet in the
path-dependent TreeSHAP a leaf's share of a feature's value depends on the row only through which
of the leaf's path features the row "agrees" with (goes the way the path goes). With ``P`` the
leaf's distinct path features, ``z_j`` the product of the cover fractions along the path for
feature ``j`` and ``o_j`` 1 when the row agrees on every split of ``j`` (else 0)::

    phi_k += v * (o_k - z_k) * sum_{S subset of P - {k}} |S|! (|P|-|S|-1)! / |P|!
                               * prod_{j in S} o_j * prod_{j in P - S - {k}} z_j

so each leaf has at most ``2^|P|`` possible answers, computed here once (the sum through
elementary symmetric polynomials of the ``z``). Explaining a row is then a few vectorised steps:
compare the row with every path split, OR the disagreements per leaf into a mask, look the
mask's row up and add it to the features. The base value is xgboost's own (the same for every
row). The tables are exact in float64; xgboost's ``pred_contribs`` rounds in float32, so the two
agree within ``TreeShapTables.tolerance``. ``build_tree_shap`` refuses models it does not cover
(categorical splits, several outputs, a table over the memory cap, paths of over
MAX_PATH_FEATURES distinct features), and ``verify`` holds the tables against ``pred_contribs``;
the endpoint falls back to ``pred_contribs`` in either case. tests/unit/model/test_treeshap.py
holds equality. NaN is the only missing value here: callers refuse models with another.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

MAX_TABLE_BYTES = 64 * 1024 * 1024  # deep trees (2^depth answers per leaf) fall back to xgboost
# Building a leaf of w distinct path features takes 2^w * w small steps: w = 10 is about a second,
# w = 14 twenty (a lossguide tree can be that deep with few leaves). Wider falls back to xgboost.
MAX_PATH_FEATURES = 10
# xgboost computes pred_contribs in float32: its rounding grows with the trees' total leaf size,
# so the check allows a few float32 epsilons of the sum over trees of the largest |leaf value|.
FLOAT32_EPSILONS = 8
MIN_TOLERANCE = 1e-6


class TreeShapNotBuilt(ValueError):
    """The model is not one these tables cover; the message says why."""


@dataclass(frozen=True)
class TreeShapTables:
    """Per path step and leaf (steps x leaves: step ``i`` of every leaf's path in one row, so a
    row's masks are one vectorised pass; shorter paths padded with steps that never disagree),
    and per leaf, what explaining a row needs."""

    path_feature: np.ndarray  # int32: the feature the step's split tests
    path_threshold: np.ndarray  # float32: left when x < threshold (xgboost's rule)
    path_left: np.ndarray  # bool: the path goes left at this split
    path_default_left: np.ndarray  # bool: a missing value goes left
    path_bit: np.ndarray  # unsigned: 1 << (position of the split's feature among the leaf's); 0: padding
    leaf_all: np.ndarray  # unsigned: the mask with every path feature agreeing
    leaf_offset: np.ndarray  # int64: each leaf's first row in ``table``
    leaf_features: np.ndarray  # int (leaves x width): the leaf's features, padded with n_features
    table: np.ndarray  # float64 (answers x width): a leaf's contributions for one mask
    base_value: float  # xgboost's bias: the same for every row
    n_features: int

    leaf_scale: float  # the sum over trees of the largest |leaf value|: bounds the rounding

    @property
    def nbytes(self) -> int:
        arrays = (self.path_feature, self.path_threshold, self.path_left, self.path_default_left)
        arrays += (self.path_bit, self.leaf_all, self.leaf_offset, self.leaf_features)
        return int(self.table.nbytes + sum(a.nbytes for a in arrays))

    @property
    def tolerance(self) -> float:
        """How far xgboost's float32 ``pred_contribs`` may be from these (float64) values."""
        return max(MIN_TOLERANCE, FLOAT32_EPSILONS * float(np.finfo(np.float32).eps) * self.leaf_scale)

    def contributions(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-row base values and SHAP values (rows x features), as ``pred_contribs`` gives them."""
        X = np.atleast_2d(np.asarray(X, dtype=np.float32))  # xgboost compares in float32
        values = np.empty((len(X), self.n_features))
        for i, row in enumerate(X):  # one row per pass: several rows' temporaries (a few hundred
            values[i] = self._row(row)  # KB each) were 2-4x slower per row, allocation included
        return np.full(len(X), self.base_value), values

    def _row(self, x: np.ndarray) -> np.ndarray:
        values = x.take(self.path_feature)  # steps x leaves
        goes_left = np.where(np.isnan(values), self.path_default_left, values < self.path_threshold)
        disagree = (goes_left != self.path_left) * self.path_bit
        masks = self.leaf_all & ~np.bitwise_or.reduce(disagree, axis=0)
        answers = self.table.take(self.leaf_offset + masks, axis=0)  # leaves x width
        width = self.n_features + 1  # the last column collects the padding
        return np.bincount(self.leaf_features.ravel(), weights=answers.ravel(), minlength=width)[:-1]


def build_tree_shap(booster: Any, iteration_range: tuple[int, int], base_value: float) -> TreeShapTables:
    """Tables for the trees ``iteration_range`` selects (raises ``TreeShapNotBuilt``).

    ``base_value`` is xgboost's bias column of ``pred_contribs`` for the same range.
    """
    model = json.loads(booster.save_raw(raw_format="json"))
    learner = model["learner"]
    booster_kind = learner["gradient_booster"].get("name")
    if booster_kind != "gbtree":
        raise TreeShapNotBuilt(f"booster {booster_kind!r} is not gbtree")
    if int(learner["learner_model_param"].get("num_class", "0") or 0) > 1:
        raise TreeShapNotBuilt("a multi-class model")
    trees = learner["gradient_booster"]["model"]["trees"]
    rounds = booster.num_boosted_rounds()
    per_round = len(trees) // max(rounds, 1)
    start, end = iteration_range
    trees = trees[start * per_round : (end or rounds) * per_round]
    n_features = int(learner["learner_model_param"]["num_feature"])
    leaves = [leaf for tree in trees for leaf in _leaves(tree)]
    return _tables(leaves, n_features, base_value, sum(_largest_leaf(tree) for tree in trees))


def _largest_leaf(tree: dict[str, Any]) -> float:
    leaves = zip(tree["split_conditions"], tree["left_children"], strict=True)
    return float(max((abs(value) for value, left in leaves if left == -1), default=0.0))


def _leaves(tree: dict[str, Any]) -> list[tuple[float, list[tuple[int, float, bool, bool, float]]]]:
    """(value, path) per leaf reached through at least one split; a path step is (feature,
    threshold, goes left, missing goes left, cover fraction of the child)."""
    if any(tree["split_type"]) or int(tree["tree_param"].get("size_leaf_vector", "1")) > 1:
        raise TreeShapNotBuilt("categorical splits or vector leaves")
    left, right = tree["left_children"], tree["right_children"]
    feature, condition = tree["split_indices"], tree["split_conditions"]
    default_left, cover = tree["default_left"], tree["sum_hessian"]
    out: list[tuple[float, list[tuple[int, float, bool, bool, float]]]] = []
    stack: list[tuple[int, list[tuple[int, float, bool, bool, float]]]] = [(0, [])]
    while stack:
        node, path = stack.pop()
        if left[node] == -1:
            if path:  # a tree that is a lone leaf only shifts the base value
                out.append((float(condition[node]), path))
            continue
        for child, is_left in ((left[node], True), (right[node], False)):
            fraction = cover[child] / cover[node] if cover[node] > 0 else 0.0
            step = (int(feature[node]), float(condition[node]), is_left, bool(default_left[node]), fraction)
            stack.append((child, [*path, step]))
    return out


def _tables(
    leaves: list[tuple[float, list[tuple[int, float, bool, bool, float]]]],
    n_features: int,
    base_value: float,
    leaf_scale: float,
) -> TreeShapTables:
    if not leaves:
        raise TreeShapNotBuilt("the model has no split")
    distinct = [list(dict.fromkeys(step[0] for step in path)) for _, path in leaves]
    width = max(len(features) for features in distinct)
    answers = sum(1 << len(features) for features in distinct)
    if answers * width * 8 > MAX_TABLE_BYTES:
        raise TreeShapNotBuilt(f"the tables would take {answers * width * 8 / 2**20:.0f} MiB")
    if width > MAX_PATH_FEATURES:
        limit = MAX_PATH_FEATURES
        raise TreeShapNotBuilt(f"a leaf has {width} distinct features on its path (at most {limit})")
    steps = max(len(path) for _, path in leaves)
    if steps * len(leaves) * 11 > MAX_TABLE_BYTES:  # 11 bytes per step: feature, threshold, 3 flags
        raise TreeShapNotBuilt(f"paths of up to {steps} splits over {len(leaves)} leaves")
    bits = np.uint8 if width <= 8 else np.uint16 if width <= 16 else np.uint32  # the narrowest masks
    zero = [np.ones(len(features)) for features in distinct]
    for z, features, (_, path) in zip(zero, distinct, leaves, strict=True):
        for feature, _, _, _, fraction in path:
            z[features.index(feature)] *= fraction
    sizes = np.array([len(features) for features in distinct])
    offsets = np.concatenate([[0], np.cumsum(1 << sizes)[:-1]])
    table = np.zeros((answers, width))
    values = np.array([value for value, _ in leaves])
    for n in np.unique(sizes):
        group = np.flatnonzero(sizes == n)
        block = _leaf_answers(values[group], np.array([zero[i] for i in group]))  # leaves x 2^n x n
        rows = offsets[group][:, None] + np.arange(1 << n)[None, :]
        table[rows.ravel(), :n] = block.reshape(-1, n)
    padded = np.full((len(leaves), width), n_features)
    for i, features in enumerate(distinct):
        padded[i, : len(features)] = features
    return TreeShapTables(
        **_path_steps(leaves, distinct, steps, bits),
        leaf_all=(np.left_shift(1, sizes) - 1).astype(bits),
        leaf_offset=offsets.astype(np.intp),
        leaf_features=padded,
        table=table,
        base_value=float(base_value),
        n_features=n_features,
        leaf_scale=leaf_scale,
    )


def _path_steps(
    leaves: list[tuple[float, list[tuple[int, float, bool, bool, float]]]],
    distinct: list[list[int]],
    steps: int,
    bits: type,
) -> dict[str, np.ndarray]:
    """The steps x leaves arrays. A padding step tests feature 0 against +inf with both ways
    "left" and bit 0: whatever the row holds, it adds nothing to the leaf's mask."""
    shape = (steps, len(leaves))
    feature = np.zeros(shape, dtype=np.int32)
    threshold = np.full(shape, np.inf, dtype=np.float32)
    left = np.ones(shape, dtype=bool)
    default_left = np.ones(shape, dtype=bool)
    bit = np.zeros(shape, dtype=bits)
    for leaf, (features, (_, path)) in enumerate(zip(distinct, leaves, strict=True)):
        for step, (index, split, goes_left, missing_left, _) in enumerate(path):
            feature[step, leaf], threshold[step, leaf] = index, split
            left[step, leaf], default_left[step, leaf] = goes_left, missing_left
            bit[step, leaf] = 1 << features.index(index)
    return {
        "path_feature": feature,
        "path_threshold": threshold,
        "path_left": left,
        "path_default_left": default_left,
        "path_bit": bit,
    }


def _leaf_answers(values: np.ndarray, zero: np.ndarray) -> np.ndarray:
    """Every leaf's contributions (leaves x masks x n) for every agreement mask.

    For mask ``A`` and feature ``k``: with ``B = A - {k}`` (agreeing) and ``C`` the others, the
    sum over ``S`` in the module docstring is ``prod_C z * sum_m w(|B| - m) e_m(z_B)``, ``e_m`` the
    elementary symmetric polynomials of ``B``'s zero fractions and ``w(s) = s! (n-s-1)! / n!``.
    """
    leaves, n = zero.shape
    weight = np.array([math.factorial(s) * math.factorial(n - s - 1) / math.factorial(n) for s in range(n)])
    out = np.zeros((leaves, 1 << n, n))
    for mask in range(1 << n):
        for k in range(n):
            agreeing = [j for j in range(n) if j != k and mask >> j & 1]
            others = [j for j in range(n) if j != k and not mask >> j & 1]
            poly = np.zeros((leaves, len(agreeing) + 1))
            poly[:, 0] = 1.0
            for count, j in enumerate(agreeing, start=1):
                poly[:, 1 : count + 1] = poly[:, 1 : count + 1] + poly[:, :count] * zero[:, j : j + 1]
            size = len(agreeing)
            total = poly @ weight[size - np.arange(size + 1)]
            total *= np.prod(zero[:, others], axis=1)
            out[:, mask, k] = values * ((mask >> k & 1) - zero[:, k]) * total
    return out


def verify(tables: TreeShapTables, expected: np.ndarray, X: np.ndarray) -> float:
    """The largest |tables - pred_contribs| on ``X`` (``expected``: pred_contribs, bias last)."""
    base, values = tables.contributions(X)
    ours = np.column_stack([values, base])
    return float(np.max(np.abs(ours - np.asarray(expected, dtype=np.float64)))) if len(X) else 0.0
