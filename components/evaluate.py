"""The evaluate step: test metrics, confusion matrix and the final model, into the run."""

from typing import List, NamedTuple

from kfp import dsl
from kfp.dsl import Input, Markdown, Metrics, Model, Output

from components import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def evaluate(
    checkpoint: Input[Model],
    test_metrics: List[str],
    metrics: Output[Metrics],
    mlflow_run: Output[Markdown],
) -> NamedTuple(
    "Evaluated", [("model_uri", str), ("score", float), ("metric", str), ("chance", float)]
):
    """Evaluate the selected networks on the validation and test splits (`test_metrics`, names
    of adautomix.eval.METRICS) and complete the training's MLflow run with those metrics, the
    confusion matrix and the served model. Returns the logged model's URI, its score (the served
    network's validation top-1, or test top-1 without a validation split), the score's name and
    chance's top-1, which the registry judges by. `mlflow_run` links the KFP run page to the
    MLflow run (adautomix.steps.run_link). The data version is the one the run trained on (its
    provenance.json)."""
    from adautomix.errors import exit_on_error
    from adautomix.steps import evaluate_step, run_link

    with exit_on_error():  # one line and exit status 2 or 1, as from the CLI
        result = evaluate_step(checkpoint.path, tuple(test_metrics))
        link = run_link(result.run_id)
    for name, value in result.metrics.items():
        metrics.log_metric(name, value)
    with open(mlflow_run.path, "w") as f:
        f.write(link)
    return result.model_uri, result.score, result.metric, result.chance
