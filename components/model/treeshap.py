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
row). ``build_tree_shap`` refuses models it does not cover (categorical splits, several outputs, a
table over the memory cap), and ``verify`` holds the tables against ``pred_contribs``; the endpoint
falls back to ``pred_contribs`` in either case. tests/unit/model/test_treeshap.py holds equality.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

MAX_TABLE_BYTES = 64 * 1024 * 1024  # deep trees (2^depth answers per leaf) fall back to xgboost
CHUNK_ROWS = 8  # rows explained per pass: larger passes outgrow the caches and slow down per row
VERIFY_TOLERANCE = 1e-4  # |ours - pred_contribs| in log-odds; xgboost sums in float32


class TreeShapNotBuilt(ValueError):
    """The model is not one these tables cover; the message says why."""


@dataclass(frozen=True)
class TreeShapTables:
    """Per path split (leaves contiguous) and per leaf, what explaining a row needs."""

    split_feature: np.ndarray  # int: the feature each path split tests
    split_threshold: np.ndarray  # float32: left when x < threshold (xgboost's rule)
    split_left: np.ndarray  # bool: the path goes left at this split
    split_default_left: np.ndarray  # bool: a missing value goes left
    split_bit: np.ndarray  # unsigned: 1 << (position of the split's feature among the leaf's)
    leaf_start: np.ndarray  # int64: each leaf's first split
    leaf_all: np.ndarray  # unsigned: the mask with every path feature agreeing
    leaf_offset: np.ndarray  # int64: each leaf's first row in ``table``
    leaf_features: np.ndarray  # int (leaves x width): the leaf's features, padded with n_features
    table: np.ndarray  # float64 (answers x width): a leaf's contributions for one mask
    base_value: float  # xgboost's bias: the same for every row
    n_features: int

    @property
    def nbytes(self) -> int:
        return int(self.table.nbytes + self.leaf_features.nbytes + 5 * self.split_feature.nbytes)

    def contributions(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-row base values and SHAP values (rows x features), as ``pred_contribs`` gives them."""
        X = np.atleast_2d(np.asarray(X, dtype=np.float32))  # xgboost compares in float32
        parts = [self._chunk(X[start : start + CHUNK_ROWS]) for start in range(0, len(X), CHUNK_ROWS)]
        values = parts[0] if len(parts) == 1 else np.vstack(parts)
        return np.full(len(X), self.base_value), values

    def _chunk(self, X: np.ndarray) -> np.ndarray:
        rows = X.shape[0]
        values = X[:, self.split_feature]
        goes_left = np.where(np.isnan(values), self.split_default_left, values < self.split_threshold)
        disagree = np.where(goes_left != self.split_left, self.split_bit, self.split_bit.dtype.type(0))
        masks = self.leaf_all & ~np.bitwise_or.reduceat(disagree, self.leaf_start, axis=1)
        answers = self.table[self.leaf_offset + masks]  # rows x leaves x width
        width = self.n_features + 1  # the last column collects the padding
        index = self.leaf_features[None, :, :] + (np.arange(rows) * width)[:, None, None]
        summed = np.bincount(index.ravel(), weights=answers.ravel(), minlength=rows * width)
        return summed.reshape(rows, width)[:, :-1]


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
    return _tables(leaves, n_features, base_value)


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
    leaves: list[tuple[float, list[tuple[int, float, bool, bool, float]]]], n_features: int, base_value: float
) -> TreeShapTables:
    if not leaves:
        raise TreeShapNotBuilt("the model has no split")
    distinct = [list(dict.fromkeys(step[0] for step in path)) for _, path in leaves]
    width = max(len(features) for features in distinct)
    answers = sum(1 << len(features) for features in distinct)
    if answers * width * 8 > MAX_TABLE_BYTES:
        raise TreeShapNotBuilt(f"the tables would take {answers * width * 8 / 2**20:.0f} MiB")
    bits = np.uint8 if width <= 8 else np.uint16 if width <= 16 else np.uint32  # the narrowest masks
    splits = [step for _, path in leaves for step in path]
    positions = [
        features.index(step[0]) for features, (_, path) in zip(distinct, leaves, strict=True) for step in path
    ]
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
        split_feature=np.array([step[0] for step in splits], dtype=np.intp),
        split_threshold=np.array([step[1] for step in splits], dtype=np.float32),
        split_left=np.array([step[2] for step in splits]),
        split_default_left=np.array([step[3] for step in splits]),
        split_bit=np.left_shift(1, np.array(positions)).astype(bits),
        leaf_start=np.concatenate([[0], np.cumsum([len(path) for _, path in leaves])[:-1]]).astype(np.intp),
        leaf_all=(np.left_shift(1, sizes) - 1).astype(bits),
        leaf_offset=offsets.astype(np.intp),
        leaf_features=padded,
        table=table,
        base_value=float(base_value),
        n_features=n_features,
    )


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
