"""The model registry in Google Cloud Storage: LocalRegistry's interface, safe for concurrent writers.

Layout under ``gs://bucket/prefix``::

    <model>/versions/v0001/.claim           reserves the number (created with ifGenerationMatch=0)
    <model>/versions/v0001/<bundle files>   manifest-listed files + manifest.json, never modified
    <model>/versions/v0001/metadata.json    uploaded last: a version without it is incomplete, ignored
    <model>/aliases.json                    {"champion": "v0003"}, replaced with ifGenerationMatch
    <model>/alias_history/<generation>.json one object per alias move (aliases.json's new generation)

GCS has no locks and no rename, so the local registry's flock + rename become preconditions:

* A writer claims the next number by *creating* ``.claim`` with ``if_generation_match=0``; GCS lets
  exactly one creator win, a loser re-lists and tries the next number. Numbers of abandoned
  claims are never reused (they show as gaps).
* ``metadata.json`` is written last, so readers never see a half-uploaded version.
* ``aliases.json`` is read with its generation and replaced with ``if_generation_match=<that
  generation>``: a concurrent move makes the write fail (412) and the whole read-modify-write is
  retried, so no alias move is lost. History entries are named by the generation the move
  produced, which orders them as GCS ordered the moves.
* ``load`` downloads a version once into a local cache, verifies every checksum and the manifest
  digest recorded at registration, and only then loads it (``bundle.load_bundle``).
"""

from __future__ import annotations

import getpass
import json
import os
import random
import shutil
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

from google.api_core import exceptions as api_exceptions

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
from components.registry.local import (
    ALIASES_FILE,
    CHAMPION,
    LATEST,
    METADATA_FILE,
    VERSION_RE,
    VERSIONS_DIR,
    LocalRegistry,
    validate_alias,
    validate_name,
    version_id,
)
from components.shared import gcs as storage
from components.shared.artifacts import staging_dir
from components.shared.errors import BundleError, IdenticalVersionError, RegistryError

CLAIM_FILE = ".claim"
HISTORY_DIR = "alias_history"
MAX_ATTEMPTS = 40  # optimistic-concurrency retries before giving up (each backs off a little more)
_CONFLICTS = (api_exceptions.PreconditionFailed, api_exceptions.NotFound)


def _backoff(attempt: int) -> None:
    """Jittered exponential back-off so that racing writers spread out instead of colliding again."""
    time.sleep(random.uniform(0, min(1.0, 0.01 * 2**attempt)))


def _json_bytes(data: Any) -> bytes:
    return json.dumps(json_safe(data), indent=2, sort_keys=True).encode("utf-8")


def _actor() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def previous_champion(history: list[dict[str, Any]], current: str | None, model_name: str) -> str:
    """The champion before ``current``, unwinding earlier rollbacks like a stack.

    Same rule as the local registry: v1 -> v2 -> v3, rollback: v2, rollback: v1.
    """
    stack: list[str] = []
    for entry in history:
        if entry.get("alias") != CHAMPION:
            continue
        to = entry.get("to")
        if entry.get("action") == "rollback" and to in stack:
            del stack[len(stack) - stack[::-1].index(to) :]
        elif not stack or stack[-1] != to:
            stack.append(to)
    if current is not None and (not stack or stack[-1] != current):
        stack.append(current)  # aliases.json moved without a history entry
    earlier = [v for v in stack[:-1] if v != current]
    if not earlier:
        raise RegistryError(f"model {model_name!r} has no previous champion to roll back to")
    return earlier[-1]


class GcsRegistry:
    """Registry under a ``gs://bucket/prefix`` URI; see the module docstring for the layout."""

    def __init__(self, uri: str, client: Any = None, cache_dir: Path | None = None) -> None:
        storage.split_uri(uri)  # validates the URI
        self.uri = uri.rstrip("/")
        self.root = self.uri  # LocalRegistry names its location ``root``
        self._client = client
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self._complete: set[tuple[str, str]] = set()  # versions seen complete (they stay complete)

    @property
    def client(self) -> Any:
        return storage.get_client(self._client)

    # ----------------------------------------------------------------- locations

    def _model_uri(self, model_name: str) -> str:
        return storage.join(self.uri, validate_name(model_name))

    def _version_uri(self, model_name: str, version: str) -> str:
        return storage.join(self._model_uri(model_name), VERSIONS_DIR, version)

    def _scan(self, model_name: str) -> tuple[list[int], list[int]]:
        """(every allocated version number, the complete ones), both ascending, from one listing."""
        allocated: set[int] = set()
        complete: set[int] = set()
        for name in storage.list_names(storage.join(self._model_uri(model_name), VERSIONS_DIR), self._client):
            folder, _, rest = name.partition("/")
            match = VERSION_RE.match(folder)
            if not match:
                continue
            allocated.add(int(match.group(1)))
            if rest == METADATA_FILE:
                complete.add(int(match.group(1)))
        return sorted(allocated), sorted(complete)

    def _require_model(self, model_name: str) -> list[int]:
        allocated, complete = self._scan(model_name)
        if not allocated:
            raise RegistryError(f"unknown model {model_name!r} in registry {self.uri}")
        return complete

    def _require_version(self, model_name: str, version: str) -> str:
        if not isinstance(version, str) or not VERSION_RE.match(version):
            raise RegistryError(f"invalid version {version!r}: expected an id like v0001")
        if (model_name, version) in self._complete:
            return version
        if not storage.exists(
            storage.join(self._version_uri(model_name, version), METADATA_FILE), self._client
        ):
            raise RegistryError(f"unknown version {version!r} of model {model_name!r}")
        self._complete.add((model_name, version))
        return version

    # ----------------------------------------------------------------- register

    def _claim(self, model_name: str) -> str:
        """Reserve the next free number: exactly one concurrent creator of ``.claim`` wins."""
        record = _json_bytes({"claimed_at": utc_now(), "by": _actor(), "host": socket.gethostname()})
        for attempt in range(MAX_ATTEMPTS):
            allocated, _ = self._scan(model_name)
            version = version_id((allocated[-1] if allocated else 0) + 1)
            claim = storage.join(self._version_uri(model_name, version), CLAIM_FILE)
            try:
                storage.write_bytes(claim, record, self._client, if_generation_match=0)
                return version
            except api_exceptions.PreconditionFailed:
                _backoff(attempt)
        raise RegistryError(f"could not reserve a version number for {model_name!r} in {self.uri}")

    def register(
        self, model_name: str, bundle_dir: str | Path, metadata: dict[str, Any] | None = None
    ) -> str:
        """Upload the bundle as the next immutable version and return its id (``v0001``, ...).

        The bundle is copied and loaded locally first (checksums, allow-listed types), so every
        registered version is known to load; metadata.json goes up last and only if absent.
        """
        validate_name(model_name)
        with tempfile.TemporaryDirectory(prefix="gcs-register-") as tmp:
            staged = Path(tmp) / "bundle"
            staged.mkdir()
            LocalRegistry.copy_bundle(Path(bundle_dir), staged)
            self._refuse_identical(model_name, LocalRegistry.staged_identity(staged))
            bundle = load_bundle(staged)
            record = LocalRegistry.version_metadata(bundle, staged, model_name, metadata or {})
            version = self._claim(model_name)
            target = self._version_uri(model_name, version)
            storage.upload_dir(staged, target, self._client, last=[MANIFEST_FILE])
            payload = _json_bytes({**record, "version": version})
            storage.write_bytes(
                storage.join(target, METADATA_FILE),
                payload,
                self._client,
                if_generation_match=0,
                content_type="application/json",
            )
        self._complete.add((model_name, version))
        return version

    def _refuse_identical(self, model_name: str, identity: dict[str, Any]) -> None:
        """Refuse a bundle the champion already is (read from its manifest and bundle.json)."""
        champion = self.champion(model_name)
        if champion is None:
            return
        folder = self._version_uri(model_name, champion)
        try:
            manifest = json.loads(storage.read_bytes(storage.join(folder, MANIFEST_FILE), self._client))
            described = json.loads(storage.read_bytes(storage.join(folder, BUNDLE_FILE), self._client))
        except (ValueError, api_exceptions.NotFound) as exc:
            raise RegistryError(
                f"champion {champion} of {model_name!r} in {self.uri} is unreadable: {exc}"
            ) from exc
        if prediction_identity(manifest, described) == identity:
            raise IdenticalVersionError(identical_model_message(identity, model_name, champion))

    # ----------------------------------------------------------------- aliases

    def _aliases_uri(self, model_name: str) -> str:
        return storage.join(self._model_uri(model_name), ALIASES_FILE)

    def _read_aliases(self, model_name: str) -> tuple[dict[str, str], int]:
        """aliases.json and the generation it was read at (0: absent), as one consistent snapshot."""
        bucket_name, name = storage.split_uri(self._aliases_uri(model_name))
        bucket = self.client.bucket(bucket_name)
        for attempt in range(MAX_ATTEMPTS):
            blob = bucket.get_blob(name, retry=storage.RETRY)
            if blob is None:
                return {}, 0
            generation = int(blob.generation)  # read first: a download may reset it from headers
            try:
                data = blob.download_as_bytes(if_generation_match=generation, retry=storage.RETRY)
            except _CONFLICTS:  # replaced between the two requests: read again
                _backoff(attempt)
                continue
            try:
                return dict(json.loads(data)), generation
            except ValueError as exc:
                raise RegistryError(
                    f"registry file {self._aliases_uri(model_name)} is not valid JSON"
                ) from exc
        raise RegistryError(f"could not read a stable {self._aliases_uri(model_name)}")

    def aliases(self, model_name: str) -> dict[str, str]:
        return self._read_aliases(model_name)[0]

    def champion(self, model_name: str) -> str | None:
        return self.aliases(model_name).get(CHAMPION)

    def _move_alias(self, model_name: str, alias: str, target: Any, actor: str | None, action: str) -> str:
        """Compare-and-swap aliases.json until it succeeds; ``target(aliases) -> version``."""
        for attempt in range(MAX_ATTEMPTS):
            aliases, generation = self._read_aliases(model_name)
            version = self._require_version(model_name, target(aliases))
            previous = aliases.get(alias)
            if previous == version:
                return version
            try:
                new_generation = storage.write_bytes(
                    self._aliases_uri(model_name),
                    _json_bytes({**aliases, alias: version}),
                    self._client,
                    if_generation_match=generation,
                    content_type="application/json",
                )
            except api_exceptions.PreconditionFailed:
                _backoff(attempt)  # someone else moved an alias first: start over from their state
                continue
            entry = {
                "at": utc_now(),
                "who": actor or _actor(),
                "alias": alias,
                "from": previous,
                "to": version,
                "action": action,
            }
            history = storage.join(self._model_uri(model_name), HISTORY_DIR, f"{new_generation:020d}.json")
            storage.write_bytes(history, _json_bytes(entry), self._client, if_generation_match=0)
            return version
        raise RegistryError(
            f"could not move alias {alias!r} of {model_name!r}: aliases.json kept changing "
            f"({MAX_ATTEMPTS} attempts)"
        )

    def set_alias(self, model_name: str, alias: str, version: str, actor: str | None = None) -> None:
        """Point an alias (e.g. ``champion``) at an existing version; logged in alias_history/."""
        self._require_model(model_name)
        validate_alias(alias)
        self._move_alias(model_name, alias, lambda _: version, actor, "set")

    def history(self, model_name: str) -> list[dict[str, Any]]:
        """Alias moves, oldest first (an unreadable entry is skipped: aliases.json is the truth)."""
        folder = storage.join(self._model_uri(model_name), HISTORY_DIR)
        entries = []
        for name in storage.list_names(folder, self._client):
            try:
                entries.append(json.loads(storage.read_bytes(storage.join(folder, name), self._client)))
            except (ValueError, api_exceptions.NotFound):
                continue
        return entries

    def rollback(self, model_name: str, to_version: str | None = None, actor: str | None = None) -> str:
        """Re-point ``champion`` to ``to_version``, or to the champion before the current one."""
        self._require_model(model_name)

        def target(aliases: dict[str, str]) -> str:
            if to_version:
                return to_version
            return previous_champion(self.history(model_name), aliases.get(CHAMPION), model_name)

        return self._move_alias(model_name, CHAMPION, target, actor, "rollback")

    # ----------------------------------------------------------------- reading

    def _version_of(self, model_name: str, ref: str) -> str:
        if VERSION_RE.match(ref):
            self._require_model(model_name)
            return self._require_version(model_name, ref)
        complete = self._require_model(model_name)
        if ref == LATEST:
            if not complete:
                raise RegistryError(f"model {model_name!r} has no versions")
            return version_id(complete[-1])
        aliases = self.aliases(model_name)
        if ref not in aliases:
            known = ", ".join(sorted(aliases)) or "none"
            raise RegistryError(f"unknown alias {ref!r} of model {model_name!r} (aliases: {known})")
        return aliases[ref]

    def resolve(self, model_name: str, ref: str = CHAMPION) -> str:
        """The gs:// URI of a version given its id (``v0003``), an alias, or ``latest``."""
        return self._version_uri(model_name, self._version_of(model_name, ref))

    def versions(self, model_name: str) -> list[dict[str, Any]]:
        """Metadata of every complete version, oldest first; [] for a model never registered."""
        _, complete = self._scan(model_name)
        records = []
        for number in complete:
            uri = storage.join(self._version_uri(model_name, version_id(number)), METADATA_FILE)
            try:
                records.append(json.loads(storage.read_bytes(uri, self._client)))
            except ValueError as exc:
                raise RegistryError(f"registry file {uri} is not valid JSON: {exc}") from exc
        return records

    def models(self) -> list[str]:
        return [
            name
            for name in storage.list_folders(self.uri, self._client)
            if VERSIONS_DIR in storage.list_folders(storage.join(self.uri, name), self._client)
        ]

    def _cache_path(self, model_name: str, version: str) -> Path:
        bucket, prefix = storage.split_uri(self.uri)
        root = self.cache_dir or storage.default_cache_dir() / "registry"
        return root.joinpath(bucket, *[p for p in prefix.split("/") if p], model_name, version)

    def local_copy(self, model_name: str, ref: str = CHAMPION) -> Path:
        """A verified local directory holding the version's files (downloaded once, then cached).

        Versions are immutable, so a cached copy that still verifies (checksums, and the manifest
        digest recorded at registration) is used as is; anything else is downloaded again.
        """
        version = self._version_of(model_name, ref)
        cached = self._cache_path(model_name, version)
        if cached.is_dir():
            try:
                _verify_registered(cached, str(cached))
                return cached
            except BundleError:
                pass  # damaged or partial copy: fetch it again
        cached.parent.mkdir(parents=True, exist_ok=True)
        staged = staging_dir(cached.parent, f".{version}.tmp-")
        try:
            source = self._version_uri(model_name, version)
            storage.download_prefix(source, staged, self._client)
            _verify_registered(staged, source)
            if cached.exists():
                shutil.rmtree(cached, ignore_errors=True)
            try:
                os.replace(staged, cached)
            except OSError:  # another process placed its (verified) copy first
                _verify_registered(cached, str(cached))
        finally:
            shutil.rmtree(staged, ignore_errors=True)
        return cached

    def load(self, model_name: str, ref: str = CHAMPION) -> ModelBundle:
        """Load (checksums verified) the bundle a reference points at."""
        return load_bundle(self.local_copy(model_name, ref))


def _verify_registered(directory: Path, shown_as: str) -> None:
    """Checksums of every listed file, and the manifest matches the digest taken at registration."""
    try:
        verify_bundle(directory)
        record = json.loads((directory / METADATA_FILE).read_text(encoding="utf-8"))
    except BundleError as exc:
        raise BundleError(str(exc).replace(str(directory), shown_as)) from exc
    except (OSError, ValueError) as exc:
        raise BundleError(f"{shown_as}: {METADATA_FILE} is missing or unreadable ({exc})") from exc
    if record.get("bundle_digest") != bundle_digest(directory):
        raise BundleError(
            f"{shown_as}: {MANIFEST_FILE} does not match the digest recorded at registration "
            "(modified after registration)"
        )
