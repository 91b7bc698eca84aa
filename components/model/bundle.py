"""The model bundle: everything serving needs, saved atomically and loaded only after verification.

A bundle is a directory::

    transformer.skops   the fitted FeatureTransformer (skops, allow-listed types only)
    model.ubj | model.skops   the model (xgboost's own format, or skops for scikit-learn)
    bundle.json         family, threshold, temperature, input schema, metrics, params, provenance
    reference.parquet   a sample of the validated training data (raw columns + target): the
                        reference for drift monitoring and the base data of a drift retrain
    manifest.json       format version (``bundle_format``) + sha256 and size of every file above
                        (written last)

It is the contract between training and serving: serving accepts the raw columns of the training
file and calls the bundle's transformer, so no feature logic is repeated. Loading never unpickles:
checksums are verified first (a truncated copy or a tampered file is refused, naming the file), then
the transformer and model go through the allow-listed loaders in ``features`` and ``families``
(``bundle_format``).
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import math
import os
import platform
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata as importlib_metadata
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from components.model.bundle_format import FORMAT_VERSION
from components.shared.artifacts import fsync_dir, read_json, staging_dir, to_jsonable
from components.shared.errors import BundleError

# Verifying, hashing and copying a bundle (registry, deploy, gate) needs only hashlib and JSON;
# pandas, the feature/model code (sklearn, xgboost, skops) and calibrate (scipy, matplotlib) are
# imported inside the functions that save, load or build a bundle.
if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from components.model.features import FeatureTransformer
    from components.shared.config import Config

logger = logging.getLogger(__name__)

TRANSFORMER_FILE = "transformer.skops"
BUNDLE_FILE = "bundle.json"
REFERENCE_FILE = "reference.parquet"
MANIFEST_FILE = "manifest.json"
RESERVED_FILES = frozenset({MANIFEST_FILE, "metadata.json"})  # metadata.json: the registry's

_LIBRARIES = {  # bundle key -> the distributions that provide it (the images install xgboost-cpu)
    "pandas": ("pandas",),
    "numpy": ("numpy",),
    "sklearn": ("scikit-learn",),
    "xgboost": ("xgboost", "xgboost-cpu"),
    "skops": ("skops",),
}
# A directory rename is not supported on some mounts (e.g. gcsfuse without rename-dir-limit);
# then the files are copied with the manifest last, so a partial copy never verifies.
_NO_DIR_RENAME = frozenset({errno.EXDEV, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS})


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def library_versions() -> dict[str, str]:
    """Installed versions of everything that shapes a prediction (read from metadata, no imports)."""
    versions = {"python": platform.python_version()}
    for key, distributions in _LIBRARIES.items():
        versions[key] = "not installed"
        for dist in distributions:
            try:
                versions[key] = importlib_metadata.version(dist)
                break
            except importlib_metadata.PackageNotFoundError:
                continue
    return versions


def data_fingerprint(df: pd.DataFrame) -> str:
    """sha256 over the cell values (row order matters, the index does not) and the column names/dtypes.

    Two runs on the same file give the same fingerprint, so a registry entry can be traced back
    to its training data without storing the data.
    """
    import pandas as pd  # lazy: see the imports above

    digest = hashlib.sha256()
    columns = [[str(name), str(dtype)] for name, dtype in df.dtypes.items()]
    digest.update(json.dumps(columns).encode())
    digest.update(pd.util.hash_pandas_object(df, index=False).to_numpy().tobytes())
    return digest.hexdigest()


@dataclass
class ModelBundle:
    transformer: FeatureTransformer
    model: Any
    family: str
    threshold: float
    temperature: float = 1.0
    input_schema: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    data_fingerprint: str = ""
    created_at: str = field(default_factory=utc_now)
    code_version: str = "unknown"
    library_versions: dict[str, str] = field(default_factory=library_versions)
    extra: dict[str, Any] = field(default_factory=dict)
    reference: pd.DataFrame | None = field(default=None, repr=False)  # written, not loaded back

    @property
    def feature_names(self) -> list[str]:
        return list(self.transformer.feature_names)

    @property
    def source_columns(self) -> dict[str, list[str]]:
        return dict(self.transformer.source_columns)

    @property
    def input_columns(self) -> list[str]:
        return list(self.transformer.input_columns)

    def predict(self, raw: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """(model probability, served probability = sigmoid(logit(p) / temperature)).

        Uses the same functions as the evaluate stage, so scores reproduce the reported metrics.
        """
        from components.model.calibration import apply_temperature  # lazy: scipy, matplotlib
        from components.model.families import predict_proba  # lazy: xgboost, skops

        p = predict_proba(self.model, self.transformer.transform(raw))
        return p, apply_temperature(p, self.temperature)

    def version_mismatches(self) -> dict[str, dict[str, str]]:
        """Libraries whose major.minor differs between training and now (predictions may drift).

        Not an error: serving reports it (health, logs) so an image upgrade is a visible event.
        Only libraries that compute predictions count (older bundles also recorded shap, which the
        endpoint does not use: its SHAP values are computed in numpy).
        """
        runtime = library_versions()
        return {
            name: {"bundle": saved, "runtime": runtime[name]}
            for name, saved in self.library_versions.items()
            if name in runtime and _major_minor(saved) != _major_minor(runtime[name])
        }

    def describe(self) -> dict[str, Any]:
        """Everything except the transformer and model: the content of bundle.json."""
        return {
            "family": self.family,
            "threshold": float(self.threshold),
            "temperature": float(self.temperature),
            "input_schema": self.input_schema,
            "metrics": self.metrics,
            "params": self.params,
            "data_fingerprint": self.data_fingerprint,
            "created_at": self.created_at,
            "code_version": self.code_version,
            "library_versions": self.library_versions,
            "extra": self.extra,
            "feature_names": self.feature_names,
            "input_columns": self.input_columns,
        }


def _major_minor(version: str) -> tuple[str, ...]:
    return tuple(str(version).split(".")[:2])


# --------------------------------------------------------------------------- JSON helpers


def json_safe(value: Any) -> Any:
    """Plain JSON values; NaN/inf become null because strict JSON readers reject them."""
    value = to_jsonable(value)
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, datetime):  # pd.Timestamp (and NaT) are datetime subclasses
        return value.isoformat()
    return value


def _write_json(path: Path, data: Any) -> None:
    text = json.dumps(json_safe(data), indent=2, sort_keys=True, allow_nan=False)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# --------------------------------------------------------------------------- save


def _manifest(directory: Path) -> dict[str, Any]:
    files = {}
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        name = path.relative_to(directory).as_posix()
        if name in RESERVED_FILES:
            raise BundleError(f"bundle file name {name!r} is reserved")
        files[name] = {"sha256": sha256_file(path), "size": path.stat().st_size}
    return {"format_version": FORMAT_VERSION, "created_at": utc_now(), "files": files}


def _fsync_tree(directory: Path) -> None:
    for path in directory.rglob("*"):
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
    fsync_dir(directory)


def _write_contents(bundle: ModelBundle, directory: Path) -> None:
    from components.model.families import MODEL_KINDS, save_model  # lazy: xgboost, skops
    from components.model.features import save_transformer  # lazy: sklearn, skops

    if bundle.family not in MODEL_KINDS:
        raise BundleError(f"unknown model family {bundle.family!r} (known: {', '.join(MODEL_KINDS)})")
    save_transformer(bundle.transformer, directory / TRANSFORMER_FILE)
    model_files = save_model(bundle.model, bundle.family, directory)
    if bundle.reference is not None:
        bundle.reference.to_parquet(directory / REFERENCE_FILE, index=False)
    _write_json(
        directory / BUNDLE_FILE,
        {"format_version": FORMAT_VERSION, "model_files": model_files, **bundle.describe()},
    )
    _fsync_tree(directory)
    _write_json(directory / MANIFEST_FILE, _manifest(directory))  # last: it seals the bundle
    fsync_dir(directory)


def _swap_into_place(staged: Path, target: Path) -> None:
    """Rename ``staged`` to ``target``; an existing non-empty target is moved aside first."""
    if target.is_dir() and any(target.iterdir()):
        old = staging_dir(target.parent, f".{target.name}.old-")
        os.replace(target, old)
        try:
            os.replace(staged, target)
        except OSError:
            os.replace(old, target)
            raise
        shutil.rmtree(old, ignore_errors=True)
    else:
        if target.is_file():
            target.unlink()
        os.replace(staged, target)  # an empty directory is replaced atomically on POSIX
    fsync_dir(target.parent)


def _copy_manifest_last(staged: Path, target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    stale = target / MANIFEST_FILE
    if stale.exists():
        stale.unlink()
    for path in sorted(staged.rglob("*")):
        if path.is_file() and path.name != MANIFEST_FILE:
            (target / path.relative_to(staged)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target / path.relative_to(staged))
    shutil.copyfile(staged / MANIFEST_FILE, target / MANIFEST_FILE)
    shutil.rmtree(staged, ignore_errors=True)


def save_bundle(bundle: ModelBundle, directory: str | Path) -> None:
    """Write the bundle to ``directory`` all at once: staged next to it, then renamed into place.

    A crash while writing leaves only a hidden ``.<name>.tmp-*`` sibling, never a half-written
    bundle under the real name.
    """
    target = Path(directory)
    target.parent.mkdir(parents=True, exist_ok=True)
    staged = staging_dir(target.parent, f".{target.name}.tmp-")
    try:
        _write_contents(bundle, staged)
        try:
            _swap_into_place(staged, target)
        except OSError as exc:
            if exc.errno not in _NO_DIR_RENAME:
                raise
            _copy_manifest_last(staged, target)
    finally:
        if staged.exists():
            shutil.rmtree(staged, ignore_errors=True)


# --------------------------------------------------------------------------- verify + load


def _listed_path(directory: Path, name: str) -> Path:
    """Refuse manifest entries that point outside the bundle (``../x``, absolute paths)."""
    pure = PurePosixPath(name)
    if not name or pure.is_absolute() or ".." in pure.parts:
        raise BundleError(f"bundle {directory}: manifest lists an invalid file name {name!r}")
    return directory / pure


def verify_bundle(directory: str | Path) -> dict[str, Any]:
    """Check every file listed in manifest.json (present, size, sha256); returns the manifest.

    Files not listed are ignored (the registry adds metadata.json next to the bundle files).
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise BundleError(f"bundle directory {directory} does not exist")
    manifest = read_json(directory / MANIFEST_FILE, BundleError, "bundle manifest")
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        raise BundleError(f"bundle manifest {directory / MANIFEST_FILE} has no 'files' mapping")
    version = manifest.get("format_version")
    if not isinstance(version, int) or not 1 <= version <= FORMAT_VERSION:
        raise BundleError(
            f"bundle {directory} has format_version {version!r};"
            f" this code reads formats 1 to {FORMAT_VERSION}"
        )
    for name, expected in manifest["files"].items():
        path = _listed_path(directory, name)
        if not path.is_file():
            raise BundleError(f"bundle file {name} is missing from {directory}")
        if path.stat().st_size != expected.get("size") or sha256_file(path) != expected.get("sha256"):
            raise BundleError(
                f"bundle file {name} in {directory} does not match its checksum (corrupted or modified)"
            )
    return manifest


def bundle_digest(directory: str | Path) -> str:
    """sha256 of manifest.json: one identifier for the bundle's exact content."""
    return sha256_file(Path(directory) / MANIFEST_FILE)


def prediction_identity(manifest: dict[str, Any], description: dict[str, Any]) -> dict[str, Any]:
    """What decides a bundle's predictions: the sha256 of its transformer and model files, its
    threshold and temperature (from manifest.json and bundle.json). Two bundles with equal
    identities serve exactly the same answers, whatever their creation time or metadata."""
    names = [TRANSFORMER_FILE, *(description.get("model_files") or [])]
    files = {name: (manifest.get("files") or {}).get(name, {}).get("sha256") for name in names}
    return {
        "files": files,
        "threshold": description.get("threshold"),
        "temperature": description.get("temperature"),
    }


def identical_model_message(identity: dict[str, Any], model_name: str, champion: str) -> str:
    names = ", ".join(identity["files"])
    return (
        f"refusing to register a new version of {model_name!r}: its model files ({names}) are "
        f"byte-identical to champion {champion}'s, with the same threshold and temperature; it would "
        f"serve exactly what {champion} serves (the champion alias stays on {champion})"
    )


def _require_listed(manifest: dict[str, Any], names: list[str], directory: Path) -> None:
    """Every file we are about to load must be covered by a checksum."""
    for name in names:
        if name not in manifest["files"]:
            raise BundleError(f"bundle file {name} in {directory} is not listed in {MANIFEST_FILE}")


def load_bundle(directory: str | Path) -> ModelBundle:
    """Verify checksums, then load without unpickling (skops allow-lists, xgboost native format)."""
    from components.model.families import MODEL_KINDS, load_model  # lazy: xgboost, skops
    from components.model.features import load_transformer  # lazy: sklearn, skops

    directory = Path(directory)
    manifest = verify_bundle(directory)
    _require_listed(manifest, [BUNDLE_FILE, TRANSFORMER_FILE], directory)
    meta = read_json(directory / BUNDLE_FILE, BundleError, "bundle description")
    family = meta.get("family")
    if family not in MODEL_KINDS:
        raise BundleError(f"bundle file {BUNDLE_FILE} in {directory} names an unknown family {family!r}")
    _require_listed(manifest, list(meta.get("model_files") or []), directory)
    bundle = ModelBundle(
        transformer=load_transformer(directory / TRANSFORMER_FILE, manifest["format_version"]),
        model=load_model(family, directory, manifest["format_version"]),
        family=family,
        threshold=float(meta["threshold"]),
        temperature=float(meta.get("temperature", 1.0)),
        input_schema=meta.get("input_schema") or {},
        metrics=meta.get("metrics") or {},
        params=meta.get("params") or {},
        data_fingerprint=meta.get("data_fingerprint", ""),
        created_at=meta.get("created_at", ""),
        code_version=meta.get("code_version", "unknown"),
        library_versions=meta.get("library_versions") or {},
        extra=meta.get("extra") or {},
    )
    mismatches = bundle.version_mismatches()
    if mismatches:
        logger.warning("bundle %s was built with other library versions: %s", directory, mismatches)
    return bundle


def load_reference(directory: str | Path) -> pd.DataFrame:
    """The bundle's reference sample, checksum-verified (kept out of ``load_bundle``: serving needs none)."""
    directory = Path(directory)
    manifest = verify_bundle(directory)
    _require_listed(manifest, [REFERENCE_FILE], directory)
    import pandas as pd  # lazy: see the imports above

    return pd.read_parquet(directory / REFERENCE_FILE)


def reference_sample(frame: pd.DataFrame, max_rows: int, seed: int) -> pd.DataFrame:
    """All rows when they fit, else a seeded sample: bounded size, reproducible drift reports."""
    if len(frame) <= max_rows:
        return frame.reset_index(drop=True)
    return frame.sample(n=max_rows, random_state=seed).reset_index(drop=True)


# --------------------------------------------------------------------------- build (package stage)


def _plain_params(model: Any) -> dict[str, Any]:
    """The estimator's explicit settings as JSON (None/NaN dropped: they mean 'library default')."""
    params = {}
    for name, value in sorted(model.get_params(deep=False).items()):
        value = json_safe(value)
        if value is None or not isinstance(value, str | int | float | bool | list | dict):
            continue
        params[name] = value
    return params


def reference_stats(frame: pd.DataFrame, columns: list[str]) -> dict[str, dict[str, Any]]:
    """Compact per-column statistics of the training inputs, for input checks and drift context."""
    import pandas as pd  # lazy: see the imports above

    stats: dict[str, dict[str, Any]] = {}
    for name in columns:
        series = frame[name]
        entry: dict[str, Any] = {"dtype": str(series.dtype), "null_rate": float(series.isna().mean())}
        if pd.api.types.is_bool_dtype(series) or not (
            pd.api.types.is_numeric_dtype(series) or pd.api.types.is_datetime64_any_dtype(series)
        ):
            counts = series.astype("string").value_counts(normalize=True).head(20)
            entry["top_values"] = {str(k): float(v) for k, v in counts.items()}
        elif pd.api.types.is_datetime64_any_dtype(series):
            entry.update({"min": str(series.min()), "max": str(series.max())})
        else:
            values = series.astype(float)
            quantiles = values.quantile([0.05, 0.25, 0.5, 0.75, 0.95])
            entry.update(
                {
                    "mean": float(values.mean()),
                    "std": float(values.std()),
                    "min": float(values.min()),
                    "max": float(values.max()),
                    "quantiles": {f"p{round(q * 100)}": float(v) for q, v in quantiles.items()},
                }
            )
        stats[name] = entry
    return stats


def build_bundle(
    transformer: FeatureTransformer,
    model: Any,
    family: str,
    calibration: dict[str, Any],
    evaluation: dict[str, Any],
    importance: dict[str, Any],
    input_schema: dict[str, Any],
    train_frame: pd.DataFrame,
    config: Config,
    code_version: str,
    reference_frame: pd.DataFrame | None = None,
    retrain: dict[str, Any] | None = None,
) -> ModelBundle:
    """Assemble the bundle from the stage outputs (calibrate, evaluate, explain JSON artifacts).

    ``reference_frame`` is the whole validated dataset: its fingerprint is recorded (a drift
    retrain compares it to know whether it would learn anything new) and a sample of it is kept.
    ``retrain`` records a drift retrain's data policy and row counts. The bundle also records
    whether the transformer's steps compile to the endpoint's numpy encoder, checked here against
    the steps on the training rows (``extra["encoder"]``).
    """
    from components.model.compiled_encoder import CHECK_ROWS, check_compiled_encoder

    columns = [c for c in transformer.input_columns if c in train_frame.columns]
    return ModelBundle(
        transformer=transformer,
        model=model,
        family=family,
        threshold=float(calibration["threshold"]),
        temperature=float(calibration.get("temperature", 1.0)),
        input_schema=input_schema,
        metrics=dict(evaluation.get("test") or {}),
        params=_plain_params(model),
        data_fingerprint=data_fingerprint(train_frame),
        code_version=code_version or "unknown",
        extra={
            "model_name": config.registry_model_name,
            "target": config.dataset.target,
            "positive_label": config.dataset.positive_label,
            "calibration": calibration,
            "evaluation": {k: v for k, v in evaluation.items() if k != "roc_curve"},
            "importance": importance,
            "reference_stats": reference_stats(train_frame, columns),
            "train_rows": len(train_frame),
            "encoder": check_compiled_encoder(transformer, train_frame.head(CHECK_ROWS)),
            "config": config.to_dict(),
            "dataset_fingerprint": None if reference_frame is None else data_fingerprint(reference_frame),
            "retrain": retrain,
        },
        reference=None
        if reference_frame is None
        else reference_sample(reference_frame, config.monitoring.reference_rows, config.split.seed),
    )
