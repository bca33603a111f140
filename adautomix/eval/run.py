"""Evaluate a finished (or interrupted) training run from its output folder."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..config import RunConfig
from ..data import build_loader, ensure_dataset
from ..engine.checkpoint import load_checkpoint
from ..engine.train import build_networks, resolve_device
from . import evaluate


def evaluate_run(run_dir: str | Path, metrics: Sequence[str] = ("top1", "top5", "loss"),
                 device: str = "auto") -> dict[str, float]:
    """Metrics of the online network (`NAME`) and of the EMA network (`NAME_ema`) on the test split."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.json").exists():
        raise FileNotFoundError(f"{run_dir} holds no config.json: pass a training output_dir")
    config = RunConfig.load(run_dir / "config.json")
    dev = resolve_device(device)
    state = load_checkpoint(run_dir, map_location=dev)
    if state is None:
        raise FileNotFoundError(f"{run_dir} holds no checkpoint.pt: the run never finished an epoch")
    manifest = ensure_dataset(config.dataset, config.data_root)
    model, method, ema = build_networks(config, manifest, dev)
    model.load_state_dict(state["model"])
    method.load_state_dict(state["method"])
    if ema is not None:
        ema.load_state_dict(state["ema"])
    loader = build_loader(manifest, "test", data_root=config.data_root, batch_size=config.batch_size,
                          train=False, kind=config.loader, device=dev, subset=config.val_subset,
                          num_workers=config.num_workers)
    results = evaluate(model, loader, metrics)
    ema_network = method.teacher() or (ema.module if ema else None)
    if ema_network is not None:
        results.update({f"{k}_ema": v for k, v in evaluate(ema_network, loader, metrics).items()})
    return results
