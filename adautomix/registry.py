"""The MLflow Model Registry: register a model version, set the champion and challenger aliases.

Every registered version becomes the `challenger`. It becomes the `champion` too only if it beats
the current champion on the same dataset and the same metric (strictly; a tie keeps the champion),
or if there is no champion yet. A version records what it was judged on as tags (dataset,
metric, score, data version), so the comparison needs nothing but the registry."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

from .errors import InputError

log = logging.getLogger("adautomix.registry")

CHAMPION = "champion"
CHALLENGER = "challenger"
# What evaluate_step scores a model by: the test top-1 of the network that is logged and
# registered (the EMA network when the run has one).
SCORE_METRIC = "model_top1"


@dataclass(frozen=True)
class Candidate:
    model_uri: str      # a logged model (models:/m-...); its version links back to its run
    score: float


class RegistryError(InputError):
    """A candidate that must not be registered; the message says why."""


@dataclass(frozen=True)
class Registration:
    name: str
    version: str
    aliases: tuple[str, ...]    # the aliases this version holds after registration
    reason: str                 # why it was or was not promoted
    tracking_uri: str           # the MLflow store that holds the registry (credentials masked)

    @property
    def promoted(self) -> bool:
        return CHAMPION in self.aliases


def default_model_name(dataset: str) -> str:
    """One registered model per dataset, so its champion is always judged on that dataset."""
    return f"adautomix-{dataset}"


def register(candidate: Candidate, name: str, dataset: str, data_version: str = "",
             metric: str = SCORE_METRIC) -> Registration:
    """Register `candidate` as a new version of model `name` ('' names it adautomix-DATASET),
    make it the challenger, and make it the champion if it beats the current one on `dataset`
    by `metric` (higher is better)."""
    # MLflow is imported here, not at the top: compiling a pipeline names the registered model
    # (default_model_name) and should not pay for importing MLflow.
    import mlflow

    from .tracking import connect, display_uri

    name = name or default_model_name(dataset)
    if not math.isfinite(candidate.score):
        # A NaN champion could never be beaten (every comparison with NaN is false).
        raise RegistryError(f"model {candidate.model_uri} scored {candidate.score} on {metric}: "
                            "a model without a finite score is not registered; its training "
                            "or evaluation failed")
    client = connect()
    tags = {"dataset": dataset, "metric": metric, "score": repr(candidate.score),
            "data_version": data_version}
    version = mlflow.register_model(candidate.model_uri, name, tags=tags).version
    client.set_registered_model_alias(name, CHALLENGER, version)
    promote, reason = _judge(client, name, dataset, metric, candidate.score)
    if promote:
        client.set_registered_model_alias(name, CHAMPION, version)
    log.info("registered %s version %s: %s", name, version, reason)
    aliases = (CHALLENGER, CHAMPION) if promote else (CHALLENGER,)
    return Registration(name, str(version), aliases, reason, display_uri())


def register_best(candidates: list[Candidate], name: str, dataset: str, data_version: str = "",
                  metric: str = SCORE_METRIC) -> Registration:
    """Register only the best-scoring of several candidates (a sweep's runs)."""
    if not candidates:
        raise RegistryError("register_best got no candidates; the sweep produced no evaluated runs")
    # max() over a NaN answers by list order, so candidates without a finite score leave first
    scored = [c for c in candidates if math.isfinite(c.score)]
    if not scored:
        raise RegistryError(f"none of the {len(candidates)} candidates has a finite score "
                            f"({', '.join(str(c.score) for c in candidates)}); nothing is registered")
    for dropped in set(candidates) - set(scored):
        log.warning("not registering %s: its score is %s", dropped.model_uri, dropped.score)
    return register(max(scored, key=lambda c: c.score), name, dataset, data_version, metric)


def _judge(client, name: str, dataset: str, metric: str, score: float) -> tuple[bool, str]:
    aliases = client.get_registered_model(name).aliases
    if CHAMPION not in aliases:
        return True, "no champion yet"
    champion = client.get_model_version(name, aliases[CHAMPION])
    held = champion.tags
    if held.get("dataset") != dataset or held.get("metric") != metric:
        return False, (f"champion version {champion.version} was judged on "
                       f"{held.get('dataset')}/{held.get('metric')}, not {dataset}/{metric}; "
                       "set the champion alias by hand to switch")
    best = float(held["score"])
    if not math.isfinite(best):   # registered before scores were checked
        return True, f"champion version {champion.version} has no finite score ({best})"
    if score > best:
        return True, f"{metric} {score:.4g} beats champion version {champion.version} ({best:.4g})"
    return False, f"{metric} {score:.4g} does not beat champion version {champion.version} ({best:.4g})"
