"""read_json names the file and what went wrong, in the caller's error type."""

from __future__ import annotations

from pathlib import Path

import pytest

from components.shared.artifacts import read_json
from components.shared.errors import RegistryError


def test_missing_unreadable_and_invalid_json_are_named(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match=r"aliases .*nothing\.json does not exist"):
        read_json(tmp_path / "nothing.json", error=RegistryError, what="aliases")
    with pytest.raises(RegistryError, match=r"aliases .* could not be read"):
        read_json(tmp_path, error=RegistryError, what="aliases")  # a directory
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(RegistryError, match=r"aliases .*bad\.json is not valid JSON"):
        read_json(tmp_path / "bad.json", error=RegistryError, what="aliases")
    (tmp_path / "good.json").write_text('{"champion": "v0001"}')
    assert read_json(tmp_path / "good.json") == {"champion": "v0001"}
