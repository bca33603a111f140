"""The train step: train in a persistent checkpoint folder, resuming from it when retried.

One function serves as two components: `train` trains in its own pod, as `num_gpus` processes
of torch's launcher; `train_job` (components/train_job.py, the same function with the task
config passed through) has a job of several nodes train and waits for it. Both take the same
run and leave the same checkpoint, so the steps after them do not care which ran."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Model, Output

from components import BASE_IMAGE


def train(
    prepared: Input[Dataset],
    config: dict,
    overrides: dict,
    workspace: str,
    pipeline_name: str,
    pipeline_run_id: str,
    pipeline_run_name: str,
    checkpoint: Output[Model],
    num_gpus: int = 1,
    job_options: dict = None,
    node: dsl.TaskConfig = None,
) -> str:
    """Train one configuration (`config`, RunConfig fields, with a sweep's `overrides` on top,
    on the data step's dataset) and return its MLflow run id. Checkpoints go to
    WORKSPACE/runs/checkpoints/KEY, KEY naming the configuration and the data version, so a
    retried or re-run task resumes there. The artifact is the final config.json, checkpoint.pt
    and selected.pt, with the run id and the final metrics as metadata. The MLflow run records
    the DVC version and remote as its dataset and the pipeline run as tags. The data version is
    the prepared dataset's (its artifact's metadata).

    Without `job_options` this pod trains, as `num_gpus` processes of torch's launcher when it
    is more than one (one per GPU of the pod). With them (JobOptions as JSON: the trainer, the
    node count, the pods' settings), job_options["num_nodes"] nodes of `num_gpus` GPUs train
    through a job of job_options["trainer"] (trainjob: a TrainJob; pytorchjob: a PyTorchJob),
    with the volumes, environment, node selector, affinity and tolerations of this step's
    task config (`node`); a retried step adopts the job of the attempt before (or replaces it,
    if it failed), and the step fails with the job's reason if it fails, or if it gets no
    running node within job_options["schedule_timeout"] seconds."""
    import shutil

    from adautomix.errors import exit_on_error
    from adautomix.steps import finished_result, prepare_run, step_arguments, train_step

    made = {}
    with exit_on_error():  # one line and exit status 2 or 1, as from the CLI
        arguments = step_arguments(
            workspace,
            prepared.metadata,
            config,
            overrides,
            pipeline_name,
            pipeline_run_id,
            pipeline_run_name,
        )
        if job_options:
            from adautomix.cluster.multinode import train_on_nodes

            output_dir = prepare_run(**arguments).output_dir
            made[job_options["trainer"]] = train_on_nodes(
                f"{output_dir}/config.json",
                output_dir,
                num_gpus,
                node,
                job_options,
                pipeline_name,
                pipeline_run_id,
            )
            result = finished_result(output_dir)
        else:
            # progress stays on: with no terminal it is a log line per tenth of each epoch
            result = train_step(nproc=num_gpus, **arguments)
    shutil.copytree(result.output_dir, checkpoint.path)
    checkpoint.metadata.update(run_id=result.run_id, **made, **result.metrics)
    return result.run_id


train = dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)(train)
