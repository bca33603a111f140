"""A finished (or interrupted) training run loaded back from its output folder, and evaluated:
the networks of its selected epoch (selected.pt, chosen on the validation split) when it has
one, else of its last checkpoint, on its validation split (when it holds one out) and its test
split.

It lives in the engine, beside the training it restores, so that eval/ (the metrics) stays a
leaf that the engine imports and that imports nothing of the engine."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from ..config import RunConfig
from ..data import Loader, Manifest, Recipe, build_loader, ensure_dataset
from ..eval import evaluate
from ..progress import progress
from .checkpoint import CHECKPOINT_NAME, SELECTED_NAME, load_checkpoint
from .distributed import resolve_device
from .train import build_networks, split_pools


@dataclass
class LoadedRun:
    config: RunConfig
    manifest: Manifest
    model: nn.Module                 # the online network
    ema_network: nn.Module | None    # the EMA network (the method's teacher or the engine's EMA)
    loader: Loader                   # the test split
    run_id: str | None               # the run's MLflow run
    val_loader: Loader | None = None  # the validation split; None when the run held none out
    epoch: int = 0                   # the epoch the networks are from


def load_run(run_dir: str | Path, device: str = "auto") -> LoadedRun:
    """A training output folder's networks, restored from its checkpoint, and its test loader."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.json").exists():
        raise FileNotFoundError(f"{run_dir} holds no config.json: pass a training output_dir")
    config = RunConfig.load(run_dir / "config.json")
    dev = resolve_device(device)
    latest = load_checkpoint(run_dir, map_location=dev)
    if latest is None:
        raise FileNotFoundError(f"{run_dir} holds no {CHECKPOINT_NAME}: the run never finished an "
                                "epoch")
    state = load_checkpoint(run_dir, map_location=dev, name=SELECTED_NAME) or latest
    manifest = ensure_dataset(config.dataset, config.data_root)
    model, method, ema = build_networks(config, manifest, dev)
    model.load_state_dict(state["model"])
    method.load_state_dict(state["method"])
    if ema is not None:
        ema.load_state_dict(state["ema"])
    options = dict(data_root=config.data_root, batch_size=config.batch_size, train=False,
                   kind=config.loader, device=dev, num_workers=config.num_workers,
                   recipe=Recipe.from_config(config, manifest))
    loader = build_loader(manifest, "test", subset=config.val_subset, **options)
    _, val_pool = split_pools(config, manifest)
    val_loader = (build_loader(manifest, "train", pool=val_pool, **options)
                  if val_pool is not None else None)
    ema_network = method.teacher() or (ema.module if ema else None)
    return LoadedRun(config, manifest, model, ema_network, loader, latest.get("run_id"),
                     val_loader, state["epoch"])


def evaluate_networks(run: LoadedRun, metrics: Sequence[str] = ("top1", "top5", "loss"),
                      split: str = "test") -> dict[str, float]:
    """Metrics of the online network (`NAME`) and of the EMA network (`NAME_ema`) on the test
    split, or on the validation split (`split` "val")."""
    loader = run.val_loader if split == "val" else run.loader
    if loader is None:
        raise ValueError(f"{run.config.output_dir} holds out no validation split (val_size 0)")
    results = evaluate(run.model, progress(loader, f"{split}: online network", unit="batch"),
                       metrics)
    if run.ema_network is not None:
        batches = progress(loader, f"{split}: EMA network", unit="batch")
        results.update({f"{k}_ema": v for k, v in evaluate(run.ema_network, batches, metrics).items()})
    return results


def evaluate_run(run_dir: str | Path, metrics: Sequence[str] = ("top1", "top5", "loss"),
                 device: str = "auto") -> dict[str, float]:
    """Metrics of the online network (`NAME`) and of the EMA network (`NAME_ema`) on the test split."""
    return evaluate_networks(load_run(run_dir, device), metrics)
