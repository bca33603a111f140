"""The evaluate step: test metrics, confusion matrix and the final model, into the run."""

from typing import List, NamedTuple

from kfp import dsl
from kfp.dsl import Input, Metrics, Model, Output

from components import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def evaluate(checkpoint: Input[Model], data_version: str, test_metrics: List[str],
             metrics: Output[Metrics]) -> NamedTuple("Evaluated", [("model_uri", str), ("score", float)]):
    """Evaluate the trained networks on the test split (`test_metrics`, names of
    adautomix.eval.METRICS) and complete the training's MLflow run with those metrics, the
    confusion matrix and the final model. Returns the logged model's URI and its test top-1 (the
    EMA network's when the run has one), which the registry compares."""
    from adautomix.errors import exit_on_error
    from adautomix.steps import evaluate_step

    with exit_on_error():   # one line and exit status 2 or 1, as from the CLI
        result = evaluate_step(checkpoint.path, tuple(test_metrics), data_version)
    for name, value in result.metrics.items():
        metrics.log_metric(name, value)
    return result.model_uri, result.score
