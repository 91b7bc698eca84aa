"""The training pipeline DAG: ingest -> split (development / test) -> features -> tune (k-fold CV,
parallel) -> train (compare families + blend out-of-fold, refit) -> calibrate (out-of-fold) ->
evaluate (test) -> explain -> package -> gate -> dsl.If(passed): deploy -> summary, all inside a
``dsl.ExitHandler`` whose exit task tracks a run that failed (``components.shells.tracking``).

Built by a factory so the component image is a compile-time setting (``build_training_pipeline``).
"""

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from kfp import dsl

from components.shared.config import Config
from components.shells.tracking import build_record_failure
from components.shells.training import build_ops

PIPELINE_NAME = "propensity-training"
DEFAULT_IMAGE = "propensity-pipeline:local"

# (cpu, memory) requests per stage for cluster runners (kind, Vertex); ignored by the local runner.
RESOURCES: dict[str, tuple[str, str]] = {
    "ingest": ("1", "2G"),
    "split": ("1", "2G"),
    "features": ("1", "2G"),
    "tune": ("2", "4G"),
    "train": ("2", "4G"),
    "calibrate": ("1", "2G"),
    "evaluate": ("1", "2G"),
    "explain": ("2", "4G"),
    "package": ("1", "2G"),
    "gate": ("1", "2G"),
    "deploy": ("1", "1G"),
    "summary": ("1", "1G"),
}


@dataclass(frozen=True)
class PvcMount:
    """A Kubernetes PersistentVolumeClaim mounted into every task (kind: shared data + registry)."""

    name: str
    path: str

    @classmethod
    def parse(cls, text: str) -> "PvcMount":
        name, sep, path = text.partition(":")
        if not sep or not name or not path.startswith("/"):
            raise ValueError(f"--pvc {text!r} must look like CLAIM_NAME:/absolute/mount/path")
        return cls(name, path)


def configure_task(
    task: Any,
    display_name: str,
    stage: str,
    resources: dict[str, tuple[str, str]] = RESOURCES,
    pvc: PvcMount | None = None,
) -> Any:
    """Display name and CPU/memory requests of ``stage`` (cluster runners), the PVC if any."""
    cpu, memory = resources[stage]
    task.set_display_name(display_name).set_cpu_request(cpu).set_memory_request(memory)
    if pvc is not None:
        from kfp import kubernetes

        kubernetes.mount_pvc(task, pvc_name=pvc.name, mount_path=pvc.path)
    return task


def failure_handler(
    record_failure: Any, configure: Callable[..., Any], pipeline_name: str, **inputs: Any
) -> Any:
    """A ``dsl.ExitHandler`` whose exit task tracks the run if it fails (None: no handler, for a
    pipeline nested in another: KFP allows exit handlers only in the outermost pipeline)."""
    if record_failure is None:
        return contextlib.nullcontext()
    exit_task = configure(
        record_failure(pipeline_name=pipeline_name, **inputs), "Track the run if it failed", "summary"
    )
    exit_task.set_caching_options(False)
    return dsl.ExitHandler(exit_task, name=f"{pipeline_name}-run")


def build_training_pipeline(
    image: str = DEFAULT_IMAGE, pvc: PvcMount | None = None, track_failures: bool = True
) -> Any:
    """Return the ``@dsl.pipeline`` whose components all run in ``image`` (with ``pvc`` mounted).
    ``track_failures``: wrap it in the exit handler that tracks a failed run (False when nested)."""
    ops = build_ops(image)
    record_failure = build_record_failure(image) if track_failures else None
    default_config = Config()
    configure = partial(configure_task, pvc=pvc)

    @dsl.pipeline(
        name=PIPELINE_NAME,
        description="Tabular propensity model: validate, engineer, tune, calibrate, explain, gate, deploy.",
    )
    def training_pipeline(
        data_uri: str,
        registry_uri: str,
        config_json: str = default_config.to_json(),
        families: list = default_config.tune.families,
        deploy_target: str = "local",
        run_name: str = "",
        code_version: str = "unknown",
        retrain_context: str = "",
        tracking_uri: str = "",
        runner: str = "local",
    ):
        failure_tracking = failure_handler(
            record_failure,
            configure,
            "training",
            config_json=config_json,
            tracking_uri=tracking_uri,
            run_name=run_name,
            code_version=code_version,
            runner=runner,
            data_uri=data_uri,
        )
        with failure_tracking:
            ingest = configure(
                ops.ingest(data_uri=data_uri, config_json=config_json), "Ingest and validate", "ingest"
            )
            split = configure(
                ops.split(dataset=ingest.outputs["dataset"], config_json=config_json), "Split", "split"
            )
            features = configure(
                ops.features(train=split.outputs["train"], config_json=config_json),
                "Fit features",
                "features",
            )
            with dsl.ParallelFor(families, name="model-families") as family:
                tune = configure(
                    ops.tune(
                        family=family,
                        train=split.outputs["train"],
                        transformer=features.outputs["transformer"],
                        config_json=config_json,
                    ),
                    "Tune family",
                    "tune",
                )
            train = configure(
                ops.train(
                    train=split.outputs["train"],
                    transformer=features.outputs["transformer"],
                    best_params=dsl.Collected(tune.outputs["best_params"]),
                    config_json=config_json,
                ),
                "Train and select champion",
                "train",
            )
            calibrate = configure(
                ops.calibrate(models=train.outputs["models"], config_json=config_json),
                "Calibrate",
                "calibrate",
            )
            evaluate = configure(
                ops.evaluate(
                    test=split.outputs["test"],
                    transformer=features.outputs["transformer"],
                    models=train.outputs["models"],
                    calibration=calibrate.outputs["calibration"],
                    config_json=config_json,
                ),
                "Evaluate on test",
                "evaluate",
            )
            explain = configure(
                ops.explain(
                    train=split.outputs["train"],
                    test=split.outputs["test"],
                    transformer=features.outputs["transformer"],
                    models=train.outputs["models"],
                    calibration=calibrate.outputs["calibration"],
                    config_json=config_json,
                ),
                "Explain (SHAP)",
                "explain",
            )
            package = configure(
                ops.package(
                    dataset=ingest.outputs["dataset"],
                    train=split.outputs["train"],
                    transformer=features.outputs["transformer"],
                    models=train.outputs["models"],
                    calibration=calibrate.outputs["calibration"],
                    evaluation=evaluate.outputs["evaluation"],
                    importance=explain.outputs["importance"],
                    schema=ingest.outputs["schema"],
                    config_json=config_json,
                    code_version=code_version,
                    retrain_context=retrain_context,
                ),
                "Package model bundle",
                "package",
            )
            gate = configure(
                ops.gate(
                    test=split.outputs["test"],
                    evaluation=evaluate.outputs["evaluation"],
                    bundle=package.outputs["bundle"],
                    config_json=config_json,
                    registry_uri=registry_uri,
                    retrain_context=retrain_context,
                ),
                "Quality gate",
                "gate",
            )
            gate.set_caching_options(False)  # the champion it compares with can change between runs
            summary_inputs = {
                "dataset": ingest.outputs["dataset"],
                "train": split.outputs["train"],
                "transformer": features.outputs["transformer"],
                "models": train.outputs["models"],
                "calibration": calibrate.outputs["calibration"],
                "evaluation": evaluate.outputs["evaluation"],
                "importance": explain.outputs["importance"],
                "bundle": package.outputs["bundle"],
                "decision": gate.outputs["decision"],
                "data_report": ingest.outputs["data_report"],
                "reliability": calibrate.outputs["reliability"],
                "shap_report": explain.outputs["shap_report"],
                "gate_report": gate.outputs["gate_report"],
                "config_json": config_json,
                "tracking_uri": tracking_uri,
                "run_name": run_name,
                "code_version": code_version,
                "runner": runner,
                "data_uri": data_uri,
            }
            with dsl.If(gate.outputs["passed"] == True, name="gate-passed"):  # noqa: E712 - KFP condition
                deploy = configure(
                    ops.deploy(
                        bundle=package.outputs["bundle"],
                        decision=gate.outputs["decision"],
                        config_json=config_json,
                        registry_uri=registry_uri,
                        deploy_target=deploy_target,
                        run_name=run_name,
                    ),
                    "Deploy",
                    "deploy",
                )
                deploy.set_caching_options(False)
                configure(
                    ops.summarize(**summary_inputs, deployment=deploy.outputs["deployment"]),
                    "Summary",
                    "summary",
                )
            with dsl.Else(name="gate-failed"):
                rejected = configure(
                    ops.record_rejection(decision=gate.outputs["decision"]), "Record rejection", "deploy"
                )
                configure(
                    ops.summarize(**summary_inputs, deployment=rejected.outputs["deployment"]),
                    "Summary",
                    "summary",
                )

    return training_pipeline
