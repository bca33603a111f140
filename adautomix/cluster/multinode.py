"""Training on several nodes, through whichever operator the cluster runs: Kubeflow Trainer's
TrainJob (adautomix/cluster/trainjob.py, the default) or the older training operator's PyTorchJob
(adautomix/cluster/pytorchjob.py). The train step on several nodes (components/train_job.py)
calls `train_on_nodes`; both jobs get the same request (adautomix/cluster/job.py JobRequest) and
end in the same checkpoint folder, so what follows does not care which ran."""

from __future__ import annotations

from typing import Any, Callable

from ..config import ConfigError

TRAINERS = ("trainjob", "pytorchjob")


def check_trainer(trainer: str) -> str:
    if trainer not in TRAINERS:
        raise ConfigError(
            f"trainer {trainer!r} is not one of {', '.join(TRAINERS)}: trainjob for "
            "Kubeflow Trainer v2, pytorchjob for the training operator v1 "
            "(docs/cluster.md)"
        )
    return trainer


def train_on_nodes(
    config_path: str,
    output_dir: str,
    gpus_per_node: int,
    task_config: Any,
    job_options: dict,
    pipeline: str = "",
    pipeline_run_id: str = "",
    say: Callable[[str], None] = print,
    poll_interval: float = 15,
) -> str:
    """Create the job that `job_options` (JobOptions as JSON: the trainer, the node count, the
    pods' settings) describe for the config saved at `config_path`, in this pod's namespace, or
    adopt the one an earlier attempt of this step made, and wait for it to finish; returns the
    job's name. The job is named after the pipeline run and the checkpoint folder, labelled
    with both, and owned by this pod."""
    from .job import JobOptions, JobRequest, job_name, node_settings, pod_owner, run_labels
    from .pod import in_cluster_client
    from .launch import pytorchjob_node_command, trainer_node_command

    options = JobOptions.from_dict(job_options)
    labels = run_labels(pipeline, pipeline_run_id, output_dir)
    options = JobOptions.from_dict({**options.to_dict(), "labels": {**options.labels, **labels}})
    api_client, namespace = in_cluster_client()
    if check_trainer(options.trainer) == "pytorchjob":
        from .pytorchjob import pytorchjob_manifest as manifest
        from .pytorchjob import run_pytorchjob as run

        command = pytorchjob_node_command(config_path)
    else:
        from .trainjob import run_trainjob as run
        from .trainjob import trainjob_manifest as manifest

        command = trainer_node_command(config_path)
    name = job_name(pipeline_run_id, output_dir)
    request = JobRequest(
        name,
        command,
        gpus_per_node,
        node_settings(task_config),
        output_dir,
        options,
        owner=pod_owner(api_client, namespace, say=say),
    )
    run(
        manifest(request),
        namespace,
        api_client,
        schedule_timeout=options.schedule_timeout,
        poll_interval=poll_interval,
        say=say,
    )
    return name
