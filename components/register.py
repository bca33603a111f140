"""The register step: a model version, the challenger alias, the champion alias if it wins.

`register` takes one evaluated model (the training pipeline); `register_best` takes a sweep's
collected models and registers the best-scoring one. Both return the version, its aliases and the
MLflow store that holds them. A model the registry gate rejects (not `chance_margin` points above
chance, or below `min_score`) is still registered, without an alias, and the step fails with the
reason, so the pipeline ends non-zero and no champion moves."""

from typing import List, NamedTuple

from kfp import dsl

from components import BASE_IMAGE


# The register steps' outputs, for the pipelines that return them. The components below spell the
# same type inline: kfp runs a component from its function's source alone, where a module-level
# name would be undefined.
class Registered(NamedTuple):
    version: str
    aliases: List[str]
    tracking_uri: str


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def register(
    model_uri: str,
    score: float,
    metric: str,
    chance: float,
    dataset: str,
    data_version: str,
    registered_model: str,
    chance_margin: float,
    min_score: float,
) -> NamedTuple("Registered", [("version", str), ("aliases", List[str]), ("tracking_uri", str)]):
    """Register the model; registered_model '' names it adautomix-DATASET."""
    from adautomix.errors import exit_on_error
    from adautomix.registry import Candidate, Gate
    from adautomix.registry import register as register_model

    with exit_on_error():  # one line and exit status 2 or 1, as from the CLI
        done = register_model(
            Candidate(model_uri, score, chance),
            registered_model,
            dataset,
            data_version,
            metric,
            Gate(chance_margin, min_score),
        )
        print(f"registered {done.name} version {done.version}: {done.reason}", flush=True)
        done.raise_if_rejected()
    return done.version, list(done.aliases), done.tracking_uri


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def register_best(
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
    """Register the best of a sweep's models; registered_model '' names it adautomix-DATASET."""
    from adautomix.errors import exit_on_error
    from adautomix.registry import Candidate, Gate
    from adautomix.registry import register_best as register_model

    with exit_on_error():  # one line and exit status 2 or 1, as from the CLI
        candidates = [
            Candidate(uri, score, chance)
            for uri, score, chance in zip(model_uris, scores, chances, strict=True)
        ]
        # The runs of a sweep share every setting but method and seed, so one metric names them all.
        done = register_model(
            candidates,
            registered_model,
            dataset,
            data_version,
            metrics[0],
            Gate(chance_margin, min_score),
        )
        print(f"registered {done.name} version {done.version}: {done.reason}", flush=True)
        done.raise_if_rejected(candidates=len(candidates))
    return done.version, list(done.aliases), done.tracking_uri
