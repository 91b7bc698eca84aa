"""The data report of a validated table, the Markdown a user reads before trusting a model.

What was read, what the columns look like, what was removed and why, which texts were read as
missing; written by the ingest stage next to the validated table.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from components.data.schema import feature_columns
from components.shared.config import DatasetSpec
from components.shared.report import markdown_table


def data_report(
    frame: pd.DataFrame,
    spec: DatasetSpec,
    source: str,
    dropped: dict[str, str],
    null_target_rows: int,
    date_notes: Sequence[str],
    markers: dict[str, dict[str, int]],
) -> str:
    """Markdown data report: what was read, what the columns look like, what was removed and why."""
    y = frame[spec.target]
    n = len(frame)
    balance = [
        {
            "class": label,
            "meaning": meaning,
            "rows": int((y == label).sum()),
            "share": float((y == label).mean()) if n else 0.0,
        }
        for label, meaning in ((1, f"{spec.target} == {spec.positive_label}"), (0, "other"))
    ]
    roles = {spec.target: "target", **dict.fromkeys(spec.id_columns, "id")}
    roles.update(dict.fromkeys(spec.date_columns, "date"))
    columns = [
        {
            "column": c,
            "dtype": str(frame[c].dtype),
            "role": roles.get(c, "feature"),
            "nulls": int(frame[c].isna().sum()),
            "null %": round(100 * float(frame[c].isna().mean()), 2),
            "distinct": int(frame[c].nunique()),
        }
        for c in frame.columns
    ]
    removed = [{"what": f"column {c}", "reason": r} for c, r in dropped.items()]
    if null_target_rows:
        removed.append({"what": f"{null_target_rows} rows", "reason": f"missing target {spec.target}"})
    constant = [str(c) for c in feature_columns(frame, spec) if frame[c].nunique(dropna=False) <= 1]
    notes = [f"constant column(s), removed by the feature step: {', '.join(constant)}"] if constant else []
    notes += list(date_notes) + _duplicate_id_notes(frame, spec)
    return "\n".join(
        [
            f"# Data report: {spec.name}",
            "",
            f"- Source: {source}",
            f"- Rows: {n}",
            f"- Columns: {frame.shape[1]}",
            "",
            "## Class balance",
            markdown_table(balance),
            "## Columns",
            markdown_table(columns),
            "## Dropped",
            markdown_table(removed, ["what", "reason"]),
            "## Read as missing",
            _marker_lines([str(c) for c in frame.columns], markers),
            "## Notes",
            "\n".join(f"- {note}" for note in notes) if notes else "_(none)_",
            "",
        ]
    )


def _marker_lines(columns: list[str], markers: dict[str, dict[str, int]]) -> str:
    """Which texts became missing where, so a '?' or 'NULL' turned into NaN is never a surprise."""
    lines = []
    for column in (c for c in columns if markers.get(c)):
        counts = sorted(markers[column].items(), key=lambda item: (-item[1], item[0]))
        cells = [_cells(marker, n) for marker, n in counts]
        lines.append(f"- `{column}`: {', '.join(cells)} read as missing")
    return "\n".join(lines) + "\n" if lines else "_(none)_\n"


def _cells(marker: str, n: int) -> str:
    plural = "s" if n != 1 else ""
    return f"{n:,} empty cell{plural}" if marker == "" else f"{n:,} cell{plural} `{marker}`"


def _duplicate_id_notes(frame: pd.DataFrame, spec: DatasetSpec) -> list[str]:
    notes = []
    for column in spec.id_columns:
        repeated = int(frame[column].dropna().duplicated().sum())
        if repeated:
            notes.append(f"id column {column}: {repeated} repeated value(s)")
    return notes
