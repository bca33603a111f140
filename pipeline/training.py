"""The training pipeline: data -> train -> evaluate -> register; and the sweep's
(pipeline/sweep.py), which runs a grid of trainings where this runs one.

`training_pipeline(cluster)` builds it. With ClusterSettings the tasks get their GPUs, node
scheduling, the workspace volume and the secrets; with None (kfp.local on one machine) they get
none of that, and the workspace is a folder here. Every parameter is typed; `pipeline.run`
checks a set of them as a whole before anything is compiled, run or submitted.

The run itself is two parameters: `dataset` (the data step's, the train steps' and the register
step's) and `config`, every other RunConfig field as RunConfig.to_dict() gives it (but the
fields the steps decide, adautomix.steps.STEP_FIELDS), so that any field, method options
included, reaches the train step without being spelled out here; the train step checks it as a
RunConfig again when it runs.

(No `from __future__ import annotations` here: kfp reads the parameter types at run time.)"""

import inspect
from types import SimpleNamespace
from typing import List, NamedTuple

from kfp import dsl
from kfp.dsl import Dataset

from adautomix.config import RunConfig
from adautomix.gate import CHANCE_MARGIN
from adautomix.steps import TEST_METRICS
from components.data import data
from components.evaluate import evaluate
from components.register import Registered, register, register_best
from components.train import train
from components.train_job import train_job
from pipeline.cluster import ClusterSettings, configure, job_options

PIPELINE_NAME = "adautomix-training"
# A retried train task resumes from its last checkpoint (Kubeflow retries; kfp.local does not).
TRAIN_RETRIES = 2


# What train-and-evaluate hands on to the register steps.
class Evaluated(NamedTuple):
    model_uri: str
    score: float
    metric: str
    chance: float


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
        prepared: Dataset,
        config: dict,
        overrides: dict,
        num_gpus: int,
        evaluate_gpus: int,
        workspace: str,
        test_metrics: List[str],
        pipeline_name: str,
    ) -> Evaluated:
        run = dict(
            prepared=prepared,
            config=config,
            overrides=overrides,
            workspace=workspace,
            num_gpus=num_gpus,
            pipeline_name=pipeline_name,
            pipeline_run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
            pipeline_run_name=dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
        )
        if multi_node:
            trained = train_job(**run, job_options=job_options(cluster))
        else:
            trained = train(**run)
        trained.set_retry(TRAIN_RETRIES, backoff_duration="30s")
        evaluated = evaluate(
            checkpoint=trained.outputs["checkpoint"],
            test_metrics=test_metrics,
        )
        configure(trained, "train", cluster, gpus=num_gpus)
        configure(evaluated, "evaluate", cluster, gpus=evaluate_gpus)
        return Evaluated(*(evaluated.outputs[field] for field in Evaluated._fields))

    return train_and_evaluate


def pipeline_parameters(cluster: ClusterSettings | None, sweep: bool) -> list[inspect.Parameter]:
    """Both pipelines' parameters, listed once: a sweep's `grid`; the run (`config`, `dataset`);
    its data version; the GPUs of training and evaluation; the registry's gate and model name;
    the DVC remote; the workspace; the test metrics. (Each step's CPU and memory are the
    cluster settings', decided at compile time: pipeline.cluster.)"""
    listed = [("grid", List[dict], inspect.Parameter.empty)] if sweep else []
    listed += [
        ("config", dict, inspect.Parameter.empty),
        ("dataset", str, RunConfig.dataset),
        ("data_version", str, ""),
        ("num_gpus", int, 1),
        ("evaluate_gpus", int, 1),
        ("chance_margin", float, CHANCE_MARGIN),
        ("min_score", float, 0.0),
        ("registered_model", str, ""),
        ("data_remote", str, "s3"),
        ("workspace", str, cluster.workspace_path if cluster is not None else "."),
        ("test_metrics", List[str], list(TEST_METRICS)),
    ]
    return [
        inspect.Parameter(
            name, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=kind, default=default
        )
        for name, kind, default in listed
    ]


def build_pipeline(cluster: ClusterSettings | None, name: str, description: str, sweep: bool):
    """The training pipeline (data -> train -> evaluate -> register), or with `sweep` the sweep
    (data -> the grid's runs in parallel -> the best registered), with pipeline_parameters."""
    # One run at a time on one machine: each already uses every core.
    parallelism = cluster.sweep_parallelism if cluster is not None else 1
    train_and_evaluate = train_and_evaluate_pipeline(cluster)
    parameters = pipeline_parameters(cluster, sweep)

    def steps(*values) -> Registered:
        # kfp calls a pipeline function with one channel per parameter, in signature order
        p = SimpleNamespace(
            **{parameter.name: value for parameter, value in zip(parameters, values, strict=True)}
        )
        materialised = data(
            dataset=p.dataset,
            data_version=p.data_version,
            workspace=p.workspace,
            remote=p.data_remote,
            # in the data step's cache key, so that a run on another claim prepares its data
            workspace_volume=cluster.workspace_pvc if cluster is not None else "",
        )

        def trained(overrides):
            return train_and_evaluate(
                # the data version travels in `prepared`'s metadata: kfp.local gives a loop
                # body's parameters from upstream tasks the loop item instead (kfp 2.17)
                prepared=materialised.outputs["prepared"],
                config=p.config,
                overrides=overrides,
                num_gpus=p.num_gpus,
                evaluate_gpus=p.evaluate_gpus,
                workspace=p.workspace,
                test_metrics=p.test_metrics,
                pipeline_name=name,
            )

        judged = dict(
            dataset=p.dataset,
            data_version=materialised.outputs["Output"],
            registered_model=p.registered_model,
            chance_margin=p.chance_margin,
            min_score=p.min_score,
        )
        if sweep:
            with dsl.ParallelFor(p.grid, parallelism=parallelism) as run:
                evaluated = trained(run)
            registered = register_best(
                **{
                    f"{field}s": dsl.Collected(evaluated.outputs[field])
                    for field in ("model_uri", "score", "metric", "chance")
                },
                **judged,
            )
        else:
            evaluated = trained({})
            registered = register(
                **{
                    field: evaluated.outputs[field]
                    for field in ("model_uri", "score", "metric", "chance")
                },
                **judged,
            )
        configure(materialised, "data", cluster)
        configure(registered, "register", cluster)
        return Registered(*(registered.outputs[field] for field in Registered._fields))

    steps.__signature__ = inspect.Signature(parameters, return_annotation=Registered)
    return dsl.pipeline(name=name, description=description)(steps)


def training_pipeline(cluster: ClusterSettings | None = ClusterSettings()):
    return build_pipeline(
        cluster,
        PIPELINE_NAME,
        "One DVC data version -> train -> evaluate -> MLflow registry",
        sweep=False,
    )
