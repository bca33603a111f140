"""The evaluate step: a trained run's test metrics, its confusion matrix and its final model,
logged to the run's own MLflow record."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..config import ConfigError

# What the evaluate step measures unless told otherwise: any metric spec of adautomix.eval
# (`fgsm`, `ece:bins=15`, ...). The robustness metrics (config.EVAL_METRICS) are opt-in, as a
# pipeline parameter: corruptions alone are 95 passes over the test set.
TEST_METRICS = ("top1", "top5", "loss")


@dataclass(frozen=True)
class Evaluation:
    metrics: dict[str, float]   # test_NAME (online network), test_NAME_ema, and the score
    model_uri: str              # the logged model: the EMA network when the run has one
    run_id: str
    score: float                # the logged model's test top-1 (registry.SCORE_METRIC)


def evaluate_step(run_dir: str | Path, metrics: tuple[str, ...] = TEST_METRICS,
                  data_version: str = "") -> Evaluation:
    """Evaluate a trained run on the test split and complete its MLflow run with the test
    metrics, the confusion matrix and the final model (with a signature and an input example)."""
    from ..engine.saved_run import evaluate_networks, load_run, log_report
    from ..eval import check_metrics
    from ..eval.confusion import confusion_figure, confusion_matrix
    from ..registry import SCORE_METRIC
    from ..tracking import Tracker

    metrics = tuple(dict.fromkeys(("top1", *check_metrics(metrics))))   # the score is the top-1
    run = load_run(run_dir)
    if run.run_id is None:
        raise ConfigError(f"the checkpoint in {run_dir} has no MLflow run id; train it with "
                          "tracking on (adautomix train) before evaluating it here")
    report = evaluate_networks(run, metrics)
    results = {f"test_{k}": v for k, v in report.metrics.items()}
    served, suffix = (run.ema_network, "_ema") if run.ema_network is not None else (run.model, "")
    results[SCORE_METRIC] = results[f"test_top1{suffix}"]
    matrix = confusion_matrix(served, run.loader, run.manifest.num_classes)
    tracker = Tracker(run.config, run.manifest.sha256, run_id=run.run_id)
    try:
        log_report(tracker, report, step=run.config.epochs)
        tracker.log_metrics({SCORE_METRIC: results[SCORE_METRIC]}, step=run.config.epochs)
        if data_version:
            tracker.set_tags({"data_version": data_version})
        tracker.log_figure(confusion_figure(matrix, run.manifest.classes), "eval/confusion_matrix.png")
        images, _ = next(iter(run.loader))
        model_uri = tracker.log_model(served, images[:4])
    except BaseException:
        tracker.finish("FAILED")
        raise
    tracker.finish()
    return Evaluation(results, model_uri, run.run_id, results[SCORE_METRIC])
