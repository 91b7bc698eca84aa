"""Default data of the product: a synthetic stand-in for the public "marketing_campaign" table.

The generator reproduces the Kaggle file's schema, its value ranges and its mess (missing
income, impossible birth years, joke marital statuses) so that the whole pipeline runs on a fresh
clone without downloads. ``Response`` is drawn from a fixed logistic mechanism on the *observed*
columns plus a latent "responsiveness" trait, so P(Response | features) stays the same when
``drift`` shifts the population (pure covariate shift). A real second table is in ``telco``.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd

MARKETING_COLUMNS: list[str] = [
    "ID",
    "Year_Birth",
    "Education",
    "Marital_Status",
    "Income",
    "Kidhome",
    "Teenhome",
    "Dt_Customer",
    "Recency",
    "MntWines",
    "MntFruits",
    "MntMeatProducts",
    "MntFishProducts",
    "MntSweetProducts",
    "MntGoldProds",
    "NumDealsPurchases",
    "NumWebPurchases",
    "NumCatalogPurchases",
    "NumStorePurchases",
    "NumWebVisitsMonth",
    "AcceptedCmp3",
    "AcceptedCmp4",
    "AcceptedCmp5",
    "AcceptedCmp1",
    "AcceptedCmp2",
    "Complain",
    "Z_CostContact",
    "Z_Revenue",
    "Response",
]

TARGET = "Response"
FIRST_CUSTOMER_DATE = dt.date(2012, 7, 30)
LAST_CUSTOMER_DATE = dt.date(2014, 6, 29)

# Category frequencies of the public file; education also scales income (Basic earns far less).
# label: (frequency, income factor, response logit shift)
EDUCATION = {
    "Graduation": (0.503, 1.0, 0.0),
    "PhD": (0.217, 1.07, 0.35),
    "Master": (0.165, 1.03, 0.2),
    "2n Cycle": (0.091, 0.95, 0.0),
    "Basic": (0.024, 0.40, -0.8),
}
MARITAL = {"Married": 0.387, "Together": 0.26, "Single": 0.215, "Divorced": 0.104, "Widow": 0.034}
RARE_MARITAL = {"Alone": 3, "Absurd": 2, "YOLO": 2}  # counts per 2240 rows, as in the public file
MARITAL_LABELS = [*MARITAL, *RARE_MARITAL]
SINGLE_LIKE = ("Single", "Divorced", "Widow", "Alone", "Absurd", "YOLO")
IMPOSSIBLE_BIRTH_YEARS = (1893, 1899, 1900)
# Share of total spend per product line (public-file averages), in MARKETING_COLUMNS order.
SPEND_SHARES = {
    "MntWines": 0.50,
    "MntFruits": 0.043,
    "MntMeatProducts": 0.277,
    "MntFishProducts": 0.062,
    "MntSweetProducts": 0.045,
    "MntGoldProds": 0.073,
}
SPEND_CAPS = {  # the public file's maxima per product line
    "MntWines": 1493,
    "MntFruits": 199,
    "MntMeatProducts": 1725,
    "MntFishProducts": 259,
    "MntSweetProducts": 263,
    "MntGoldProds": 362,
}
# (intercept, income slope) of each earlier campaign's acceptance logit; Cmp1/Cmp5 target the rich.
CAMPAIGNS = {
    "AcceptedCmp3": (-2.9, -0.2),
    "AcceptedCmp4": (-3.0, 0.5),
    "AcceptedCmp5": (-4.0, 1.6),
    "AcceptedCmp1": (-3.9, 1.3),
    "AcceptedCmp2": (-5.0, 0.6),
}
INCOME_MEAN, INCOME_SD = 51_000.0, 20_500.0
RESPONSE_INTERCEPT = -4.95  # fixed (not fitted per sample) so the mechanism never changes
RESPONSE_SCALE = 2.0


def generate_marketing(rows: int = 2240, seed: int = 7, drift: float = 0.0) -> pd.DataFrame:
    """A seeded synthetic marketing-campaign table with the public file's columns and quirks.

    ``drift`` in [0, 1] moves the population (1.0: income x1.5, birth years +10, spend x1.6) and
    everything that depends on it, so a drift detector has something to find; the response
    mechanism is unchanged.
    """
    if rows < 1:
        raise ValueError(f"rows must be at least 1, got {rows}")
    if not 0.0 <= drift <= 1.0:
        raise ValueError(f"drift must be in [0, 1], got {drift}")
    rng = np.random.default_rng(seed)
    affluence = rng.standard_normal(rows)
    responsiveness = rng.standard_normal(rows)
    frame: dict[str, np.ndarray] = {"ID": _unique_ids(rng, rows)}
    frame["Year_Birth"] = _birth_years(rng, affluence, drift)
    frame["Education"] = _choice(rng, [v[0] for v in EDUCATION.values()], rows)  # codes until the end
    frame["Marital_Status"] = _marital_status(rng, rows)
    income = _income(rng, affluence, frame["Education"], drift)
    frame["Kidhome"], frame["Teenhome"] = _children(rng, affluence, frame["Year_Birth"])
    days = rng.integers(0, (LAST_CUSTOMER_DATE - FIRST_CUSTOMER_DATE).days + 1, rows)
    frame["Dt_Customer"] = _date_labels()[days]
    frame["Recency"] = rng.integers(0, 100, rows)
    spend = _spend(rng, affluence, frame["Kidhome"], frame["Teenhome"], drift)
    frame.update(spend)
    frame.update(_purchases(rng, spend, frame["Kidhome"], frame["Teenhome"]))
    frame.update(_campaigns(rng, income, responsiveness))
    frame["Complain"] = (rng.random(rows) < 0.009).astype(np.int64)
    frame["Z_CostContact"] = np.full(rows, 3, dtype=np.int64)
    frame["Z_Revenue"] = np.full(rows, 11, dtype=np.int64)
    frame["Income"] = income
    frame[TARGET] = _response(rng, frame, days, responsiveness)
    _add_mess(rng, frame)
    frame["Education"] = np.array(list(EDUCATION), dtype=object)[frame["Education"]]
    frame["Marital_Status"] = np.array(MARITAL_LABELS, dtype=object)[frame["Marital_Status"]]
    # copy=False skips block consolidation, which dominates the time for millions of rows.
    return pd.DataFrame({name: frame[name] for name in MARKETING_COLUMNS}, copy=False)


def _unique_ids(rng: np.random.Generator, rows: int) -> np.ndarray:
    """Unique, unordered IDs like the public file's (0..11191 for 2240 rows)."""
    return rng.choice(max(11_192, 5 * rows), size=rows, replace=False).astype(np.int64)


def _choice(rng: np.random.Generator, probs: list[float], rows: int) -> np.ndarray:
    """Category codes drawn by inverse CDF: integer work is far faster than object arrays."""
    cdf = np.cumsum(probs)
    codes = np.searchsorted(cdf / cdf[-1], rng.random(rows), side="right")
    return np.minimum(codes, len(probs) - 1)


def _birth_years(rng: np.random.Generator, affluence: np.ndarray, drift: float) -> np.ndarray:
    """Older customers earn a little more; drift makes them younger."""
    noise = rng.standard_normal(affluence.size)
    years = 1969 + 11.7 * (-0.2 * affluence + 0.98 * noise)
    return (np.clip(np.rint(years), 1940, 1996) + np.rint(10 * drift)).astype(np.int64)


def _marital_status(rng: np.random.Generator, rows: int) -> np.ndarray:
    """Main statuses by frequency plus the public file's joke entries at their real rate."""
    status = _choice(rng, list(MARITAL.values()), rows)
    rare = np.concatenate(
        [
            np.full(_rare_count(rows, n / 2240), MARITAL_LABELS.index(label))
            for label, n in RARE_MARITAL.items()
        ]
    )[:rows]
    status[rng.choice(rows, size=rare.size, replace=False)] = rare
    return status


def _rare_count(rows: int, rate: float) -> int:
    """How many rows get a rare quirk: at its rate, but at least one in any non-tiny table."""
    return min(rows, max(1 if rows >= 200 else 0, round(rows * rate)))


def _income(
    rng: np.random.Generator, affluence: np.ndarray, education: np.ndarray, drift: float
) -> np.ndarray:
    """Yearly household income: affluence times an education factor, whole currency units."""
    factor = np.array([v[1] for v in EDUCATION.values()])[education]
    noise = rng.standard_normal(affluence.size)
    base = factor * (INCOME_MEAN + INCOME_SD * (0.92 * affluence + 0.39 * noise))
    return np.rint(np.clip(base, 1730, 162_000) * (1 + 0.5 * drift))


def _children(
    rng: np.random.Generator, affluence: np.ndarray, year_birth: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Young, poorer households have small kids; parents born in the 1950s-60s have teens."""
    age_shift = (year_birth - 1969) / 11.7
    kids = -0.9 * affluence + 0.55 * age_shift + rng.standard_normal(affluence.size)
    teens = -0.75 * age_shift + 0.15 * affluence + rng.standard_normal(affluence.size)
    kidhome = (kids > 0.33).astype(np.int64) + (kids > 2.95)
    teenhome = (teens > 0.06).astype(np.int64) + (teens > 2.6)
    return kidhome, teenhome


def _spend(
    rng: np.random.Generator, affluence: np.ndarray, kidhome: np.ndarray, teenhome: np.ndarray, drift: float
) -> dict[str, np.ndarray]:
    """Two-year spend per product line: skewed, rising with income, falling with children."""
    n = affluence.size
    log_total = 6.3 + 0.8 * affluence - 0.55 * kidhome - 0.2 * teenhome + 0.4 * rng.standard_normal(n)
    total = np.clip(np.exp(log_total), 5, 2525) * (1 + 0.6 * drift)
    shares = rng.gamma(20.0 * np.array(list(SPEND_SHARES.values())), size=(n, len(SPEND_SHARES)))
    shares /= shares.sum(axis=1, keepdims=True)
    caps = np.array(list(SPEND_CAPS.values())) * (1 + 0.6 * drift)
    amounts = np.rint(np.minimum(total[:, None] * shares, caps)).astype(np.int64)
    return {name: amounts[:, i] for i, name in enumerate(SPEND_SHARES)}


def _purchases(
    rng: np.random.Generator, spend: dict[str, np.ndarray], kidhome: np.ndarray, teenhome: np.ndarray
) -> dict[str, np.ndarray]:
    """Purchase counts per channel: big spenders buy from the catalog, families chase deals."""
    total = sum(spend.values()).astype(float)
    log_spend = np.log1p(total)
    lam = {
        "NumDealsPurchases": 0.6 + 0.9 * kidhome + 1.2 * teenhome + 0.15 * log_spend,
        "NumWebPurchases": 1.5 + total / 320 + 0.5 * teenhome,
        "NumCatalogPurchases": total / 230,
        "NumStorePurchases": 2.6 + total / 190,
        "NumWebVisitsMonth": np.maximum(0.3, 12.5 - 1.25 * log_spend + 0.8 * kidhome),
    }
    caps = {
        "NumDealsPurchases": 15,
        "NumWebPurchases": 27,
        "NumCatalogPurchases": 28,
        "NumStorePurchases": 13,
        "NumWebVisitsMonth": 20,
    }
    return {name: np.minimum(rng.poisson(lam[name]), caps[name]).astype(np.int64) for name in lam}


def _campaigns(
    rng: np.random.Generator, income: np.ndarray, responsiveness: np.ndarray
) -> dict[str, np.ndarray]:
    """Earlier campaign acceptances share the customer's responsiveness with ``Response``."""
    income_z = (income - INCOME_MEAN) / INCOME_SD
    out = {}
    for name, (intercept, slope) in CAMPAIGNS.items():
        logit = intercept + slope * income_z + 1.1 * responsiveness
        out[name] = (rng.random(income.size) < _sigmoid(logit)).astype(np.int64)
    return out


def _response(
    rng: np.random.Generator, frame: dict[str, np.ndarray], days: np.ndarray, responsiveness: np.ndarray
) -> np.ndarray:
    """The last campaign's response: a fixed logit of what a marketer sees, plus a latent trait."""
    accepted = sum(frame[name] for name in CAMPAIGNS)
    total = sum(frame[name] for name in SPEND_SHARES).astype(float)
    tenure_days = (LAST_CUSTOMER_DATE - FIRST_CUSTOMER_DATE).days - days
    single = np.array([label in SINGLE_LIKE for label in MARITAL_LABELS])[frame["Marital_Status"]]
    education = np.array([v[2] for v in EDUCATION.values()])[frame["Education"]]
    signal = (
        1.3 * np.minimum(accepted, 2)
        + 0.4 * np.maximum(accepted - 2, 0)
        - 0.025 * frame["Recency"]
        + 0.5 * (frame["Recency"] < 15)
        + 0.0036 * tenure_days
        + 1.0 * single
        - 0.8 * frame["Teenhome"]
        - 0.35 * frame["Kidhome"]
        + 0.45 * np.log(np.maximum(total, 5) / 400)
        + 0.12 * frame["NumCatalogPurchases"]
        - 0.15 * frame["NumStorePurchases"]
        + 0.12 * frame["NumWebVisitsMonth"]
        + education
    )
    logit = RESPONSE_INTERCEPT + RESPONSE_SCALE * signal + 0.8 * responsiveness
    return (rng.random(days.size) < _sigmoid(logit)).astype(np.int64)


def _add_mess(rng: np.random.Generator, frame: dict[str, np.ndarray]) -> None:
    """Recording errors of the public file: missing income and impossible birth years."""
    rows = frame["ID"].size
    missing = rng.choice(rows, size=_rare_count(rows, 24 / 2240), replace=False)
    frame["Income"] = frame["Income"].astype(float)
    frame["Income"][missing] = np.nan
    bad = rng.choice(rows, size=_rare_count(rows, 3 / 2240), replace=False)
    frame["Year_Birth"][bad] = np.resize(np.array(IMPOSSIBLE_BIRTH_YEARS), bad.size)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _date_labels() -> np.ndarray:
    """'dd-mm-yyyy' for every possible enrolment day; indexing it beats formatting per row."""
    span = (LAST_CUSTOMER_DATE - FIRST_CUSTOMER_DATE).days + 1
    days = [FIRST_CUSTOMER_DATE + dt.timedelta(days=i) for i in range(span)]
    return np.array([d.strftime("%d-%m-%Y") for d in days], dtype=object)


def write_parts(
    df: pd.DataFrame, folder: Path, parts: int = 4, prefix: str = "p", suffix: str = "_extrac.csv"
) -> list[Path]:
    """Write contiguous row chunks as tab-separated files, like the public file's extracts."""
    if parts < 1:
        raise ValueError(f"parts must be at least 1, got {parts}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    bounds = np.linspace(0, len(df), parts + 1).round().astype(int)
    paths = []
    for i in range(parts):
        path = folder / f"{prefix}{i + 1}{suffix}"
        df.iloc[bounds[i] : bounds[i + 1]].to_csv(path, sep="\t", index=False)
        paths.append(path)
    return paths


def ensure_default_data(folder: Path, rows: int = 2240, seed: int = 7, parts: int = 4) -> Path:
    """Create the default part files if the folder has no data yet, so a fresh clone can run."""
    folder = Path(folder)
    existing = [p for p in folder.glob("*") if p.suffix in {".csv", ".parquet"}] if folder.is_dir() else []
    if not existing:
        write_parts(generate_marketing(rows=rows, seed=seed), folder, parts=parts)
    return folder
