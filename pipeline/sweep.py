"""The sweep pipeline: one dataset version, many (method, seed) runs in parallel, the best one
registered.

`grid` is the list of {"method": ..., "seed": ...} runs, the product of the methods and seeds
that `pipeline.run.sweep_arguments` builds and checks. The runs share every other parameter; their
models are collected and only the best-scoring one is registered.

(No `from __future__ import annotations` here: kfp reads the parameter types at run time.)"""

from typing import List

from kfp import dsl

from adautomix.gate import CHANCE_MARGIN
from adautomix.steps import TEST_METRICS
from components.data import data
from components.register import Registered, register_best
from pipeline.cluster import ClusterSettings
from pipeline.training import finish, train_and_evaluate_pipeline


PIPELINE_NAME = "adautomix-sweep"


def sweep_pipeline(cluster: ClusterSettings | None = ClusterSettings()):
    workspace_default = cluster.workspace_path if cluster is not None else "."
    # One run at a time on one machine: each already uses every core.
    parallelism = cluster.sweep_parallelism if cluster is not None else 1
    train_and_evaluate = train_and_evaluate_pipeline(cluster)

    @dsl.pipeline(name=PIPELINE_NAME,
                  description="One DVC data version -> methods x seeds in parallel -> the best "
                              "registered")
    def sweep(
        grid: List[dict], dataset: str = "fashion-mnist", data_version: str = "",
        model: str = "resnet18", model_width: int = 0, preset: str = "", epochs: int = 2,
        batch_size: int = 100, lr: float = 0.1, num_gpus: int = 1, evaluate_gpus: int = 1,
        subset: int = 0, val_subset: int = 0, val_size: int = 0,
        chance_margin: float = CHANCE_MARGIN, min_score: float = 0.0,
        experiment: str = "adautomix", registered_model: str = "", data_remote: str = "s3",
        workspace: str = workspace_default, test_metrics: List[str] = list(TEST_METRICS),
    ) -> Registered:
        materialised = data(dataset=dataset, data_version=data_version, workspace=workspace,
                            remote=data_remote)
        with dsl.ParallelFor(grid, parallelism=parallelism) as run:
            evaluated = train_and_evaluate(
                prepared=materialised.outputs["prepared"],
                data_version=materialised.outputs["Output"], dataset=dataset, model=model,
                model_width=model_width, method=run.method, preset=preset, epochs=epochs,
                batch_size=batch_size, lr=lr, seed=run.seed, num_gpus=num_gpus,
                evaluate_gpus=evaluate_gpus, subset=subset, val_subset=val_subset,
                val_size=val_size, experiment=experiment, workspace=workspace,
                test_metrics=test_metrics, pipeline_name=PIPELINE_NAME)
        registered = register_best(model_uris=dsl.Collected(evaluated.outputs["model_uri"]),
                                   scores=dsl.Collected(evaluated.outputs["score"]),
                                   metrics=dsl.Collected(evaluated.outputs["metric"]),
                                   chances=dsl.Collected(evaluated.outputs["chance"]),
                                   dataset=dataset, data_version=materialised.outputs["Output"],
                                   registered_model=registered_model, chance_margin=chance_margin,
                                   min_score=min_score)
        return finish(materialised, registered, cluster)

    return sweep
