"""A real GCS JSON API on loopback for the tests: gcp-storage-emulator, plus a thin proxy.

``running_emulator()`` starts the PyPI ``gcp-storage-emulator`` in a subprocess (in memory, on a
free 127.0.0.1 port) and stops it afterwards. google-cloud-storage talks to it when
``STORAGE_EMULATOR_HOST`` points at it.

``GcsProxy`` sits between the client and the emulator and adds the two things the emulator lacks:

* **Generation preconditions.** The emulator ignores ``ifGenerationMatch`` (checked: a second
  ``if_generation_match=0`` upload overwrites). Real GCS evaluates them atomically with the write.
  The proxy does the same: it serialises every mutating request (and every request carrying a
  precondition) under one lock, reads the object's live generation from the emulator, and answers
  ``412 conditionNotMet`` (the GCS error body) when ``ifGenerationMatch`` /
  ``ifGenerationNotMatch`` do not hold, or ``404`` when a read pins a ``generation`` that is no
  longer live (a bucket without object versioning). Uploads (multipart, resumable initiation and
  every resumable chunk), downloads, metadata reads and deletes are covered; metageneration
  preconditions are answered 501 so that a test can never pass on a check the proxy skipped.
* **Fault injection.** ``fail(...)`` makes the next N matching requests answer an HTTP status
  (e.g. 503) or drop the connection without answering, to test retries against real HTTP.

Everything else is forwarded unchanged (the Host header too, so URLs the emulator hands out, such
as resumable session URLs, point back at the proxy).
"""

from __future__ import annotations

import email.parser
import http.client
import json
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.loopback import answer_json, serve_on_loopback, stop_server

_HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "content-length", "proxy-connection"}
_PRECONDITION_BODY = {
    "error": {
        "code": 412,
        "message": "At least one of the pre-conditions you specified did not hold.",
        "errors": [
            {
                "domain": "global",
                "reason": "conditionNotMet",
                "message": "At least one of the pre-conditions you specified did not hold.",
                "locationType": "header",
                "location": "If-Match",
            }
        ],
    }
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Emulator:
    host: str
    port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


def _wait_healthy(url: str, process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    parsed = urllib.parse.urlparse(url)
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gcp-storage-emulator exited with code {process.returncode}")
        try:
            conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=1)
            conn.request("GET", "/")
            if conn.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"gcp-storage-emulator did not answer on {url} within {timeout}s")


@contextmanager
def running_emulator(timeout: float = 20.0) -> Iterator[Emulator]:
    """Start ``gcp-storage-emulator`` in memory on a free loopback port; stop it afterwards."""
    port = free_port()
    command = [sys.executable, "-m", "gcp_storage_emulator", "start"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--in-memory", "-q"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    emulator = Emulator("127.0.0.1", port, process)
    try:
        _wait_healthy(emulator.url, process, timeout)
        yield emulator
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass
class Fault:
    """Answer the next ``times`` requests matching ``method`` and ``path_contains`` with ``status``
    (an HTTP code) or, for ``status=None``, close the connection without any answer."""

    method: str
    path_contains: str
    status: int | None
    times: int
    hits: int = 0


@dataclass
class Seen:
    method: str
    path: str
    status: int | None  # None: connection dropped on purpose


@dataclass
class _Route:
    bucket: str
    name: str | None
    kind: str  # upload | resumable-chunk | object | download | other


@dataclass
class GcsProxy:
    """Loopback proxy adding generation preconditions and fault injection (see module docstring)."""

    upstream: str
    server: ThreadingHTTPServer | None = None
    faults: list[Fault] = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)
    precondition_failures: int = 0
    hooks: list[tuple[Callable[[str, str], bool], Callable[[], None]]] = field(default_factory=list)
    _lock: threading.RLock = field(default_factory=threading.RLock)
    _state: threading.Lock = field(default_factory=threading.Lock)
    _sessions: dict[str, tuple[str, str]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    # ------------------------------------------------------------------ test controls

    def fail(self, method: str, path_contains: str, status: int | None = 503, times: int = 1) -> Fault:
        fault = Fault(method.upper(), path_contains, status, times)
        with self._state:
            self.faults.append(fault)
        return fault

    def before_once(self, predicate: Callable[[str, str], bool], action: Callable[[], None]) -> None:
        """Run ``action`` once, before forwarding the first request matching ``predicate(method, path)``."""
        with self._state:
            self.hooks.append((predicate, action))

    def reset(self) -> None:
        with self._state:
            self.faults.clear()
            self.seen.clear()
            self.hooks.clear()
            self.precondition_failures = 0

    def count(self, method: str, path_contains: str) -> int:
        with self._state:
            return sum(1 for s in self.seen if s.method == method and path_contains in s.path)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> GcsProxy:
        self.server = serve_on_loopback(self._serve)
        return self

    def stop(self) -> None:
        stop_server(self.server)

    # ------------------------------------------------------------------ request handling

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        method, path = handler.command, handler.path
        if handler.headers.get("Transfer-Encoding", "").lower() == "chunked":
            self._answer(handler, 411, {"error": {"code": 411, "message": "proxy needs Content-Length"}})
            return
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        self._run_hooks(method, path)
        fault = self._take_fault(method, path)
        if fault is not None:
            self._record(method, path, fault.status)
            if fault.status is None:
                handler.close_connection = True
                handler.connection.shutdown(socket.SHUT_RDWR)
                return
            error = {"error": {"code": fault.status, "message": "injected by the test proxy"}}
            self._answer(handler, fault.status, error)
            return
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(path).query)
        has_condition = any(k in query for k in ("ifGenerationMatch", "ifGenerationNotMatch", "generation"))
        if method == "GET" and not has_condition:
            self._forward(handler, method, path, body)
            return
        with self._lock:  # mutations and conditional requests are atomic, as in GCS
            refusal = self._check(method, path, body, query, handler)
            if refusal is not None:
                status, payload = refusal
                self._record(method, path, status)
                self._answer(handler, status, payload)
                return
            self._forward(handler, method, path, body)

    def _run_hooks(self, method: str, path: str) -> None:
        with self._state:
            due = [hook for hook in self.hooks if hook[0](method, path)]
            for hook in due:
                self.hooks.remove(hook)
        for _, action in due:
            action()

    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self._state:
            for fault in self.faults:
                if fault.method == method and fault.path_contains in path and fault.hits < fault.times:
                    fault.hits += 1
                    return fault
        return None

    def _record(self, method: str, path: str, status: int | None) -> None:
        with self._state:
            self.seen.append(Seen(method, path, status))

    def _route(self, method: str, path: str, body: bytes, handler: BaseHTTPRequestHandler) -> _Route:
        split = urllib.parse.urlsplit(path)
        query = urllib.parse.parse_qs(split.query)
        parts = split.path.split("/")
        if split.path.startswith("/upload/storage/v1/b/"):
            bucket = urllib.parse.unquote(parts[5])
            if "upload_id" in query:
                session = self._sessions.get(query["upload_id"][0])
                return _Route(bucket, session[1] if session else None, "resumable-chunk")
            name = query.get("name", [None])[0] or _upload_name(body, handler.headers.get("Content-Type", ""))
            return _Route(bucket, name, "upload")
        for prefix, kind in (("/download/storage/v1/b/", "download"), ("/storage/v1/b/", "object")):
            if not split.path.startswith(prefix):
                continue
            bucket, _, tail = split.path[len(prefix) :].partition("/o/")
            bucket = urllib.parse.unquote(bucket)
            # The JSON API path encodes "/" in names as %2F: a raw "/" means a sub-resource
            # (acl, copyTo, ...). Download paths carry the name unencoded.
            if tail and (kind == "download" or "/" not in tail):
                return _Route(bucket, urllib.parse.unquote(tail), kind)
            return _Route(bucket, None, "other")
        return _Route("", None, "other")

    def _check(
        self,
        method: str,
        path: str,
        body: bytes,
        query: dict[str, list[str]],
        handler: BaseHTTPRequestHandler,
    ) -> tuple[int, dict[str, Any]] | None:
        """None when the request may go through, else the (status, body) GCS would answer."""
        if any(k in query for k in ("ifMetagenerationMatch", "ifMetagenerationNotMatch")):
            return 501, {"error": {"code": 501, "message": "metageneration preconditions not modelled"}}
        conditions = {
            k: int(query[k][0]) for k in ("ifGenerationMatch", "ifGenerationNotMatch") if k in query
        }
        pinned = int(query["generation"][0]) if "generation" in query else None
        if not conditions and pinned is None:
            return None
        route = self._route(method, path, body, handler)
        if route.name is None:
            return 501, {"error": {"code": 501, "message": f"preconditions on {path} not modelled"}}
        live = self._generation(route.bucket, route.name)
        if pinned is not None and route.kind in ("download", "object") and pinned != live:
            return 404, {"error": {"code": 404, "message": "No such object (generation not live)"}}
        expected = conditions.get("ifGenerationMatch")
        refused = conditions.get("ifGenerationNotMatch")
        if (expected is not None and expected != live) or (refused is not None and refused == live):
            with self._state:
                self.precondition_failures += 1
            return 412, _PRECONDITION_BODY
        return None

    def _generation(self, bucket: str, name: str) -> int:
        """The live generation of an object, 0 when it does not exist (GCS's convention)."""
        parsed = urllib.parse.urlparse(self.upstream)
        conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=10)
        quoted = urllib.parse.quote(name, safe="")
        conn.request("GET", f"/storage/v1/b/{urllib.parse.quote(bucket)}/o/{quoted}")
        response = conn.getresponse()
        data = response.read()
        conn.close()
        if response.status == 404:
            return 0
        return int(json.loads(data)["generation"])

    def _forward(self, handler: BaseHTTPRequestHandler, method: str, path: str, body: bytes) -> None:
        parsed = urllib.parse.urlparse(self.upstream)
        conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=60)
        headers = {k: v for k, v in handler.headers.items() if k.lower() not in _HOP_HEADERS}
        headers["Content-Length"] = str(len(body))
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        data = response.read()
        conn.close()
        location = response.getheader("Location")
        if location and "upload_id=" in location:
            upload_id = urllib.parse.parse_qs(urllib.parse.urlsplit(location).query)["upload_id"][0]
            route = self._route(method, path, body, handler)
            if route.name:
                self._sessions[upload_id] = (route.bucket, route.name)
        self._record(method, path, response.status)
        handler.send_response(response.status)
        for key, value in response.getheaders():
            if key.lower() not in _HOP_HEADERS:
                handler.send_header(key, value)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    _answer = staticmethod(answer_json)


def _upload_name(body: bytes, content_type: str) -> str | None:
    """The object name in a multipart upload's metadata part, or a resumable initiation's JSON body."""
    if content_type.startswith("multipart/"):
        message = email.parser.BytesParser().parsebytes(
            b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body
        )
        for part in message.walk():
            if part.get_content_type() == "application/json":
                return json.loads(part.get_payload(decode=True)).get("name")
        return None
    try:
        return json.loads(body or b"{}").get("name")
    except ValueError:
        return None


@contextmanager
def running_proxy(upstream: str) -> Iterator[GcsProxy]:
    proxy = GcsProxy(upstream).start()
    try:
        yield proxy
    finally:
        proxy.stop()


def anonymous_client(project: str = "test") -> Any:
    """A client for the emulator (reads STORAGE_EMULATOR_HOST, so set it first)."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    return storage.Client(project=project, credentials=AnonymousCredentials())
