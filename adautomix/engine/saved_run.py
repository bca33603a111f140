"""A finished (or interrupted) training run loaded back from its output folder, and evaluated.

It lives in the engine, beside the training it restores, so that eval/ (the metrics) stays a
leaf that the engine imports and that imports nothing of the engine."""

from __future__ import annotations

import logging

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from ..config import RunConfig, resume_changes
from ..data import Loader, Manifest, Recipe, build_loader, ensure_dataset
from ..eval import create_metric, evaluate
from .checkpoint import (
    CHECKPOINT_NAME,
    NETWORK_KEYS,
    SELECTED_NAME,
    CheckpointError,
    load_checkpoint,
)
from .distributed import resolve_device
from .train import build_networks, split_pools

log = logging.getLogger("adautomix.eval")


@dataclass
class LoadedRun:
    config: RunConfig
    manifest: Manifest
    model: nn.Module  # the online network
    ema_network: nn.Module | None  # the EMA network (the method's teacher or the engine's EMA)
    loader: Loader  # the test split
    run_id: str | None  # the run's MLflow run
    val_loader: Loader | None = None  # the validation split; None when the run held none out
    epoch: int = 0  # the epoch the networks are from


def load_run(run_dir: str | Path, device: str = "auto", subset: int | None = None) -> LoadedRun:
    """A training output folder's networks, restored from its checkpoint, and its test loader
    (over the first `subset` test images when given, else the run's own test_subset)."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.json").exists():
        raise FileNotFoundError(f"{run_dir} holds no config.json: pass a training output_dir")
    config = RunConfig.load(run_dir / "config.json")
    dev = resolve_device(device)
    latest = load_checkpoint(run_dir, map_location=dev, keys=NETWORK_KEYS)
    if latest is None:
        raise FileNotFoundError(
            f"{run_dir} holds no {CHECKPOINT_NAME}: the run never finished an epoch"
        )
    # the networks of the epoch validation selected, when the run held a validation split out
    state = (
        load_checkpoint(run_dir, map_location=dev, name=SELECTED_NAME, keys=NETWORK_KEYS) or latest
    )
    if isinstance(latest.get("config"), dict):  # the weights are what the checkpoint says
        _, differs = resume_changes(latest["config"], config)
        if differs:
            raise CheckpointError(
                f"{run_dir / 'config.json'} and its checkpoint disagree on "
                f"{', '.join(sorted(differs))}; the checkpoint's networks were trained under its "
                "own config: restore config.json from the MLflow run's config.json artifact"
            )
    manifest = ensure_dataset(config.dataset, config.data_root)
    model, method, ema = build_networks(config, manifest, dev)
    model.load_state_dict(state["model"])
    method.load_state_dict(state["method"])
    if ema is not None:
        ema.load_state_dict(state["ema"])
    options = dict(
        data_root=config.data_root,
        train=False,
        batch_size=config.eval_batch_size or config.batch_size,
        kind=config.loader,
        device=dev,
        num_workers=config.num_workers,
        recipe=Recipe.from_config(config, manifest),
    )
    loader = build_loader(
        manifest, "test", subset=config.test_subset if subset is None else subset, **options
    )
    _, val_pool = split_pools(config, manifest)
    val_loader = (
        build_loader(manifest, "train", pool=val_pool, **options) if val_pool is not None else None
    )
    ema_network = method.teacher() or (ema.module if ema else None)
    return LoadedRun(
        config,
        manifest,
        model,
        ema_network,
        loader,
        latest.get("run_id"),
        val_loader,
        state["epoch"],
    )


@dataclass
class Report:
    metrics: dict[str, float]  # NAME (online network), NAME_ema (EMA network)
    figures: dict[str, Any] = field(default_factory=dict)  # artifact path -> matplotlib figure
    details: dict[str, dict] = field(default_factory=dict)  # artifact path -> JSON-able dict
    tags: dict[str, str] = field(default_factory=dict)  # what the figures are of (data hashes)


def evaluate_networks(
    run: LoadedRun,
    metrics: Sequence[str] = ("top1", "top5", "loss"),
    progress: bool = False,
    split: str = "test",
) -> Report:
    """Metrics of the online network (`NAME`) and of the EMA network (`NAME_ema`) on the test
    split, with the figures and details of the metrics that draw or tabulate what they measured
    (`eval/NAME[_ema].png`, `eval/NAME[_ema].json`)."""
    loader = run.val_loader if split == "val" else run.loader
    if loader is None:
        raise ValueError(f"{run.config.output_dir} holds out no validation split (val_size 0)")
    report = Report({})
    networks = [("", run.model)] + (
        [("_ema", run.ema_network)] if run.ema_network is not None else []
    )
    for suffix, network in networks:
        objects = [create_metric(spec, progress=progress) for spec in metrics]
        # the loader itself, not a one-pass progress generator: protocols read it again
        log.info(
            "%s: the %s network over %d batches", split, "EMA" if suffix else "online", len(loader)
        )
        values = evaluate(network, loader, objects)
        report.metrics.update({f"{k}{suffix}": v for k, v in values.items()})
        for metric in objects:
            if hasattr(metric, "figure"):
                report.figures[f"eval/{metric.figure_name}{suffix}.png"] = metric.figure()
            if getattr(metric, "details", None):
                report.details[f"eval/{metric.name}{suffix}.json"] = metric.details
            report.tags.update(getattr(metric, "tags", {}))
    return report


def log_report(tracker, report: Report, step: int, prefix: str = "test_") -> None:
    """Into the tracker's run: the metrics as `prefix`NAME, the figures and details as artifacts."""
    import matplotlib.pyplot as plt

    tracker.log_metrics({prefix + k: v for k, v in report.metrics.items()}, step=step)
    for path, figure in report.figures.items():
        tracker.log_figure(figure, path)
        plt.close(figure)
    for path, values in report.details.items():
        tracker.log_dict(values, path)
    if report.tags:
        tracker.set_tags(report.tags)
