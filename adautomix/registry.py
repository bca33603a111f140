"""The MLflow Model Registry: register a model version, set the champion and challenger aliases.

Every candidate is registered as a version, so nothing trained is lost. First it meets the gate
(`Gate`): its score must clear chance (100 / classes, in %) by a margin, and an absolute floor
if one is set. A version that fails it gets no alias, and the tags `gate` = rejected and
`gate_reason` say why. A version that passes becomes the `challenger`, and the `champion` too if
it beats the current champion on the same dataset and the same metric (strictly; a tie keeps the
champion), or if there is no champion yet. A version records what it was judged on as tags
(dataset, metric, score, chance, data version), so the comparison needs nothing but the registry.

The score is the registered network's validation top-1 (`SCORE_METRIC`), or its test top-1
(`TEST_SCORE_METRIC`) for a run on the paper's protocol, which holds out no validation split.

Moving the champion is a compare-and-set: MLflow's aliases are last-writer-wins, so two runs that
judge at once could both win and the later, maybe worse, write would stand. The judgement and
the write happen under a lock that the store itself makes atomic: a registered model named
NAME.champion-lock, which only one client can create (the store refuses a second with
RESOURCE_ALREADY_EXISTS) and which its holder deletes when done. A lock left by a killed holder
is broken once it has stayed the same for LOCK_STALE_S seconds of waiting, timed on the waiter's
own clock (the store's clock may differ), or at once when the lock names a process on this host
that has ended. A waiter says whom it waits for. After the write, the holder re-reads the alias.

A champion whose score tag is gone or not a number (deleted or edited by hand) is kept: without
its score nothing can be shown to beat it, and moving a champion on a guess would be worse than
not moving it. The reason names the version and the fix (restore the tag, or move the alias by
hand).

A version also records the image its training ran from (tags image, image_digest,
image_digest_source), copied from its run (tracking.Tracker records them there)."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import socket
import time
import uuid
from dataclasses import dataclass
from typing import Iterator

from .errors import InputError, RunFailure
from .gate import CHANCE_MARGIN, Gate, GateRejected  # noqa: F401  (part of this module's API)

log = logging.getLogger("adautomix.registry")

CHAMPION = "champion"
CHALLENGER = "challenger"
# What evaluate_step scores a model by: the top-1 of the network that is logged and registered
# (the EMA network when the run has one) on the validation split, or on test without one.
SCORE_METRIC = "model_val_top1"
TEST_SCORE_METRIC = "model_test_top1"
LOCK_SUFFIX = ".champion-lock"
# A holder's judgement and write are a few requests; a lock unchanged this long has lost its holder.
LOCK_STALE_S = 120.0
LOCK_HOLDER_TAG = "holder"
# How a holder names itself (champion_lock): its host and process, for a waiter to look at.
_HOLDER_PROCESS = re.compile(r" on (?P<host>\S+) pid (?P<pid>\d+) [0-9a-f]+$")


@dataclass(frozen=True)
class Candidate:
    model_uri: str  # a logged model (models:/m-...); its version links back to its run
    score: float  # top-1 in %, of `metric`
    chance: float  # top-1 in % of guessing: 100 / classes


class RegistryError(InputError):
    """A candidate that must not be registered; the message says why."""


class ChampionLockLost(RunFailure):
    """Another registration broke this one's champion lock before it could write."""


@dataclass(frozen=True)
class Registration:
    name: str
    version: str
    aliases: tuple[str, ...]  # the aliases this version holds after registration
    reason: str  # why it was or was not promoted, or why the gate rejected it
    tracking_uri: str  # the MLflow store that holds the registry (credentials masked)
    passed: bool = True  # whether it met the gate

    @property
    def promoted(self) -> bool:
        return CHAMPION in self.aliases

    def raise_if_rejected(self, candidates: int = 1) -> Registration:
        """Raise GateRejected when the gate rejected this version (and so, as it is the best
        of `candidates`, every one of them)."""
        if self.passed:
            return self
        which = (
            "the model"
            if candidates == 1
            else f"every one of the sweep's {candidates} models (the best is"
        )
        close = "" if candidates == 1 else ")"
        raise GateRejected(
            f"the registry gate rejected {which} {self.name} version {self.version}{close}: "
            f"{self.reason}. It is registered without an alias, and no champion moved; train "
            "longer or with more data, or lower the gate (--chance-margin, --min-score)"
        )


def default_model_name(dataset: str) -> str:
    """One registered model per dataset, so its champion is always judged on that dataset."""
    return f"adautomix-{dataset}"


def register(
    candidate: Candidate,
    name: str,
    dataset: str,
    data_version: str = "",
    metric: str = SCORE_METRIC,
    gate: Gate = Gate(),
) -> Registration:
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
        raise RegistryError(
            f"model {candidate.model_uri} scored {candidate.score} on {metric}: "
            "a model without a finite score is not registered; its training "
            "or evaluation failed"
        )
    client = connect()
    rejection = gate.rejection(metric, candidate.score, candidate.chance)
    tags = {
        "dataset": dataset,
        "metric": metric,
        "score": repr(candidate.score),
        "chance": repr(candidate.chance),
        "data_version": data_version,
        "gate": "rejected" if rejection else "passed",
        "gate_chance_margin": repr(gate.chance_margin),
        "gate_min_score": repr(gate.min_score),
    }
    if rejection:
        tags["gate_reason"] = rejection
    tags.update(_image_tags(client, candidate.model_uri))
    version = str(mlflow.register_model(candidate.model_uri, name, tags=tags).version)
    if rejection:
        log.warning("registered %s version %s without an alias: %s", name, version, rejection)
        return Registration(name, version, (), rejection, display_uri(), passed=False)
    with champion_lock(client, name, version) as still_held:
        client.set_registered_model_alias(name, CHALLENGER, version)
        promote, reason = _judge(client, name, dataset, metric, candidate.score)
        if promote:
            if not still_held():
                raise ChampionLockLost(
                    f"the champion lock of {name} was broken while version {version} was "
                    f"judged ({reason}); no alias moved for it: re-run the registration, or "
                    f"set the champion alias of {name} to version {version} by hand"
                )
            client.set_registered_model_alias(name, CHAMPION, version)
            holder = client.get_registered_model(name).aliases.get(CHAMPION)
            # the SQLite store answers an alias's version as an int, a server as a string
            if str(holder) != version:  # re-read after write: nothing else may write under the lock
                raise ChampionLockLost(
                    f"the champion alias of {name} moved to version {holder} "
                    f"while version {version} held its lock; check the "
                    "registry and set the alias by hand"
                )
    log.info("registered %s version %s: %s", name, version, reason)
    aliases = (CHALLENGER, CHAMPION) if promote else (CHALLENGER,)
    return Registration(name, version, aliases, reason, display_uri())


def best(candidates: list[Candidate]) -> Candidate:
    """The best-scoring of several candidates (a sweep's runs), the one to register: if the gate
    rejects it, it rejects them all."""
    if not candidates:
        raise RegistryError("no candidates to register; the pipeline produced no evaluated runs")
    # max() over a NaN answers by list order, so candidates without a finite score leave first
    scored = [c for c in candidates if math.isfinite(c.score)]
    if not scored:
        raise RegistryError(
            f"none of the {len(candidates)} candidates has a finite score "
            f"({', '.join(str(c.score) for c in candidates)}); nothing is registered"
        )
    for dropped in set(candidates) - set(scored):
        log.warning("not registering %s: its score is %s", dropped.model_uri, dropped.score)
    return max(scored, key=lambda c: c.score)


def _image_tags(client, model_uri: str) -> dict[str, str]:
    """The image tags of the run that logged `model_uri` (models:/m-... or runs:/RUN/...), or
    tags that say the run recorded none."""
    run_id = ""
    try:
        if model_uri.startswith("runs:/"):
            run_id = model_uri[len("runs:/") :].split("/")[0]
        elif model_uri.startswith("models:/m-"):
            run_id = client.get_logged_model(model_uri[len("models:/") :]).source_run_id or ""
        held = client.get_run(run_id).data.tags if run_id else {}
    except Exception as exc:  # the version is still worth registering; the tags say why
        held = {
            "image_digest_source": f"the run of {model_uri} could not be read "
            f"({type(exc).__name__})"
        }
    return {
        "image": held.get("image", "unknown"),
        "image_digest": held.get("image_digest", "unknown"),
        "image_digest_source": held.get(
            "image_digest_source",
            f"run {run_id} recorded no image digest" if run_id else f"{model_uri} names no run",
        ),
    }


def lock_name(name: str) -> str:
    return f"{name}{LOCK_SUFFIX}"


@contextlib.contextmanager
def champion_lock(
    client, name: str, version: str = "", stale_after: float = LOCK_STALE_S
) -> Iterator:
    """Hold the champion lock of registered model `name` for the block; yields a function that
    says whether this holder still holds it. Waits while another holds it."""
    from mlflow.exceptions import MlflowException

    lock = lock_name(name)
    token = (
        f"{name} version {version or '?'} on {socket.gethostname()} pid {os.getpid()} "
        f"{uuid.uuid4().hex[:8]}"
    )
    seen, since, pause = None, time.monotonic(), 0.05
    while True:
        try:
            client.create_registered_model(
                lock,
                tags={LOCK_HOLDER_TAG: token},
                description=f"held while a registration moves the champion alias of {name}; "
                "delete it only if no registration is running",
            )
            break
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        holder = _lock_holder(client, lock)
        if holder is None:  # released between our try and our look: try again now
            continue
        gone = _holder_gone(holder)
        if gone:
            log.warning("breaking the champion lock of %s, held by %s: %s", name, holder, gone)
            _release(client, lock, holder)
            continue
        if holder != seen:
            seen, since = holder, time.monotonic()
            log.warning(
                "waiting for the champion lock of %s, held by %s: it is broken once it stays so "
                "for %.0f s; if no registration is running, delete the registered model %s to "
                "go on now",
                name,
                holder,
                stale_after,
                lock,
            )
        elif time.monotonic() - since > stale_after:
            log.warning(
                "breaking the champion lock of %s: %s has held it unchanged for %.0f s, "
                "so its holder is gone",
                name,
                holder,
                stale_after,
            )
            _release(client, lock, holder)
            continue
        time.sleep(pause)
        pause = min(pause * 2, 1.0)
    try:
        yield lambda: _lock_holder(client, lock) == token
    finally:
        _release(client, lock, token)


def _holder_gone(holder: str) -> str:
    """Why the lock's holder is provably gone, or '' if it may be alive: only a process on this
    host can be looked at (another host's, or one of our own threads, is waited out)."""
    named = _HOLDER_PROCESS.search(holder)
    if named is None or named["host"] != socket.gethostname():
        return ""
    pid = int(named["pid"])
    if pid == os.getpid():
        return ""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return f"its process {pid} on this host has ended"
    except OSError:  # someone else's live process
        return ""
    return ""


def _lock_holder(client, lock: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_registered_model(lock).tags.get(LOCK_HOLDER_TAG, "")
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise


def _release(client, lock: str, holder: str) -> None:
    """Delete the lock if `holder` holds it still (not one that a breaker has taken since)."""
    from mlflow.exceptions import MlflowException

    if _lock_holder(client, lock) != holder:
        return
    try:
        client.delete_registered_model(lock)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise


def _judge(client, name: str, dataset: str, metric: str, score: float) -> tuple[bool, str]:
    aliases = client.get_registered_model(name).aliases
    if CHAMPION not in aliases:
        return True, "no champion yet"
    champion = client.get_model_version(name, aliases[CHAMPION])
    held = champion.tags
    if held.get("dataset") != dataset or held.get("metric") != metric:
        return False, (
            f"champion version {champion.version} was judged on "
            f"{held.get('dataset')}/{held.get('metric')}, not {dataset}/{metric}; "
            "set the champion alias by hand to switch"
        )
    try:
        best = float(held["score"])
    except (KeyError, ValueError):
        reason = (
            f"champion version {champion.version} of {name} has "
            + (
                f"a score tag {held['score']!r} that is not a number"
                if "score" in held
                else "no score tag"
            )
            + f", so nothing can be shown to beat it and it stays champion; restore its tag "
            f"(MlflowClient().set_model_version_tag({name!r}, {champion.version!r}, "
            f"'score', '<{metric} in %>')) or move the champion alias by hand"
        )
        log.warning("%s", reason)
        return False, reason
    if not math.isfinite(best):  # registered before scores were checked
        return True, f"champion version {champion.version} has no finite score ({best})"
    if score > best:
        return True, f"{metric} {score:.4g} beats champion version {champion.version} ({best:.4g})"
    return (
        False,
        f"{metric} {score:.4g} does not beat champion version {champion.version} ({best:.4g})",
    )
