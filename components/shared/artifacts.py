"""Reading and writing the files behind KFP artifacts, shared by the component shells in components/shells/.

An artifact's ``path`` is a local path on every runner (the local runner's folder, or the
/gcs/ FUSE mount on Vertex), so plain file I/O is enough here. Directories are used for
artifacts made of several files (models, bundles).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:
    import pandas as pd


class HasMetadata(Protocol):
    metadata: dict[str, Any]


def write_frame(frame: pd.DataFrame, path: str | Path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(path, index=False)


def read_frame(path: str | Path) -> pd.DataFrame:
    import pandas as pd  # lazy: ~1 s, and the deploy/rejection/summary stages never read a frame

    return pd.read_parquet(path)


def write_json(data: Any, path: str | Path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(to_jsonable(data), indent=2, sort_keys=True))


def read_json(path: str | Path, error: type[Exception] | None = None, what: str = "file") -> Any:
    """The content of a JSON file (UTF-8).

    With ``error`` (``BundleError``, ``RegistryError``...), a file that is missing, unreadable or not
    valid JSON raises that error, its message naming ``what`` and the path, for the CLI to print as
    it is; without, the OS's and json's own errors pass through.
    """
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        if error is None:
            raise
        raise error(f"{what} {path} does not exist") from None
    except OSError as exc:
        if error is None:
            raise
        raise error(f"{what} {path} could not be read: {exc}") from exc
    except ValueError as exc:
        if error is None:
            raise
        raise error(f"{what} {path} is not valid JSON: {exc}") from exc


def write_text(text: str, path: str | Path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(text)


def to_jsonable(value: Any) -> Any:
    """Turn numpy scalars/arrays and tuples into plain JSON types (KFP metadata is JSON)."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, Path):
        return str(value)
    return value


def split_xy(frame: pd.DataFrame, target: str) -> tuple[pd.DataFrame, np.ndarray]:
    """Raw feature frame (target removed) and the 0/1 target as ints."""
    return frame.drop(columns=[target]), frame[target].to_numpy(dtype=int)


@contextmanager
def timed(artifact: HasMetadata, limit_seconds: float | None = None) -> Iterator[None]:
    """Record the stage's wall time on its main output, for the pipeline summary; with
    ``limit_seconds``, end the task if its body runs longer.

    The limit is faulthandler's watchdog: a C thread that needs no GIL, so it fires even when the
    body is stuck inside a C extension; it prints where every thread was and exits the process, on
    every runner (KFP has no per-task time-out of its own). The runners see a failed task. It is
    one watchdog per process: meant for a task's one body, not for nested or concurrent blocks.
    """
    import faulthandler

    if limit_seconds:
        faulthandler.dump_traceback_later(limit_seconds, exit=True)
    start = time.perf_counter()
    try:
        yield
    finally:
        if limit_seconds:
            faulthandler.cancel_dump_traceback_later()
        artifact.metadata["stage_seconds"] = round(time.perf_counter() - start, 3)


def fsync_dir(path: str | Path) -> None:
    """Make a rename durable (POSIX): fsync the directory that holds the entry."""
    fd = os.open(str(path), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def current_umask() -> int:
    """The process umask, read without changing it (os.umask can only set it, racing other threads)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    return 0o022


def staging_dir(parent: str | Path, prefix: str) -> Path:
    """A fresh hidden directory beside its final place, with the mode a plain mkdir would give.

    tempfile.mkdtemp makes it 0700; renamed into place as a registry version or bundle it would
    stay unreadable to an endpoint or container running under another uid.
    """
    import tempfile

    staged = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    staged.chmod(0o777 & ~current_umask())
    return staged


def open_staging_file(parent: str | Path, prefix: str, suffix: str = ".tmp") -> tuple[int, str]:
    """tempfile.mkstemp (0600), widened to the umask's mode for a file that is renamed into place."""
    import tempfile

    fd, name = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=parent)
    os.fchmod(fd, 0o666 & ~current_umask())
    return fd, name
