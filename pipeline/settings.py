"""The pipeline's own parameters, besides the run's configuration (RunConfig) and a sweep's grid:
each defined once here, with its help and default. `python -m pipeline`'s flags
(adautomix.config_flags), the pipelines' parameters (pipeline/training.py), the arguments that
pipeline/run.py checks and the steps' inputs are all made from these fields, so a new one is
added here and where it is used, nowhere else.

(No `from __future__ import annotations` here: the pipelines' parameter types are read from
these fields at run time.)"""

import dataclasses
from dataclasses import dataclass, field
from typing import List, get_origin

from adautomix.config import setting
from adautomix.gate import CHANCE_MARGIN
from adautomix.steps import TEST_METRICS


def _comma_separated(given: list[str]) -> tuple[str, ...]:
    return tuple(name for text in given for name in text.split(",") if name)


# The DVC remote a cluster's data step reads unless --data-remote names another: the checkout's
# default remote is a folder beside it, which a cluster's volume does not hold.
CLUSTER_DATA_REMOTE = "s3"


@dataclass(frozen=True)
class PipelineSettings:
    # '' resolves to data.dvc's version before anything runs (pipeline/run.py), so that the data
    # step's cache key is always a concrete version
    data_version: str = setting(
        "", "DVC hash of the dataset version", empty="the one data.dvc tracks"
    )
    num_gpus: int = setting(1, "GPUs per training run (0: CPU only)")
    registered_model: str = setting("", "MLflow registered model name", empty="adautomix-DATASET")
    chance_margin: float = setting(
        CHANCE_MARGIN,
        "registry gate: points of top-1 above chance a model needs to hold an alias",
    )
    min_score: float = setting(
        0.0, "registry gate: the least top-1 (%%) a model needs to hold an alias"
    )
    test_metrics: tuple[str, ...] = setting(
        TEST_METRICS,
        "what the evaluate step measures, comma-separated metric specs as for `adautomix "
        "evaluate --metrics` (top1, top5, loss, ece, fgsm, corruption, occlusion; "
        "docs/evaluation.md); a sweep preset's when it has them",
        parse=_comma_separated,
        metavar="METRICS",
    )
    # Here the checkout compile and submit read data.dvc from; in the steps, where the workspace
    # is mounted (the cluster's path) or this checkout (run --local).
    workspace: str = setting(".", "the project checkout: data.dvc, data/, runs/checkpoints/")
    data_remote: str = setting(
        "",
        "the DVC remote the data step reads (a name in .dvc/config)",
        empty=f"run --local: the default remote; a cluster: {CLUSTER_DATA_REMOTE}",
    )
    # Evaluation is one pass over a test split that one GPU reads in seconds: one GPU whenever
    # training has any (pipeline/training.py).
    evaluate_gpus: int = field(init=False, default=1)

    def __post_init__(self):  # num_gpus is checked with the run (adautomix.steps.check_run)
        object.__setattr__(self, "evaluate_gpus", min(self.num_gpus, 1))


def parameter_type(f: dataclasses.Field):
    """The pipeline parameter's type of a settings field (a tuple is a kfp List)."""
    return List[str] if get_origin(f.type) is tuple else f.type


def parameter_value(value):
    return list(value) if isinstance(value, tuple) else value


def as_parameters(settings: PipelineSettings) -> dict:
    """The settings as the pipelines' parameters take them."""
    return {
        f.name: parameter_value(getattr(settings, f.name))
        for f in dataclasses.fields(PipelineSettings)
    }
