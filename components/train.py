"""The train step: train in a persistent checkpoint folder, resuming from it when retried."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Model, Output

from components import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def train(prepared: Input[Dataset], data_version: str, dataset: str, model: str, method: str,
          preset: str, epochs: int, batch_size: int, lr: float, seed: int, subset: int,
          val_subset: int, experiment: str, workspace: str, checkpoint: Output[Model],
          num_gpus: int = 1) -> str:
    """Train one configuration (the preset, or the defaults, with these parameters on top), as
    `num_gpus` processes of torch's launcher when it is more than one (one per GPU of the pod).
    Checkpoints go to WORKSPACE/runs/checkpoints/KEY, KEY naming the configuration and the data
    version, so a retried or re-run task resumes there. The artifact is the final config.json and
    checkpoint.pt. Returns the MLflow run id."""
    import shutil

    from adautomix.errors import exit_on_error
    from adautomix.steps import train_step

    with exit_on_error():   # one line and exit status 2 or 1, as from the CLI
        result = train_step(f"{workspace}/runs/checkpoints", data_version, preset, nproc=num_gpus,
                            dataset=dataset, model=model, method=method, epochs=epochs,
                            batch_size=batch_size, lr=lr, seed=seed, subset=subset,
                            val_subset=val_subset, experiment=experiment,
                            data_root=prepared.metadata["data_root"], progress=False)
    shutil.copytree(result.output_dir, checkpoint.path)
    checkpoint.metadata.update(run_id=result.run_id, **result.metrics)
    return result.run_id
