"""Distributed set-up: one process per device, started by torchrun, gradients averaged by hand.

`torchrun --nproc_per_node N [--nnodes K ...] -m adautomix.cli train ...` starts N processes per
node and gives each RANK, WORLD_SIZE, LOCAL_RANK and the rendezvous address in its environment.
`process_group()` reads them, joins the group (NCCL on GPUs, Gloo on the CPU), binds the process
to `cuda:LOCAL_RANK` and leaves the group on exit, error or not. Without them (a plain
`adautomix train`) the run is one process and every helper here is a no-op.

The choices, and why (docs/distributed.md says more):
- Gradients: an explicit all-reduce (the mean) of every trainable parameter's gradient after the
  backward and before clipping and the optimiser step, rather than DDP's backward hooks. AdAutoMix
  and AutoMix back-propagate part by part through `torch.autograd.grad` (GradientBank), PuzzleMix
  takes an input gradient of its own and several methods call `model.features` on the bare
  module; none of these go through a DDP wrapper's hooks, and one reduction after all of them
  covers every method, the heads and the generator alike, with the same maths as one process.
  What it gives up is overlapping the reduction with the backward.
- BN running statistics (online network, EMA teacher, engine EMA): each rank's follow its own
  shard during an epoch and are averaged across ranks at the end of it, before evaluation and
  the checkpoint (timm's distribute_bn "reduce"). The running mean is linear in the batch means,
  so its average is the running mean of the global batch's means; one rank's would see 1/N of
  the data. Under `--sync-bn` they are equal on every rank already.
- Random streams: every rank seeds torch, numpy and Python with the run's seed, so the method's
  draws (N, λ, the adversarial phase, permutations of the local batch, PuzzleMix's grid) are the
  same on every rank, and every rank takes the same branch of a step and reduces the same
  gradients. Augmentation is per sample and follows the sample's place in the global epoch
  order (adautomix/data/epoch_plan.py), so it differs between samples and ranks as it would in one
  process, and does not depend on the number of ranks.
- Evaluation: each rank evaluates its shard of the test split; the metrics' sums and counts are
  all-reduced (adautomix/eval), so every rank holds the full-set figures.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from ..config import ConfigError
from ..models.backbone import running_stat_batch_norms

log = logging.getLogger("adautomix.distributed")

# How long a rank waits in a collective for the others: a rank that died or hangs ends the run
# with an error after this long instead of holding the others forever.
COLLECTIVE_TIMEOUT = datetime.timedelta(minutes=30)


@dataclass(frozen=True)
class Ranks:
    """Where this process stands in the run: one process is rank 0 of a world of 1."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def ranks_from_environment() -> Ranks:
    """The ranks torchrun (or Kubeflow Trainer, which runs torchrun) put in the environment."""
    if "WORLD_SIZE" not in os.environ:
        return Ranks()
    try:
        return Ranks(
            int(os.environ["RANK"]),
            int(os.environ["WORLD_SIZE"]),
            int(os.environ.get("LOCAL_RANK", "0")),
        )
    except (KeyError, ValueError) as exc:
        raise ConfigError(
            f"WORLD_SIZE is set but RANK/LOCAL_RANK are missing or not integers "
            f"({exc}); start distributed runs with torchrun"
        ) from exc


def resolve_device(name: str, local_rank: int = 0, world_size: int = 1) -> torch.device:
    """The device of this process: "auto" is CUDA when there is a GPU, the CPU otherwise; a
    process of a multi-process run gets GPU LOCAL_RANK of its node."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            "device 'cuda' was asked for but CUDA is not available; use --device cpu or auto"
        )
    if name != "cuda" or world_size == 1:
        return torch.device(name)
    visible = torch.cuda.device_count()
    if local_rank >= visible:
        raise ConfigError(
            f"process with LOCAL_RANK {local_rank} needs a GPU of its own, but this node shows "
            f"{visible} (CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')}); "
            f"start at most {visible} processes per node (torchrun --nproc_per_node {visible}) "
            "or ask for as many GPUs as processes (--num-gpus)"
        )
    torch.cuda.set_device(local_rank)
    return torch.device("cuda", local_rank)


# The two batch checks live here, once, because the batch's split over the processes is what
# they are about: the engine makes them when a run starts, steps.check_run (and through it a
# pipeline, before it compiles) makes the same ones from a process count it is told.


def rank_batch_size(batch_size: int, world_size: int, layout: str = "") -> int:
    """The share of the (global) batch each of `world_size` processes computes; refused when the
    batch does not split evenly. `layout` says where the process count comes from, for the
    message (a pipeline's "2 per node x 3 node(s)")."""
    if batch_size % world_size:
        raise ConfigError(
            f"batch_size {batch_size} is the global batch and must split evenly over the "
            f"{world_size} processes{f' ({layout})' if layout else ''}; use a multiple of "
            f"{world_size}"
        )
    return batch_size // world_size


def check_method_batch(
    batch_size: int, world_size: int, method: str, smallest: int, layout: str = ""
) -> int:
    """Each process's share of the batch (returned) holds the `smallest` number of images
    `method` mixes into one sample (its min_batch_size); a share too small would fail at the
    first step, after the run had started writing."""
    share = rank_batch_size(batch_size, world_size, layout)
    if share >= smallest:
        return share
    if world_size > 1:
        raise ConfigError(
            f"each of the {world_size} processes gets {share} images of the batch of "
            f"{batch_size}, but method {method!r} mixes {smallest} per sample; use "
            f"batch_size >= {smallest * world_size}"
        )
    raise ConfigError(
        f"batch_size {batch_size} is smaller than method {method!r} needs ({smallest}: it mixes "
        "that many images into each sample); raise the batch size or lower the method's "
        "mix_samples"
    )


@contextlib.contextmanager
def process_group(device_name: str) -> Iterator[tuple[Ranks, torch.device]]:
    """(this process's ranks, its device) for the length of a run.

    A group someone else started (a test, a notebook) is used as it is and left to its owner."""
    if dist.is_available() and dist.is_initialized():
        ranks = Ranks(
            dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0"))
        )
        yield ranks, resolve_device(device_name, ranks.local_rank, ranks.world_size)
        return
    ranks = ranks_from_environment()
    device = resolve_device(device_name, ranks.local_rank, ranks.world_size)
    if not ranks.distributed:
        yield ranks, device
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(
        backend, rank=ranks.rank, world_size=ranks.world_size, timeout=COLLECTIVE_TIMEOUT
    )
    if ranks.is_main:
        log.info("process group: %d ranks, backend %s", ranks.world_size, backend)
    try:
        yield ranks, device
    finally:
        dist.destroy_process_group()


def _world() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def barrier() -> None:
    if _world() > 1:
        dist.barrier()


def all_reduce_sum(values: torch.Tensor) -> torch.Tensor:
    """`values` summed over ranks, in place (unchanged in one process)."""
    if _world() > 1:
        dist.all_reduce(values)
    return values


def all_reduce_max(values: torch.Tensor) -> torch.Tensor:
    """`values`' elementwise maximum over ranks, in place (unchanged in one process)."""
    if _world() > 1:
        dist.all_reduce(values, op=dist.ReduceOp.MAX)
    return values


def average_gradients(params: Iterable[nn.Parameter]) -> None:
    """Replace every gradient by its mean over ranks, in one flat all-reduce per dtype and device.

    A parameter without a gradient on some rank counts as zero there; one without a gradient on
    every rank keeps none, so the optimiser skips it (no weight decay, no momentum) as it would
    in one process."""
    world = _world()
    if world == 1:
        return
    groups: dict[tuple[torch.dtype, torch.device], list[nn.Parameter]] = {}
    for p in params:
        groups.setdefault((p.dtype, p.device), []).append(p)
    for group in groups.values():
        # the last len(group) entries say which ranks had a gradient at all
        flat = torch.cat(
            [(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in group]
            + [
                torch.tensor(
                    [float(p.grad is not None) for p in group],
                    dtype=group[0].dtype,
                    device=group[0].device,
                )
            ]
        )
        dist.all_reduce(flat)
        flat.div_(world)
        had = flat[-len(group) :] > 0
        for p, chunk, present in zip(
            group, flat[: -len(group)].split([p.numel() for p in group]), had.tolist()
        ):
            if not present:
                p.grad = None
            elif p.grad is None:
                p.grad = chunk.view_as(p).clone(memory_format=torch.preserve_format)
            else:
                p.grad.copy_(chunk.view_as(p))


def average_batchnorm_statistics(modules: Iterable[nn.Module]) -> None:
    """Average the BN running means and variances of `modules` over ranks, so that every rank
    evaluates and checkpoints the same statistics. The batch counters agree already."""
    world = _world()
    if world == 1:
        return
    stats = [
        t
        for module in modules
        for m in running_stat_batch_norms(module)
        for t in (m.running_mean, m.running_var)
    ]
    if not stats:
        return
    flat = torch.cat([t.reshape(-1) for t in stats])
    dist.all_reduce(flat)
    flat.div_(world)
    for t, chunk in zip(stats, flat.split([t.numel() for t in stats])):
        t.copy_(chunk.view_as(t))


def broadcast_state(modules: Iterable[nn.Module]) -> None:
    """Give every rank rank 0's parameters and buffers, as DDP does when it wraps a model, so
    that no difference in construction (a pretrained download, a stray draw) survives."""
    if _world() == 1:
        return
    with torch.no_grad():
        for module in modules:
            for tensor in (*module.parameters(), *module.buffers()):
                dist.broadcast(tensor.data, src=0)
