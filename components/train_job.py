"""The train step on several nodes: a Kubeflow Trainer TrainJob, or the older training operator's
PyTorchJob (`trainer`), trains; this step waits for it.

The pipeline gives this task the same GPUs, workspace volume, secrets, node selector and
tolerations as the single-pod train step; Kubeflow Pipelines passes them through to the step as
a dsl.TaskConfig (task_config_passthroughs), and the step writes them into the job's nodes.
The step's own pod takes only the volume (to read the finished checkpoint) and the environment:
its GPUs, node selector and tolerations go to the nodes alone, so the waiting pod holds no GPU.
The output is the same as the single-pod step's: the final config.json and checkpoint.pt as the
`checkpoint` artifact, with the MLflow run id and the final metrics, for evaluate and register."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Model, Output

from components import BASE_IMAGE

PASSTHROUGHS = [
    dsl.TaskConfigField.RESOURCES,
    dsl.TaskConfigField.KUBERNETES_TOLERATIONS,
    dsl.TaskConfigField.KUBERNETES_NODE_SELECTOR,
    dsl.TaskConfigField.KUBERNETES_AFFINITY,
    dsl.TaskConfigPassthrough(field=dsl.TaskConfigField.ENV, apply_to_task=True),
    dsl.TaskConfigPassthrough(field=dsl.TaskConfigField.KUBERNETES_VOLUMES, apply_to_task=True),
]


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False,
               task_config_passthroughs=PASSTHROUGHS)
def train_job(prepared: Input[Dataset], data_version: str, config: dict, overrides: dict,
              workspace: str, pipeline_name: str, pipeline_run_id: str, pipeline_run_name: str,
              num_gpus: int, num_nodes: int, image: str, gpu_resource: str, trainer: str,
              runtime: str, schedule_timeout: int,
              node: dsl.TaskConfig, checkpoint: Output[Model]) -> str:
    """Train one configuration (as the single-pod step: `config` with `overrides` on top) on
    `num_nodes` nodes of `num_gpus` GPUs through a job of `trainer`
    (trainjob: a TrainJob of the ClusterTrainingRuntime `runtime`; pytorchjob: a PyTorchJob), in
    the same checkpoint folder the single-pod step uses (so a retried or re-run step resumes).
    Fails with the job's reason if it fails, or if it gets no running node within
    `schedule_timeout` seconds. Returns the MLflow run id."""
    import shutil

    from adautomix.errors import exit_on_error
    from adautomix.cluster.multinode import train_on_nodes
    from adautomix.steps import finished_result, prepare_run, step_arguments

    with exit_on_error():   # one line and exit status 2 or 1, as from the CLI
        run_config = prepare_run(**step_arguments(
            workspace, data_version, prepared.metadata, config, overrides, pipeline_name,
            pipeline_run_id, pipeline_run_name))
        job = train_on_nodes(trainer, f"{run_config.output_dir}/config.json", image, num_nodes,
                             num_gpus, node, run_config.output_dir, gpu_resource, runtime,
                             schedule_timeout)
        result = finished_result(run_config.output_dir)
    shutil.copytree(result.output_dir, checkpoint.path)
    checkpoint.metadata.update(run_id=result.run_id, **{trainer: job}, **result.metrics)
    return result.run_id
