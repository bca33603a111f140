"""The sweep pipeline: one dataset version, many (method, seed) runs in parallel, the best one
registered.

`grid` is the list of runs, the product of the methods and seeds that
`pipeline.run.sweep_arguments` builds and checks: each {"method", "seed", "method_args"} on top
of the shared `config` (the RunConfig fields, as in pipeline/training.py). Their models are
collected and only the best-scoring one is registered. Every other parameter is the training
pipeline's (pipeline.training.pipeline_parameters)."""

from pipeline.cluster_settings import ClusterSettings
from pipeline.training import build_pipeline

PIPELINE_NAME = "adautomix-sweep"
DESCRIPTION = "One DVC data version -> methods x seeds in parallel -> the best registered"


def sweep_pipeline(cluster: ClusterSettings | None = ClusterSettings()):
    return build_pipeline(cluster, PIPELINE_NAME, DESCRIPTION, sweep=True)
