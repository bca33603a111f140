"""A finished (or interrupted) training run loaded back from its output folder, and evaluated.

It lives in the engine, beside the training it restores, so that eval/ (the metrics) stays a
leaf that the engine imports and that imports nothing of the engine."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from ..config import RunConfig, resume_changes
from ..data import Loader, Manifest, Recipe, build_loader, ensure_dataset
from ..eval import evaluate
from .checkpoint import CheckpointError, load_checkpoint
from .distributed import resolve_device
from .train import build_networks


@dataclass
class LoadedRun:
    config: RunConfig
    manifest: Manifest
    model: nn.Module                 # the online network
    ema_network: nn.Module | None    # the EMA network (the method's teacher or the engine's EMA)
    loader: Loader                   # the test split
    run_id: str | None               # the run's MLflow run


def load_run(run_dir: str | Path, device: str = "auto") -> LoadedRun:
    """A training output folder's networks, restored from its checkpoint, and its test loader."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.json").exists():
        raise FileNotFoundError(f"{run_dir} holds no config.json: pass a training output_dir")
    config = RunConfig.load(run_dir / "config.json")
    dev = resolve_device(device)
    state = load_checkpoint(run_dir, map_location=dev)
    if state is None:
        raise FileNotFoundError(f"{run_dir} holds no checkpoint.pt: the run never finished an epoch")
    if isinstance(state.get("config"), dict):   # the weights are what the checkpoint says
        _, differs = resume_changes(state["config"], config)
        if differs:
            raise CheckpointError(
                f"{run_dir / 'config.json'} and its checkpoint disagree on "
                f"{', '.join(sorted(differs))}; the checkpoint's networks were trained under its "
                "own config: restore config.json from the MLflow run's config.json artifact")
    manifest = ensure_dataset(config.dataset, config.data_root)
    model, method, ema = build_networks(config, manifest, dev)
    model.load_state_dict(state["model"])
    method.load_state_dict(state["method"])
    if ema is not None:
        ema.load_state_dict(state["ema"])
    loader = build_loader(manifest, "test", data_root=config.data_root, batch_size=config.batch_size,
                          train=False, kind=config.loader, device=dev, subset=config.val_subset,
                          num_workers=config.num_workers, recipe=Recipe.from_config(config, manifest))
    ema_network = method.teacher() or (ema.module if ema else None)
    return LoadedRun(config, manifest, model, ema_network, loader, state.get("run_id"))


def evaluate_networks(run: LoadedRun, metrics: Sequence[str] = ("top1", "top5", "loss")) -> dict[str, float]:
    """Metrics of the online network (`NAME`) and of the EMA network (`NAME_ema`) on the test split."""
    results = evaluate(run.model, run.loader, metrics)
    if run.ema_network is not None:
        results.update({f"{k}_ema": v for k, v in evaluate(run.ema_network, run.loader, metrics).items()})
    return results


def evaluate_run(run_dir: str | Path, metrics: Sequence[str] = ("top1", "top5", "loss"),
                 device: str = "auto") -> dict[str, float]:
    """Metrics of the online network (`NAME`) and of the EMA network (`NAME_ema`) on the test split."""
    return evaluate_networks(load_run(run_dir, device), metrics)
