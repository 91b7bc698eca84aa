"""Raw values, as a table or JSON gives them, to the arrays the feature transformer computes on.

Numbers may arrive as strings, dates as ISO or ``dd-mm-yyyy`` text (or datetime64), categories as
str, bool or None. Training, batch scoring, drift and the endpoint all coerce through here, so a
value means the same thing everywhere. Small requests take a fast date path that gives pandas'
"mixed" parser's answer without calling it (``fast_date``).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

# A batch of raw rows: a DataFrame, or a mapping of column -> sequence of values (one per row).
RawRows = pd.DataFrame | Mapping[str, Sequence[Any]]


def column_values(raw: RawRows, name: str) -> np.ndarray:
    """One input column as a numpy array, from a DataFrame or a mapping of column -> values."""
    values = raw[name]
    return values.to_numpy() if isinstance(values, pd.Series) else np.asarray(values)


def to_float(values: pd.Series | np.ndarray) -> np.ndarray:
    """Numbers as a float64 array, whatever JSON made of them (int, float, numeric string, None).

    Values that are not numbers, and infinities, become NaN and are imputed like missing ones.
    The common case (already a numpy numeric dtype) avoids pandas' slower ``na_value`` path.
    """
    array = values if isinstance(values, np.ndarray) else values.to_numpy()
    if array.dtype.kind not in "biuf":
        array = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    array = array.astype(np.float64, copy=True)
    array[~np.isfinite(array)] = np.nan
    return array


def coerce_datetime(values: pd.Series | np.ndarray, date_format: str | None, dayfirst: bool) -> np.ndarray:
    """Dates as a naive (UTC) datetime64 array, from datetime64, ISO strings or day-first strings.

    Strings go through pandas' per-element "mixed" parser, which reads ISO dates as ISO (plain
    ``dayfirst=True`` format inference reads 2014-03-01 as 3 January) and ``dd-mm-yyyy`` day
    first, in one call that costs about as much as a fixed format. A configured
    ``spec.date_format`` is tried first; only values it cannot read fall back to "mixed". Time
    zones are converted to UTC and dropped so that subtracting the naive reference date works.
    Unreadable dates become NaT and are imputed like missing ones.
    """
    if isinstance(values, np.ndarray) and values.dtype == object:
        raw = values  # the endpoint's columns: no Series to build (a third of a one-row request)
    else:
        series = values if isinstance(values, pd.Series) else pd.Series(values)
        if series.dtype.kind == "M":
            if getattr(series.dtype, "tz", None) is not None:
                series = series.dt.tz_convert(None)
            return series.to_numpy()
        raw = series.to_numpy(dtype=object)
    if not date_format:
        return parse_mixed(raw, dayfirst)
    parsed = pd.to_datetime(raw, format=date_format, errors="coerce", utc=True).tz_convert(None).to_numpy()
    retry = np.isnat(parsed) & ~pd.isna(raw)
    if retry.any():
        parsed[retry] = parse_mixed(raw[retry], dayfirst)
    return parsed


def parse_mixed(raw: np.ndarray, dayfirst: bool) -> np.ndarray:
    """Dates as pandas' "mixed" parser reads them; up to ``FAST_DATE_ROWS`` values (every endpoint
    request) without pandas when each is null or of a shape ``fast_date`` reads."""
    if len(raw) <= FAST_DATE_ROWS:  # the endpoint's requests: up to max_instances, often repeated
        fast = [_NAT if _is_null(v) else fast_date(v, dayfirst) if type(v) is str else None for v in raw]
        if None not in fast:
            return np.array(fast, dtype="datetime64[ns]")
    parsed = pd.to_datetime(raw, format="mixed", dayfirst=dayfirst, errors="coerce", utc=True)
    return parsed.tz_convert(None).to_numpy()


FAST_DATE_ROWS = 1024  # the endpoint's max_instances default is 1000; larger frames: pandas
_NAT = np.datetime64("NaT", "ns")


def _is_null(value: Any) -> bool:
    """None or NaN: what pandas reads as NaT (JSON null, a missing cell)."""
    return value is None or (type(value) is float and value != value)


FAST_DATE_YEARS = (1678, 2261)  # strictly inside what datetime64[ns] holds (1677-09-21 to 2262-04-11)
_FAST_ISO = re.compile(r"^\d{4}-\d\d-\d\d(?:[T ]\d\d:\d\d(?::\d\d(?:\.\d{1,6})?)?(?:Z|[+-]\d\d:?\d\d)?)?$")
_FAST_NUMERIC = re.compile(r"^(\d{1,2})([-/.])(\d{1,2})\2(\d{4})$")


@functools.lru_cache(maxsize=8192)
def fast_date(text: str, dayfirst: bool) -> np.datetime64 | None:
    """One date string as pandas' "mixed" parser reads it (as a naive UTC instant), for the
    shapes the endpoint accepts (ISO dates and date-times, DD-MM-YYYY or MM-DD-YYYY); None for
    anything else, which then goes to pandas (tests/unit/model/test_features.py holds them equal)."""
    try:
        if _FAST_ISO.match(text):
            moment = datetime.fromisoformat(text.replace(" ", "T"))
            if moment.tzinfo is not None:
                moment = moment.astimezone(UTC).replace(tzinfo=None)
        elif match := _FAST_NUMERIC.match(text):
            first, _, second, year = match.groups()
            day, month = (first, second) if dayfirst else (second, first)
            moment = datetime(int(year), int(month), int(day))
        else:
            return None
    except (ValueError, OverflowError):  # 30 February and the like: pandas decides (NaT)
        return None
    if not FAST_DATE_YEARS[0] <= moment.year <= FAST_DATE_YEARS[1]:
        return None  # datetime64[ns] would wrap around; pandas gives NaT or its own answer
    return np.datetime64(moment, "ns")


def days_before(dates: np.ndarray, reference: pd.Timestamp) -> np.ndarray:
    """Days from each date to the fixed reference date (NaN for missing dates)."""
    return (np.datetime64(reference) - dates) / np.timedelta64(1, "D")


def to_category_strings(values: pd.Series | np.ndarray) -> np.ndarray:
    """Categories as an object array of str with NaN for missing.

    Training frames hold strings, categoricals or bools; JSON gives str/bool/None. Turning every
    present value into its string makes True and "True" the same category in both worlds.
    """
    array = np.asarray(values, dtype=object)
    missing = pd.isna(array)
    out = array.astype(str).astype(object)
    out[missing] = np.nan
    return out
