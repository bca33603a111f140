"""The sweep pipeline: one dataset version, many (method, seed) runs in parallel, the best one
registered.

`grid` is the list of {"method": ..., "seed": ...} runs, the product of the methods and seeds
that `pipeline.run.sweep_arguments` builds and checks. The runs share every other parameter; their
models are collected and only the best-scoring one is registered.

(No `from __future__ import annotations` here: kfp reads the parameter types at run time.)"""

from typing import List

from kfp import dsl

from adautomix.steps import TEST_METRICS
from components.data import data
from components.register import Registered, register_best
from pipeline.cluster import DATA, EVALUATE, REGISTER, TRAIN, ClusterSettings
from pipeline.training import finish, train_and_evaluate_pipeline


def sweep_pipeline(cluster: ClusterSettings | None = ClusterSettings()):
    workspace_default = cluster.workspace_path if cluster is not None else "."
    # One run at a time on one machine: each already uses every core.
    parallelism = cluster.sweep_parallelism if cluster is not None else 1
    train_and_evaluate = train_and_evaluate_pipeline(cluster)

    @dsl.pipeline(name="adautomix-sweep",
                  description="One DVC data version -> methods x seeds in parallel -> the best "
                              "registered")
    def sweep(
        grid: List[dict], dataset: str = "fashion-mnist", data_version: str = "",
        model: str = "resnet18", preset: str = "", epochs: int = 2, batch_size: int = 100,
        lr: float = 0.1, num_gpus: int = 1, evaluate_gpus: int = 1, subset: int = 0,
        val_subset: int = 0,
        experiment: str = "adautomix", registered_model: str = "", data_remote: str = "s3",
        workspace: str = workspace_default, test_metrics: List[str] = list(TEST_METRICS),
        data_cpu_request: str = DATA.cpu_request, data_cpu_limit: str = DATA.cpu_limit,
        data_memory_request: str = DATA.memory_request, data_memory_limit: str = DATA.memory_limit,
        train_cpu_request: str = TRAIN.cpu_request, train_cpu_limit: str = TRAIN.cpu_limit,
        train_memory_request: str = TRAIN.memory_request,
        train_memory_limit: str = TRAIN.memory_limit,
        evaluate_cpu_request: str = EVALUATE.cpu_request,
        evaluate_cpu_limit: str = EVALUATE.cpu_limit,
        evaluate_memory_request: str = EVALUATE.memory_request,
        evaluate_memory_limit: str = EVALUATE.memory_limit,
        register_cpu_request: str = REGISTER.cpu_request,
        register_cpu_limit: str = REGISTER.cpu_limit,
        register_memory_request: str = REGISTER.memory_request,
        register_memory_limit: str = REGISTER.memory_limit,
    ) -> Registered:
        materialised = data(dataset=dataset, data_version=data_version, workspace=workspace,
                            remote=data_remote)
        with dsl.ParallelFor(grid, parallelism=parallelism) as run:
            evaluated = train_and_evaluate(
                prepared=materialised.outputs["prepared"],
                data_version=materialised.outputs["Output"], dataset=dataset, model=model,
                method=run.method, preset=preset, epochs=epochs, batch_size=batch_size, lr=lr,
                seed=run.seed, num_gpus=num_gpus, evaluate_gpus=evaluate_gpus, subset=subset,
                val_subset=val_subset, experiment=experiment, workspace=workspace,
                test_metrics=test_metrics,
                train_cpu_request=train_cpu_request, train_cpu_limit=train_cpu_limit,
                train_memory_request=train_memory_request, train_memory_limit=train_memory_limit,
                evaluate_cpu_request=evaluate_cpu_request, evaluate_cpu_limit=evaluate_cpu_limit,
                evaluate_memory_request=evaluate_memory_request,
                evaluate_memory_limit=evaluate_memory_limit)
        registered = register_best(model_uris=dsl.Collected(evaluated.outputs["model_uri"]),
                                   scores=dsl.Collected(evaluated.outputs["score"]),
                                   dataset=dataset, data_version=materialised.outputs["Output"],
                                   registered_model=registered_model)
        return finish(materialised, registered, cluster,
                      (data_cpu_request, data_cpu_limit, data_memory_request, data_memory_limit),
                      (register_cpu_request, register_cpu_limit, register_memory_request,
                       register_memory_limit))

    return sweep
