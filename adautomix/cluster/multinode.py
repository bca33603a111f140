"""Training on several nodes, through whichever operator the cluster runs: Kubeflow Trainer's
TrainJob (adautomix/cluster/trainjob.py, the default) or the older training operator's PyTorchJob
(adautomix/cluster/pytorchjob.py). The train_job component calls `train_on_nodes`; both jobs get the same
pod settings and end in the same checkpoint folder, so what follows does not care which ran."""

from __future__ import annotations

from typing import Any

from ..config import ConfigError

TRAINERS = ("trainjob", "pytorchjob")


def check_trainer(trainer: str) -> str:
    if trainer not in TRAINERS:
        raise ConfigError(f"trainer {trainer!r} is not one of {', '.join(TRAINERS)}: trainjob for "
                          "Kubeflow Trainer v2, pytorchjob for the training operator v1 "
                          "(docs/cluster.md)")
    return trainer


def train_on_nodes(trainer: str, config_path: str, image: str, num_nodes: int, gpus_per_node: int,
                   task_config: Any, output_dir: str, gpu_resource: str, runtime: str,
                   schedule_timeout: float) -> str:
    """Create the job of `trainer` for the config saved at `config_path`, in this pod's namespace,
    and wait for it to finish; returns the job's name. `runtime` is the TrainJob's
    ClusterTrainingRuntime (a PyTorchJob has none)."""
    from .job import in_cluster_client, job_name, node_settings
    from .launch import pytorchjob_node_command, trainer_node_command

    node, name = node_settings(task_config), job_name()
    if check_trainer(trainer) == "pytorchjob":
        from .pytorchjob import pytorchjob_manifest, run_pytorchjob

        job = pytorchjob_manifest(name, image, pytorchjob_node_command(config_path), num_nodes,
                                  gpus_per_node, node, output_dir, gpu_resource=gpu_resource)
        run = run_pytorchjob
    else:
        from .trainjob import run_trainjob, trainjob_manifest

        job = trainjob_manifest(name, image, trainer_node_command(config_path), num_nodes,
                                gpus_per_node, node, output_dir, gpu_resource=gpu_resource,
                                runtime=runtime)
        run = run_trainjob
    api_client, namespace = in_cluster_client()
    run(job, namespace, api_client, schedule_timeout=schedule_timeout)
    return name
