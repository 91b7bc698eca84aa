"""The marketing table's derived features (age, totals, tenure) and the raw columns behind each.

``DERIVED_SOURCES`` is what explanations use to aggregate a derived feature's SHAP value back to
the raw columns a user sent.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from components.model.coercion import coerce_datetime, days_before, to_float
from components.shared.config import FeatureConfig
from components.shared.errors import DataValidationError

MNT_COLUMNS: list[str] = [
    "MntWines",
    "MntFruits",
    "MntMeatProducts",
    "MntFishProducts",
    "MntSweetProducts",
    "MntGoldProds",
]
PURCHASE_COLUMNS: list[str] = [
    "NumWebPurchases",
    "NumCatalogPurchases",
    "NumStorePurchases",
    "NumDealsPurchases",
]
ACCEPTED_COLUMNS: list[str] = [f"AcceptedCmp{i}" for i in range(1, 6)]

# Derived feature -> the raw columns it is computed from (explanations aggregate back to these).
DERIVED_SOURCES: dict[str, list[str]] = {
    "Age": ["Year_Birth"],
    "Total_Spent": MNT_COLUMNS,
    "Customer_Days": ["Dt_Customer"],
    "Children": ["Kidhome", "Teenhome"],
    "Total_Purchases": PURCHASE_COLUMNS,
    "Total_Accepted": ACCEPTED_COLUMNS,
}
MARKETING_SOURCE_COLUMNS: list[str] = list(
    dict.fromkeys(c for sources in DERIVED_SOURCES.values() for c in sources)
)
MARKETING_DATE_COLUMNS: tuple[str, ...] = ("Dt_Customer",)
# Age and Customer_Days carry exactly the information of these columns, so the raw ones are not
# kept as separate (perfectly collinear) features.
REPLACED_BY_DERIVED: tuple[str, ...] = ("Year_Birth", "Dt_Customer")


def uses_marketing_features(columns: Iterable[str], cfg: FeatureConfig) -> bool:
    """Whether the marketing features apply: always for 'marketing', when all sources exist for 'auto'."""
    if cfg.derived == "none":
        return False
    present = set(columns)
    missing = [c for c in MARKETING_SOURCE_COLUMNS if c not in present]
    if cfg.derived == "marketing" and missing:
        raise DataValidationError(
            f"features.derived is 'marketing' but the data lacks column(s) {', '.join(missing)}"
        )
    return not missing


def derive(
    frame: Mapping[str, Any], reference: pd.Timestamp, min_birth_year: int, dayfirst: bool = True
) -> dict[str, np.ndarray]:
    """The marketing features as float arrays; NaN wherever a needed source value is missing.

    ``frame`` maps column -> Series (raw) or array (already coerced), so the transformer can pass
    what it has coerced without building another DataFrame. Sums are NaN when any part is missing
    (rather than counting it as 0) so that the imputer, not an accidental zero, fills them.
    """
    birth = to_float(frame["Year_Birth"])
    birth[birth < min_birth_year] = np.nan  # e.g. 1893, 1899 in the public file: data errors

    def total(columns: Sequence[str]) -> np.ndarray:
        return np.sum([to_float(frame[c]) for c in columns], axis=0)

    joined = frame["Dt_Customer"]
    if not (isinstance(joined, np.ndarray) and joined.dtype.kind == "M"):
        joined = coerce_datetime(joined, None, dayfirst)
    return {
        "Age": reference.year - birth,
        "Total_Spent": total(MNT_COLUMNS),
        "Customer_Days": days_before(joined, reference),
        "Children": total(["Kidhome", "Teenhome"]),
        "Total_Purchases": total(PURCHASE_COLUMNS),
        "Total_Accepted": total(ACCEPTED_COLUMNS),
    }


def add_derived_features(raw: pd.DataFrame, cfg: FeatureConfig) -> pd.DataFrame:
    """The frame with the marketing features added and Year_Birth / Dt_Customer replaced.

    Pure: ``raw`` is not modified. Age = reference year - Year_Birth (birth years before
    ``cfg.min_birth_year`` are missing), Total_Spent = sum of Mnt*, Customer_Days = days from
    Dt_Customer to the reference date, Children = Kidhome + Teenhome, Total_Purchases = web +
    catalog + store + deals purchases, Total_Accepted = AcceptedCmp1..5. The reference date is fixed
    in the config so the same row gives the same features next year. Source values may be numbers,
    numeric strings, datetimes or date strings. When the features do not apply (``cfg.derived``
    'none', or 'auto' without the marketing columns) the frame is returned unchanged.
    """
    if not uses_marketing_features(raw.columns, cfg):
        return raw
    derived = derive(raw, pd.Timestamp(cfg.reference_date), cfg.min_birth_year)
    return raw.drop(columns=list(REPLACED_BY_DERIVED)).assign(**derived)
