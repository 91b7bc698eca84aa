"""Business value of a scored batch: whom to contact, and what the campaign is expected to earn.

Contacting a customer costs ``cost``; a conversion brings ``revenue`` (the marketing table's
``Z_CostContact`` = 3 and ``Z_Revenue`` = 11). With a calibrated probability p the expected profit
of one contact is ``p * revenue - cost``, so customers are ranked by it and the profit of
contacting the top k is a cumulative sum. The best cut-off maximises that sum: it contacts exactly
the customers with p > cost / revenue (the break-even probability), which is why calibration
matters here. With labels, the realised profit of the same ranking is shown next to the expected
one (revenue per actual conversion minus the cost of every contact).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from components.shared.report import figure_to_img_tag, html_page, html_table, markdown_table, pyplot

CURVE_POINTS = 100  # the profit curve is reported at 0%, 1%, ..., 100% contacted
TOP_ROWS_SHOWN = 10


def expected_profit(probability: np.ndarray, cost: float, revenue: float) -> np.ndarray:
    """Expected profit of contacting each customer: p * revenue - cost."""
    return np.asarray(probability, dtype=np.float64) * revenue - cost


def _check_economics(cost: float, revenue: float) -> None:
    if not (np.isfinite(cost) and np.isfinite(revenue)) or cost < 0 or revenue <= 0:
        raise ValueError(f"contact cost must be >= 0 and revenue > 0, got cost={cost}, revenue={revenue}")


def rank_customers(
    predictions: pd.DataFrame,
    cost: float,
    revenue: float,
    probability_column: str = "calibrated_probability",
    target: str | None = None,
) -> pd.DataFrame:
    """Customers by expected profit, best first: rank, id, probability, expected and cumulative profit.

    ``contact`` marks the best cut-off (the top ranks whose cumulative expected profit is highest);
    ties keep the batch order (stable sort), so the ranking is reproducible.
    """
    _check_economics(cost, revenue)
    p = predictions[probability_column].to_numpy(dtype=np.float64)
    value = expected_profit(p, cost, revenue)
    order = np.argsort(-value, kind="stable")
    cumulative = np.cumsum(value[order])
    best = _best_count(cumulative)
    ranked = pd.DataFrame(
        {
            "rank": np.arange(1, len(order) + 1),
            "id": predictions["id"].to_numpy()[order],
            probability_column: p[order],
            "expected_profit": value[order],
            "cumulative_expected_profit": cumulative,
            "contact": np.arange(len(order)) < best,
        }
    )
    if target and target in predictions.columns:
        ranked[target] = predictions[target].array.take(order)
    return ranked


def _best_count(cumulative: np.ndarray) -> int:
    """How many of the ranked customers to contact: argmax of [0, cumsum...] (fewest on ties)."""
    with_zero = np.concatenate([[0.0], cumulative])
    return int(np.argmax(with_zero))


def _realised(y_sorted: np.ndarray, cost: float, revenue: float) -> np.ndarray:
    """[0, profit of contacting the top 1, top 2, ...] given the actual outcomes."""
    k = np.arange(1, len(y_sorted) + 1)
    return np.concatenate([[0.0], revenue * np.cumsum(y_sorted) - cost * k])


@dataclass
class BusinessResult:
    cost: float
    revenue: float
    customers: int
    best: dict[str, Any]
    everyone: dict[str, Any]
    curve: pd.DataFrame
    realised: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def breakeven_probability(self) -> float:
        return self.cost / self.revenue

    def to_dict(self) -> dict[str, Any]:
        return {
            "contact_cost": self.cost,
            "revenue_per_conversion": self.revenue,
            "breakeven_probability": self.breakeven_probability,
            "customers": self.customers,
            "best": self.best,
            "everyone": self.everyone,
            "uplift_vs_everyone": self.best["expected_profit"] - self.everyone["expected_profit"],
            "realised": self.realised,
            "notes": self.notes,
        }


def business_value(
    ranked: pd.DataFrame,
    cost: float,
    revenue: float,
    probability_column: str = "calibrated_probability",
    target: str | None = None,
    points: int = CURVE_POINTS,
) -> BusinessResult:
    """The profit curve over the share contacted, the best cut-off and contacting everyone.

    ``ranked`` is the output of :func:`rank_customers`. Realised figures use the rows that carry a
    label (``target``), ranked the same way.
    """
    _check_economics(cost, revenue)
    n = len(ranked)
    cumulative = np.concatenate([[0.0], ranked["cumulative_expected_profit"].to_numpy(dtype=np.float64)])
    best_k = _best_count(cumulative[1:])
    counts = np.unique(np.round(np.linspace(0, n, points + 1)).astype(int))
    curve = pd.DataFrame(
        {
            "share_contacted": counts / n if n else counts.astype(float),
            "contacted": counts,
            "expected_profit": cumulative[counts],
        }
    )
    p = ranked[probability_column].to_numpy(dtype=np.float64)
    best = {
        "contacted": best_k,
        "share": best_k / n if n else 0.0,
        "expected_profit": float(cumulative[best_k]),
        "lowest_probability_contacted": float(p[best_k - 1]) if best_k else None,
        "expected_conversions": float(p[:best_k].sum()),
    }
    everyone = {
        "contacted": n,
        "expected_profit": float(cumulative[n]),
        "expected_conversions": float(p.sum()),
    }
    result = BusinessResult(cost, revenue, n, best, everyone, curve)
    if target and target in ranked.columns:
        _add_realised(result, ranked, target, best_k, counts)
    return result


def _add_realised(
    result: BusinessResult, ranked: pd.DataFrame, target: str, best_k: int, counts: np.ndarray
) -> None:
    """Realised profit of the ranking on labelled rows: at the expected best cut-off, for everyone,
    and the best cut-off in hindsight."""
    labels = ranked[target]
    labelled = labels.notna().to_numpy()
    if not labelled.any():
        result.notes.append(f"no row carries a label ({target}): realised profit not computed")
        return
    y = labels.to_numpy(dtype=np.float64, na_value=np.nan)[labelled]
    realised = _realised(y, result.cost, result.revenue)
    m = len(y)
    # the expected best cut-off, in labelled rows: how many labelled rows rank within the top best_k
    best_in_labelled = int(labelled[:best_k].sum())
    hindsight = int(np.argmax(realised))
    result.realised = {
        "labelled_rows": m,
        "conversions": int(y.sum()),
        "at_best_cutoff": float(realised[best_in_labelled]),
        "everyone": float(realised[m]),
        "hindsight_best": {
            "contacted": hindsight,
            "share": hindsight / m,
            "profit": float(realised[hindsight]),
        },
    }
    if m == len(ranked):
        result.curve["realised_profit"] = realised[counts]
    else:
        result.notes.append(f"labels on {m} of {len(ranked)} rows: realised figures use those rows only")


# ------------------------------------------------------------------------------------- reports


def _figure(result: BusinessResult) -> Any:
    curve = result.curve
    fig, ax = pyplot().subplots(figsize=(7.5, 4.2))
    ax.plot(100 * curve["share_contacted"], curve["expected_profit"], label="expected profit")
    if "realised_profit" in curve:
        ax.plot(100 * curve["share_contacted"], curve["realised_profit"], label="realised profit (labels)")
    best = result.best
    ax.axvline(100 * best["share"], color="grey", linestyle="--", linewidth=1)
    ax.scatter([100 * best["share"]], [best["expected_profit"]], color="black", zorder=3)
    ax.annotate(
        f"best: contact {100 * best['share']:.1f}%",
        (100 * best["share"], best["expected_profit"]),
        textcoords="offset points",
        xytext=(8, -14),
    )
    ax.axhline(0, color="black", linewidth=0.6)
    ax.set_xlabel("customers contacted (%), ranked by expected profit")
    ax.set_ylabel("profit")
    ax.set_title(f"Profit curve (contact cost {result.cost:g}, revenue per conversion {result.revenue:g})")
    ax.legend(loc="lower left")
    return fig


def _headline_rows(result: BusinessResult) -> list[dict[str, Any]]:
    rows = [
        {
            "strategy": "best cut-off",
            "contacted": result.best["contacted"],
            "share": f"{100 * result.best['share']:.1f}%",
            "expected profit": round(result.best["expected_profit"], 2),
        },
        {
            "strategy": "contact everyone",
            "contacted": result.everyone["contacted"],
            "share": "100.0%",
            "expected profit": round(result.everyone["expected_profit"], 2),
        },
    ]
    if result.realised:
        rows[0]["realised profit"] = round(result.realised["at_best_cutoff"], 2)
        rows[1]["realised profit"] = round(result.realised["everyone"], 2)
    return rows


def _explanation(result: BusinessResult) -> str:
    uplift = result.best["expected_profit"] - result.everyone["expected_profit"]
    return (
        f"Contacting a customer costs {result.cost:g} and a conversion brings {result.revenue:g}, so a "
        f"contact pays off when the calibrated probability exceeds {result.breakeven_probability:.3f}. "
        f"Contacting the best {result.best['contacted']} of {result.customers} customers is expected to "
        f"earn {result.best['expected_profit']:.2f}, {uplift:.2f} more than contacting everyone."
    )


def business_html(result: BusinessResult, ranked: pd.DataFrame) -> str:
    """One self-contained page: the headline numbers, the profit curve and the top of the list."""
    top = ranked.head(TOP_ROWS_SHOWN).to_dict("records")
    sections = [
        ("Summary", f"<p>{_explanation(result)}</p>" + html_table(_headline_rows(result))),
        ("Profit curve", figure_to_img_tag(_figure(result), "profit curve")),
        (f"Top {TOP_ROWS_SHOWN} customers to contact", html_table(top)),
    ]
    if result.realised:
        sections.append(("Realised (labelled rows)", html_table([_flat_realised(result.realised)])))
    if result.notes:
        sections.append(("Notes", "<ul>" + "".join(f"<li>{n}</li>" for n in result.notes) + "</ul>"))
    return html_page("Business value of the scored batch", sections)


def _flat_realised(realised: dict[str, Any]) -> dict[str, Any]:
    best = realised["hindsight_best"]
    return {
        "labelled rows": realised["labelled_rows"],
        "conversions": realised["conversions"],
        "at best cut-off": round(realised["at_best_cutoff"], 2),
        "everyone": round(realised["everyone"], 2),
        "hindsight best share": f"{100 * best['share']:.1f}%",
        "hindsight best profit": round(best["profit"], 2),
    }


def business_markdown(result: BusinessResult, ranked: pd.DataFrame) -> str:
    lines = [
        "# Business value",
        "",
        _explanation(result),
        "",
        markdown_table(_headline_rows(result)),
        f"## Top {TOP_ROWS_SHOWN} customers",
        markdown_table(ranked.head(TOP_ROWS_SHOWN).to_dict("records")),
    ]
    if result.realised:
        lines += ["## Realised (labelled rows)", markdown_table([_flat_realised(result.realised)])]
    lines += [f"- {note}" for note in result.notes]
    return "\n".join(lines) + "\n"
