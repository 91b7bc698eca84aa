"""A local model registry: immutable, numbered bundle versions and movable aliases (``champion``).

Layout under ``root``::

    <model_name>/versions/v0001/    bundle files + metadata.json     (never modified once there)
    <model_name>/aliases.json       {"champion": "v0003", ...}       (replaced atomically)
    <model_name>/alias_history.jsonl  one line per alias move: who, when, from, to, action
    <model_name>/.lock              flock target serialising writers of this model

Why it is safe to interrupt: a version is assembled in ``<model_name>/.tmp-*`` (copied, checksums
verified, loaded, metadata written) and only then renamed to its number, so a version either exists
completely or not at all; aliases.json is written to a temp file, fsynced and ``os.replace``d.
Writers hold an exclusive ``fcntl.flock`` for the whole operation, so concurrent registrations get
distinct numbers, and any ``.tmp-*`` seen while holding the lock is a leftover of a crash and is
removed. Readers take no lock and never write (reading a registry leaves it byte-for-byte equal).
"""

from __future__ import annotations

import fcntl
import getpass
import json
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from components.model.bundle import (
    BUNDLE_FILE,
    MANIFEST_FILE,
    ModelBundle,
    bundle_digest,
    identical_model_message,
    json_safe,
    load_bundle,
    prediction_identity,
    utc_now,
    verify_bundle,
)
from components.shared.artifacts import fsync_dir, open_staging_file, read_json, staging_dir
from components.shared.errors import BundleError, IdenticalVersionError, RegistryError

VERSIONS_DIR = "versions"
METADATA_FILE = "metadata.json"
ALIASES_FILE = "aliases.json"
HISTORY_FILE = "alias_history.jsonl"
REGISTRY_FILE = "registry file"  # how errors name the JSON files above
LOCK_FILE = ".lock"
TMP_PREFIX = ".tmp-"
CHAMPION = "champion"
LATEST = "latest"  # a reserved reference: the highest version number

_NAME_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
VERSION_RE = re.compile(r"^v(\d{4,})$")
# Identity fields the registry decides; caller metadata cannot override them.
_PROTECTED = frozenset({"version", "model_name", "created_at", "bundle_digest"})


def validate_name(value: str, what: str = "model name") -> str:
    """Lowercase letters, digits and inner dashes, at most 63 characters (also valid on Vertex)."""
    if not isinstance(value, str) or not _NAME_RE.match(value):
        raise RegistryError(
            f"invalid {what} {value!r}: use lowercase letters, digits and dashes "
            "(start and end with a letter or digit, at most 63 characters)"
        )
    return value


def validate_alias(alias: str) -> str:
    validate_name(alias, "alias")
    if VERSION_RE.match(alias) or alias == LATEST:
        raise RegistryError(f"invalid alias {alias!r}: it would be confused with a version reference")
    return alias


def version_id(number: int) -> str:
    return f"v{number:04d}"


def _atomic_write_json(path: Path, data: Any) -> None:
    """temp file + fsync + os.replace: readers see the old or the new file, never a partial one."""
    fd, tmp = open_staging_file(path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(json_safe(data), handle, indent=2, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


class LocalRegistry:
    """Registry in a local (or mounted) directory; see the module docstring for the layout."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    # ----------------------------------------------------------------- paths and locking

    def _model_dir(self, model_name: str) -> Path:
        return self.root / validate_name(model_name)

    def _existing_model_dir(self, model_name: str) -> Path:
        model_dir = self._model_dir(model_name)
        if not (model_dir / VERSIONS_DIR).is_dir():
            raise RegistryError(f"unknown model {model_name!r} in registry {self.root}")
        return model_dir

    @contextmanager
    def _locked(self, model_dir: Path) -> Iterator[None]:
        """Exclusive per-model lock; flock is per open file, so it also excludes other threads."""
        model_dir.mkdir(parents=True, exist_ok=True)
        with open(model_dir / LOCK_FILE, "a") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    @staticmethod
    def _version_numbers(model_dir: Path) -> list[int]:
        folder = model_dir / VERSIONS_DIR
        if not folder.is_dir():
            return []
        found = (VERSION_RE.match(p.name) for p in folder.iterdir() if p.is_dir())
        return sorted(int(m.group(1)) for m in found if m)

    @staticmethod
    def _clean_stale(model_dir: Path) -> None:
        """Remove leftovers of interrupted writers (only called while holding the lock)."""
        for path in model_dir.iterdir():
            if path.name.startswith(TMP_PREFIX) or path.name.startswith(f".{ALIASES_FILE}."):
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)

    # ----------------------------------------------------------------- register

    @staticmethod
    def copy_bundle(source: Path, staged: Path) -> None:
        """Copy exactly the files the manifest lists, plus the manifest (stray files stay behind)."""
        manifest = verify_bundle(source)
        for name in [*manifest["files"], MANIFEST_FILE]:
            if name == METADATA_FILE:
                raise BundleError(f"bundle {source} lists {METADATA_FILE}, a name the registry reserves")
            destination = staged / name
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source / name, destination)
            with open(destination, "rb") as handle:
                os.fsync(handle.fileno())

    @staticmethod
    def staged_identity(staged: Path) -> dict[str, Any]:
        """The prediction identity of a staged (verified) bundle copy."""
        return prediction_identity(
            read_json(staged / MANIFEST_FILE, BundleError, "bundle manifest"),
            read_json(staged / BUNDLE_FILE, BundleError, "bundle description"),
        )

    def _refuse_identical(self, model_dir: Path, model_name: str, identity: dict[str, Any]) -> None:
        """A version the champion already is would only churn the registry: refuse it."""
        champion = self.champion(model_name)
        if champion is None:
            return
        folder = model_dir / VERSIONS_DIR / champion
        if self.staged_identity(folder) == identity:
            raise IdenticalVersionError(identical_model_message(identity, model_name, champion))

    @staticmethod
    def version_metadata(
        bundle: ModelBundle, staged: Path, model_name: str, extra: dict[str, Any]
    ) -> dict[str, Any]:
        record: dict[str, Any] = {
            "family": bundle.family,
            "threshold": bundle.threshold,
            "temperature": bundle.temperature,
            "metrics": bundle.metrics,
            "params": bundle.params,
            "data_fingerprint": bundle.data_fingerprint,
            "code_version": bundle.code_version,
            "library_versions": bundle.library_versions,
            "bundle_created_at": bundle.created_at,
        }
        record.update({k: v for k, v in (extra or {}).items() if k not in _PROTECTED})
        record.update(
            {"model_name": model_name, "created_at": utc_now(), "bundle_digest": bundle_digest(staged)}
        )
        return record

    def register(
        self, model_name: str, bundle_dir: str | Path, metadata: dict[str, Any] | None = None
    ) -> str:
        """Add the bundle as the next immutable version (v0001, v0002, ...) and return its id.

        The copy is verified and loaded (checksums, allow-listed types) before it gets a number,
        so every registered version is known to load. A bundle whose model files are
        byte-identical to the champion's (same threshold and temperature) is refused with
        :class:`IdenticalVersionError`, and nothing is written.
        """
        model_dir = self._model_dir(model_name)
        source = Path(bundle_dir)
        with self._locked(model_dir):
            self._clean_stale(model_dir)
            (model_dir / VERSIONS_DIR).mkdir(exist_ok=True)
            staged = staging_dir(model_dir, TMP_PREFIX)
            try:
                self.copy_bundle(source, staged)
                self._refuse_identical(model_dir, model_name, self.staged_identity(staged))
                bundle = load_bundle(staged)
                numbers = self._version_numbers(model_dir)
                version = version_id((numbers[-1] if numbers else 0) + 1)
                record = self.version_metadata(bundle, staged, model_name, metadata or {})
                record["version"] = version
                _atomic_write_json(staged / METADATA_FILE, record)
                target = model_dir / VERSIONS_DIR / version
                if target.exists():  # cannot happen under the lock; never overwrite a version
                    raise RegistryError(f"version {version} of {model_name!r} already exists")
                os.rename(staged, target)
                fsync_dir(target.parent)
            except BaseException:
                shutil.rmtree(staged, ignore_errors=True)
                raise
        return version

    # ----------------------------------------------------------------- aliases

    def aliases(self, model_name: str) -> dict[str, str]:
        path = self._model_dir(model_name) / ALIASES_FILE
        return dict(read_json(path, RegistryError, REGISTRY_FILE)) if path.is_file() else {}

    def _move_alias(self, model_dir: Path, alias: str, version: str, actor: str | None, action: str) -> None:
        """Point ``alias`` at ``version`` and log the move; the caller holds the lock."""
        if not isinstance(version, str) or not VERSION_RE.match(version):
            raise RegistryError(f"invalid version {version!r}: expected an id like v0001")
        if not (model_dir / VERSIONS_DIR / version).is_dir():
            raise RegistryError(f"unknown version {version!r} of model {model_dir.name!r}")
        path = model_dir / ALIASES_FILE
        aliases = dict(read_json(path, RegistryError, REGISTRY_FILE)) if path.is_file() else {}
        previous = aliases.get(alias)
        if previous == version:
            return
        aliases[alias] = version
        _atomic_write_json(path, aliases)
        entry = {
            "at": utc_now(),
            "who": actor or _current_user(),
            "alias": alias,
            "from": previous,
            "to": version,
            "action": action,
        }
        _append_line(model_dir / HISTORY_FILE, json.dumps(entry, sort_keys=True))

    def set_alias(self, model_name: str, alias: str, version: str, actor: str | None = None) -> None:
        """Point an alias (e.g. ``champion``) at an existing version; logged in alias_history.jsonl."""
        model_dir = self._existing_model_dir(model_name)
        validate_alias(alias)
        with self._locked(model_dir):
            self._move_alias(model_dir, alias, version, actor, "set")

    def champion(self, model_name: str) -> str | None:
        return self.aliases(model_name).get(CHAMPION)

    def history(self, model_name: str) -> list[dict[str, Any]]:
        """Alias moves, oldest first. A line cut short by a crash is skipped (aliases.json is the truth)."""
        path = self._model_dir(model_name) / HISTORY_FILE
        if not path.is_file():
            return []
        entries = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                entries.append(json.loads(line))
            except ValueError:
                continue
        return entries

    def rollback(self, model_name: str, to_version: str | None = None, actor: str | None = None) -> str:
        """Re-point ``champion`` to ``to_version``, or to the champion before the current one.

        Rollbacks unwind the history like a stack (v1 -> v2 -> v3, rollback: v2, rollback: v1)
        instead of toggling between the last two champions.
        """
        model_dir = self._existing_model_dir(model_name)
        with self._locked(model_dir):
            target = to_version or self._previous_champion(model_name)
            self._move_alias(model_dir, CHAMPION, target, actor, "rollback")
        return target

    def _previous_champion(self, model_name: str) -> str:
        stack: list[str] = []
        for entry in self.history(model_name):
            if entry.get("alias") != CHAMPION:
                continue
            to = entry.get("to")
            if entry.get("action") == "rollback" and to in stack:
                del stack[len(stack) - stack[::-1].index(to) :]
            elif not stack or stack[-1] != to:
                stack.append(to)
        current = self.champion(model_name)
        if current is not None and (not stack or stack[-1] != current):
            stack.append(current)  # aliases.json moved without a history entry
        earlier = [v for v in stack[:-1] if v != current]
        if not earlier:
            raise RegistryError(f"model {model_name!r} has no previous champion to roll back to")
        return earlier[-1]

    # ----------------------------------------------------------------- reading

    def resolve(self, model_name: str, ref: str = CHAMPION) -> Path:
        """Directory of a version given a version id (``v0003``), an alias, or ``latest``."""
        model_dir = self._existing_model_dir(model_name)
        if VERSION_RE.match(ref):
            path = model_dir / VERSIONS_DIR / ref
            if not path.is_dir():
                raise RegistryError(f"unknown version {ref!r} of model {model_name!r}")
            return path
        if ref == LATEST:
            numbers = self._version_numbers(model_dir)
            if not numbers:
                raise RegistryError(f"model {model_name!r} has no versions")
            return model_dir / VERSIONS_DIR / version_id(numbers[-1])
        aliases = self.aliases(model_name)
        if ref not in aliases:
            known = ", ".join(sorted(aliases)) or "none"
            raise RegistryError(f"unknown alias {ref!r} of model {model_name!r} (aliases: {known})")
        return model_dir / VERSIONS_DIR / aliases[ref]

    def versions(self, model_name: str) -> list[dict[str, Any]]:
        """Metadata of every version, oldest first; [] for a model never registered."""
        model_dir = self._model_dir(model_name)
        return [
            read_json(model_dir / VERSIONS_DIR / version_id(n) / METADATA_FILE, RegistryError, REGISTRY_FILE)
            for n in self._version_numbers(model_dir)
        ]

    def models(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / VERSIONS_DIR).is_dir())

    def load(self, model_name: str, ref: str = CHAMPION) -> ModelBundle:
        """Load (checksums verified) the bundle a reference points at."""
        return load_bundle(self.resolve(model_name, ref))


def _append_line(path: Path, line: str) -> None:
    """Append one JSON line, starting a fresh line if a crash left the previous one unterminated."""
    with open(path, "a+b") as handle:
        handle.seek(0, os.SEEK_END)
        prefix = b""
        if handle.tell():
            handle.seek(-1, os.SEEK_END)
            prefix = b"" if handle.read(1) == b"\n" else b"\n"
        handle.write(prefix + line.encode("utf-8") + b"\n")
        handle.flush()
        os.fsync(handle.fileno())


def _current_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
