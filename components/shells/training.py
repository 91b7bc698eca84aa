"""KFP component shells of the training pipeline: one thin function per stage.

Each shell reads its typed ``Input[...]`` artifacts, calls the plain stage logic in the subsystem
packages (``components.data``, ``components.training``, ``components.model``, ...), and writes
``Output[...]`` artifacts and metadata. Nothing else lives here. KFP ships each function's source
alone into the task, so every import is inside the body. ``build_ops(image)`` turns the shells into
components for a given pipeline image, so the image is chosen at compile time, from configuration,
never at import.
"""

from dataclasses import dataclass
from typing import Any, List, NamedTuple

from kfp import dsl
from kfp.dsl import (
    HTML,
    Artifact,
    ClassificationMetrics,
    Dataset,
    Input,
    Markdown,
    Metrics,
    Model,
    Output,
)

from components.shells.artifact_types import VertexEndpoint, VertexModel


def ingest(
    data_uri: str,
    config_json: str,
    dataset: Output[Dataset],
    data_report: Output[Markdown],
    schema: Output[Artifact],
):
    """Read the table (file, folder of parts or gs://) and validate it against the dataset spec."""
    from components.data.reading import read_table
    from components.data.validation import validate
    from components.shared.artifacts import timed, write_frame, write_json, write_text
    from components.shared.config import Config

    config = Config.from_json(config_json)
    with timed(dataset, config.task_timeout_seconds):
        frame, sources = read_table(data_uri, spec=config.dataset)
        validated = validate(frame, config.dataset, source=data_uri)
        write_frame(validated.frame, dataset.path)
        write_text(validated.report_markdown, data_report.path)
        write_json(validated.schema, schema.path)
    target = validated.frame[config.dataset.target]
    dataset.metadata.update(
        {
            "rows": len(validated.frame),
            "columns": int(validated.frame.shape[1]),
            "positive_rate": round(float(target.mean()), 4),
            "source_files": len(sources),
            "dropped_columns": sorted(validated.dropped),
        }
    )


def split(
    dataset: Input[Dataset],
    config_json: str,
    train: Output[Dataset],
    test: Output[Dataset],
):
    """Stratified, seeded development (train) / held-out test split."""
    from components.shared.artifacts import read_frame, timed, write_frame
    from components.shared.config import Config
    from components.training.split import split_frame

    config = Config.from_json(config_json)
    with timed(train, config.task_timeout_seconds):
        parts = split_frame(read_frame(dataset.path), config.dataset.target, config.split)
        for artifact, frame in zip((train, test), parts, strict=True):
            write_frame(frame, artifact.path)
            artifact.metadata["rows"] = len(frame)
            artifact.metadata["positives"] = int(frame[config.dataset.target].sum())


def features(train: Input[Dataset], config_json: str, transformer: Output[Model]):
    """Fit the feature transformer on the training split only."""
    from components.model.features import fit_transformer, save_transformer
    from components.shared.artifacts import read_frame, timed
    from components.shared.config import Config

    config = Config.from_json(config_json)
    with timed(transformer, config.task_timeout_seconds):
        fitted = fit_transformer(read_frame(train.path), config.dataset, config.features)
        save_transformer(fitted, transformer.path)
    transformer.metadata["n_features"] = len(fitted.feature_names)
    transformer.metadata["input_columns"] = len(fitted.input_columns)
    transformer.metadata["dropped_columns"] = sorted(fitted.dropped_columns)


def tune(
    family: str,
    train: Input[Dataset],
    transformer: Input[Model],
    config_json: str,
    best_params: Output[Artifact],
    trials: Output[Dataset],
):
    """k-fold cross-validated search for one model family, within its share of the time budget.

    ``best_params`` (JSON) also carries the best trial's out-of-fold log-odds and the folds: the
    train stage compares, blends and calibrates on them.
    """
    import statistics

    from components.model.features import load_transformer
    from components.shared.artifacts import read_frame, split_xy, timed, write_frame, write_json
    from components.shared.config import Config
    from components.training.tune import family_budget, tune_family

    config = Config.from_json(config_json)
    with timed(best_params, config.task_timeout_seconds):
        raw, y = split_xy(read_frame(train.path), config.dataset.target)
        fitted = load_transformer(transformer.path)
        budget = family_budget(config.tune, family, config.tune.families)
        result = tune_family(
            family,
            fitted.transform(raw),
            y,
            config.tune,
            marketing=fitted.derive_marketing,
            budget_seconds=budget,
        )
        write_json(
            {
                "family": family,
                "strategy": result.strategy,
                "params": result.best_params,
                "cv_roc_auc": result.best_score,
                "fold_roc_auc": result.fold_scores,
                "oof_logit": result.oof_logit.tolist(),
                "folds": result.folds.tolist(),
            },
            best_params.path,
        )
        write_frame(result.trials, trials.path)
    best_params.metadata.update(
        {
            "family": family,
            "strategy": result.strategy,
            "cv_roc_auc": round(result.best_score, 5),
            "cv_roc_auc_std": round(statistics.pstdev(result.fold_scores), 5),
            "trials": len(result.trials),
            "budget_seconds": None if budget is None else round(budget, 1),
            "stopped_by_budget": result.stopped_by_budget,
        }
    )


def train(
    train: Input[Dataset],
    transformer: Input[Model],
    best_params: Input[List[Artifact]],
    config_json: str,
    models: Output[Model],
    selection: Output[Metrics],
):
    """Compare the families and their blend on out-of-fold scores, pick the champion, refit all."""
    from components.model.features import load_transformer
    from components.shared.artifacts import read_frame, read_json, split_xy, timed
    from components.shared.config import Config
    from components.training.candidates import collect_tuned
    from components.training.selection import fit_and_select, save_candidates

    config = Config.from_json(config_json)
    with timed(models, config.task_timeout_seconds):
        fitted = load_transformer(transformer.path)
        raw_train, y_train = split_xy(read_frame(train.path), config.dataset.target)
        tuned, folds = collect_tuned([read_json(artifact.path) for artifact in best_params], len(y_train))
        # carried forward for the summary (a Collected cannot feed tasks inside a condition)
        models.metadata["tuning"] = {a.metadata["family"]: dict(a.metadata) for a in best_params}
        outcome = fit_and_select(
            tuned, fitted.transform(raw_train), y_train, folds, config.tune.seed, blend=config.tune.blend
        )
        save_candidates(outcome, models.path)
    models.metadata["champion"] = outcome.champion
    for family, scores in outcome.summary().items():
        for name, value in scores.items():
            if isinstance(value, float) and name != "threshold":
                selection.log_metric(f"{family}_{name}", round(value, 5))
    selection.metadata["champion"] = outcome.champion


def calibrate(
    models: Input[Model],
    config_json: str,
    calibration: Output[Artifact],
    reliability: Output[HTML],
):
    """Temperature scaling on the champion's out-of-fold predictions (kept only if cross-fitting says
    it helps), and the max-F1 threshold on the served out-of-fold probabilities with its fold spread."""
    from scipy.special import expit

    from components.model.calibration import apply_temperature, reliability_html
    from components.model.calibration import calibrate as fit_calibration
    from components.shared.artifacts import read_json, timed, write_json, write_text
    from components.shared.config import Config
    from components.training.candidates import best_f1_threshold, threshold_stability
    from components.training.selection import INDEX_FILE, load_oof

    config = Config.from_json(config_json)
    with timed(calibration, config.task_timeout_seconds):
        family = read_json(f"{models.path}/{INDEX_FILE}")["champion"]
        oof = load_oof(models.path)
        y, folds = oof["y"].to_numpy(dtype=int), oof["fold"].to_numpy(dtype=int)
        p_raw = expit(oof[family].to_numpy(dtype=float))
        result = fit_calibration(
            y, p_raw, config.calibration.n_bins, enabled=config.calibration.enabled, folds=folds
        )
        p_served = apply_temperature(p_raw, result.temperature)
        threshold, oof_f1 = best_f1_threshold(y, p_served)
        stability = threshold_stability(y, p_served, folds, threshold)
        write_json(
            {
                **result.to_dict(),
                "threshold": threshold,
                "oof_f1": oof_f1,
                "family": family,
                "stability": stability,
            },
            calibration.path,
        )
        write_text(
            reliability_html(
                y,
                p_raw,
                apply_temperature(p_raw, result.fitted_temperature),
                result,
                config.calibration.n_bins,
            ),
            reliability.path,
        )
    calibration.metadata.update(
        {
            "kept": result.kept,
            "temperature": result.temperature,
            "threshold": threshold,
            "oof_f1": oof_f1,
            "fold_f1_min": round(stability["f1_min"], 4),
            "fold_f1_max": round(stability["f1_max"], 4),
        }
    )


def evaluate(
    test: Input[Dataset],
    transformer: Input[Model],
    models: Input[Model],
    calibration: Input[Artifact],
    config_json: str,
    metrics: Output[Metrics],
    roc: Output[ClassificationMetrics],
    evaluation: Output[Artifact],
):
    """Score the champion (and every family, for comparison) on the held-out test split."""
    from components.model.features import load_transformer
    from components.shared.artifacts import read_frame, read_json, split_xy, timed, write_json
    from components.shared.config import Config
    from components.training.selection import evaluate_candidates, load_candidates

    config = Config.from_json(config_json)
    with timed(evaluation, config.task_timeout_seconds):
        raw, y = split_xy(read_frame(test.path), config.dataset.target)
        X = load_transformer(transformer.path).transform(raw)
        report = evaluate_candidates(
            load_candidates(models.path), read_json(calibration.path), X, y, config.evaluate.top_k_fractions
        )
        write_json(report, evaluation.path)
    for name, value in report["test"].items():
        metrics.log_metric(name, value)
    metrics.metadata["champion"] = report["champion"]
    roc.log_roc_curve(*report["roc_curve"])
    roc.log_confusion_matrix(["negative", "positive"], report["confusion_matrix"])
    evaluation.metadata.update({k: report["test"][k] for k in ("roc_auc", "pr_auc", "f1")})


def explain(
    train: Input[Dataset],
    test: Input[Dataset],
    transformer: Input[Model],
    models: Input[Model],
    calibration: Input[Artifact],
    config_json: str,
    importance: Output[Artifact],
    shap_report: Output[HTML],
):
    """SHAP on a bounded test sample: global importance by raw column, plots in one HTML page."""
    from components.model.explain import explain_champion
    from components.model.features import load_transformer
    from components.shared.artifacts import read_frame, read_json, split_xy, timed, write_json, write_text
    from components.shared.config import Config
    from components.training.selection import load_champion

    config = Config.from_json(config_json)
    with timed(importance, config.task_timeout_seconds):
        family, model = load_champion(models.path)
        fitted = load_transformer(transformer.path)
        raw_test, y_test = split_xy(read_frame(test.path), config.dataset.target)
        raw_train, _ = split_xy(read_frame(train.path), config.dataset.target)
        result = explain_champion(
            model, family, fitted, raw_train, raw_test, y_test, read_json(calibration.path), config.explain
        )
        write_json(result.to_dict(), importance.path)
        write_text(result.html, shap_report.path)
    top = list(result.importance_raw)[:5]
    importance.metadata["top_features"] = top


def package(
    dataset: Input[Dataset],
    train: Input[Dataset],
    transformer: Input[Model],
    models: Input[Model],
    calibration: Input[Artifact],
    evaluation: Input[Artifact],
    importance: Input[Artifact],
    schema: Input[Artifact],
    config_json: str,
    code_version: str,
    retrain_context: str,
    bundle: Output[Model],
):
    """Assemble the model bundle: everything serving needs, checksummed, loadable without pickle."""
    import json

    from components.model.bundle import build_bundle, save_bundle
    from components.model.features import load_transformer
    from components.shared.artifacts import read_frame, read_json, timed
    from components.shared.config import Config
    from components.training.selection import load_champion

    config = Config.from_json(config_json)
    with timed(bundle, config.task_timeout_seconds):
        family, model = load_champion(models.path)
        built = build_bundle(
            transformer=load_transformer(transformer.path),
            model=model,
            family=family,
            calibration=read_json(calibration.path),
            evaluation=read_json(evaluation.path),
            importance=read_json(importance.path),
            input_schema=read_json(schema.path),
            train_frame=read_frame(train.path),
            config=config,
            code_version=code_version,
            reference_frame=read_frame(dataset.path),
            retrain=json.loads(retrain_context) if retrain_context else None,
        )
        save_bundle(built, bundle.path)
    bundle.metadata.update(
        {
            "family": family,
            "threshold": built.threshold,
            "temperature": built.temperature,
            "data_fingerprint": built.data_fingerprint,
            "framework": family,
        }
    )


def gate(
    test: Input[Dataset],
    evaluation: Input[Artifact],
    bundle: Input[Model],
    config_json: str,
    registry_uri: str,
    retrain_context: str,
    gate_report: Output[Markdown],
    decision: Output[Artifact],
) -> NamedTuple("GateOutputs", [("passed", bool)]):
    """Quality gate: absolute thresholds, not worse than the current champion on this test split,
    and after a drift retrain better than the champion on the new rows held out of training."""
    from collections import namedtuple

    from components.shared.artifacts import read_frame, read_json, timed, write_json, write_text
    from components.shared.config import Config
    from components.training.gate import decide, held_out_new_rows

    config = Config.from_json(config_json)
    with timed(decision, config.task_timeout_seconds):
        new_rows, challenger = held_out_new_rows(retrain_context, bundle.path)
        result = decide(
            read_json(evaluation.path), read_frame(test.path), config, registry_uri, new_rows, challenger
        )
        write_json(result.to_dict(), decision.path)
        write_text(result.markdown, gate_report.path)
    decision.metadata.update({"passed": result.passed, "reasons": result.failed_reasons})
    return namedtuple("GateOutputs", ["passed"])(result.passed)


def deploy(
    bundle: Input[Model],
    decision: Input[Artifact],
    config_json: str,
    registry_uri: str,
    deploy_target: str,
    run_name: str,
    deployment: Output[Artifact],
    vertex_model: Output[VertexModel],
    vertex_endpoint: Output[VertexEndpoint],
):
    """Register the bundle as a new immutable version and promote it (local registry or Vertex AI).

    With deploy_target=vertex the Vertex model version and endpoint are also output as
    google.VertexModel / google.VertexEndpoint artifacts, so the console shows the lineage.
    """
    from components.deploy.targets import deploy_bundle
    from components.shared.artifacts import read_json, timed, write_json
    from components.shared.config import Config

    config = Config.from_json(config_json)
    with timed(deployment, config.task_timeout_seconds):
        record = deploy_bundle(
            bundle.path, read_json(decision.path), config, registry_uri, deploy_target, run_name
        )
        write_json(record, deployment.path)
    deployment.metadata.update({k: record[k] for k in ("deployed", "version", "target")})
    for artifact, key in ((vertex_model, "model"), (vertex_endpoint, "endpoint")):
        if "vertex" in record:
            artifact.uri = record[f"vertex_{key}_uri"]
            name = record["vertex"]["versioned_model_name" if key == "model" else "endpoint_resource_name"]
            artifact.metadata["resourceName"] = name
        else:
            artifact.metadata["note"] = f"deploy_target {deploy_target!r}: no Vertex AI {key}"


def record_rejection(decision: Input[Artifact], deployment: Output[Artifact]):
    """The gate failed: record that nothing was deployed and why (the registry is untouched)."""
    from components.shared.artifacts import read_json, timed, write_json

    with timed(deployment):
        verdict = read_json(decision.path)
        record = {"deployed": False, "version": None, "target": None, "reasons": verdict["failed_reasons"]}
        write_json(record, deployment.path)
    deployment.metadata.update({"deployed": False, "reasons": verdict["failed_reasons"]})


def summarize(
    dataset: Input[Dataset],
    train: Input[Dataset],
    transformer: Input[Model],
    models: Input[Model],
    calibration: Input[Artifact],
    evaluation: Input[Artifact],
    importance: Input[Artifact],
    bundle: Input[Model],
    decision: Input[Artifact],
    deployment: Input[Artifact],
    pipeline_summary: Output[Artifact],
):
    """pipeline_summary.json: every metric, the gate decision, the registry version, URIs, stage times."""
    from components.shared.artifacts import read_json, write_json
    from components.training.summary import build_summary

    stages = {
        "ingest": dataset,
        "split": train,
        "features": transformer,
        "train": models,
        "calibrate": calibration,
        "evaluate": evaluation,
        "explain": importance,
        "package": bundle,
        "gate": decision,
        "deploy": deployment,
    }
    tuning = models.metadata.get("tuning", {})
    seconds = {name: a.metadata.get("stage_seconds") for name, a in stages.items()}
    seconds.update({f"tune-{family}": meta.get("stage_seconds") for family, meta in tuning.items()})
    document = build_summary(
        stage_seconds=seconds,
        artifact_uris={name: a.uri for name, a in stages.items()},
        tuning=tuning,
        evaluation=read_json(evaluation.path),
        calibration=read_json(calibration.path),
        importance=read_json(importance.path),
        decision=read_json(decision.path),
        deployment=read_json(deployment.path),
        dataset=dict(dataset.metadata),
    )
    write_json(document, pipeline_summary.path)
    pipeline_summary.metadata.update(
        {"deployed": document["deployment"]["deployed"], "version": document["deployment"]["version"]}
    )


@dataclass(frozen=True)
class Ops:
    """The stage components, built for one pipeline image."""

    ingest: Any
    split: Any
    features: Any
    tune: Any
    train: Any
    calibrate: Any
    evaluate: Any
    explain: Any
    package: Any
    gate: Any
    deploy: Any
    record_rejection: Any
    summarize: Any


SHELLS = (
    ingest,
    split,
    features,
    tune,
    train,
    calibrate,
    evaluate,
    explain,
    package,
    gate,
    deploy,
    record_rejection,
    summarize,
)


def make_components(shells: tuple[Any, ...], image: str) -> dict[str, Any]:
    """Wrap shells as lightweight components running in ``image`` (which already has kfp)."""
    return {
        shell.__name__: dsl.component(shell, base_image=image, install_kfp_package=False) for shell in shells
    }


def build_ops(image: str) -> Ops:
    return Ops(**make_components(SHELLS, image))
