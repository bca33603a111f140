"""The MLflow Model Registry: register a model version, set the champion and challenger aliases.

Every candidate is registered as a version, so nothing trained is lost. First it meets the gate
(`Gate`): its score must clear chance (100 / classes, in %) by a margin, and an absolute floor
if one is set. A version that fails it gets no alias, and the tags `gate` = rejected and
`gate_reason` say why. A version that passes becomes the `challenger`, and the `champion` too if
it beats the current champion on the same dataset and the same metric (strictly; a tie keeps the
champion), or if there is no champion yet. A version records what it was judged on as tags
(dataset, metric, score, chance, data version), so the comparison needs nothing but the registry.

The score is the registered network's validation top-1 (`SCORE_METRIC`), or its test top-1
(`TEST_SCORE_METRIC`) for a run on the paper's protocol, which holds out no validation split."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

from .errors import InputError
from .gate import CHANCE_MARGIN, Gate, GateRejected  # noqa: F401  (part of this module's API)

log = logging.getLogger("adautomix.registry")

CHAMPION = "champion"
CHALLENGER = "challenger"
# What evaluate_step scores a model by: the top-1 of the network that is logged and registered
# (the EMA network when the run has one) on the validation split, or on test without one.
SCORE_METRIC = "model_val_top1"
TEST_SCORE_METRIC = "model_test_top1"


@dataclass(frozen=True)
class Candidate:
    model_uri: str      # a logged model (models:/m-...); its version links back to its run
    score: float        # top-1 in %, of `metric`
    chance: float       # top-1 in % of guessing: 100 / classes


class RegistryError(InputError):
    """A candidate that must not be registered; the message says why."""


@dataclass(frozen=True)
class Registration:
    name: str
    version: str
    aliases: tuple[str, ...]    # the aliases this version holds after registration
    reason: str                 # why it was or was not promoted, or why the gate rejected it
    tracking_uri: str           # the MLflow store that holds the registry (credentials masked)
    passed: bool = True         # whether it met the gate

    @property
    def promoted(self) -> bool:
        return CHAMPION in self.aliases

    def raise_if_rejected(self, candidates: int = 1) -> "Registration":
        """Raise GateRejected when the gate rejected this version (and so, as it is the best
        of `candidates`, every one of them)."""
        if self.passed:
            return self
        which = ("the model" if candidates == 1 else
                 f"every one of the sweep's {candidates} models (the best is")
        close = "" if candidates == 1 else ")"
        raise GateRejected(
            f"the registry gate rejected {which} {self.name} version {self.version}{close}: "
            f"{self.reason}. It is registered without an alias, and no champion moved; train "
            "longer or with more data, or lower the gate (--chance-margin, --min-score)")


def default_model_name(dataset: str) -> str:
    """One registered model per dataset, so its champion is always judged on that dataset."""
    return f"adautomix-{dataset}"


def register(candidate: Candidate, name: str, dataset: str, data_version: str = "",
             metric: str = SCORE_METRIC, gate: Gate = Gate()) -> Registration:
    """Register `candidate` as a new version of model `name` ('' names it adautomix-DATASET).
    If it meets `gate`, make it the challenger, and the champion if it beats the current one on
    `dataset` by `metric` (higher is better); if not, tag it with the reason and move no alias."""
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
    rejection = gate.rejection(metric, candidate.score, candidate.chance)
    tags = {"dataset": dataset, "metric": metric, "score": repr(candidate.score),
            "chance": repr(candidate.chance), "data_version": data_version,
            "gate": "rejected" if rejection else "passed",
            "gate_chance_margin": repr(gate.chance_margin), "gate_min_score": repr(gate.min_score)}
    if rejection:
        tags["gate_reason"] = rejection
    version = str(mlflow.register_model(candidate.model_uri, name, tags=tags).version)
    if rejection:
        log.warning("registered %s version %s without an alias: %s", name, version, rejection)
        return Registration(name, version, (), rejection, display_uri(), passed=False)
    client.set_registered_model_alias(name, CHALLENGER, version)
    promote, reason = _judge(client, name, dataset, metric, candidate.score)
    if promote:
        client.set_registered_model_alias(name, CHAMPION, version)
    log.info("registered %s version %s: %s", name, version, reason)
    aliases = (CHALLENGER, CHAMPION) if promote else (CHALLENGER,)
    return Registration(name, version, aliases, reason, display_uri())


def register_best(candidates: list[Candidate], name: str, dataset: str, data_version: str = "",
                  metric: str = SCORE_METRIC, gate: Gate = Gate()) -> Registration:
    """Register only the best-scoring of several candidates (a sweep's runs); if the gate
    rejects it, it rejects them all."""
    if not candidates:
        raise RegistryError("register_best got no candidates; the sweep produced no evaluated runs")
    # max() over a NaN answers by list order, so candidates without a finite score leave first
    scored = [c for c in candidates if math.isfinite(c.score)]
    if not scored:
        raise RegistryError(f"none of the {len(candidates)} candidates has a finite score "
                            f"({', '.join(str(c.score) for c in candidates)}); nothing is registered")
    for dropped in set(candidates) - set(scored):
        log.warning("not registering %s: its score is %s", dropped.model_uri, dropped.score)
    return register(max(scored, key=lambda c: c.score), name, dataset, data_version, metric,
                    gate)


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
