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
    assert summary["retrain"] == {"triggered": False, "reason": "r", "training_summary": None}
