"""What a file is before it is read: data or not by its name, Parquet or text by its content.

For text also its encoding, separator and field counts. Reading a user's table (``reading``) and
batch scoring's fast CSV path need the same answers, so they are decided here, from the first
64 KiB of the file only.
"""

from __future__ import annotations

import csv
from pathlib import Path

from components.shared.errors import DataValidationError

CSV_SUFFIXES = (".csv", ".tsv")
PARQUET_SUFFIXES = (".parquet", ".pq")
# Also picked up as parts of a folder (UCI names its files adult.data); .txt is too often a README.
TEXT_PART_SUFFIXES = (".data", ".dat")
PART_SUFFIXES = CSV_SUFFIXES + PARQUET_SUFFIXES + TEXT_PART_SUFFIXES
PARQUET_MAGIC = b"PAR1"
SEPARATORS = (",", "\t", ";")
_SAMPLE_BYTES = 64 * 1024
_SAMPLE_LINES = 20
_CONTROL_BYTES = bytes(sorted(set(range(32)) - {9, 10, 12, 13}))  # not tab, newline, form feed, CR
_BINARY_HINT = " (an Excel, zip, gzip or UTF-16 file?); save it as UTF-8 CSV or Parquet"


def is_part_name(name: str, suffixes: tuple[str, ...] = PART_SUFFIXES) -> bool:
    """Folder parts go by name (a folder also holds READMEs and _SUCCESS); a named file by content.

    ``name`` may be a path or an object name (its last component counts); ``suffixes`` narrows
    what counts as data (batch scoring reads only CSV/TSV and Parquet parts).
    """
    lower = Path(name).name.lower()
    return not lower.startswith((".", "_")) and lower.endswith(suffixes)


def read_head(path: Path) -> bytes:
    """The first bytes only: sniffing a 1 GB file must not read it all into memory."""
    with path.open("rb") as handle:
        return handle.read(_SAMPLE_BYTES)


def inspect_text(path: Path, head: bytes) -> tuple[str, str, list[str], list[int]]:
    """Encoding, separator, first lines and their field counts; refuses what is not delimited text.

    A .csv/.tsv may be ragged (pandas then names the bad line); other names must split cleanly.
    """
    truncated = path.stat().st_size > len(head)
    encoding = _encoding_of(head, truncated)
    if _looks_binary(head):
        raise DataValidationError(
            f"file {path} {_extension_words(path)}is binary, not delimited text{_BINARY_HINT}"
        )
    lines = _sample_lines(head.decode(encoding, errors="replace"), truncated)
    if not lines:
        raise DataValidationError(f"file {path} is empty (no header)")
    sep, widths = _sniff(lines)
    if not path.name.lower().endswith(CSV_SUFFIXES) and not _consistent(widths):
        raise DataValidationError(_not_delimited_message(path, sep, widths))
    return encoding, sep, lines, widths


def detect_encoding(path: Path) -> str:
    """UTF-8 (with or without BOM) unless the bytes say otherwise; then Latin-1, which never fails."""
    return _encoding_of(read_head(path), path.stat().st_size > _SAMPLE_BYTES)


def _encoding_of(head: bytes, truncated: bool) -> str:
    """UTF-8 unless the bytes fail to decode before the (possibly cut) end of the sample."""
    try:
        head.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        if not truncated or exc.start < len(head) - 4:  # not just a character cut at the sample's end
            return "latin-1"
    return "utf-8-sig"


def _looks_binary(head: bytes) -> bool:
    """NUL bytes or more than 1% control characters: no delimited text file looks like that."""
    control = len(head) - len(head.translate(None, _CONTROL_BYTES))
    return b"\x00" in head or control * 100 > len(head)


def sniff_separator(sample: str) -> str:
    """Pick the separator that splits the first lines into the most, consistent, fields.

    csv.Sniffer guesses wrong on short or quoted samples; counting fields per candidate is enough
    for the three separators we accept.
    """
    return _sniff(_sample_lines(sample, len(sample) >= _SAMPLE_BYTES))[0]


def _sample_lines(sample: str, truncated: bool) -> list[str]:
    """The first non-blank lines; a truncated sample's last line may be cut, so it is left out."""
    lines = sample.splitlines()
    if truncated and len(lines) > 1:
        lines = lines[:-1]
    return [line for line in lines if line.strip()][:_SAMPLE_LINES]


def _sniff(lines: list[str]) -> tuple[str, list[int]]:
    """The best separator and the field count of each line with it (ties: the first of SEPARATORS)."""
    widths = {
        sep: [len(row) for row in csv.reader(lines, delimiter=sep, skipinitialspace=True)]
        for sep in SEPARATORS
    }
    best = max(SEPARATORS, key=lambda sep: (_consistent(widths[sep]), widths[sep][0] if widths[sep] else 0))
    return best, widths[best]


def _consistent(widths: list[int]) -> bool:
    return bool(widths) and len(set(widths)) == 1 and widths[0] > 1


def _extension_words(path: Path) -> str:
    """'' for .csv/.tsv; otherwise what is unusual about the name, to start an error message."""
    if path.name.lower().endswith(CSV_SUFFIXES):
        return ""
    return f"has an unsupported extension {path.suffix!r} and " if path.suffix else "has no extension and "


def _not_delimited_message(path: Path, sep: str, widths: list[int]) -> str:
    split = (
        "its lines hold a single field each"
        if set(widths) == {1}
        else f"its first {len(widths)} lines split into {sorted(set(widths))} fields on {sep!r}"
    )
    return (
        f"file {path} {_extension_words(path)}does not read as delimited text: {split}; "
        f"use {', '.join(CSV_SUFFIXES + PARQUET_SUFFIXES)}, or any text file whose rows have the same "
        "number of ',', tab or ';' separated fields"
    )
