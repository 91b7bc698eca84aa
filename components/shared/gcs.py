"""Google Cloud Storage helpers: gs:// URIs read, written, uploaded and localized, with retries.

Everything here goes through ``google-cloud-storage`` (not gcsfs: it stalls against the emulator).
The client is made lazily, on first use, so importing this module needs no credentials; the
library itself honours ``STORAGE_EMULATOR_HOST`` (anonymous credentials, any project), which is
how the tests run against a real GCS emulator on loopback.

Transient failures (429, 408, 5xx, dropped connections, timeouts) are retried with exponential
back-off by :data:`RETRY`; everything else (404, 403, 412 precondition failures) is raised at once,
so callers that use generation preconditions see their conflicts immediately.
"""

from __future__ import annotations

import http.client
import os
import shutil
import tempfile
import threading
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import Any

from google.api_core import exceptions as api_exceptions
from google.api_core.retry import Retry

from components.shared.artifacts import staging_dir

SCHEME = "gs://"
TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})
_STAGE_PREFIX = ".localize-"


def is_transient(exc: BaseException) -> bool:
    """True for errors worth retrying: throttling, server errors, broken connections, timeouts."""
    import requests
    import urllib3
    from google.auth import exceptions as auth_exceptions
    from google.cloud.storage.exceptions import InvalidResponse

    if isinstance(exc, api_exceptions.GoogleAPICallError):
        return exc.code in TRANSIENT_STATUS
    if isinstance(exc, InvalidResponse):  # raised by the media (upload/download) layer
        return exc.response.status_code in TRANSIENT_STATUS
    if isinstance(exc, auth_exceptions.TransportError):
        return bool(exc.args) and isinstance(exc.args[0], BaseException) and is_transient(exc.args[0])
    return isinstance(
        exc,
        ConnectionError
        | TimeoutError
        | requests.ConnectionError
        | requests.Timeout
        | requests.exceptions.ChunkedEncodingError
        | http.client.HTTPException
        | urllib3.exceptions.ProtocolError
        | urllib3.exceptions.TimeoutError,
    )


# Exponential back-off 0.25 s, 0.5 s, ... capped at 8 s, giving up after 120 s overall.
RETRY = Retry(predicate=is_transient, initial=0.25, maximum=8.0, multiplier=2.0, timeout=120.0)

_clients: dict[tuple[str, str], Any] = {}
_clients_lock = threading.Lock()


def is_gcs(uri: str | os.PathLike[str]) -> bool:
    return isinstance(uri, str) and uri.startswith(SCHEME)


def split_uri(uri: str) -> tuple[str, str]:
    """``gs://bucket/a/b`` -> (``bucket``, ``a/b``); the object name may be empty."""
    if not is_gcs(uri):
        raise ValueError(f"{uri!r} is not a gs:// URI")
    bucket, _, name = uri[len(SCHEME) :].partition("/")
    if not bucket:
        raise ValueError(f"{uri!r} has no bucket name")
    return bucket, name


def join(uri: str, *parts: str) -> str:
    """Join object-name parts onto a gs:// URI with single slashes."""
    pieces = [uri.rstrip("/"), *(p.strip("/") for p in parts if p.strip("/"))]
    return "/".join(pieces)


def get_client(client: Any = None) -> Any:
    """The given client, or one shared per (emulator host, project) made on first use."""
    if client is not None:
        return client
    key = (os.environ.get("STORAGE_EMULATOR_HOST", ""), os.environ.get("GOOGLE_CLOUD_PROJECT", ""))
    with _clients_lock:
        if key not in _clients:
            from google.cloud import storage  # lazy: slow to import, and credentials come later

            _clients[key] = storage.Client(project=key[1] or None)
        return _clients[key]


def blob(uri: str, client: Any = None) -> Any:
    bucket, name = split_uri(uri)
    if not name:
        raise ValueError(f"{uri!r} names a bucket, not an object")
    return get_client(client).bucket(bucket).blob(name)


def read_bytes(uri: str, client: Any = None, retry: Retry = RETRY) -> bytes:
    """The content of one object (``google.api_core.exceptions.NotFound`` if absent)."""
    return blob(uri, client).download_as_bytes(retry=retry)


def write_bytes(
    uri: str,
    data: bytes,
    client: Any = None,
    if_generation_match: int | None = None,
    content_type: str = "application/octet-stream",
    retry: Retry = RETRY,
) -> int:
    """Write one object and return its new generation.

    ``if_generation_match=0`` creates the object only if it does not exist yet; a generation
    number replaces it only if nobody replaced it since. A failed precondition raises
    ``google.api_core.exceptions.PreconditionFailed`` (never retried).
    """
    target = blob(uri, client)
    target.upload_from_string(
        data, content_type=content_type, if_generation_match=if_generation_match, retry=retry
    )
    return int(target.generation)


def exists(uri: str, client: Any = None, retry: Retry = RETRY) -> bool:
    return blob(uri, client).exists(retry=retry)


def list_names(uri: str, client: Any = None, retry: Retry = RETRY) -> list[str]:
    """Object names (relative to ``uri`` as a folder) of everything under the prefix, sorted."""
    bucket, name = split_uri(uri)
    prefix = name.rstrip("/") + "/" if name else ""
    blobs = get_client(client).list_blobs(bucket, prefix=prefix, retry=retry)
    return sorted(b.name[len(prefix) :] for b in blobs if not b.name.endswith("/"))


def list_folders(uri: str, client: Any = None, retry: Retry = RETRY) -> list[str]:
    """Names of the immediate "sub-folders" (common prefixes) under ``uri``, sorted."""
    bucket, name = split_uri(uri)
    prefix = name.rstrip("/") + "/" if name else ""
    pages = get_client(client).list_blobs(bucket, prefix=prefix, delimiter="/", retry=retry)
    for _ in pages:  # the prefixes are only known once every page has been read
        pass
    return sorted(p[len(prefix) :].rstrip("/") for p in pages.prefixes)


def upload_dir(
    local: Path,
    uri: str,
    client: Any = None,
    last: Iterable[str] = (),
    retry: Retry = RETRY,
) -> list[str]:
    """Upload every file under ``local`` to the ``uri`` prefix, keeping relative paths.

    Files named in ``last`` (relative paths, e.g. a manifest) are uploaded after all others, so a
    reader that waits for them never sees a partial upload. Returns the uploaded relative names.
    """
    local = Path(local)
    if not local.is_dir():
        raise FileNotFoundError(f"{local} is not a directory")
    names = sorted(p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file())
    final = [n for n in last if n in names]
    ordered = [n for n in names if n not in final] + final
    for name in ordered:
        blob(join(uri, name), client).upload_from_filename(str(local / name), retry=retry)
    return ordered


def _safe_relative(name: str, uri: str) -> PurePosixPath:
    """Object names become local paths: refuse ones that would escape the target directory."""
    pure = PurePosixPath(name)
    if not name or pure.is_absolute() or ".." in pure.parts:
        raise ValueError(f"object {name!r} under {uri} cannot be stored as a local file")
    return pure


def download_prefix(uri: str, target: Path, client: Any = None, retry: Retry = RETRY) -> list[str]:
    """Download every object under the ``uri`` prefix into ``target`` (created); returns the names."""
    names = list_names(uri, client, retry)
    target.mkdir(parents=True, exist_ok=True)
    for name in names:
        path = target / _safe_relative(name, uri)
        path.parent.mkdir(parents=True, exist_ok=True)
        blob(join(uri, name), client).download_to_filename(str(path), retry=retry)
    return names


def default_cache_dir() -> Path:
    """Per-user cache under the temp dir (home may be read-only in containers)."""
    return Path(tempfile.gettempdir()) / f"propensity-{os.getuid()}" / "gcs"


def localize(
    uri: str | os.PathLike[str],
    cache_dir: Path | None = None,
    client: Any = None,
    retry: Retry = RETRY,
) -> Path:
    """A local path for ``uri``: local paths as they are, gs:// objects or prefixes downloaded.

    A gs:// URI naming one object becomes that file; otherwise it is a prefix ("folder") whose
    objects are downloaded, keeping their relative paths, into
    ``cache_dir/<bucket>/<prefix>`` (replacing an earlier copy). The download is staged next to
    the target and renamed into place, so the returned directory is never half-written.
    Raises FileNotFoundError when nothing exists under the URI.
    """
    if not is_gcs(str(uri)):
        return Path(uri)
    uri = str(uri)
    bucket, name = split_uri(uri)
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    target = root / bucket / _safe_relative(name.strip("/") or "_bucket", uri)
    target.parent.mkdir(parents=True, exist_ok=True)
    if name and not name.endswith("/") and exists(uri, client, retry):
        staged = staging_dir(target.parent, _STAGE_PREFIX)
        try:
            file = staged / PurePosixPath(name).name
            blob(uri, client).download_to_filename(str(file), retry=retry)
            _replace(file, target)
        finally:
            shutil.rmtree(staged, ignore_errors=True)
        return target
    staged = staging_dir(target.parent, _STAGE_PREFIX)
    try:
        if not download_prefix(uri, staged, client, retry):
            raise FileNotFoundError(f"{uri}: no object or prefix with that name")
        _replace(staged, target)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    return target


def _replace(source: Path, target: Path) -> None:
    """Move ``source`` to ``target``, removing whatever was there (a previous download)."""
    if target.is_dir() and not target.is_symlink():
        old = staging_dir(target.parent, _STAGE_PREFIX)
        os.replace(target, old / "old")
        shutil.rmtree(old, ignore_errors=True)
    elif target.exists():
        target.unlink()
    os.replace(source, target)
