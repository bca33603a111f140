"""The evaluate step: a trained run's test metrics, its confusion matrix and its final model,
logged to the run's own MLflow record."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from ..config import ConfigError
from ..provenance import Provenance

# What the evaluate step measures unless told otherwise: any metric spec of adautomix.eval
# (`fgsm`, `ece:bins=15`, ...). The robustness metrics (config.EVAL_METRICS) are opt-in, as a
# pipeline parameter: corruptions alone are 95 passes over the test set.
TEST_METRICS = ("top1", "top5", "loss")
# The MLflow UI's address as a browser reaches it (the pipeline's --mlflow-ui-url): in a
# cluster the tracking URI names an in-cluster host that a browser cannot open.
MLFLOW_UI_ENV = "ADAUTOMIX_MLFLOW_UI_URL"


@dataclass(frozen=True)
class Evaluation:
    metrics: dict[str, float]  # selected_{val,test}_NAME[_ema], model_{val,test}_top1, chance_top1
    model_uri: str  # the logged model: the EMA network when the run has one
    run_id: str
    score: float  # the logged model's top-1 on validation (on test without one)
    metric: str  # the score's name: registry.SCORE_METRIC or TEST_SCORE_METRIC
    chance: float  # 100 / classes


def evaluate_step(run_dir: str | Path, metrics: tuple[str, ...] = TEST_METRICS) -> Evaluation:
    """Evaluate a trained run on the test split and complete its MLflow run with the test
    metrics, the confusion matrix and the final model (with a signature and an input example),
    tagged with the data version the run trained on (its provenance.json)."""
    from ..engine.saved_run import evaluate_networks, load_run, log_report
    from ..eval import check_metrics
    from ..eval.confusion import confusion_figure, confusion_matrix
    from ..registry import SCORE_METRIC, TEST_SCORE_METRIC
    from ..tracking import STEP_SECONDS, Tracker, process_seconds

    metrics = tuple(dict.fromkeys(("top1", *check_metrics(metrics))))  # the score is the top-1
    run = load_run(run_dir)
    if run.run_id is None:
        raise ConfigError(
            f"the checkpoint in {run_dir} has no MLflow run id; train it with "
            "tracking on (adautomix train) before evaluating it here"
        )
    # the selected networks (engine/train.py): judged on validation, reported on test
    started = time.perf_counter()
    report = evaluate_networks(run, metrics)
    results = {f"selected_test_{k}": v for k, v in report.metrics.items()}
    if run.val_loader is not None:
        # accuracy and loss only: the robustness protocols are test figures, and costly
        val = evaluate_networks(run, [m for m in metrics if m in TEST_METRICS], split="val")
        results.update({f"selected_val_{k}": v for k, v in val.metrics.items()})
    # the evaluation proper, robustness included: the rest of the step is its fixed cost
    evaluate_seconds = time.perf_counter() - started
    served, suffix = (run.ema_network, "_ema") if run.ema_network is not None else (run.model, "")
    summary = {
        TEST_SCORE_METRIC: results[f"selected_test_top1{suffix}"],
        "chance_top1": 100.0 / run.manifest.num_classes,
    }
    if run.val_loader is not None:
        summary[SCORE_METRIC] = results[f"selected_val_top1{suffix}"]
    metric = SCORE_METRIC if run.val_loader is not None else TEST_SCORE_METRIC
    results.update(summary)
    matrix = confusion_matrix(served, run.loader, run.manifest.num_classes)
    tracker = Tracker(run.config, run.manifest.sha256, run_id=run.run_id)
    try:
        log_report(tracker, report, step=run.config.epochs, prefix="selected_test_")
        tracker.log_metrics(
            {k: v for k, v in results.items() if not k.startswith("selected_test_")},
            step=run.config.epochs,
        )
        data_version = Provenance.load(run_dir).data_version
        tracker.set_tags(
            {"eval_test_metrics": ",".join(metrics)}
            | ({"data_version": data_version} if data_version else {})
        )
        tracker.log_figure(
            confusion_figure(matrix, run.manifest.classes), "eval/confusion_matrix.png"
        )
        images, _ = next(iter(run.loader))
        mean, std = run.loader.mean, run.loader.std
        shape = (1, -1, 1, 1)  # the served model takes [0, 1] images: undo the loader's normalising
        raw = images[:4] * images.new_tensor(std).view(shape) + images.new_tensor(mean).view(shape)
        model_uri = tracker.log_model(served, raw.clamp(0, 1), mean, std)
        tracker.log_metrics(
            {f"{STEP_SECONDS}evaluate": process_seconds(), "evaluate_seconds": evaluate_seconds},
            step=run.config.epochs,
        )
    except BaseException:
        tracker.finish("FAILED")
        raise
    tracker.finish()
    return Evaluation(
        results, model_uri, run.run_id, results[metric], metric, results["chance_top1"]
    )


def run_link(run_id: str) -> str:
    """Markdown that names a run's MLflow record, for a pipeline's run page: a link to the run
    in the MLflow UI at $ADAUTOMIX_MLFLOW_UI_URL when set, else at the tracking URI's server
    when it is one, else the store and how to browse it. No credentials: the link keeps only
    the server's address, and the rest goes through redact."""
    from urllib.parse import urlsplit

    from ..redact import redact
    from ..tracking import connect, tracking_uri

    uri = tracking_uri()
    parts = urlsplit(uri)
    ui = os.environ.get(MLFLOW_UI_ENV, "").strip().rstrip("/")
    if ui or parts.scheme in ("http", "https"):
        experiment = connect().get_run(run_id).info.experiment_id
        server = f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")
        base = ui or f"{server}{parts.path.rstrip('/')}"
        page = f"{base}/#/experiments/{experiment}/runs/{run_id}"
        return redact(f"[MLflow run {run_id}]({page})\n")
    store = redact(uri)
    return (
        f"MLflow run `{run_id}` in the store `{store}`; browse it with "
        f"`mlflow ui --backend-store-uri {store}`\n"
    )
