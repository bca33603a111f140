"""The training pipeline's steps as plain functions: a module for training, one for evaluation, and
the checks both a pipeline and its steps make.

Each Kubeflow component (components/) does its work through functions here (or through
`data.versioning`, `registry` and `cluster.multinode`) and only hands their results to Kubeflow,
so a pipeline run can be repeated from Python without Kubeflow, and the checks that guard a run
are the same when a pipeline is compiled as when it runs:

- checks.py: `build_config` (a preset with values on top) and `check_run`, the checks a
  RunConfig cannot make alone; what `python -m pipeline` runs before compiling anything; and
  `step_arguments`, what a pipeline's train step (one pod or several nodes) trains with.
- train.py: `train_step`, training in a checkpoint folder keyed by what the run computes (in
  this process or as torchrun's processes); `prepare_run` and `finished_result`, what the
  TrainJob step writes before and reads after Kubeflow Trainer trains on several nodes.
- evaluate.py: `evaluate_step`, the test metrics, confusion matrix and logged model of a run;
  `run_link`, where its MLflow record is, for the pipeline's run page.

The data step is `data.versioning.materialise`, the register step `registry.register`."""

from .checks import (
    STEP_FIELDS,
    build_config,
    check_run,
    checkpoint_root,
    merged_values,
    step_arguments,
)
from .evaluate import TEST_METRICS, Evaluation, evaluate_step, run_link
from .train import checkpoint_dir, finished_result, prepare_run, train_step

__all__ = [
    "STEP_FIELDS",
    "TEST_METRICS",
    "Evaluation",
    "build_config",
    "check_run",
    "checkpoint_root",
    "merged_values",
    "step_arguments",
    "checkpoint_dir",
    "evaluate_step",
    "finished_result",
    "prepare_run",
    "run_link",
    "train_step",
]
