"""Benchmark of batch scoring and drift (``make bench``): measured figures, never asserted by tests.

1. A 1M-row marketing batch as Parquet, scored end to end (file in -> predictions Parquet out) with
   the registry's champion: rows/s, the time of each step, and the ratio to the raw model's
   in-process ``predict_proba`` on the already-transformed matrix (the ceiling: no reading,
   validation, feature transform or writing). The prediction-log append is timed apart.
2. The drift report on the same 1M rows: sampling to ``monitoring.drift_sample_rows``, Evidently's
   preset, the score PSI and the HTML.
Optionally the same batch as CSV (slower to write and to parse).

python -m pipelines.bench.prediction --registry .propensity/registry --workdir /tmp/bench-pred
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

BENCH_ROWS = 1_000_000
REPEATS = 3
TARGET_ROWS_PER_SECOND = 200_000


def bench_batch_scoring(
    workdir: Path,
    registry: Path | None = None,
    model_name: str = "marketing-propensity",
    rows: int = BENCH_ROWS,
    include_csv: bool = False,
) -> dict[str, Any]:
    """Score ``rows`` generated rows end to end with the champion of ``registry``; time drift too.

    ``registry`` defaults to ``workdir/registry`` (train one with ``propensity run --workdir``).
    """
    from components.batch.champion import load_champion
    from components.data.synthetic import generate_marketing
    from components.shared.config import Config

    workdir.mkdir(parents=True, exist_ok=True)
    champion = load_champion(str(registry or workdir / "registry"), model_name)
    data_dir = workdir / "data"
    data_dir.mkdir(exist_ok=True)
    frame = generate_marketing(rows=rows, seed=11)
    parquet = data_dir / f"batch-{rows}.parquet"
    frame.to_parquet(parquet, index=False)
    results: dict[str, Any] = {
        "rows": rows,
        "model": f"{champion.model_name} {champion.version} ({champion.bundle.family})",
        "parquet": _bench_file(str(parquet), champion, workdir / "out-parquet", workdir / "log"),
    }
    if include_csv:
        csv = data_dir / f"batch-{rows}.csv"
        frame.to_csv(csv, index=False)
        results["csv"] = _bench_file(str(csv), champion, workdir / "out-csv", None, repeats=1)
    results["raw_predict"] = _bench_raw_predict(champion, str(parquet))
    for kind in ("parquet", "csv"):
        if kind in results:
            results[kind]["ratio_to_raw_predict"] = (
                results[kind]["rows_per_second"] / results["raw_predict"]["rows_per_second"]
            )
    results["drift"] = _bench_drift(champion, frame, Config())
    _print(results)
    return results


def _bench_file(
    uri: str, champion: Any, out: Path, log_dir: Path | None, repeats: int = REPEATS
) -> dict[str, Any]:
    """Median of ``repeats`` end-to-end runs (the first one also pays for warm caches)."""
    from components.batch.scoring import run_batch_scoring

    runs = []
    for _ in range(repeats):
        shutil.rmtree(out, ignore_errors=True)
        runs.append(run_batch_scoring(uri, champion, out, take="all"))
    median = sorted(runs, key=lambda r: r.rows_per_second)[len(runs) // 2]
    figures: dict[str, Any] = {
        "rows_per_second": median.rows_per_second,
        "all_runs_rows_per_second": [round(r.rows_per_second) for r in runs],
        "step_seconds": median.seconds,
        "meets_target": median.rows_per_second >= TARGET_ROWS_PER_SECOND,
    }
    if log_dir is not None:
        from components.batch.scoring import log_frame
        from components.monitoring.prediction_log import PredictionLog

        shutil.rmtree(log_dir, ignore_errors=True)
        start = time.perf_counter()
        PredictionLog(log_dir).append_frame(log_frame(champion, median.batch, median.predictions), "batch")
        log_seconds = time.perf_counter() - start
        end_to_end = sum(median.seconds.values())
        figures["log_append_seconds"] = log_seconds
        figures["rows_per_second_with_log"] = median.batch.rows / (end_to_end + log_seconds)
    return figures


def _bench_raw_predict(champion: Any, uri: str) -> dict[str, Any]:
    """The model alone on the transformed matrix (its default threads), best of REPEATS."""
    from components.batch.reading import needed_columns, read_batch
    from components.batch.validation import validate_batch
    from components.model.families import predict_proba

    frame, sources = read_batch(uri, "all", needed_columns(champion.bundle))
    batch = validate_batch(frame, champion.bundle, uri, sources)
    start = time.perf_counter()
    matrix = champion.bundle.transformer.transform(batch.frame)
    transform_seconds = time.perf_counter() - start
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        predict_proba(champion.bundle.model, matrix)
        times.append(time.perf_counter() - start)
    best = min(times)
    return {
        "seconds": best,
        "rows_per_second": len(matrix) / best,
        "matrix_shape": list(matrix.shape),
        "single_pass_transform_seconds": transform_seconds,
    }


def _bench_drift(champion: Any, frame: Any, config: Any) -> dict[str, Any]:
    """Drift report on the 1M-row batch: both sides sampled to drift_sample_rows, HTML included."""
    from components.model.bundle import load_reference
    from components.monitoring.drift import reference_scores, run_drift_report, sample_rows

    bundle, monitoring = champion.bundle, config.monitoring
    start = time.perf_counter()
    import evidently  # noqa: F401 - its import (seconds) is timed apart

    import_seconds = time.perf_counter() - start
    start = time.perf_counter()
    current = sample_rows(frame, monitoring.drift_sample_rows, config.split.seed)
    reference = sample_rows(load_reference(champion.path), monitoring.drift_sample_rows, config.split.seed)
    _, scores = bundle.predict(current)
    result = run_drift_report(
        reference,
        current,
        bundle,
        monitoring.drift_threshold,
        scores,
        reference_scores(bundle, reference),
        "bench batch",
        current_total_rows=len(frame),
    )
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "evidently_import_seconds": import_seconds,
        "sample_rows": monitoring.drift_sample_rows,
        "reference_rows": len(reference),
        "share": result.share,
        "score_psi": result.score_psi,
        "html_bytes": len(result.html),
    }


def _print(results: dict[str, Any]) -> None:
    raw = results["raw_predict"]
    print(f"batch scoring, {results['rows']:,} rows, {results['model']}:")
    for kind in ("parquet", "csv"):
        if kind not in results:
            continue
        figures = results[kind]
        steps = ", ".join(f"{k} {v:.2f}s" for k, v in figures["step_seconds"].items())
        print(
            f"  {kind:<8} {figures['rows_per_second']:>10,.0f} rows/s end to end (target >= "
            f"{TARGET_ROWS_PER_SECOND:,}); {figures['ratio_to_raw_predict']:.3f} x raw predict; {steps}"
        )
        if "log_append_seconds" in figures:
            print(
                f"           prediction log append {figures['log_append_seconds']:.2f}s "
                f"({figures['rows_per_second_with_log']:,.0f} rows/s including it)"
            )
    print(
        f"  raw model predict_proba on the transformed {raw['matrix_shape']} matrix:"
        f" {raw['rows_per_second']:,.0f} rows/s (the feature transform alone, one pass:"
        f" {raw['single_pass_transform_seconds']:.2f}s)"
    )
    drift = results["drift"]
    print(
        f"drift report on {results['rows']:,} rows (sampled to {drift['sample_rows']:,}, reference"
        f" {drift['reference_rows']:,}): {drift['seconds']:.1f}s (+ {drift['evidently_import_seconds']:.1f}s"
        f" Evidently import); share {drift['share']:.3f}, score PSI {drift['score_psi']:.3f}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", type=Path, default=Path(".propensity/bench-prediction"))
    parser.add_argument("--registry", type=Path, help="default: WORKDIR/registry")
    parser.add_argument("--model-name", default="marketing-propensity")
    parser.add_argument("--rows", type=int, default=BENCH_ROWS)
    parser.add_argument("--csv", action="store_true", help="also time the same batch as CSV")
    args = parser.parse_args(argv)
    results = bench_batch_scoring(args.workdir.resolve(), args.registry, args.model_name, args.rows, args.csv)
    out = args.workdir / "prediction_results.json"
    out.write_text(json.dumps(results, indent=2, default=str))
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
