"""The evaluate step: a trained run's selected networks measured on its validation and test
splits, its confusion matrix and its served model, logged to the run's own MLflow record."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..config import ConfigError

# What the evaluate step measures unless told otherwise; any name of adautomix.eval.METRICS.
TEST_METRICS = ("top1", "top5", "loss")


@dataclass(frozen=True)
class Evaluation:
    metrics: dict[str, float]   # selected_{val,test}_NAME[_ema], model_{val,test}_top1, chance_top1
    model_uri: str              # the logged model: the EMA network when the run has one
    run_id: str
    score: float                # the logged model's top-1 on validation (on test without one)
    metric: str                 # the score's name: registry.SCORE_METRIC or TEST_SCORE_METRIC
    chance: float               # 100 / classes


def evaluate_step(run_dir: str | Path, metrics: tuple[str, ...] = TEST_METRICS,
                  data_version: str = "") -> Evaluation:
    """Evaluate a trained run's selected networks (engine/train.py) on its validation and test
    splits and complete its MLflow run with those metrics, the confusion matrix and the model
    that is served (taking [0, 1] images, with a signature and an input example). The score the
    registry judges is the served network's validation top-1, or its test top-1 when the run
    holds out no validation split (the paper's protocol)."""
    from ..engine.saved_run import evaluate_networks, load_run
    from ..eval.confusion import confusion_figure, confusion_matrix
    from ..registry import SCORE_METRIC, TEST_SCORE_METRIC
    from ..tracking import Tracker

    metrics = tuple(dict.fromkeys(("top1", *metrics)))   # the score is the top-1
    run = load_run(run_dir)
    if run.run_id is None:
        raise ConfigError(f"the checkpoint in {run_dir} has no MLflow run id; train it with "
                          "tracking on (adautomix train) before evaluating it here")
    splits = ("val", "test") if run.val_loader is not None else ("test",)
    results = {f"selected_{split}_{k}": v for split in splits
               for k, v in evaluate_networks(run, metrics, split).items()}
    served, suffix = (run.ema_network, "_ema") if run.ema_network is not None else (run.model, "")
    results[TEST_SCORE_METRIC] = results[f"selected_test_top1{suffix}"]
    if run.val_loader is not None:
        results[SCORE_METRIC] = results[f"selected_val_top1{suffix}"]
    metric = SCORE_METRIC if run.val_loader is not None else TEST_SCORE_METRIC
    results["chance_top1"] = 100.0 / run.manifest.num_classes
    matrix = confusion_matrix(served, run.loader, run.manifest.num_classes)
    tracker = Tracker(run.config, run.manifest.sha256, run_id=run.run_id)
    try:
        tracker.log_metrics(results, step=run.config.epochs)
        if data_version:
            tracker.set_tags({"data_version": data_version})
        tracker.log_figure(confusion_figure(matrix, run.manifest.classes), "eval/confusion_matrix.png")
        images, _ = next(iter(run.loader))
        mean, std = run.loader.mean, run.loader.std
        shape = (1, -1, 1, 1)   # the served model takes [0, 1] images: undo the loader's normalising
        raw = images[:4] * images.new_tensor(std).view(shape) + images.new_tensor(mean).view(shape)
        model_uri = tracker.log_model(served, raw.clamp(0, 1), mean, std)
    except BaseException:
        tracker.finish("FAILED")
        raise
    tracker.finish()
    return Evaluation(results, model_uri, run.run_id, results[metric], metric,
                      results["chance_top1"])
