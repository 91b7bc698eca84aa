"""The batch run's summary: prediction_summary.json as KFP metadata hands it back."""

from __future__ import annotations

from components.batch.summary import build_prediction_summary


def test_summary_counts_are_ints_again() -> None:
    summary = build_prediction_summary(
        scoring={"rows": 10.0, "positive_rate": 0.5, "stage_seconds": 1.0},
        model={},
        business={},
        drift={"drifted": False, "reason": "r", "columns": []},
        artifact_uris={},
        stage_seconds={},
        run_root="/r",
    )
    assert summary["scoring"]["rows"] == 10 and isinstance(summary["scoring"]["rows"], int)
    assert summary["retrain"]["triggered"] is False and summary["retrain"]["reason"] == "r"
    assert summary["retrain"]["training_summary"] is None and summary["alerts"] == []


def test_drift_without_new_labels_is_an_alert_not_a_retrain() -> None:
    plan = {
        "retrain": False,
        "reason": "drift detected, retraining needs labels: 0 labelled rows < minimum 100",
    }
    summary = build_prediction_summary(
        scoring={"rows": 10},
        model={},
        business={},
        drift={"drifted": True, "reason": "12 of 25 columns drifted", "columns": []},
        artifact_uris={},
        stage_seconds={},
        run_root="/r",
        plan={**plan, "alert": plan["reason"]},
    )
    assert summary["retrain"]["triggered"] is False and summary["retrain"]["drift_detected"] is True
    assert summary["retrain"]["training_summary"] is None
    assert summary["alerts"] == [plan["reason"]]
