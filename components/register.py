"""The register step: a model version, the challenger alias, the champion alias if it wins.

It takes the evaluated models of a pipeline run (a training pipeline's one, a sweep's collected
ones) and registers the best-scoring one. It returns the version, its aliases and the MLflow store
that holds them. A model the registry gate rejects (not `chance_margin` points above chance, or
below `min_score`) is still registered, without an alias, and the step fails with the reason, so
the pipeline ends non-zero and no champion moves."""

from typing import List, NamedTuple

from kfp import dsl

from components import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def register(
    model_uris: List[str],
    scores: List[float],
    metrics: List[str],
    chances: List[float],
    dataset: str,
    data_version: str,
    registered_model: str,
    chance_margin: float,
    min_score: float,
) -> NamedTuple("Registered", [("version", str), ("aliases", List[str]), ("tracking_uri", str)]):
    """Register the best of the evaluated models; registered_model '' names it
    adautomix-DATASET."""
    from adautomix.errors import exit_on_error
    from adautomix.registry import Candidate, Gate, best
    from adautomix.registry import register as register_model

    with exit_on_error():  # one line and exit status 2 or 1, as from the CLI
        candidates = [
            Candidate(uri, score, chance)
            for uri, score, chance in zip(model_uris, scores, chances, strict=True)
        ]
        # The runs of a sweep share every setting but method and seed, so one metric names them all.
        done = register_model(
            best(candidates),
            registered_model,
            dataset,
            data_version,
            metrics[0],
            Gate(chance_margin, min_score),
        )
        print(f"registered {done.name} version {done.version}: {done.reason}", flush=True)
        done.raise_if_rejected(candidates=len(candidates))
    return done.version, list(done.aliases), done.tracking_uri


# The register step's outputs, for the pipelines that return them: `register`'s return type. The
# component spells it inline because kfp runs a component from its function's source alone, where
# a module-level name would be undefined.
Registered = register.python_func.__annotations__["return"]
