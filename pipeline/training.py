"""The training pipeline: data -> train -> evaluate -> register.

`training_pipeline(cluster)` builds it. With ClusterSettings the tasks get their GPUs, node
scheduling, the workspace volume and the secrets; with None (kfp.local on one machine) they get
none of that, and the workspace is a folder here. Every parameter is typed; `pipeline.run`
checks a set of them as a whole before anything is compiled, run or submitted.

(No `from __future__ import annotations` here: kfp reads the parameter types at run time.)"""

from typing import List, NamedTuple

from kfp import dsl
from kfp.dsl import Dataset

from adautomix.gate import CHANCE_MARGIN
from adautomix.steps import TEST_METRICS
from components.data import data
from components.evaluate import evaluate
from components.register import Registered, register
from components.train import train
from components.train_job import train_job
from pipeline.cluster import ClusterSettings, configure, job_options

PIPELINE_NAME = "adautomix-training"
# A retried train task resumes from its last checkpoint (Kubeflow retries; kfp.local does not).
TRAIN_RETRIES = 2
# What train-and-evaluate hands on to the register steps.
Evaluated = NamedTuple("Evaluated", [("model_uri", str), ("score", float), ("metric", str),
                                     ("chance", float)])


def finish(materialised, registered, cluster: ClusterSettings | None) -> Registered:
    """What both pipelines end with: the data and register steps' cluster settings, and the
    register step's outputs as the pipeline's own."""
    configure(materialised, "data", cluster)
    configure(registered, "register", cluster)
    return Registered(*(registered.outputs[field] for field in Registered._fields))


def train_and_evaluate_pipeline(cluster: ClusterSettings | None):
    """The part a sweep repeats: train one configuration, evaluate it, log its model.

    Training takes `num_gpus` GPUs: one process each (torchrun) in one pod, or, when the cluster
    settings ask for several nodes, a Kubeflow Trainer TrainJob (or, with trainer "pytorchjob", a
    training-operator PyTorchJob) of `num_nodes` such nodes. The
    evaluation takes `evaluate_gpus` (one, or none on CPU nodes) whatever the training took: it
    is one pass over a test split that one GPU reads in seconds, and one process logs the model
    to MLflow; sharding it would hold the other GPUs through a pod start for nothing."""
    multi_node = cluster is not None and cluster.num_nodes > 1

    @dsl.pipeline(name="adautomix-train-and-evaluate")
    def train_and_evaluate(
        prepared: Dataset, data_version: str, dataset: str, model: str, model_width: int,
        method: str, preset: str, epochs: int, batch_size: int, lr: float, seed: int,
        num_gpus: int, evaluate_gpus: int, subset: int, val_subset: int, val_size: int,
        experiment: str, workspace: str, test_metrics: List[str], pipeline_name: str,
    ) -> Evaluated:
        run = dict(prepared=prepared, data_version=data_version, dataset=dataset, model=model,
                   model_width=model_width, method=method, preset=preset, epochs=epochs,
                   batch_size=batch_size, lr=lr, seed=seed, subset=subset, val_subset=val_subset,
                   val_size=val_size, experiment=experiment, workspace=workspace,
                   num_gpus=num_gpus, pipeline_name=pipeline_name,
                   pipeline_run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
                   pipeline_run_name=dsl.PIPELINE_JOB_NAME_PLACEHOLDER)
        if multi_node:
            trained = train_job(**run, job_options=job_options(cluster))
        else:
            trained = train(**run)
        trained.set_retry(TRAIN_RETRIES, backoff_duration="30s")
        evaluated = evaluate(checkpoint=trained.outputs["checkpoint"], data_version=data_version,
                             test_metrics=test_metrics)
        configure(trained, "train", cluster, gpus=num_gpus)
        configure(evaluated, "evaluate", cluster, gpus=evaluate_gpus)
        return Evaluated(*(evaluated.outputs[field] for field in Evaluated._fields))

    return train_and_evaluate


def training_pipeline(cluster: ClusterSettings | None = ClusterSettings()):
    workspace_default = cluster.workspace_path if cluster is not None else "."
    train_and_evaluate = train_and_evaluate_pipeline(cluster)

    @dsl.pipeline(name=PIPELINE_NAME,
                  description="One DVC data version -> train -> evaluate -> MLflow registry")
    def training(
        dataset: str = "fashion-mnist", data_version: str = "", model: str = "resnet18",
        model_width: int = 0, method: str = "vanilla", preset: str = "", epochs: int = 2,
        batch_size: int = 100, lr: float = 0.1, seed: int = 0, num_gpus: int = 1,
        evaluate_gpus: int = 1, subset: int = 0, val_subset: int = 0, val_size: int = 0,
        chance_margin: float = CHANCE_MARGIN, min_score: float = 0.0,
        experiment: str = "adautomix", registered_model: str = "", data_remote: str = "s3",
        workspace: str = workspace_default, test_metrics: List[str] = list(TEST_METRICS),
    ) -> Registered:
        materialised = data(dataset=dataset, data_version=data_version, workspace=workspace,
                            remote=data_remote)
        evaluated = train_and_evaluate(
            prepared=materialised.outputs["prepared"], data_version=materialised.outputs["Output"],
            dataset=dataset, model=model, model_width=model_width, method=method, preset=preset,
            epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, num_gpus=num_gpus,
            evaluate_gpus=evaluate_gpus, subset=subset, val_subset=val_subset, val_size=val_size,
            experiment=experiment, workspace=workspace, test_metrics=test_metrics,
            pipeline_name=PIPELINE_NAME)
        registered = register(model_uri=evaluated.outputs["model_uri"],
                              score=evaluated.outputs["score"], metric=evaluated.outputs["metric"],
                              chance=evaluated.outputs["chance"], dataset=dataset,
                              data_version=materialised.outputs["Output"],
                              registered_model=registered_model, chance_margin=chance_margin,
                              min_score=min_score)
        return finish(materialised, registered, cluster)

    return training
