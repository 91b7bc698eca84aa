"""Bundle format versions, and how a bundle written by older code is read by today's code.

A skops file names every Python type inside it by module path, so moving a class to another module
would make every saved bundle unloadable (skops refuses, or cannot import, the old path). Each
format version therefore records the type paths it wrote that have moved since; reading an older
bundle renames them in memory before skops sees the file. The files on disk, and so their
checksums and the bundle's digest, are never changed.

Version history:
    1  components/ was one flat folder (``components.features.FeatureTransformer``).
    2  one package per subsystem (``components.model.features.FeatureTransformer``).

Moving a type that bundles save again: bump ``FORMAT_VERSION`` and add the move under the old
version in ``_MOVED_TYPES``; ``tests/unit/model/test_bundle_format.py`` fails until that is done.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from components.shared.errors import BundleError

FORMAT_VERSION = 2
SKOPS_SCHEMA = "schema.json"

# format version -> {a type path as bundles of that version wrote it: its path in the next version}
_MOVED_TYPES: dict[int, dict[str, str]] = {
    1: {"components.features.FeatureTransformer": "components.model.features.FeatureTransformer"},
}


def moved_types(format_version: int) -> dict[str, str]:
    """Every type path renamed since ``format_version``, composed step by step up to today."""
    moves: dict[str, str] = {}
    for version in sorted(v for v in _MOVED_TYPES if v >= format_version):
        step = _MOVED_TYPES[version]
        moves = {old: step.get(new, new) for old, new in moves.items()}
        moves |= {old: new for old, new in step.items() if old not in moves}
    return moves


# skops names nodes and array files by id(obj), a memory address, and zip entries carry their write
# time: both are renumbered / fixed here, so equal objects give byte-identical files and a retrain
# that learnt nothing new is recognised by its checksums (the registry refuses it).
_FIXED_ZIP_TIME = (1980, 1, 1, 0, 0, 0)
_ID_FILE = re.compile(r"^(\d+)(\.\w+)$")


def dump_skops(obj: Any, path: Path) -> None:
    """skops.io.dump with reproducible bytes: ids numbered in schema order, fixed entry times."""
    import skops.io as sio  # lazy: this module is imported by code that only reads

    original = zipfile.ZipFile(io.BytesIO(sio.dumps(obj)))
    schema = json.loads(original.read(SKOPS_SCHEMA))
    numbers: dict[int, int] = {}
    _renumber(schema, numbers)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as rewritten:
        entries = {}
        for name in original.namelist():
            match = _ID_FILE.match(name)
            if name == SKOPS_SCHEMA:
                continue
            if not match or int(match.group(1)) not in numbers:
                raise BundleError(f"skops archive entry {name!r} is not referenced by its schema")
            entries[(numbers[int(match.group(1))], match.group(2))] = original.read(name)
        for (number, suffix), data in sorted(entries.items()):
            _write_entry(rewritten, f"{number}{suffix}", data)
        _write_entry(rewritten, SKOPS_SCHEMA, json.dumps(schema, indent=2).encode("utf-8"))
    Path(path).write_bytes(buffer.getvalue())


def _renumber(node: Any, numbers: dict[int, int]) -> None:
    """Replace every ``__id__`` and ``file`` id by its order of first appearance (same id, same number)."""
    if isinstance(node, list):
        for item in node:
            _renumber(item, numbers)
        return
    if not isinstance(node, dict):
        return
    if isinstance(node.get("__id__"), int):
        node["__id__"] = numbers.setdefault(node["__id__"], len(numbers) + 1)
    match = _ID_FILE.match(node["file"]) if isinstance(node.get("file"), str) else None
    if match:
        number = numbers.setdefault(int(match.group(1)), len(numbers) + 1)
        node["file"] = f"{number}{match.group(2)}"
    for key, value in node.items():
        if key not in ("__id__", "file"):
            _renumber(value, numbers)


def _write_entry(archive: zipfile.ZipFile, name: str, data: bytes) -> None:
    info = zipfile.ZipInfo(name, date_time=_FIXED_ZIP_TIME)
    info.compress_type = zipfile.ZIP_DEFLATED
    archive.writestr(info, data)


def skops_bytes(path: Path, format_version: int = FORMAT_VERSION) -> bytes:
    """The skops file's content as today's code reads it (type paths renamed when it is older)."""
    data = Path(path).read_bytes()
    moves = moved_types(format_version)
    return _rename_types(data, moves) if moves else data


def load_skops(path: Path, trusted: Iterable[str], what: str, format_version: int = FORMAT_VERSION) -> Any:
    """skops load refusing every type outside skops' defaults and ``trusted`` (``what`` names the
    file in errors: "transformer file", "model file")."""
    path = Path(path)
    trusted = list(trusted)
    if not path.is_file():
        raise BundleError(f"{what} {path} does not exist")
    import skops.io as sio  # lazy: verifying a bundle needs no skops

    try:
        data = skops_bytes(path, format_version)
        untrusted = sio.get_untrusted_types(data=data)
    except Exception as exc:  # not a zip, or no/invalid schema.json
        raise BundleError(f"{what} {path} is not a readable skops file: {exc}") from exc
    refused = sorted(set(untrusted) - set(trusted))
    if refused:
        raise BundleError(f"{what} {path} contains untrusted types: {', '.join(refused)}")
    try:
        return sio.loads(data, trusted=trusted)
    except Exception as exc:
        raise BundleError(f"{what} {path} could not be loaded: {exc}") from exc


def _rename_types(data: bytes, moves: dict[str, str]) -> bytes:
    """The same zip with ``schema.json``'s moved type paths renamed; every other member as it was."""
    with zipfile.ZipFile(io.BytesIO(data)) as source:
        schema = json.loads(source.read(SKOPS_SCHEMA))
        if not _rename_nodes(schema, moves):
            return data
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w") as target:
            for info in source.infolist():
                content = json.dumps(schema) if info.filename == SKOPS_SCHEMA else source.read(info)
                target.writestr(info, content)
    return out.getvalue()


def _rename_nodes(node: Any, moves: dict[str, str]) -> int:
    """Rename ``__module__``/``__class__`` pairs found in ``moves``, in place; returns how many."""
    renamed = 0
    if isinstance(node, dict):
        module, name = node.get("__module__"), node.get("__class__")
        if isinstance(module, str) and isinstance(name, str) and f"{module}.{name}" in moves:
            node["__module__"], node["__class__"] = moves[f"{module}.{name}"].rsplit(".", 1)
            renamed += 1
        children: Iterable[Any] = node.values()
    elif isinstance(node, list):
        children = node
    else:
        return 0
    return renamed + sum(_rename_nodes(child, moves) for child in children)
