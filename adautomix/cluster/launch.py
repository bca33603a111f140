"""The command lines that start `adautomix train` under torch's own launcher.

One pod with G GPUs runs `python -m torch.distributed.run --standalone --nproc_per_node G -m
adautomix.cli train ...` (torchrun as a module of the interpreter that runs the step, so the pod
needs no `torchrun` on its PATH). A node of a Kubeflow Trainer TrainJob runs `torchrun -m
adautomix.cli train ...` with no sizes at all: Trainer's torch runtime puts the node count, the
processes per node, the node rank and the rendezvous address in the PET_* environment variables,
which torchrun reads as its defaults. A node of the training operator's PyTorchJob runs the same,
naming only the rendezvous host: the operator sets PET_NNODES, PET_NPROC_PER_NODE and PET_NODE_RANK
but gives the master's address and port only as MASTER_ADDR and MASTER_PORT, which torchrun does
not read (its own default, 127.0.0.1, would leave every worker waiting on itself); Kubernetes
expands the $(VAR) references from the container's environment when the container starts.

Both train the configuration saved in OUTPUT_DIR/config.json and resume from the checkpoint
there, so a retried step or a re-submitted TrainJob continues where the last one stopped.
(No torch import here: the pipeline builds these lines on machines without it.)"""

from __future__ import annotations

import sys
from pathlib import Path


def train_arguments(config_path: str | Path) -> list[str]:
    """`adautomix train` on a saved config, resuming from the checkpoint next to it, if any."""
    return ["-m", "adautomix.cli", "train", "--config", str(config_path), "--resume"]


def single_pod_command(
    nproc_per_node: int, config_path: str | Path, python: str = sys.executable
) -> list[str]:
    """G processes in this pod, one per GPU; the rendezvous is local (--standalone)."""
    if nproc_per_node < 1:
        raise ValueError(f"nproc_per_node must be >= 1, got {nproc_per_node}")
    return [
        python,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nnodes",
        "1",
        "--nproc_per_node",
        str(nproc_per_node),
        *train_arguments(config_path),
    ]


def trainer_node_command(config_path: str | Path) -> list[str]:
    """What each node of a TrainJob runs; Trainer's PET_* variables size the run."""
    return ["torchrun", *train_arguments(config_path)]


def pytorchjob_node_command(config_path: str | Path) -> list[str]:
    """What each replica of a PyTorchJob runs: PET_* size the run, MASTER_* locate rank 0."""
    return [
        "torchrun",
        "--master-addr",
        "$(MASTER_ADDR)",
        "--master-port",
        "$(MASTER_PORT)",
        *train_arguments(config_path),
    ]
