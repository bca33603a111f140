"""The train step: train in a persistent checkpoint folder, resuming from it when retried."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Model, Output

from components import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
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
    data_version: str = "",
) -> str:
    """Train one configuration (`config`, RunConfig fields, with a sweep's `overrides` on top,
    on the data step's dataset), as `num_gpus` processes of torch's launcher when it is more
    than one (one per GPU of the pod). Checkpoints go to WORKSPACE/runs/checkpoints/KEY, KEY
    naming the configuration and the data version, so a retried or re-run task resumes there.
    The artifact is the final config.json, checkpoint.pt and selected.pt. The MLflow run records
    the DVC version and remote as its dataset and the pipeline run as tags. Returns the MLflow
    run id. `data_version` '' is the prepared dataset's (its artifact's metadata)."""
    import shutil

    from adautomix.errors import exit_on_error
    from adautomix.steps import step_arguments, train_step

    with exit_on_error():  # one line and exit status 2 or 1, as from the CLI
        # progress stays on: with no terminal it is a log line per tenth of each epoch
        result = train_step(
            nproc=num_gpus,
            **step_arguments(
                workspace,
                data_version,
                prepared.metadata,
                config,
                overrides,
                pipeline_name,
                pipeline_run_id,
                pipeline_run_name,
            ),
        )
    shutil.copytree(result.output_dir, checkpoint.path)
    checkpoint.metadata.update(run_id=result.run_id, **result.metrics)
    return result.run_id
