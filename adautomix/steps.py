"""The training pipeline's steps as plain functions.

Each Kubeflow component (components/) is one call to a function here, to `data.versioning` or to
`registry`, so a pipeline run can be repeated from Python without Kubeflow, and the checks that
guard a run are the same when a pipeline is compiled as when it runs."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import ConfigError, RunConfig

# Fields that say where or how visibly a run happens, not what it computes: they stay out of the
# checkpoint key, so a re-run resumes whatever the run name, data location or worker count.
UNKEYED_FIELDS = ("output_dir", "data_root", "run_name", "progress", "num_workers")
# What the evaluate step measures unless told otherwise: any metric spec of adautomix.eval
# (`fgsm`, `ece:bins=15`, ...). The robustness metrics (adautomix.eval.FULL_METRICS) are
# opt-in, as a pipeline parameter: corruptions alone are 95 passes over the test set.
TEST_METRICS = ("top1", "top5", "loss")


@dataclass(frozen=True)
class Evaluation:
    metrics: dict[str, float]   # test_NAME (online network), test_NAME_ema, and the score
    model_uri: str              # the logged model: the EMA network when the run has one
    run_id: str
    score: float                # the logged model's test top-1 (registry.SCORE_METRIC)


def default_model_name(dataset: str) -> str:
    """One registered model per dataset, so its champion is always judged on that dataset."""
    return f"adautomix-{dataset}"


def build_config(preset: str = "", **values: Any) -> RunConfig:
    """A preset's recipe (or the defaults when `preset` is empty) with `values` on top."""
    base: dict[str, Any] = {}
    if preset:
        from .presets import get_preset
        base = get_preset(preset).to_dict()
    return RunConfig.from_dict({**base, **values})


def check_run(config: RunConfig, num_gpus: int = 0) -> None:
    """The checks RunConfig cannot make alone, made before any data exists: the method's options
    and smallest batch (by building the method on the configured network) and the GPU count."""
    from .mixers import create_method
    from .models import create_model

    if num_gpus < 0:
        raise ConfigError(f"num_gpus must be >= 0, got {num_gpus}")
    if num_gpus > 1:
        raise ConfigError(f"num_gpus {num_gpus}: a run trains on one device; run several "
                          "configurations in parallel with the sweep pipeline instead")
    # Class and channel counts do not change which options or batch sizes a method accepts.
    model = create_model(config.model, num_classes=10, in_chans=3)
    method = create_method(config.method, model, 10, **config.method_args)
    smallest = getattr(method, "min_batch_size", 1)
    if config.batch_size < smallest:
        raise ConfigError(
            f"batch_size {config.batch_size} is smaller than method {config.method!r} needs "
            f"({smallest}: it mixes that many images into each sample); raise the batch size "
            "or lower the method's mix_samples")


def checkpoint_dir(root: str | Path, config: RunConfig, data_version: str) -> Path:
    """A folder named by what the run computes, so that a retried or re-run step with the same
    parameters and data finds its own checkpoint and resumes instead of starting over."""
    keyed = {k: v for k, v in config.to_dict().items() if k not in UNKEYED_FIELDS}
    text = json.dumps({"config": keyed, "data_version": data_version}, sort_keys=True)
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    return Path(root) / f"{config.dataset}-{config.model}-{config.method}-seed{config.seed}-{digest}"


def train_step(checkpoint_root: str | Path, data_version: str, preset: str = "", **values: Any):
    """Train the configuration `build_config(preset, **values)` in its persistent checkpoint
    folder under `checkpoint_root`, resuming from the checkpoint there if there is one."""
    from .engine.train import train

    config = build_config(preset, **values)
    out = checkpoint_dir(checkpoint_root, config, data_version)
    return train(config.replace(output_dir=str(out)), resume=True)


def evaluate_step(run_dir: str | Path, metrics: tuple[str, ...] = TEST_METRICS,
                  data_version: str = "") -> Evaluation:
    """Evaluate a trained run on the test split and complete its MLflow run with the test
    metrics, the confusion matrix and the final model (with a signature and an input example)."""
    from .eval import check_metrics
    from .eval.confusion import confusion_figure, confusion_matrix
    from .eval.run import evaluate_networks, load_run, log_report
    from .registry import SCORE_METRIC
    from .tracking import Tracker

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
