"""The gate report's threshold-stability notes: what the fold spread says about the F1 check."""

from __future__ import annotations

from components.training.gate import GateResult, stability_notes, threshold_check
from tests.unit.registry.test_registry import bundle_dir, frame  # noqa: F401 - fixtures


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


# ------------------------------------------------------------------ against a real champion


def _champion_setup(tmp_path, bundle_path, table, **gate):
    """A local registry whose champion is a real bundle, and a Config whose gate compares with it."""
    from sklearn.metrics import roc_auc_score

    from components.model.bundle import load_bundle
    from components.registry.local import LocalRegistry
    from components.shared.config import Config

    registry = LocalRegistry(tmp_path / "registry")
    version = registry.register("tiny-propensity", bundle_path, {"run_name": "champion-run"})
    registry.set_alias("tiny-propensity", "champion", version)
    spec = {"name": "tiny", "target": "y", "id_columns": [], "date_columns": [], "drop_columns": []}
    config = Config.from_dict({"model_name": "tiny-propensity", "dataset": spec, "gate": gate})
    _, served = load_bundle(bundle_path).predict(table.drop(columns=["y"]))
    return config, str(tmp_path / "registry"), float(roc_auc_score(table["y"], served))


def _evaluation(roc_auc: float) -> dict:
    return {"test": {"roc_auc": roc_auc, "f1": 0.9}}


def test_a_challenger_worse_than_the_champion_is_blocked(tmp_path, bundle_dir, frame) -> None:  # noqa: F811
    from components.training.gate import decide

    config, registry_uri, champion_auc = _champion_setup(tmp_path, bundle_dir, frame)
    worse = decide(_evaluation(champion_auc - 0.02), frame, config, registry_uri)
    assert not worse.passed  # its absolute thresholds pass: only the champion check blocks it
    (reason,) = worse.failed_reasons
    assert reason.startswith("not worse than champion: challenger ROC-AUC") and "< champion v0001" in reason
    assert worse.champion_version == "v0001" and worse.champion_metrics["roc_auc"] == champion_auc
    assert worse.checks[-1].threshold == round(champion_auc, 5)
    assert decide(_evaluation(champion_auc), frame, config, registry_uri).passed  # a tie is not worse


def test_max_auc_drop_lets_a_slightly_worse_challenger_through(tmp_path, bundle_dir, frame) -> None:  # noqa: F811
    from components.training.gate import decide

    config, registry_uri, champion_auc = _champion_setup(
        tmp_path, bundle_dir, frame, max_auc_drop_vs_champion=0.03
    )
    within = decide(_evaluation(champion_auc - 0.02), frame, config, registry_uri)
    assert within.passed and within.checks[-1].threshold == round(champion_auc - 0.03, 5)
    assert "- 0.03" in within.checks[-1].detail
    beyond = decide(_evaluation(champion_auc - 0.04), frame, config, registry_uri)
    assert not beyond.passed


def test_compare_with_champion_false_skips_the_comparison(tmp_path, bundle_dir, frame) -> None:  # noqa: F811
    from components.training.gate import decide

    config, registry_uri, champion_auc = _champion_setup(
        tmp_path, bundle_dir, frame, compare_with_champion=False
    )
    result = decide(_evaluation(champion_auc - 0.2), frame, config, registry_uri)
    assert result.passed and result.champion_version is None
    assert "switched off" in result.checks[-1].detail
