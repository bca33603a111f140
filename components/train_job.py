"""The train step on several nodes: a Kubeflow Trainer TrainJob trains, this step waits for it.

The pipeline gives this task the same GPUs, workspace volume, secrets, node selector and
tolerations as the single-pod train step; Kubeflow Pipelines passes them through to the step as
a dsl.TaskConfig (task_config_passthroughs), and the step writes them into the TrainJob's nodes.
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
def train_job(prepared: Input[Dataset], data_version: str, dataset: str, model: str, method: str,
              preset: str, epochs: int, batch_size: int, lr: float, seed: int, subset: int,
              val_subset: int, experiment: str, workspace: str, num_gpus: int, num_nodes: int,
              image: str, gpu_resource: str, runtime: str, schedule_timeout: int,
              node: dsl.TaskConfig, checkpoint: Output[Model]) -> str:
    """Train one configuration on `num_nodes` nodes of `num_gpus` GPUs through a TrainJob of the
    ClusterTrainingRuntime `runtime`, in the same checkpoint folder the single-pod step uses (so
    a retried or re-run step resumes). Fails with the TrainJob's reason if it fails, or if it
    gets no running node within `schedule_timeout` seconds. Returns the MLflow run id."""
    import shutil

    from adautomix.errors import exit_on_error
    from adautomix.launch import trainer_node_command
    from adautomix.steps import finished_result, prepare_run
    from adautomix.trainjob import (in_cluster_client, job_name, node_settings, run_trainjob,
                                    trainjob_manifest)

    with exit_on_error():   # one line and exit status 2 or 1, as from the CLI
        config = prepare_run(f"{workspace}/runs/checkpoints", data_version, preset,
                             dataset=dataset, model=model, method=method, epochs=epochs,
                             batch_size=batch_size, lr=lr, seed=seed, subset=subset,
                             val_subset=val_subset, experiment=experiment,
                             data_root=prepared.metadata["data_root"], progress=False)
        job = trainjob_manifest(job_name(), image,
                                trainer_node_command(f"{config.output_dir}/config.json"),
                                num_nodes, num_gpus, node_settings(node), config.output_dir,
                                gpu_resource=gpu_resource, runtime=runtime)
        api_client, namespace = in_cluster_client()
        run_trainjob(job, namespace, api_client, schedule_timeout=schedule_timeout)
        result = finished_result(config.output_dir)
    shutil.copytree(result.output_dir, checkpoint.path)
    checkpoint.metadata.update(run_id=result.run_id, trainjob=job.metadata.name, **result.metrics)
    return result.run_id
