"""The train step: train in a persistent checkpoint folder, resuming from it when retried."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Model, Output

from components import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def train(prepared: Input[Dataset], data_version: str, dataset: str, model: str,
          model_width: int, method: str,
          preset: str, epochs: int, batch_size: int, lr: float, seed: int, subset: int,
          val_subset: int, val_size: int, experiment: str, workspace: str, pipeline_name: str,
          pipeline_run_id: str, pipeline_run_name: str, checkpoint: Output[Model],
          num_gpus: int = 1) -> str:
    """Train one configuration (the preset, or the defaults, with these parameters on top), as
    `num_gpus` processes of torch's launcher when it is more than one (one per GPU of the pod).
    Checkpoints go to WORKSPACE/runs/checkpoints/KEY, KEY naming the configuration and the data
    version, so a retried or re-run task resumes there. The artifact is the final config.json,
    checkpoint.pt and selected.pt. The MLflow run records the DVC version and remote as its
    dataset and the pipeline run as tags. Returns the MLflow run id."""
    import shutil

    from adautomix.errors import exit_on_error
    from adautomix.steps import train_step

    with exit_on_error():   # one line and exit status 2 or 1, as from the CLI
        tags = {"kfp_pipeline": pipeline_name, "kfp_run_id": pipeline_run_id,
                "kfp_run_name": pipeline_run_name}
        # progress stays on: with no terminal it is a log line per tenth of each epoch
        result = train_step(f"{workspace}/runs/checkpoints", data_version, preset, nproc=num_gpus,
                            data_source=prepared.metadata.get("remote_url", ""), tags=tags,
                            dataset=dataset, model=model, model_width=model_width, method=method,
                            epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, subset=subset,
                            val_subset=val_subset, val_size=val_size, experiment=experiment,
                            data_root=prepared.metadata["data_root"])
    shutil.copytree(result.output_dir, checkpoint.path)
    checkpoint.metadata.update(run_id=result.run_id, **result.metrics)
    return result.run_id
