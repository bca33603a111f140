"""Distributed training on the CPU: real torchrun (`python -m torch.distributed.run`), two Gloo
processes, the real engine, loader and MLflow store, the small test backbone.

What N ranks must keep from one process: the global batch (the loader interleaves the ranks, so
step s of 2 ranks with 2×b images reads the same images, with the same augmentation, as step s
of one process with 2b), the averaged gradients, one set of weights on every rank, the whole test
set evaluated once and one writer. Where the maths differs: BatchNorm's batch statistics are a
rank's shard's (torch's SyncBatchNorm runs on GPUs only), and mixing methods pair images within
a rank's shard; the comparisons with one process use a BN-free network for the first reason and
vanilla training for the second."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

import adautomix.engine.train as engine
from adautomix.config import TEACHER_METHODS, RunConfig
from adautomix.engine.checkpoint import load_checkpoint
from adautomix.engine.saved_run import evaluate_networks, load_run
from tests.servers import free_port
from tests.engine.distributed_worker import tiny_model
from tests.helpers import small_run

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("distributed_worker.py")


def torchrun(config: RunConfig, dump: Path, ranks: int = 2, *extra: str, wait: bool = True):
    """Start the worker on `ranks` Gloo processes; wait for it unless told not to."""
    path = dump.parent / f"{dump.name}.json"
    config.save(path)
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes",
        "1",
        "--nproc_per_node",
        str(ranks),
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(free_port()),
        str(WORKER),
        str(path),
        "--dump",
        str(dump),
        *extra,
    ]
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    if not wait:
        return proc
    output, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, output[-4000:]
    return output


def states(dump: Path, ranks: int = 2) -> list[dict]:
    return [torch.load(dump / f"state-{r}.pt", weights_only=True) for r in range(ranks)]


def base_config(root, tmp_path, name, **changes) -> RunConfig:
    values = dict(
        method="vanilla",
        epochs=2,
        subset=400,
        test_subset=200,
        batch_size=50,
        lr=0.05,
        ema_decay=0.9,
        lr_schedule_by="step",
        num_workers=0,
        loader="memory",
        device="cpu",
    )
    if changes.get("method") in TEACHER_METHODS:
        del values["ema_decay"]  # the method's own teacher is its EMA network
    return small_run(root, tmp_path / name, "test-distributed", **{**values, **changes})


def assert_same_weights(ours: dict, theirs: dict, exact: bool) -> None:
    assert ours.keys() == theirs.keys()
    for key, value in theirs.items():
        if exact:
            assert torch.equal(ours[key], value), key
        else:
            torch.testing.assert_close(ours[key], value, rtol=1e-4, atol=1e-5, msg=key)


@pytest.fixture(scope="module")
def two_ranks(fmnist_root, tmp_path_factory) -> Path:
    """base_config's vanilla run on two uninterrupted ranks (BN-free network), in "two" below the
    folder it returns, the ranks' states in "dump-two": the reference of two tests, launched
    once (a torchrun launch costs tens of seconds here)."""
    root = tmp_path_factory.mktemp("two-ranks")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
        torchrun(base_config(fmnist_root, root, "two"), root / "dump-two", 2, "--norm", "none")
    return root


@pytest.fixture
def tiny(monkeypatch):
    """This process's engine builds the BN-free test backbone, as the workers do."""
    monkeypatch.setattr(engine, "create_model", tiny_model("none"))


def test_two_ranks_train_as_one_process_with_the_global_batch(
    fmnist_root, mlflow_sqlite, tmp_path, tiny, two_ranks
):
    # The same 16 steps of 50 images, on one process and on two ranks of 25 each. Tolerance:
    # only the order of float additions differs (one mean over 50 vs the mean of two means).
    config = base_config(fmnist_root, tmp_path, "two")
    two = load_checkpoint(two_ranks / "two")
    first, second = states(two_ranks / "dump-two")  # the engine's EMA: one on every rank
    assert_same_weights(first["ema"], second["ema"], exact=True)
    one = engine.train(config.replace(output_dir=str(tmp_path / "one")))
    reference = load_checkpoint(tmp_path / "one")
    assert two["step"] == reference["step"] == 16
    assert_same_weights(two["model"], reference["model"], exact=False)
    assert_same_weights(two["ema"], reference["ema"], exact=False)
    for ours, theirs in zip(two["history"], reference["history"]):
        assert ours["train_loss"] == pytest.approx(theirs["train_loss"], rel=1e-4)
        assert ours["test_top1"] == pytest.approx(theirs["test_top1"], abs=0.5)  # 1 image in 200
    # and training moved the weights far beyond that tolerance, so the match says something
    torch.manual_seed(config.seed)
    initial = tiny_model("none")("resnet18", 10, 1, False).state_dict()
    moved = max((reference["model"][k] - v).abs().max().item() for k, v in initial.items())
    assert moved > 1e-2
    assert one.run_id != two["run_id"]


def test_two_rank_adautomix_keeps_every_rank_identical_and_writes_once(
    fmnist_root, mlflow_sqlite, tmp_path, monkeypatch
):
    config = base_config(
        fmnist_root,
        tmp_path,
        "run",
        method="adautomix",
        batch_size=16,
        subset=160,
        test_subset=100,
        log_images_every=1,
        method_args={"teacher_momentum": 0.9, "end_momentum": 0.99},
    )
    output = torchrun(config, tmp_path / "dump", 2)
    first, second = states(tmp_path / "dump")
    # online weights, both heads, the generator, the EMA teacher (parameters and the BN running
    # statistics averaged before evaluation): the same bits on both ranks
    assert any(k.startswith("generator.") for k in first["method"])
    assert any(k.startswith("net_k.") and k.endswith("running_var") for k in first["method"])
    assert_same_weights(first["model"], second["model"], exact=True)
    assert_same_weights(first["method"], second["method"], exact=True)
    assert first["history"] == second["history"]
    assert all(torch.isfinite(torch.tensor(h["train_loss"])) for h in first["history"])

    # the logged top-1 is the whole test set's, as one process computes it from the checkpoint
    monkeypatch.setattr(engine, "create_model", tiny_model("batch"))
    one_process = evaluate_networks(load_run(tmp_path / "run", device="cpu")).metrics
    last = first["history"][-1]
    assert last["test_top1"] == one_process["top1"]
    assert last["test_top1_ema"] == one_process["top1_ema"]
    assert last["test_loss"] == pytest.approx(one_process["loss"], rel=1e-4)

    # every rank-0-only write happened once: config, tracker, each epoch's checkpoint and then
    # its metrics (MLflow hears of an epoch only once it is on disk)
    writes = (tmp_path / "dump" / "writes-0.log").read_text().splitlines()
    assert writes == [
        "config",
        "tracker",
        "checkpoint 1",
        "metrics 1",
        "checkpoint 2",
        "metrics 2",
        "metrics 2",
    ], writes  # the last: the medians of the run
    assert not (tmp_path / "dump" / "writes-1.log").exists()
    assert output.count("epoch 1: loss") == output.count("epoch 2: loss") == 1
    client = MlflowClient(mlflow_sqlite)
    [run] = client.search_runs([client.get_experiment_by_name("test-distributed").experiment_id])
    assert run.info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "test_top1")] == [1, 2]
    assert len(client.list_artifacts(run.info.run_id, "samples")) == 2


def test_checkpoint_of_two_ranks_resumes_on_one(
    fmnist_root, mlflow_sqlite, tmp_path, tiny, two_ranks
):
    # Two ranks stop after epoch 1 (as a crash after its checkpoint would); one process resumes
    # epoch 2 in the same MLflow run and ends where two uninterrupted ranks end, within the
    # float tolerance of one mean against the mean of two (BN-free network, vanilla).
    config = base_config(fmnist_root, tmp_path, "resumed")
    torchrun(config, tmp_path / "dump-stopped", 2, "--norm", "none", "--stop-after-epoch", "1")
    stopped = load_checkpoint(tmp_path / "resumed")
    assert stopped["epoch"] == 1
    resumed = engine.train(config, resume=True)
    assert resumed.run_id == stopped["run_id"]

    final, expected = load_checkpoint(tmp_path / "resumed"), load_checkpoint(two_ranks / "two")
    assert final["step"] == expected["step"]
    assert_same_weights(final["model"], expected["model"], exact=False)
    steps = [
        m.step for m in MlflowClient(mlflow_sqlite).get_metric_history(resumed.run_id, "test_top1")
    ]
    assert steps == [1, 2]


def test_a_rank_that_dies_fails_the_run_and_leaves_the_checkpoint(
    fmnist_root, mlflow_sqlite, tmp_path, tiny
):
    config = base_config(fmnist_root, tmp_path, "run", epochs=4, subset=400)
    dump = tmp_path / "dump"
    proc = torchrun(config, dump, 2, "--norm", "none", wait=False)
    deadline = time.monotonic() + 240
    while not (tmp_path / "run" / "checkpoint.pt").exists():  # kill rank 1 during epoch 2
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[0][-3000:]
        time.sleep(0.2)
    os.kill(int((dump / "pid-1").read_text()), signal.SIGKILL)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode != 0
    assert "ChildFailedError" in output and "Signal 9 (SIGKILL)" in output, output[-3000:]
    interrupted = load_checkpoint(tmp_path / "run")  # whole and readable
    assert 1 <= interrupted["epoch"] < 4
    resumed = engine.train(config, resume=True)  # a re-run, here on one process
    assert resumed.run_id == interrupted["run_id"] and len(resumed.history) == 4
