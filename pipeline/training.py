"""The training pipeline: data -> train -> evaluate -> register; and the sweep's
(pipeline/sweep.py), which runs a grid of trainings where this runs one. Both are built here, and
a training run is a sweep of one: its `grid` is one run that changes nothing of `config`, so that
both pipelines train in a loop over the grid and register the best of the models it collects.

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

import dataclasses
import inspect
from types import SimpleNamespace
from typing import List

from kfp import dsl
from kfp.dsl import Dataset

from adautomix.config import RunConfig
from components.data import data
from components.evaluate import evaluate
from components.register import Registered, register
from components.train import train
from components.train_job import train_job
from pipeline.cluster_settings import ClusterSettings
from pipeline.cluster_tasks import configure, job_options
from pipeline.settings import PipelineSettings, parameter_type, parameter_value

PIPELINE_NAME = "adautomix-training"
DESCRIPTION = "One DVC data version -> train -> evaluate -> MLflow registry"
# A retried train task resumes from its last checkpoint (Kubeflow and kfp.local both retry). A
# failure that recurs (bad input, a diverged loss) fails its retries at once:
# adautomix/steps/failures.py.
TRAIN_RETRIES = 2


# What train-and-evaluate hands on to the register step: the evaluate step's outputs, declared
# once, in its component.
Evaluated = evaluate.python_func.__annotations__["return"]


def train_and_evaluate_pipeline(cluster: ClusterSettings | None):
    """The part a sweep repeats: train one configuration, evaluate it, log its model.

    Training takes `num_gpus` GPUs: one process each (torchrun) in one pod, or, when the cluster
    settings ask for several nodes, a Kubeflow Trainer TrainJob (or, with trainer "pytorchjob", a
    training-operator PyTorchJob) of `num_nodes` such nodes. The evaluation takes
    `evaluate_gpus` (one, or none on CPU nodes) whatever the training took: it is one pass over
    a test split that one GPU reads in seconds, and one process logs the model to MLflow;
    sharding it would hold the other GPUs through a pod start for nothing."""
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
        step_arguments = dict(
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
            trained = train_job(**step_arguments, job_options=job_options(cluster))
        else:
            trained = train(**step_arguments)
        # on one machine (kfp.local) no pod or node has to be replaced: the retry need not wait
        trained.set_retry(TRAIN_RETRIES, backoff_duration="30s" if cluster is not None else "0s")
        evaluated = evaluate(
            checkpoint=trained.outputs["checkpoint"],
            test_metrics=test_metrics,
        )
        configure(trained, "train", cluster, gpus=num_gpus)
        configure(evaluated, "evaluate", cluster, gpus=evaluate_gpus)
        return Evaluated(*(evaluated.outputs[field] for field in Evaluated._fields))

    return train_and_evaluate


def pipeline_parameters(sweep: bool) -> list[inspect.Parameter]:
    """Both pipelines' parameters: the run (`config`, `dataset`); the `grid` of runs, each what it
    changes of `config` (a sweep's must be given; the training pipeline's is one run that
    changes nothing); and every PipelineSettings field (pipeline/settings.py). (Each step's CPU
    and memory are the cluster settings', decided at compile time: pipeline/cluster_settings.py.)"""
    listed = [
        ("config", dict, inspect.Parameter.empty),
        ("grid", List[dict], inspect.Parameter.empty if sweep else [{}]),
        ("dataset", str, RunConfig.dataset),
        *(
            (f.name, parameter_type(f), parameter_value(getattr(PipelineSettings(), f.name)))
            for f in dataclasses.fields(PipelineSettings)
        ),
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
    parameters = pipeline_parameters(sweep)

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

        with dsl.ParallelFor(p.grid, parallelism=parallelism) as overrides:
            evaluated = train_and_evaluate(
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
        registered = register(
            **{f"{field}s": dsl.Collected(evaluated.outputs[field]) for field in Evaluated._fields},
            dataset=p.dataset,
            data_version=materialised.outputs["Output"],
            registered_model=p.registered_model,
            chance_margin=p.chance_margin,
            min_score=p.min_score,
        )
        configure(materialised, "data", cluster)
        configure(registered, "register", cluster)
        return Registered(*(registered.outputs[field] for field in Registered._fields))

    steps.__signature__ = inspect.Signature(parameters, return_annotation=Registered)
    return dsl.pipeline(name=name, description=description)(steps)


def training_pipeline(cluster: ClusterSettings | None = ClusterSettings()):
    return build_pipeline(cluster, PIPELINE_NAME, DESCRIPTION, sweep=False)
