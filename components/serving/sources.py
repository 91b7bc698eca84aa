"""Where the endpoint's bundle comes from, and the hot swap to a new one.

A source says which bundle should be served now: ``RegistrySource`` (a registry alias, usually
the champion) or ``StaticSource`` (one bundle: a directory or a gs:// prefix, Vertex's
``AIP_STORAGE_URI``). ``ModelHolder`` owns the model being served.

Hot swap: every request reads ``ModelHolder.current`` once and uses that ``LoadedModel`` to the
end; a background thread polls the registry's ``aliases.json`` (one ``stat`` per poll), loads
and verifies a new champion off the request path, then replaces the reference in one
assignment. In-flight requests finish on the old model and no request ever waits for a load.
"""

from __future__ import annotations

import gc
import logging
import math
import threading
import time
from collections import OrderedDict
from pathlib import Path

from components.model.bundle import bundle_digest, verify_bundle
from components.serving.model import LoadedModel, load_model
from components.serving.settings import ServeSettings
from components.shared.errors import BundleError, RegistryError

logger = logging.getLogger("propensity.serving")

LOADED_CACHE = 3  # recently served versions kept in memory: a rollback swaps back at once


class RegistrySource:
    """The version an alias of a registry model points at, noticed with one ``stat`` per poll."""

    def __init__(self, root: Path, model_name: str, alias: str = "champion") -> None:
        from components.registry.local import LocalRegistry

        self.registry = LocalRegistry(root)
        self.model_name = model_name
        self.alias = alias
        self.aliases_file = Path(root) / model_name / "aliases.json"
        self._signature: tuple[int, int, int] | None = None
        self._ref: str | None = None

    def current_ref(self) -> str | None:
        try:
            st = self.aliases_file.stat()
        except FileNotFoundError:
            self._signature, self._ref = None, None
            return None
        signature = (st.st_mtime_ns, st.st_ino, st.st_size)
        if signature != self._signature:
            self._ref = self.registry.aliases(self.model_name).get(self.alias)
            self._signature = signature
        return self._ref

    def directory(self, ref: str) -> Path:
        return self.registry.resolve(self.model_name, ref)

    def describe(self) -> str:
        return f"registry {self.registry.root} model {self.model_name!r} alias {self.alias!r}"


class StaticSource:
    """One bundle (a local directory, or a gs:// prefix downloaded once): never changes."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self._local: Path | None = None

    def current_ref(self) -> str | None:
        return self.uri

    def directory(self, ref: str) -> Path:
        if self._local is None:
            if ref.startswith("gs://"):
                from components.shared.gcs import localize  # google-cloud-storage only when needed

                self._local = Path(localize(ref))
            else:
                self._local = Path(ref)
        return self._local

    def describe(self) -> str:
        return f"bundle {self.uri}"


Source = RegistrySource | StaticSource


class ModelHolder:
    """Owns ``current``: loads the source's bundle in a background thread and swaps it in.

    A failed load (corrupted bundle, missing version) leaves the previous model serving; the
    same reference is retried only after ``retry_seconds`` so a broken champion does not make
    the poller spin.
    """

    def __init__(self, source: Source, settings: ServeSettings, retry_seconds: float = 10.0) -> None:
        self.source = source
        self.settings = settings
        self.retry_seconds = retry_seconds
        self.current: LoadedModel | None = None
        self.current_ref: str | None = None
        self.last_error: str | None = None
        self._failed: dict[str, float] = {}
        self._cache: OrderedDict[tuple[str, str], LoadedModel] = OrderedDict()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._waiting_logged = False

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="model-watcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.check()
            except Exception:  # never let the watcher die: the server keeps its current model
                logger.exception("model watcher: unexpected error")
            if isinstance(self.source, StaticSource) and self.current is not None:
                return  # a fixed bundle never changes: stop polling
            self._stop.wait(self.settings.poll_seconds)

    def check(self) -> bool:
        """Load and swap in the source's current bundle if it changed; True when swapped."""
        ref = self.source.current_ref()
        if ref is None and self.current is None and not self._waiting_logged:
            self._waiting_logged = True
            logger.warning(
                "nothing to serve yet: %s has no version (train and deploy one, e.g. `propensity run`);"
                " health answers 503 until it appears",
                self.source.describe(),
            )
        if ref is None or ref == self.current_ref:
            return False
        if time.monotonic() - self._failed.get(ref, -math.inf) < self.retry_seconds:
            return False
        started = time.perf_counter()
        try:
            loaded = self._load(ref)
        except (BundleError, RegistryError, OSError, ValueError) as exc:
            self._failed[ref] = time.monotonic()
            self.last_error = f"could not load {ref}: {exc}"
            logger.error("model %s: %s", self.source.describe(), self.last_error)
            return False
        previous = self.current.version if self.current else None
        self.current, self.current_ref, self.last_error = loaded, ref, None  # the swap
        self._failed.pop(ref, None)
        _settle_garbage_collector()
        logger.info(
            "serving %s %s (%s) in %.2fs%s",
            loaded.model_name,
            loaded.version,
            loaded.bundle.family,
            time.perf_counter() - started,
            f", replacing {previous}" if previous else "",
        )
        return True

    def _load(self, ref: str) -> LoadedModel:
        directory = self.source.directory(ref)
        key = (str(directory), bundle_digest(directory))
        if key in self._cache:  # registry versions are immutable: a rollback needs no reload
            self._cache.move_to_end(key)
            verify_bundle(directory)  # but re-check the files' checksums before serving them again
            return self._cache[key]
        name = self.source.model_name if isinstance(self.source, RegistrySource) else None
        loaded = load_model(directory, self.settings, model_name=name)
        self._cache[key] = loaded
        while len(self._cache) > LOADED_CACHE:
            self._cache.popitem(last=False)
        return loaded


def _settle_garbage_collector() -> None:
    """Collect, then freeze every live object (the models) out of the collector's scans.

    A full collection walks every tracked object: about 200k with a model loaded, 0.1-0.2 s with
    the GIL held, and it would hit random requests. Frozen objects are never scanned, so routine
    collections only see request garbage. Runs after each load (startup or swap), where a pause
    is expected anyway; unfreezing first lets a model evicted from the cache be collected.
    """
    gc.unfreeze()
    gc.collect()
    gc.freeze()


def make_source(settings: ServeSettings) -> Source:
    if settings.storage_uri:
        return StaticSource(settings.storage_uri)
    if settings.registry_root is None or not settings.model_name:
        raise RegistryError("serve needs a bundle (AIP_STORAGE_URI / --bundle) or a registry and model name")
    return RegistrySource(settings.registry_root, settings.model_name, settings.alias)
