"""The registry against a real MLflow server over HTTP (and the embedded SQLite store): versions,
challenger and champion, the champion moved under a lock by parallel registrations, and the image
each version ran from."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from subprocess import PIPE

import mlflow
import pytest

from adautomix.config import ConfigError, RunConfig
from adautomix.registry import (
    CHALLENGER,
    CHAMPION,
    Candidate,
    Gate,
    GateRejected,
    RegistryError,
    Registration,
    best,
    champion_lock,
    lock_name,
    register,
)
from adautomix.tracking import Tracker, TrackingError, connect
from tests.tracking_helpers import logged_model

TEN_CLASSES = 10.0  # chance top-1, %


def candidate(score: float) -> Candidate:
    return Candidate(logged_model(), score, TEN_CLASSES)


@pytest.fixture
def name(mlflow_http):
    return f"model-{uuid.uuid4().hex[:8]}"


def aliases(name: str) -> dict[str, str]:
    return dict(connect().get_registered_model(name).aliases)


def test_the_first_version_is_challenger_and_champion(name):
    done = register(candidate(80.0), name, "fashion-mnist")
    assert done.version == "1" and done.promoted
    assert aliases(name) == {CHALLENGER: "1", CHAMPION: "1"}
    version = connect().get_model_version(name, "1")
    assert version.tags["dataset"] == "fashion-mnist" and float(version.tags["score"]) == 80.0


def test_a_better_model_takes_the_champion_alias(name):
    register(candidate(80.0), name, "fashion-mnist")
    done = register(candidate(81.5), name, "fashion-mnist")
    assert done.promoted and "beats" in done.reason
    assert aliases(name) == {CHALLENGER: "2", CHAMPION: "2"}


@pytest.mark.parametrize("score", [79.0, 80.0])
def test_a_worse_or_equal_model_is_only_the_challenger(name, score):
    register(candidate(80.0), name, "fashion-mnist")
    done = register(candidate(score), name, "fashion-mnist")
    assert not done.promoted and "does not beat" in done.reason
    assert aliases(name) == {CHALLENGER: "2", CHAMPION: "1"}


def test_a_champion_on_another_dataset_or_metric_is_not_challenged(name):
    register(candidate(50.0), name, "cifar100")
    on_other_data = register(candidate(90.0), name, "fashion-mnist")
    on_other_metric = register(candidate(90.0), name, "cifar100", metric="test_top5")
    assert not on_other_data.promoted and "cifar100" in on_other_data.reason
    assert not on_other_metric.promoted
    assert aliases(name)[CHAMPION] == "1"


def test_the_best_candidate_alone_is_registered(name):
    candidates = [candidate(s) for s in (70.0, 85.0, 60.0)]
    done = register(best(candidates), name, "fashion-mnist", data_version="d" * 32 + ".dir")
    version = connect().get_model_version(name, done.version)
    assert float(version.tags["score"]) == 85.0 and version.tags["data_version"].startswith("ddd")
    assert len(connect().search_model_versions(f"name='{name}'")) == 1


def test_an_empty_name_is_one_model_per_dataset(mlflow_http):
    dataset = "cub200"
    done = register(candidate(10.0), "", dataset)
    assert done.name == "adautomix-cub200"


def test_an_unreachable_server_is_named(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    with pytest.raises(TrackingError, match="127.0.0.1:9"):
        register(Candidate("models:/m-x", 50.0, TEN_CLASSES), "x", "fashion-mnist")


@pytest.mark.parametrize("score", [10.2, 15.0])
def test_a_model_at_chance_is_versioned_with_its_reason_but_holds_no_alias(name, score):
    register(candidate(80.0), name, "fashion-mnist")
    done = register(candidate(score), name, "fashion-mnist")
    assert not done.passed and not done.promoted and done.aliases == ()
    assert "chance" in done.reason and "15" in done.reason
    assert aliases(name) == {CHALLENGER: "1", CHAMPION: "1"}  # nothing moved
    version = connect().get_model_version(name, done.version)
    assert version.tags["gate"] == "rejected" and version.tags["gate_reason"] == done.reason


def test_a_first_model_at_chance_does_not_become_champion(name):
    done = register(candidate(10.0), name, "fashion-mnist")
    assert done.version == "1" and not done.passed
    assert aliases(name) == {}


def test_the_gate_is_relative_to_chance_and_takes_a_floor(name):
    hundred_classes = Candidate(logged_model(), 12.0, 1.0)  # 12x chance on 100 classes
    assert register(hundred_classes, name, "cifar100").promoted
    floored = register(
        Candidate(logged_model(), 40.0, 1.0), name, "cifar100", gate=Gate(min_score=50.0)
    )
    assert not floored.passed and "minimum score 50" in floored.reason
    relaxed = register(candidate(12.0), f"{name}-f", "fashion-mnist", gate=Gate(chance_margin=1.0))
    assert relaxed.promoted


def test_a_sweep_whose_best_is_rejected_names_it_and_raises(name):
    register(candidate(80.0), name, "fashion-mnist")
    done = register(best([candidate(s) for s in (9.0, 11.0, 10.0)]), name, "fashion-mnist")
    assert not done.passed and float(connect().get_model_version(name, "2").tags["score"]) == 11.0
    with pytest.raises(GateRejected, match=r"every one of the sweep's 3 models.*version 2.*chance"):
        done.raise_if_rejected(candidates=3)
    assert aliases(name) == {CHALLENGER: "1", CHAMPION: "1"}
    assert register(candidate(81.0), name, "fashion-mnist").raise_if_rejected().promoted


@pytest.mark.parametrize("field", ["chance_margin", "min_score"])
def test_a_gate_outside_percent_is_named(field):
    with pytest.raises(ConfigError, match=field):
        Gate(**{field: -1.0})


@pytest.mark.parametrize("score", [float("nan"), float("inf"), float("-inf")])
def test_a_non_finite_score_is_never_registered(name, score):
    register(candidate(80.0), name, "fashion-mnist")
    with pytest.raises(RegistryError, match="finite score"):
        register(candidate(score), name, "fashion-mnist")
    assert len(connect().search_model_versions(f"name='{name}'")) == 1
    assert aliases(name) == {CHALLENGER: "1", CHAMPION: "1"}


def test_the_best_candidate_passes_over_a_nan_one(name):
    done = register(
        best([candidate(float("nan")), candidate(60.0), candidate(70.0)]), name, "fashion-mnist"
    )
    assert float(connect().get_model_version(name, done.version).tags["score"]) == 70.0
    with pytest.raises(RegistryError, match="none of the 1 candidates"):
        best([candidate(float("nan"))])


def test_a_nan_champion_from_before_the_check_can_be_beaten(name):
    client = connect()
    register(candidate(80.0), name, "fashion-mnist")
    client.set_model_version_tag(name, "1", "score", "nan")
    assert register(candidate(50.0), name, "fashion-mnist").promoted


def test_the_reported_store_has_no_password(monkeypatch, mlflow_http, name):
    with_password = mlflow_http.replace("http://", "http://alice:s3cret@")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", with_password)
    done = register(candidate(50.0), name, "fashion-mnist")
    assert "s3cret" not in done.tracking_uri and done.tracking_uri.startswith("http://alice:***@")


# --- parallel registrations: one champion, the best ------------------------------------------


def test_parallel_registrations_leave_the_best_as_the_one_champion(name):
    register(candidate(80.0), name, "fashion-mnist")
    scores = [83.0, 86.0, 81.0, 85.0, 82.0, 84.0]
    racers = [candidate(s) for s in scores]
    start = threading.Barrier(len(racers))

    def race(racer: Candidate) -> Registration:
        start.wait()
        return register(racer, name, "fashion-mnist")

    with ThreadPoolExecutor(len(racers)) as pool:
        done = list(pool.map(race, racers))
    best = next(d for d, s in zip(done, scores) if s == max(scores))
    assert aliases(name)[CHAMPION] == best.version and best.promoted
    client = connect()
    score = {
        v.version: float(v.tags["score"]) for v in client.search_model_versions(f"name='{name}'")
    }
    assert score[best.version] == 86.0 and len(score) == 1 + len(racers)
    # Each racer was judged against the champion it found under the lock (its reason names it).
    # The promotions therefore follow one another: each replaced the one before, with a higher
    # score, in one chain from version 1 to the best. Without the lock two racers could both
    # find version 1 and both be promoted over it, and a worse one could land last.
    successor = {}
    for racer in done:
        judged = re.search(r"champion version (\d+) \(", racer.reason)
        assert judged, racer.reason
        champion = judged.group(1)
        if racer.promoted:
            assert champion not in successor, f"{champion} replaced twice"
            assert score[racer.version] > score[champion], racer.reason
            successor[champion] = racer.version
        else:
            assert score[racer.version] <= score[champion], racer.reason
    chain = ["1"]
    while chain[-1] in successor:
        chain.append(successor[chain[-1]])
    assert len(chain) == 1 + sum(d.promoted for d in done)  # every promotion is on it
    rising = [score[version] for version in chain]
    assert all(before < after for before, after in zip(rising, rising[1:])), rising
    assert chain[-1] == best.version
    assert client.search_registered_models(f"name = '{lock_name(name)}'") == []


def test_a_lock_left_by_a_killed_holder_is_broken_and_one_held_is_waited_for(name):
    client = connect()
    client.create_registered_model(lock_name(name), tags={"holder": "a registration killed"})
    with champion_lock(client, name, "1", stale_after=0.5) as still_held:
        assert still_held()
        holder = client.get_registered_model(lock_name(name)).tags["holder"]
        assert holder.startswith(f"{name} version 1 on ")
        waited = []
        rival = threading.Thread(
            target=lambda: waited.append(register(candidate(80.0), name, "fashion-mnist"))
        )
        rival.start()
        rival.join(timeout=2)
        assert rival.is_alive() and CHAMPION not in aliases(name)  # waits for the lock
    rival.join(timeout=120)
    assert waited[0].promoted and aliases(name)[CHAMPION] == waited[0].version


def holder_token(name: str, pid: int) -> str:
    """A champion lock's holder as a registration on this host names itself."""
    return f"{name} version 1 on {socket.gethostname()} pid {pid} 0badf00d"


def test_a_lock_whose_holder_process_ended_on_this_host_is_broken_at_once(name, caplog):
    """A registration killed on this host left its lock: its process is provably gone, so the
    next registration breaks the lock at once instead of waiting `stale_after` for it."""
    ended = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    client = connect()
    client.create_registered_model(
        lock_name(name), tags={"holder": holder_token(name, int(ended.stdout))}
    )
    start = time.monotonic()
    with champion_lock(client, name, "2", stale_after=30) as still_held:
        assert still_held()
    assert time.monotonic() - start < 10
    assert f"its process {int(ended.stdout)} on this host has ended" in caplog.text


def test_a_registration_waiting_for_the_lock_says_for_what_and_how_long(name, caplog):
    """A live holder (its process runs on this host) is waited for, and the waiter says whom it
    waits for, until when, and how to go on if no registration runs."""
    alive = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=PIPE)
    try:
        client = connect()
        holder = holder_token(name, alive.pid)
        client.create_registered_model(lock_name(name), tags={"holder": holder})
        start = time.monotonic()
        with champion_lock(client, name, "2", stale_after=1.0):
            assert time.monotonic() - start > 1.0  # not broken before its time
    finally:
        alive.communicate(b"")
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("waiting for")]
    assert said == [
        f"waiting for the champion lock of {name}, held by {holder}: it is broken once it "
        f"stays so for 1 s; if no registration is running, delete the registered model "
        f"{lock_name(name)} to go on now"
    ]


# --- a champion that lost its score ----------------------------------------------------------


@pytest.mark.parametrize("damage", ["deleted", "garbled"])
def test_a_champion_without_a_readable_score_stays_and_the_reason_names_it(name, damage):
    client = connect()
    register(candidate(80.0), name, "fashion-mnist")
    if damage == "deleted":
        client.delete_model_version_tag(name, "1", "score")
    else:
        client.set_model_version_tag(name, "1", "score", "eighty")
    done = register(candidate(95.0), name, "fashion-mnist")
    assert not done.promoted and aliases(name) == {CHALLENGER: "2", CHAMPION: "1"}
    what = "no score tag" if damage == "deleted" else "a score tag 'eighty' that is not a number"
    assert done.reason.startswith(f"champion version 1 of {name} has {what}")
    assert f"set_model_version_tag('{name}', '1', 'score'" in done.reason


# --- the image that ran ----------------------------------------------------------------------

PINNED = "registry.example.com/ml/adautomix@sha256:" + "5e" * 32


def test_a_version_records_the_image_digest_its_run_ran_from(name, monkeypatch, tmp_path):
    monkeypatch.setenv("ADAUTOMIX_IMAGE", PINNED)
    run = Tracker(RunConfig(output_dir=str(tmp_path / "run"), experiment="registry-tests"), "h")
    model = mlflow.initialize_logged_model(name="model", source_run_id=run.run_id)
    run.finish()
    done = register(
        Candidate(f"models:/{model.model_id}", 80.0, TEN_CLASSES), name, "fashion-mnist"
    )
    tags = connect().get_model_version(name, done.version).tags
    assert tags["image"] == PINNED and tags["image_digest"] == "sha256:" + "5e" * 32
    assert tags["image_digest_source"] == "pinned reference (ADAUTOMIX_IMAGE)"
    assert connect().get_run(run.run_id).data.tags["image_digest"] == tags["image_digest"]


def test_a_version_whose_run_recorded_no_image_says_so(name):
    done = register(candidate(80.0), name, "fashion-mnist")
    tags = connect().get_model_version(name, done.version).tags
    assert tags["image"] == "unknown" and tags["image_digest"] == "unknown"
    assert tags["image_digest_source"].endswith("recorded no image digest")


def test_the_embedded_sqlite_store_moves_the_champion_too(mlflow_sqlite):
    """The embedded default store answers an alias's version as an int where a server answers a
    string: the re-read after the write must see the version it wrote in both."""
    name = f"model-{uuid.uuid4().hex[:8]}"
    assert register(candidate(80.0), name, "fashion-mnist").promoted
    done = register(candidate(81.5), name, "fashion-mnist")
    assert done.promoted and "beats" in done.reason
    assert {k: str(v) for k, v in aliases(name).items()} == {CHALLENGER: "2", CHAMPION: "2"}
