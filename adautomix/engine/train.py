"""The training loop: read it top to bottom.

One run = one RunConfig. Every epoch: train, evaluate the online and the EMA network, log to
MLflow, checkpoint atomically. `resume=True` continues from the checkpoint in output_dir exactly
(weights, optimiser, EMA, RNG streams, counters) and in the same MLflow run."""

from __future__ import annotations

import logging
import os
import random
import statistics
import time
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from ..config import RunConfig
from ..data import Recipe, build_loader, ensure_dataset
from ..eval import evaluate
from ..mixers import create_method
from ..models import check_input_size, create_model
from ..tracking import Tracker
from ..visualize import image_grid, training_curves
from .checkpoint import (CHECKPOINT_NAME, CheckpointError, check_resume, load_checkpoint,
                         preserved_rng, remove_partial_writes, rng_state, save_checkpoint,
                         set_rng_state)
from .ema import ModelEma
from .loss_guard import LossGuard
from .optim import build_optimizer, optimizer_step, param_groups, set_lr

log = logging.getLogger("adautomix.train")


@dataclass
class TrainResult:
    metrics: dict[str, float]
    output_dir: Path
    run_id: str | None
    history: list[dict[str, float]] = field(default_factory=list)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was asked for but CUDA is not available; use --device cpu or auto")
    return torch.device(name)


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def is_main_process() -> bool:
    return not dist.is_initialized() or dist.get_rank() == 0


def median_last(history: list[dict[str, float]], key: str, n: int = 10) -> float:
    return statistics.median(h[key] for h in history[-n:])


def build_networks(config: RunConfig, manifest, device: torch.device):
    """The online model, the method (with its own networks) and the engine's EMA, if any."""
    memory_format = torch.channels_last if config.channels_last else torch.preserve_format
    model = create_model(config.model, manifest.num_classes, in_chans=manifest.channels,
                         pretrained=config.pretrained).to(device, memory_format=memory_format)
    method = create_method(config.method, model, manifest.num_classes,
                           label_smoothing=config.label_smoothing, **config.method_args)
    method.to(device, memory_format=memory_format)
    ema = ModelEma(model, config.ema_decay) if method.teacher() is None and config.ema_decay > 0 else None
    return model, method, ema


def resumable_state(config: RunConfig, resume: bool | str) -> tuple[dict | None, dict]:
    """The checkpoint to resume from (None: start anew) and the allowed config changes it
    takes, checked before the run writes anything. `resume` True resumes if there is a
    checkpoint and says so if there is none; "must" fails instead."""
    out = Path(config.output_dir)
    state = load_checkpoint(out) if resume else None
    if state is None:
        if resume == "must":
            raise CheckpointError(f"--resume must: {out} holds no {CHECKPOINT_NAME}; train "
                                  "there first, or drop `must` to start anew when there is none")
        if resume:
            log.info("--resume: no %s in %s; starting a new run", CHECKPOINT_NAME, out)
        return None, {}
    return state, check_resume(state, config, out)


def train(config: RunConfig, resume: bool | str = False) -> TrainResult:
    out = Path(config.output_dir)
    state, changes = resumable_state(config, resume)
    device = resolve_device(config.device)
    amp = config.amp and device.type == "cuda"
    seed_everything(config.seed, config.deterministic)
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)

    manifest = ensure_dataset(config.dataset, config.data_root)
    loader_args = dict(data_root=config.data_root, kind=config.loader, device=device, seed=config.seed,
                       num_workers=config.num_workers, rank=rank, world_size=world,
                       recipe=Recipe.from_config(config, manifest))
    train_loader = build_loader(manifest, "train", batch_size=config.batch_size, train=True,
                                subset=config.subset, **loader_args)
    val_loader = build_loader(manifest, "test", batch_size=config.batch_size, train=False,
                              subset=config.val_subset, **loader_args)

    model, method, ema = build_networks(config, manifest, device)
    check_input_size(model, config.model, manifest.channels, loader_args["recipe"].image_size)
    ema_network = method.teacher() or (ema.module if ema else None)
    named = chain(model.named_parameters(prefix="model"), method.named_parameters(prefix="method"))
    optimizer = build_optimizer(config, param_groups(config, named, method.mix_block_parameters()))
    scaler = torch.amp.GradScaler(device.type, enabled=amp)
    steps_per_epoch = len(train_loader)
    total_steps = config.epochs * steps_per_epoch

    start_epoch, step, history, run_id = 0, 0, [], None
    if state is not None:
        model.load_state_dict(state["model"])
        method.load_state_dict(state["method"])
        if ema is not None:
            ema.load_state_dict(state["ema"])
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"])
        start_epoch, step, history, run_id = state["epoch"], state["step"], state["history"], state["run_id"]
        log.info("resumed from %s at epoch %d (step %d)", out, start_epoch, step)
    guard = LossGuard(config.nonfinite_loss_limit, device, config.lr)
    tracker = None
    if is_main_process():   # every check has passed: the run may write
        out.mkdir(parents=True, exist_ok=True)
        remove_partial_writes(out)
        config.save(out / "config.json")
        tracker = Tracker(config, manifest.sha256, run_id=run_id)
        if changes:
            tracker.log_resume(changes, start_epoch)

    try:
        for epoch in range(start_epoch, config.epochs):
            model.train()
            method.train()
            train_loader.set_epoch(epoch)
            loss_sum = torch.zeros((), device=device)
            seen, started = 0, time.perf_counter()
            bar = tqdm(train_loader, desc=f"epoch {epoch + 1}/{config.epochs}", leave=False,
                       disable=not (config.progress and is_main_process()))
            for images, labels in bar:
                lr = set_lr(optimizer, config, step, steps_per_epoch)
                with torch.autocast(device.type, enabled=amp):
                    loss, _ = method.training_step(model, images, labels, step)
                if guard.skip(loss, step, epoch):
                    optimizer.zero_grad(set_to_none=True)
                    step += 1
                    continue
                optimizer_step(loss, optimizer, scaler, config.grad_clip)
                method.after_optimizer_step(model, step, total_steps)
                if ema is not None:
                    ema.update(model)
                loss_sum += loss.detach()
                seen += images.shape[0]
                step += 1
                if step % 10 == 0:  # a host sync; not every step
                    guard.check(step, epoch)
                    rate = seen / (time.perf_counter() - started)
                    bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{lr:.4g}", img_s=f"{rate:.0f}")
            train_time = time.perf_counter() - started
            guard.check(step, epoch)

            metrics = {"epoch": epoch + 1, "train_loss": float(loss_sum) / steps_per_epoch,
                       "lr": lr, "images_per_sec": seen / train_time}
            metrics.update({f"val_{k}": v for k, v in evaluate(model, val_loader, amp=amp).items()})
            if ema_network is not None:
                metrics.update({f"val_{k}_ema": v for k, v in evaluate(ema_network, val_loader, amp=amp).items()})
            history.append(metrics)
            if tracker is not None:
                tracker.log_metrics(metrics, step=epoch + 1)
            guard.check_metrics(metrics, epoch)
            if tracker is not None:
                if config.log_images_every and (epoch + 1) % config.log_images_every == 0:
                    log_sample_grid(tracker, method, model, val_loader, epoch + 1)
                run_id = tracker.run_id
            if is_main_process():
                save_checkpoint({
                    "model": model.state_dict(), "method": method.state_dict(),
                    "ema": ema.state_dict() if ema is not None else None,
                    "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
                    "rng": rng_state(), "epoch": epoch + 1, "step": step, "history": history,
                    "run_id": run_id, "config": config.to_dict(),
                }, out)
            print(summary_line(metrics), flush=True)

        final = final_metrics(history)
        if tracker is not None:
            # the last epoch's values are logged already; only the medians are new
            tracker.log_metrics({k: v for k, v in final.items() if k.endswith("median10")},
                                step=config.epochs)
            tracker.log_figure(training_curves(history), "curves/training.png")
            tracker.finish()
    except BaseException as exc:
        if tracker is not None:
            killed = isinstance(exc, KeyboardInterrupt)
            tracker.finish("KILLED" if killed else "FAILED",
                           reason="interrupted" if killed else f"{type(exc).__name__}: {exc}")
        raise
    return TrainResult(final, out, run_id, history)


def final_metrics(history: list[dict[str, float]]) -> dict[str, float]:
    """The paper's statistic: median top-1 of the last 10 epochs, for the online and EMA networks."""
    last = history[-1]
    final = {k: v for k, v in last.items() if k.startswith("val_")}
    final["val_top1_median10"] = median_last(history, "val_top1")
    if "val_top1_ema" in last:
        final["val_top1_ema_median10"] = median_last(history, "val_top1_ema")
    return final


def summary_line(metrics: dict[str, float]) -> str:
    ema = f"  ema top1 {metrics['val_top1_ema']:.2f}%" if "val_top1_ema" in metrics else ""
    return (f"epoch {metrics['epoch']}: loss {metrics['train_loss']:.4f}  top1 {metrics['val_top1']:.2f}%"
            f"{ema}  {metrics['images_per_sec']:.0f} img/s")


def log_sample_grid(tracker: Tracker, method, model, loader, epoch: int) -> None:
    """What the method trains on (sources, masks, mixed), drawn without moving the run's RNG."""
    images, labels = next(iter(loader))
    with preserved_rng():
        was_training = model.training
        rows = method.sample_grid(model, images[:16], labels[:16])
        model.train(was_training)
    tracker.log_image(image_grid(rows, loader.mean, loader.std), f"samples/epoch_{epoch:04d}.png")
