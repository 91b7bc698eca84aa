"""Business value: numbers checked by hand on a four-customer batch.

Cost 3, revenue 11 (break-even p = 3/11 = 0.2727):

    id  p     expected profit   cumulative   label  realised cumulative
    a   0.9    6.9               6.9          1      11 - 3  =  8
    b   0.5    2.5               9.4          0      11 - 6  =  5
    c   0.2   -0.8               8.6          1      22 - 9  = 13
    d   0.1   -1.9               6.7          0      22 - 12 = 10

Best cut-off: contact a and b (9.4) vs everyone (6.7); realised 5 at that cut-off, 10 for
everyone, and 13 in hindsight (top 3).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from components.batch.business import (
    business_html,
    business_markdown,
    business_value,
    expected_profit,
    rank_customers,
)

COST, REVENUE = 3.0, 11.0


def tiny(labels: list[object] | None = None) -> pd.DataFrame:
    # deliberately not in rank order
    frame = pd.DataFrame({"id": ["c", "a", "d", "b"], "calibrated_probability": [0.2, 0.9, 0.1, 0.5]})
    if labels is not None:
        frame["Response"] = pd.array(labels, dtype="Int8")
    return frame


def test_expected_profit_per_customer() -> None:
    np.testing.assert_allclose(
        expected_profit(np.array([0.9, 0.5, 0.2, 0.1]), COST, REVENUE), [6.9, 2.5, -0.8, -1.9]
    )


def test_ranking_by_expected_profit_marks_the_best_cut_off() -> None:
    ranked = rank_customers(tiny(), COST, REVENUE)
    assert ranked["id"].tolist() == ["a", "b", "c", "d"]
    assert ranked["rank"].tolist() == [1, 2, 3, 4]
    np.testing.assert_allclose(ranked["expected_profit"], [6.9, 2.5, -0.8, -1.9])
    np.testing.assert_allclose(ranked["cumulative_expected_profit"], [6.9, 9.4, 8.6, 6.7])
    assert ranked["contact"].tolist() == [True, True, False, False]


def test_best_cut_off_vs_contacting_everyone() -> None:
    result = business_value(rank_customers(tiny(), COST, REVENUE), COST, REVENUE)
    assert result.best["contacted"] == 2
    assert result.best["share"] == 0.5
    assert result.best["expected_profit"] == pytest.approx(9.4)
    assert result.best["lowest_probability_contacted"] == 0.5
    assert result.best["expected_conversions"] == pytest.approx(1.4)
    assert result.everyone["expected_profit"] == pytest.approx(6.7)
    summary = result.to_dict()
    assert summary["uplift_vs_everyone"] == pytest.approx(2.7)
    assert summary["breakeven_probability"] == pytest.approx(3 / 11)
    assert result.realised is None
    # the curve starts at nobody contacted and ends at everyone
    assert result.curve["contacted"].tolist() == [0, 1, 2, 3, 4]
    np.testing.assert_allclose(result.curve["expected_profit"], [0, 6.9, 9.4, 8.6, 6.7])
    np.testing.assert_allclose(result.curve["share_contacted"], [0, 0.25, 0.5, 0.75, 1.0])


def test_realised_profit_with_labels() -> None:
    # labels in the frame's order c, a, d, b -> ranked a=1, b=0, c=1, d=0
    ranked = rank_customers(tiny([1, 1, 0, 0]), COST, REVENUE, target="Response")
    assert ranked["Response"].tolist() == [1, 0, 1, 0]
    result = business_value(ranked, COST, REVENUE, target="Response")
    assert result.realised == {
        "labelled_rows": 4,
        "conversions": 2,
        "at_best_cutoff": 5.0,
        "everyone": 10.0,
        "hindsight_best": {"contacted": 3, "share": 0.75, "profit": 13.0},
    }
    np.testing.assert_allclose(result.curve["realised_profit"], [0, 8, 5, 13, 10])


def test_partly_labelled_batch_uses_labelled_rows_only() -> None:
    ranked = rank_customers(tiny([1, None, 0, 0]), COST, REVENUE, target="Response")  # a unlabelled
    result = business_value(ranked, COST, REVENUE, target="Response")
    # labelled, in rank order: b=0, c=1, d=0; the best cut-off (a, b) holds one labelled row (b)
    assert result.realised["labelled_rows"] == 3
    assert result.realised["at_best_cutoff"] == -3.0
    assert result.realised["everyone"] == 11.0 - 9.0
    assert result.realised["hindsight_best"] == {"contacted": 2, "share": 2 / 3, "profit": 5.0}
    assert "realised_profit" not in result.curve
    assert any("3 of 4" in note for note in result.notes)


def test_nobody_worth_contacting() -> None:
    frame = pd.DataFrame({"id": [1, 2], "calibrated_probability": [0.1, 0.2]})
    result = business_value(rank_customers(frame, COST, REVENUE), COST, REVENUE)
    assert result.best["contacted"] == 0 and result.best["expected_profit"] == 0.0
    assert result.best["lowest_probability_contacted"] is None
    assert result.everyone["expected_profit"] == pytest.approx(0.3 * 11 - 6)


def test_ties_keep_batch_order_and_bad_economics_are_refused() -> None:
    frame = pd.DataFrame({"id": [5, 3, 9], "calibrated_probability": [0.5, 0.5, 0.5]})
    assert rank_customers(frame, COST, REVENUE)["id"].tolist() == [5, 3, 9]
    with pytest.raises(ValueError, match="revenue > 0"):
        rank_customers(frame, COST, 0.0)
    with pytest.raises(ValueError, match="cost must be >= 0"):
        rank_customers(frame, -1.0, REVENUE)


def test_reports_show_the_numbers_and_the_plot() -> None:
    ranked = rank_customers(tiny([1, 1, 0, 0]), COST, REVENUE, target="Response")
    result = business_value(ranked, COST, REVENUE, target="Response")
    page = business_html(result, ranked)
    assert "<img" in page and "9.4" in page and "6.7" in page and "0.273" in page
    markdown = business_markdown(result, ranked)
    assert "| best cut-off | 2 | 50.0% | 9.4 | 5 |" in markdown
    assert "| contact everyone | 4 | 100.0% | 6.7 | 10 |" in markdown
