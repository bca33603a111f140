"""The training loop, in the shape of torchvision's classification reference: `setup` builds a
run from named pieces (`build_data`, `build_checked_networks`, `build_optimisation`, `restore`
from the checkpoint, `start_writing` and `start_tracking` on rank 0), `train_one_epoch` trains
it for an epoch, `evaluate_and_log` measures, logs and checkpoints it, and `train` strings them
together. Read top to bottom.

One run = one RunConfig. Every epoch: train, evaluate the online and the EMA network on the
validation split (training images held out, `val_size`) and on the test split, log to MLflow,
checkpoint atomically; within an epoch, checkpoint every `checkpoint_minutes` and at the next
step after a SIGTERM (which then stops the run: engine/preemption.py). The epoch whose
registered network (the EMA one when there is one) scores best on validation is kept beside the
checkpoint as `selected.pt`; with no validation split (the paper's protocol) the last epoch is
the selected one. Metric names: docs/architecture.md.
`resume=True` continues from the checkpoint in output_dir exactly (weights, optimiser, EMA, RNG
streams, counters; from a checkpoint within an epoch, the epoch's plan with its first batches
skipped) and in the same MLflow run, once its config and code version are found to compute the
same thing (checkpoint.check_resume). A non-finite loss or metric stops the run FAILED before
the weights it touched are checkpointed (loss_guard.py). One run at a time trains into a folder
(run_lock.py). Nothing is written until every check of `setup` has passed (docs/reliability.md).

Under torchrun every process runs this same code on its own device (engine/distributed.py): the
batch size is the global one, split evenly over the ranks; gradients are averaged across ranks
before each optimiser step; only rank 0 writes config.json, checkpoints, MLflow records and the
summary lines."""

from __future__ import annotations

import logging
import math
import os
import random
import statistics
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from ..config import ConfigError, RunConfig
from ..data import Loader, Manifest, Recipe, build_loader, ensure_dataset
from ..data.split import holdout_split, split_labels
from ..eval import evaluate
from ..mixers import Method, create_method, options_with_defaults
from ..models import check_input_size, create_model
from ..precision import autocast, check_precision, grad_scaler
from ..progress import progress
from ..provenance import Provenance, code_version
from ..tracking import Tracker, TrackingError, check_store, setup_params
from ..visualize import sample_figure, training_curves
from . import distributed, run_lock
from .checkpoint import (
    CHECKPOINT_NAME,
    RESUME_KEYS,
    SELECTED_NAME,
    CheckpointError,
    check_resume,
    load_checkpoint,
    preserved_rng,
    remove_partial_writes,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from .distributed import (
    Ranks,
    rank_batch_size,
    resolve_device,  # noqa: F401  (public here too)
)
from ..ema import ModelEma
from .loss_guard import LossGuard
from .optim import build_optimizer, optimizer_step, param_groups, set_lr
from .preemption import Preempted, StopRequest, stop_on_sigterm

log = logging.getLogger("adautomix.train")


@dataclass
class TrainResult:
    metrics: dict[str, float]
    output_dir: Path
    run_id: str | None
    history: list[dict[str, float]] = field(default_factory=list)


@dataclass
class Data:
    """What a run reads: the prepared dataset and its three loaders, built by `build_data`."""

    manifest: Manifest
    train_loader: Loader
    val_loader: Loader | None  # the held-out training images; None when val_size is 0
    test_loader: Loader


@dataclass
class WithinEpoch:
    """Where a checkpoint taken within an epoch left it: the batches of the epoch already
    trained, their running sums (over every rank) and the RNG streams to restore once the
    resumed run has skipped those batches."""

    batches_done: int
    totals: dict[str, Any]
    rng: dict[str, Any]


@dataclass
class Run:
    """Everything a run holds between epochs; `setup` builds it piece by piece."""

    # what runs, and where
    config: RunConfig
    out: Path
    ranks: Ranks
    device: torch.device
    code_version: str
    # what it reads and trains (build_data, build_checked_networks)
    data: Data
    model: nn.Module
    method: Method
    ema: ModelEma | None
    ema_network: nn.Module | None  # what the *_ema metrics measure: teacher or engine EMA
    # how it steps (build_optimisation)
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    guard: LossGuard  # stops the run on NaN or infinite losses
    steps_per_epoch: int
    total_steps: int
    # where it stands: what a checkpoint saves and `restore` puts back
    start_epoch: int = 0
    step: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    run_id: str | None = None
    within_epoch: WithinEpoch | None = None  # resumed from a checkpoint within start_epoch
    # rank 0's writes (start_writing), and stopping
    lock: run_lock.RunLock | None = None  # rank 0 only
    tracker: Tracker | None = None  # rank 0 only
    stop: StopRequest = field(default_factory=StopRequest)  # set by SIGTERM
    last_checkpoint: float = 0.0  # time.monotonic() of the last checkpoint (or start)

    def trainable(self) -> list[nn.Parameter]:
        return [p for group in self.optimizer.param_groups for p in group["params"]]


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def median_last(history: list[dict[str, float]], key: str, n: int = 10) -> float:
    return statistics.median(h[key] for h in history[-n:])


def build_networks(config: RunConfig, manifest, device: torch.device, sync_bn: bool = False):
    """The online model, the method (with its own networks) and the engine's EMA, if any.

    `sync_bn` turns the model's BatchNorms into SyncBatchNorms before the method copies it, so
    the EMA teacher, which also runs in train mode, computes global batch statistics too."""
    memory_format = torch.channels_last if config.channels_last else torch.preserve_format
    model = create_model(
        config.model,
        manifest.num_classes,
        in_chans=manifest.channels,
        pretrained=config.pretrained,
        width=config.model_width,
    )
    if sync_bn:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model = model.to(device, memory_format=memory_format)
    method = create_method(
        config.method,
        model,
        manifest.num_classes,
        label_smoothing=config.label_smoothing,
        **config.method_args,
    )
    method.to(device, memory_format=memory_format)
    ema = (
        ModelEma(model, config.ema_decay, config.ema_warmup)
        if method.teacher() is None and config.ema_decay > 0
        else None
    )
    return model, method, ema


# --- setup --------------------------------------------------------------------------------------


def setup(
    config: RunConfig,
    resume: bool | str,
    ranks: Ranks,
    device: torch.device,
    provenance: Provenance = Provenance(),
    allow_code_change: bool = False,
) -> Run:
    """A run ready for its first epoch: the data, the networks and method, the optimiser, the
    checkpoint's state when resuming, and (rank 0) the folder's lock and the MLflow run.

    The pieces come in this order so that everything that can be wrong with the config, the
    data, the networks or the resume is found before anything is written into the run's folder:
    only `start_writing`, last, writes there. Seeding comes before the data and the networks,
    which draw from it."""
    if ranks.is_main:  # a tracking store that cannot take the run fails before the data loads
        check_store()
    state, changes = resumable_state(config, resume, allow_code_change)
    check_precision(config.precision, device)
    seed_everything(config.seed, config.deterministic)
    data = build_data(config, ranks, device)
    model, method, ema = build_checked_networks(config, data, ranks, device)
    optimizer, scaler, guard = build_optimisation(config, model, method, device)
    run = Run(
        config=config,
        out=Path(config.output_dir),
        ranks=ranks,
        device=device,
        code_version=code_version(),
        data=data,
        model=model,
        method=method,
        ema=ema,
        ema_network=method.teacher() or (ema.module if ema else None),
        optimizer=optimizer,
        scaler=scaler,
        guard=guard,
        steps_per_epoch=len(data.train_loader),
        total_steps=config.epochs * len(data.train_loader),
    )
    if state is not None:
        restore(run, state, changes)
    distributed.broadcast_state(networks(run))
    if ranks.is_main:  # every check has passed: the run may write
        start_writing(run, provenance, changes)
    distributed.barrier()  # the epoch clocks start together, not while rank 0 opens MLflow
    return run


def build_data(config: RunConfig, ranks: Ranks, device: torch.device) -> Data:
    """The dataset, prepared if it is not yet, and its training, validation and test loaders,
    each reading this rank's share of the batch. A batch that does not split evenly over the
    ranks is refused before the dataset is touched."""
    batch_size = rank_batch_size(config.batch_size, ranks.world_size)
    eval_batch_size = math.ceil((config.eval_batch_size or config.batch_size) / ranks.world_size)
    # Fashion-MNIST prepares itself on first use: one process per node writes it, then the rest read
    if ranks.local_rank == 0:
        manifest = ensure_dataset(config.dataset, config.data_root)
    distributed.barrier()
    if ranks.local_rank != 0:
        manifest = ensure_dataset(config.dataset, config.data_root)
    loader_args = dict(
        data_root=config.data_root,
        kind=config.loader,
        device=device,
        seed=config.seed,
        num_workers=config.num_workers,
        rank=ranks.rank,
        world_size=ranks.world_size,
        recipe=Recipe.from_config(config, manifest),
    )
    train_pool, val_pool = split_pools(config, manifest)
    train_loader = build_loader(
        manifest,
        "train",
        batch_size=batch_size,
        train=True,
        subset=config.subset,
        pool=train_pool,
        **loader_args,
    )
    val_loader = (
        build_loader(
            manifest, "train", batch_size=eval_batch_size, train=False, pool=val_pool, **loader_args
        )
        if val_pool is not None
        else None
    )
    test_loader = build_loader(
        manifest,
        "test",
        batch_size=eval_batch_size,
        train=False,
        # the smaller of the two test subsets, where either is set: the per-epoch one trims
        # the test split the epochs measure, never widens it
        subset=min(filter(None, (config.epoch_test_subset, config.test_subset)), default=0),
        **loader_args,
    )
    return Data(manifest, train_loader, val_loader, test_loader)


def split_pools(config: RunConfig, manifest: Manifest):
    """(train indices, validation indices) of the training split; (None, None) when val_size
    is 0, so the training loader reads the whole split."""
    if not config.val_size:
        return None, None
    return holdout_split(split_labels(manifest, "train"), config.val_size)


def build_checked_networks(config: RunConfig, data: Data, ranks: Ranks, device: torch.device):
    """`build_networks` for this run (SyncBatchNorms under `sync_bn` on several ranks), refused
    when they cannot train on what the run feeds them: SyncBatchNorm off CUDA, an image size
    the network cannot take, or a share of the batch smaller than the method mixes."""
    sync_bn = config.sync_bn and ranks.distributed
    if sync_bn and device.type != "cuda":
        raise ConfigError(
            "sync_bn needs CUDA devices (torch's SyncBatchNorm runs on GPUs only); "
            "drop --sync-bn for a CPU run"
        )
    model, method, ema = build_networks(config, data.manifest, device, sync_bn=sync_bn)
    check_input_size(
        model, config.model, data.manifest.channels, data.train_loader.recipe.image_size
    )
    distributed.check_method_batch(
        config.batch_size, ranks.world_size, config.method, getattr(method, "min_batch_size", 1)
    )
    return model, method, ema


def build_optimisation(config: RunConfig, model: nn.Module, method: Method, device: torch.device):
    """(optimiser, gradient scaler, loss guard): the optimiser over the model's and the method's
    parameters in their groups (optim.param_groups: no weight decay on norms and biases, the
    mix block's own learning rate), the scaler fp16 needs, and the guard that stops a run whose
    losses stop being finite (its loss counts summed over the ranks)."""
    named = chain(model.named_parameters(prefix="model"), method.named_parameters(prefix="method"))
    optimizer = build_optimizer(config, param_groups(config, named, method.mix_block_parameters()))
    scaler = grad_scaler(config.precision, device.type)
    guard = LossGuard(
        config.nonfinite_loss_limit, device, config.lr, reduce=distributed.all_reduce_sum
    )
    return optimizer, scaler, guard


def resumable_state(
    config: RunConfig, resume: bool | str, allow_code_change: bool = False
) -> tuple[dict | None, dict]:
    """The checkpoint to resume from (None: start anew) and the allowed config changes it
    takes (checkpoint.check_resume refuses the others, and a change of code version unless
    `allow_code_change`). `resume` True resumes if there is a checkpoint and says so in one
    line if there is none; "must" fails instead."""
    out = Path(config.output_dir)
    state = load_checkpoint(out, keys=RESUME_KEYS) if resume else None
    if state is None:
        if resume == "must":
            raise CheckpointError(
                f"--resume must: {out} holds no {CHECKPOINT_NAME}; train "
                "there first, or drop `must` to start anew when there is none"
            )
        if resume:
            log.info("--resume: no %s in %s; starting a new run", CHECKPOINT_NAME, out)
        return None, {}
    return state, check_resume(state, config, out, allow_code_change)


def networks(run: Run) -> list[nn.Module]:
    return [m for m in (run.model, run.method, run.ema) if m is not None]


def restore(run: Run, state: dict[str, Any], changes: dict[str, Any]) -> None:
    """Put the checkpoint's state back into the freshly built run, so that it goes on exactly
    as if it had not stopped: weights, optimiser, scaler, RNG streams, counters and history,
    and where within an epoch it stopped. Rank 0 says where it resumes, and under which code
    when --allow-code-change let another version's checkpoint through (`changes`)."""
    run.model.load_state_dict(state["model"])
    run.method.load_state_dict(state["method"])
    if run.ema is not None:
        run.ema.load_state_dict(state["ema"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.scaler.load_state_dict(state["scaler"])
    set_rng_state(state["rng"])
    run.start_epoch, run.step = state["epoch"], state["step"]
    run.history, run.run_id = state["history"], state["run_id"]
    run.guard.seen = state.get("nonfinite_losses", 0)
    if state.get("epoch_step", 0):
        run.within_epoch = WithinEpoch(state["epoch_step"], state["epoch_totals"], state["rng"])
    if not run.ranks.is_main:
        return
    within = run.within_epoch
    log.info(
        "resumed from %s at epoch %d (step %d%s)",
        run.out,
        run.start_epoch,
        run.step,
        f", batch {within.batches_done} of the epoch" if within else "",
    )
    if "code_version" in changes:
        log.warning(
            "--allow-code-change: %s was written by code %s; continuing it under %s",
            run.out,
            *changes["code_version"],
        )


def start_writing(run: Run, provenance: Provenance, changes: dict[str, Any]) -> None:
    """Rank 0, once every check has passed: take the folder's lock, clear what a killed write
    left, save config.json (and provenance.json, when there is provenance) and open the MLflow
    run. The lock is released again when any of it fails, so that a retry is not refused."""
    config, out = run.config, run.out
    path = path_taken(run)
    log.info("training path: %s", ", ".join(f"{k} {v}" for k, v in path.items()))
    out.mkdir(parents=True, exist_ok=True)
    run.lock = run_lock.acquire(out, run.run_id)
    try:
        remove_partial_writes(out)
        config.save(out / "config.json")
        if provenance != Provenance():
            provenance.save(out)
        start_tracking(run, provenance, changes, path)
    except BaseException:
        run.lock.release()
        raise


def start_tracking(
    run: Run, provenance: Provenance, changes: dict[str, Any], path: dict[str, str]
) -> None:
    """Open the run's MLflow run (a new one, or the resumed run's own) and record what it
    trains with: the config and its resolved options, the training path, the dataset's
    version and, when resumed, what the resume changed. The lock learns the MLflow run's id."""
    config, manifest = run.config, run.data.manifest
    # MLflow's system metrics (CPU, memory; GPU utilisation and memory through NVIDIA's
    # management library) for GPU runs, where a starved GPU is the thing to see
    run.tracker = Tracker(
        config,
        manifest.sha256,
        run_id=run.run_id,
        extra_tags=provenance.tags,
        system_metrics=run.device.type == "cuda",
    )
    run.run_id = run.tracker.run_id
    run.lock.set_run_id(run.run_id)
    options = options_with_defaults(config.method, config.method_args)
    run.tracker.log_params(
        {
            **setup_params(options, recipe_params(run.data.train_loader)),
            **{f"engine.{k}": v for k, v in path.items()},
        }
    )
    run.tracker.log_dataset(
        config.dataset,
        provenance.data_version or manifest.sha256,
        provenance.data_source or str(manifest.root),
    )
    if changes:
        run.tracker.log_resume(changes, run.start_epoch)
    if run.history:  # resumed: epochs checkpointed by a process killed before it logged them
        run.tracker.catch_up(run.history)


def path_taken(run: Run) -> dict[str, str]:
    """Which way this run computes, resolved from what the config leaves to the machine: the
    device (with its name and the process count), the precision, the loader kind `auto` chose
    and how a step runs (eager: one kernel launch at a time; there is no graphed step yet)."""
    device = run.device
    name = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"{torch.get_num_threads()} threads"
    )
    processes = f", {run.ranks.world_size} processes" if run.ranks.distributed else ""
    return {
        "device": f"{device} ({name}{processes})",
        "precision": run.config.precision,
        "loader": run.data.train_loader.kind,
        "step": "eager",
    }


def recipe_params(loader: Loader) -> dict[str, Any]:
    """The loader's augmentation recipe with the normalisation constants it actually uses."""
    recipe = {k: list(v) if isinstance(v, tuple) else v for k, v in vars(loader.recipe).items()}
    return {**recipe, "mean": list(loader.mean), "std": list(loader.std)}


# --- one epoch ----------------------------------------------------------------------------------


def train_one_epoch(run: Run, epoch: int) -> dict[str, float]:
    """Train for one epoch; returns its train_loss, lr and images_per_sec, over all ranks.

    Resumed within the epoch (run.within_epoch), it skips the batches already trained: the
    epoch's plan and augmentation follow from (seed, epoch) alone, so the rest of the epoch reads
    what it would have read, and the RNG streams are restored after the skip."""
    config, model, method, device = run.config, run.model, run.method, run.device
    model.train()
    method.train()
    run.data.train_loader.set_epoch(epoch)
    within = run.within_epoch if epoch == run.start_epoch else None
    start = within.batches_done if within else 0
    loss_sum = torch.zeros((), device=device)
    counted, seen, earlier_seconds = 0, 0, 0.0  # counted: the steps not skipped for a bad loss
    batches = iter(run.data.train_loader)
    if within:
        if run.ranks.is_main:  # the sums over every rank, on rank 0 alone
            totals = within.totals
            loss_sum = totals["loss_sum"].to(device)
            counted, seen, earlier_seconds = totals["counted"], totals["seen"], totals["seconds"]
        for _ in range(start):
            next(batches)
        set_rng_state(within.rng)  # reading the batches may draw (a DataLoader's seed)
    lr = run.optimizer.param_groups[0]["lr"]
    started = time.perf_counter()
    bar = progress(
        batches,
        f"epoch {epoch + 1}/{config.epochs}",
        unit="batch",
        total=run.steps_per_epoch - start,
        enabled=config.progress and run.ranks.is_main,
    )
    for index, (images, labels) in enumerate(bar, start=start):
        lr = set_lr(run.optimizer, config, run.step, run.steps_per_epoch)
        with autocast(config.precision, device.type):
            loss, _ = method.training_step(model, images, labels, run.step)
        if run.guard.skip(loss, run.step, epoch):
            run.optimizer.zero_grad(set_to_none=True)
            run.step += 1
        else:
            optimizer_step(
                loss,
                run.optimizer,
                run.scaler,
                config.grad_clip,
                reduce_gradients=distributed.average_gradients,
            )
            method.after_optimizer_step(model, run.step, run.total_steps)
            if run.ema is not None:
                run.ema.update(model, run.step)
            loss_sum += loss.detach()
            seen += images.shape[0]
            counted += 1
            run.step += 1
            if run.step % 10 == 0:  # a host sync; not every step
                if not run.ranks.distributed:  # all ranks check together, at the epoch's end
                    run.guard.check(run.step, epoch)
                if isinstance(bar, tqdm):
                    rate = seen * run.ranks.world_size / (time.perf_counter() - started)
                    bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{lr:.4g}", img_s=f"{rate:.0f}")
        # the epoch's last batch is followed by its own checkpoint
        if index + 1 < run.steps_per_epoch and step_checkpoint_due(run):
            seconds = earlier_seconds + time.perf_counter() - started
            save_step_checkpoint(run, epoch, index + 1, loss_sum, counted, seen, seconds)
    # global figures, the same on every rank: the loss over all ranks' steps that counted, and
    # every rank's images over the slowest rank's time
    train_time = distributed.all_reduce_max(
        torch.tensor(
            earlier_seconds + time.perf_counter() - started, dtype=torch.float64, device=device
        )
    ).item()
    run.guard.check(run.step, epoch)  # every rank, before the epoch counts
    totals = distributed.all_reduce_sum(
        torch.stack(
            [
                loss_sum.double(),
                torch.tensor(seen, dtype=torch.float64, device=device),
                torch.tensor(counted, dtype=torch.float64, device=device),
            ]
        )
    )
    loss_total, seen_total, counted_total = totals.tolist()
    return {
        "epoch": epoch + 1,
        "train_loss": loss_total / counted_total if counted_total else float("nan"),
        "lr": lr,
        "images_per_sec": seen_total / train_time,
        "train_seconds": train_time,
    }


def step_checkpoint_due(run: Run) -> bool:
    """Whether to checkpoint at this step boundary: `checkpoint_minutes` have passed since the
    last checkpoint, or a SIGTERM asked the run to stop. Under torchrun the ranks decide together
    (any rank's reason counts for all, a SIGTERM too) at every 10th step, where the loop syncs
    anyway."""
    minutes = run.config.checkpoint_minutes
    due = bool(minutes and time.monotonic() - run.last_checkpoint >= minutes * 60)
    if not run.ranks.distributed:
        return due or run.stop.requested
    if run.step % 10:
        return False
    due, stop = distributed.all_reduce_max(
        torch.tensor([int(due), int(run.stop.requested)], dtype=torch.int64, device=run.device)
    ).tolist()
    run.stop.requested = bool(stop)
    return bool(due or stop)


def stop_agreed(run: Run) -> bool:
    """Whether a SIGTERM asked the run to stop, on any rank (every rank calls it)."""
    if run.ranks.distributed:
        run.stop.requested = bool(
            distributed.all_reduce_max(
                torch.tensor(int(run.stop.requested), dtype=torch.int64, device=run.device)
            ).item()
        )
    return run.stop.requested


def save_step_checkpoint(
    run: Run,
    epoch: int,
    epoch_step: int,
    loss_sum: torch.Tensor,
    counted: int,
    seen: int,
    seconds: float,
) -> None:
    """Checkpoint within epoch `epoch` after `epoch_step` of its batches (every rank calls it);
    then stop the run if a SIGTERM asked for it."""
    run.guard.check(run.step, epoch)  # a non-finite loss stops the run before it is saved
    if run.ranks.distributed:  # the epoch's sums so far over every rank, saved by rank 0
        summed = distributed.all_reduce_sum(
            torch.stack(
                [
                    loss_sum.double(),
                    torch.tensor(float(counted), dtype=torch.float64, device=run.device),
                    torch.tensor(float(seen), dtype=torch.float64, device=run.device),
                ]
            )
        )
        loss_sum, counted, seen = summed[0].to(loss_sum.dtype), int(summed[1]), int(summed[2])
    if run.ranks.is_main:
        totals = {
            "loss_sum": loss_sum.detach().cpu(),
            "counted": counted,
            "seen": seen,
            "seconds": seconds,
        }
        save_checkpoint(checkpoint_state(run, epoch, epoch_step, totals), run.out)
    distributed.barrier()
    run.last_checkpoint = time.monotonic()
    if run.stop.requested:
        raise Preempted(
            f"stopped by {run.stop.signal_name or 'SIGTERM'} at step {run.step} (epoch "
            f"{epoch + 1}, batch {epoch_step} of {run.steps_per_epoch}) after checkpointing it in "
            f"{run.out / CHECKPOINT_NAME}; start it again with --resume (a retried pipeline step "
            "does) to continue from there"
        )


# --- evaluate and log ---------------------------------------------------------------------------


def evaluate_and_log(run: Run, epoch: int, metrics: dict[str, float]) -> dict[str, float]:
    """Evaluate the online and the EMA network on the validation and the test split, log the
    epoch to MLflow and checkpoint it (rank 0), keep its networks if validation selects them,
    and print its summary line."""
    distributed.average_batchnorm_statistics(networks(run))
    metrics = dict(metrics)
    started = time.perf_counter()
    for split, loader in (("val", run.data.val_loader), ("test", run.data.test_loader)):
        if loader is not None:
            metrics.update(evaluate_split(run, split, loader, f"epoch {epoch + 1} {split}"))
    # the slowest rank's time, as for training: every rank's record is the same
    metrics["eval_seconds"] = distributed.all_reduce_max(
        torch.tensor(time.perf_counter() - started, dtype=torch.float64, device=run.device)
    ).item()
    run.history.append(metrics)
    run.guard.check_metrics(metrics, epoch)  # the same on every rank: the metrics are reduced
    # MLflow hears of the epoch only once it is checkpointed: a tracking server lost now costs
    # no training. The sample grid is drawn before the checkpoint all the same (the run goes
    # on from the state it leaves) and held for MLflow until after it.
    figures: list[tuple[Any, str]] = []
    if run.config.log_images_every and (epoch + 1) % run.config.log_images_every == 0:
        held = SimpleNamespace(log_figure=lambda *figure: figures.append(figure))
        log_sample_grid(
            held if run.tracker is not None else None,
            run.method,
            run.model,
            run.data.test_loader,
            epoch + 1,
            run.data.manifest.classes,
        )
    if run.tracker is not None:
        run.run_id = run.tracker.run_id
    if run.ranks.is_main:
        if run.data.val_loader is not None and selected_epoch(run.history) == epoch + 1:
            save_checkpoint(selected_state(run, epoch + 1), run.out, SELECTED_NAME)
        save_checkpoint(checkpoint_state(run, epoch + 1), run.out)
        print(summary_line(metrics), flush=True)
    if run.tracker is not None:
        run.tracker.log_metrics(metrics, step=epoch + 1)
        for figure, name in figures:
            run.tracker.log_figure(figure, name)
    distributed.barrier()  # no rank runs ahead of a checkpoint that is not yet on disk
    run.last_checkpoint = time.monotonic()
    return metrics


def evaluate_split(run: Run, split: str, loader: Loader, desc: str) -> dict[str, float]:
    """SPLIT_NAME of the online network and SPLIT_NAME_ema of the EMA network."""
    shown = run.config.progress and run.ranks.is_main
    results = {}
    for suffix, network in (("", run.model), ("_ema", run.ema_network)):
        if network is not None:
            batches = progress(
                loader, f"{desc}{suffix.replace('_', ', ')}", unit="batch", enabled=shown
            )
            results.update(
                {
                    f"{split}_{k}{suffix}": v
                    for k, v in evaluate(
                        network,
                        batches,
                        precision=run.config.precision,
                        sharded=run.ranks.distributed,
                    ).items()
                }
            )
    return results


def selected_epoch(history: list[dict[str, float]]) -> int:
    """The epoch validation selects: the best val top-1 of the network that is registered (the
    EMA network when the run has one), the later epoch on a tie; the last epoch without a
    validation split."""
    last = history[-1]
    key = "val_top1_ema" if "val_top1_ema" in last else "val_top1"
    if key not in last:
        return int(last["epoch"])
    return int(max(history, key=lambda h: (h[key], h["epoch"]))["epoch"])


def selected_state(run: Run, epoch: int) -> dict[str, Any]:
    """The networks alone (what evaluation and serving need), with the epoch they are from."""
    return {
        "model": run.model.state_dict(),
        "method": run.method.state_dict(),
        "ema": run.ema.state_dict() if run.ema is not None else None,
        "epoch": epoch,
    }


def checkpoint_state(
    run: Run, epoch: int, epoch_step: int = 0, epoch_totals: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The selected state's networks plus everything an exact resume needs; `epoch` epochs
    done, and `epoch_step` batches of the next one with their running sums `epoch_totals`."""
    return {
        **selected_state(run, epoch),
        "optimizer": run.optimizer.state_dict(),
        "scaler": run.scaler.state_dict(),
        "rng": rng_state(),
        "epoch": epoch,
        "step": run.step,
        "history": run.history,
        "run_id": run.run_id,
        "config": run.config.to_dict(),
        "code_version": run.code_version,
        "nonfinite_losses": run.guard.seen,
        "epoch_step": epoch_step,
        "epoch_totals": epoch_totals,
    }


# --- the run ------------------------------------------------------------------------------------


def train(
    config: RunConfig,
    resume: bool | str = False,
    provenance: Provenance | None = None,
    allow_code_change: bool = False,
) -> TrainResult:
    """Train `config`; `provenance` None reads the one saved beside its config, if any.
    `allow_code_change` lets a resume continue a checkpoint that other code wrote."""
    if provenance is None:
        provenance = Provenance.load(config.output_dir)
    with ExitStack() as stack:
        ranks, device = stack.enter_context(distributed.process_group(config.device))
        stop = stack.enter_context(stop_on_sigterm())
        run = setup(config, resume, ranks, device, provenance, allow_code_change)
        if run.lock is not None:
            stack.callback(run.lock.release)
        run.stop, run.last_checkpoint = stop, time.monotonic()
        try:
            for epoch in range(run.start_epoch, config.epochs):
                metrics = train_one_epoch(run, epoch)
                evaluate_and_log(run, epoch, metrics)
                if epoch + 1 < config.epochs and stop_agreed(run):
                    raise Preempted(
                        f"stopped by {stop.signal_name or 'SIGTERM'} after epoch {epoch + 1} "
                        f"and its checkpoint in {run.out / CHECKPOINT_NAME}; start it again with "
                        "--resume (a retried pipeline step does) to continue from there"
                    )
            final = final_metrics(run.history)
            if run.tracker is not None:
                # the last epoch's values are logged already; only the summaries are new
                run.tracker.log_metrics(
                    {k: v for k, v in final.items() if k in SUMMARIES}, step=config.epochs
                )
                run.tracker.log_figure(training_curves(run.history), "curves/training.png")
                run.tracker.finish()
        except BaseException as exc:
            if run.tracker is not None:
                killed = isinstance(exc, (KeyboardInterrupt, Preempted))
                try:
                    run.tracker.finish(
                        "KILLED" if killed else "FAILED",
                        reason=f"{type(exc).__name__}: {exc}"
                        if not killed
                        else str(exc) or "interrupted",
                    )
                except TrackingError as unrecorded:  # what stopped the run matters more
                    log.warning("the MLflow run's end is not recorded: %s", unrecorded)
            if isinstance(exc, TrackingError) and run.history:
                # every MLflow call comes after the checkpoint of what it records
                exc.args = (
                    f"{exc}. Nothing trained is lost: {run.out / CHECKPOINT_NAME} holds epoch "
                    f"{int(run.history[-1]['epoch'])}; start it again with --resume once MLflow "
                    "answers, to continue from there",
                )
            raise
    return TrainResult(final, run.out, run.run_id, run.history)


SUMMARIES = ("test_top1_median10", "test_top1_ema_median10", "selected_epoch")


def final_metrics(history: list[dict[str, float]]) -> dict[str, float]:
    """The last epoch's val_* and test_* metrics; the paper's statistic, the median test top-1
    of the last 10 epochs, for the online and EMA networks; and the selected epoch."""
    last = history[-1]
    final = {k: v for k, v in last.items() if k.startswith(("val_", "test_"))}
    final["test_top1_median10"] = median_last(history, "test_top1")
    if "test_top1_ema" in last:
        final["test_top1_ema_median10"] = median_last(history, "test_top1_ema")
    final["selected_epoch"] = selected_epoch(history)
    return final


def summary_line(metrics: dict[str, float]) -> str:
    parts = [f"epoch {metrics['epoch']}: loss {metrics['train_loss']:.4f}"]
    for split in ("val", "test"):
        if f"{split}_top1" in metrics:
            ema = metrics.get(f"{split}_top1_ema")
            parts.append(
                f"{split} top1 {metrics[f'{split}_top1']:.2f}%"
                + (f" (ema {ema:.2f}%)" if ema is not None else "")
            )
    return "  ".join([*parts, f"{metrics['images_per_sec']:.0f} img/s"])


def log_sample_grid(
    tracker: Tracker | None, method, model, loader, epoch: int, classes: list[str] | None = None
) -> None:
    """What the method trains on (sources, masks, mixed, each column's λ and classes), drawn
    without moving the run's RNG.

    Every rank draws it (a SyncBatchNorm in the teacher waits for all of them); rank 0, the one
    with a tracker, logs it."""
    images, labels = next(iter(loader))
    with preserved_rng():
        was_training = model.training
        grid = method.sample_grid(model, images[:16], labels[:16])
        model.train(was_training)
    if tracker is not None:
        tracker.log_figure(
            sample_figure(grid.rows, loader.mean, loader.std, grid.targets, classes),
            f"samples/epoch_{epoch:04d}.png",
        )
