"""The train step on several nodes: a Kubeflow Trainer TrainJob, or the older training operator's
PyTorchJob (`job_options["trainer"]`), trains; this step waits for it.

The pipeline gives this task the workspace volume, secrets, node selector and tolerations of the
single-pod train step; Kubeflow Pipelines passes them through to the step as a dsl.TaskConfig
(task_config_passthroughs), and the step writes them into the job's nodes. The step's own pod
takes only the volume (to read the finished checkpoint), the environment and a small CPU and
memory request: its node selector and tolerations go to the nodes alone, and the nodes' GPUs
(`num_gpus` each), CPU, memory, /dev/shm, pull secrets, labels, annotations, grace period and
deadline come from `job_options`, which pipeline/cluster.py's job_options builds at compile time.
The output is the same as the single-pod step's: the final config.json and checkpoint.pt as the
`checkpoint` artifact, with the MLflow run id and the final metrics, for evaluate and register."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Model, Output

from components import BASE_IMAGE

# The waiting pod's own small CPU and memory apply to it; the job options' replace them for the
# nodes (adautomix/cluster/job.py node_resources).
PASSTHROUGHS = [
    dsl.TaskConfigPassthrough(field=dsl.TaskConfigField.RESOURCES, apply_to_task=True),
    dsl.TaskConfigField.KUBERNETES_TOLERATIONS,
    dsl.TaskConfigField.KUBERNETES_NODE_SELECTOR,
    dsl.TaskConfigField.KUBERNETES_AFFINITY,
    dsl.TaskConfigPassthrough(field=dsl.TaskConfigField.ENV, apply_to_task=True),
    dsl.TaskConfigPassthrough(field=dsl.TaskConfigField.KUBERNETES_VOLUMES, apply_to_task=True),
]


@dsl.component(
    base_image=BASE_IMAGE, install_kfp_package=False, task_config_passthroughs=PASSTHROUGHS
)
def train_job(
    prepared: Input[Dataset],
    config: dict,
    overrides: dict,
    workspace: str,
    pipeline_name: str,
    pipeline_run_id: str,
    pipeline_run_name: str,
    num_gpus: int,
    job_options: dict,
    node: dsl.TaskConfig,
    checkpoint: Output[Model],
    data_version: str = "",
) -> str:
    """Train one configuration (as the single-pod step: `config` with `overrides` on top) on
    job_options["num_nodes"] nodes of `num_gpus` GPUs through a job of job_options["trainer"]
    (trainjob: a TrainJob; pytorchjob: a PyTorchJob), in the same checkpoint folder the
    single-pod step uses (so a retried or re-run step resumes). A retried step adopts the job of
    the attempt before (or replaces it, if it failed). Fails with the job's reason if it fails,
    or if it gets no running node within job_options["schedule_timeout"] seconds. Returns the
    MLflow run id."""
    import shutil

    from adautomix.errors import exit_on_error
    from adautomix.cluster.multinode import train_on_nodes
    from adautomix.steps import finished_result, prepare_run, step_arguments

    with exit_on_error():  # one line and exit status 2 or 1, as from the CLI
        run_config = prepare_run(
            **step_arguments(
                workspace,
                data_version,
                prepared.metadata,
                config,
                overrides,
                pipeline_name,
                pipeline_run_id,
                pipeline_run_name,
            )
        )
        job = train_on_nodes(
            f"{run_config.output_dir}/config.json",
            run_config.output_dir,
            num_gpus,
            node,
            job_options,
            pipeline_name,
            pipeline_run_id,
        )
        result = finished_result(run_config.output_dir)
    shutil.copytree(result.output_dir, checkpoint.path)
    checkpoint.metadata.update(
        run_id=result.run_id, **{job_options["trainer"]: job}, **result.metrics
    )
    return result.run_id
