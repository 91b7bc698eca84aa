"""The gate report's threshold-stability notes: what the fold spread says about the F1 check."""

from __future__ import annotations

from components.training.gate import GateResult, stability_notes, threshold_check


def _stability(f1_min: float, f1_max: float) -> dict:
    return {
        "threshold": 0.31,
        "fold_thresholds": [0.25, 0.3, 0.41],
        "fold_f1": [f1_min, (f1_min + f1_max) / 2, f1_max],
        "f1_mean": (f1_min + f1_max) / 2,
        "f1_std": 0.02,
        "f1_min": f1_min,
        "f1_max": f1_max,
        "threshold_min": 0.25,
        "threshold_max": 0.41,
    }


def test_notes_warn_when_the_minimum_f1_lies_inside_the_fold_range():
    notes = stability_notes(_stability(0.55, 0.66), min_f1=0.60)
    assert "0.2500 to 0.4100" in notes[0] and "test rows were not used" in notes[0]
    assert "0.5500 to 0.6600" in notes[1]
    assert "coin flip" in notes[2]
    assert not any("coin flip" in n for n in stability_notes(_stability(0.62, 0.70), min_f1=0.60))
    assert stability_notes(None, 0.6) == []


def test_notes_are_in_the_report_and_its_dict():
    result = GateResult(True, [threshold_check("test F1", 0.65, 0.6)], notes=["spread note"])
    assert "## Threshold stability" in result.markdown and "- spread note" in result.markdown
    assert result.to_dict()["notes"] == ["spread note"]
