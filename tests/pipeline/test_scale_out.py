"""Scaling out in the compiled pipeline: G GPUs in one pod are G torchrun processes with a
memory-backed /dev/shm; K nodes are a TrainJob step that gets the same pod settings through
dsl.TaskConfig; the evaluation takes one GPU either way."""

from __future__ import annotations

import pytest
import yaml

from adautomix.config import ConfigError
from adautomix.cluster.launch import single_pod_command
from components import BASE_IMAGE
from pipeline.cluster_settings import ClusterSettings
from pipeline.cli import main
from pipeline.run import training_arguments
from tests.helpers import PROJECT, compiled, inner_tasks


def gpu_parameter(spec: dict, executor: str) -> str:
    """The pipeline parameter an executor's GPU count reads, with its compiled default."""
    accelerator = spec["deploymentSpec"]["executors"][executor]["container"]["resources"][
        "accelerator"
    ]
    assert accelerator["resourceType"] == "nvidia.com/gpu"
    return accelerator["resourceCount"]


def test_four_gpus_in_one_pod_are_four_torchrun_processes_with_shared_memory(tmp_path):
    spec, executors = compiled(tmp_path, "--num-gpus", "4")
    defaults = spec["root"]["inputDefinitions"]["parameters"]
    assert defaults["num_gpus"]["defaultValue"] == 4
    assert "num_gpus" in gpu_parameter(spec, "exec-train")
    # the same parameter reaches the step as its process count
    train = inner_tasks(spec)["train"]
    assert train["inputs"]["parameters"]["num_gpus"]["componentInputParameter"] == "num_gpus"
    source = "".join(spec["deploymentSpec"]["executors"]["exec-train"]["container"]["command"])
    assert "nproc=num_gpus" in source
    command = single_pod_command(4, "/mnt/adautomix/runs/checkpoints/k/config.json", "python")
    assert command == [
        "python",
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nnodes",
        "1",
        "--nproc_per_node",
        "4",
        "-m",
        "adautomix.cli",
        "train",
        "--config",
        "/mnt/adautomix/runs/checkpoints/k/config.json",
        "--resume",
    ]
    # /dev/shm: 4Gi per GPU, sized (and counted into the memory figures: test_cluster_settings)
    assert executors["exec-train"]["emptyDirMounts"] == [
        {"medium": "Memory", "mountPath": "/dev/shm", "volumeName": "dshm", "sizeLimit": "16Gi"}
    ]
    # evaluation: one GPU, whatever training took
    assert defaults["evaluate_gpus"]["defaultValue"] == 1
    assert "evaluate_gpus" in gpu_parameter(spec, "exec-evaluate")
    # one pod trains: no job options, and no task config passed through
    assert "job_options" not in inner_tasks(spec)["train"]["inputs"]["parameters"]
    assert "taskConfigPassthroughs" not in spec["components"]["comp-train"]


def test_cpu_runs_evaluate_without_a_gpu(tmp_path):
    spec, _ = compiled(tmp_path, "--num-gpus", "0")
    assert spec["root"]["inputDefinitions"]["parameters"]["evaluate_gpus"]["defaultValue"] == 0


def test_two_nodes_train_through_a_trainjob_step_with_the_single_pod_settings(tmp_path):
    spec, executors = compiled(
        tmp_path,
        "--num-gpus",
        "4",
        "--num-nodes",
        "2",
        "--batch-size",
        "128",
        "--node-selector",
        "gpu=a100",
        "--schedule-timeout",
        "900",
    )
    tasks = inner_tasks(spec)
    job = tasks["train"]["inputs"]["parameters"]
    options = job["job_options"]["runtimeValue"]["constant"]
    expected = {
        "num_nodes": 2,
        "image": BASE_IMAGE,
        "gpu_resource": "nvidia.com/gpu",
        "runtime": "torch-distributed",
        "schedule_timeout": 900,
        "trainer": "trainjob",
    }
    assert {k: options[k] for k in expected} == expected
    # each node: 4 GPUs' CPU and memory (4 and 16Gi each, limits twice) plus its 16Gi /dev/shm
    assert options["resources"] == {
        "requests": {"cpu": "16", "memory": "80Gi"},
        "limits": {"cpu": "32", "memory": "144Gi"},
    }
    assert options["shm_size"] == "16Gi"
    assert options["annotations"] == {"sidecar.istio.io/inject": "false"}
    assert job["num_gpus"]["componentInputParameter"] == "num_gpus"
    assert tasks["evaluate"]["inputs"]["artifacts"]["checkpoint"]["taskOutputArtifact"] == {
        "outputArtifactKey": "checkpoint",
        "producerTask": "train",
    }
    # what the TrainJob's nodes receive: the volume, the secrets, the scheduling...
    passthroughs = {
        p["field"]: p.get("applyToTask", False)
        for p in spec["components"]["comp-train"]["taskConfigPassthroughs"]
    }
    assert passthroughs == {
        "RESOURCES": True,
        "KUBERNETES_TOLERATIONS": False,
        "KUBERNETES_NODE_SELECTOR": False,
        "KUBERNETES_AFFINITY": False,
        "ENV": True,
        "KUBERNETES_VOLUMES": True,
    }
    # ...while the waiting pod holds no GPU, and asks for a little CPU and memory
    waiting = spec["deploymentSpec"]["executors"]["exec-train"]["container"]["resources"]
    assert "accelerator" not in waiting
    assert (waiting["resourceCpuRequest"], waiting["resourceMemoryRequest"]) == ("250m", "1Gi")
    step = executors["exec-train"]
    assert step["pvcMount"][0]["mountPath"] == "/mnt/adautomix"
    assert {s["secretName"] for s in step["secretAsEnv"]} == {"adautomix-mlflow"}
    assert step["nodeSelector"]["labels"] == {"gpu": "a100"}
    assert step["tolerations"][0]["key"] == "nvidia.com/gpu"
    # ...and /dev/shm is the TrainJob's own (adautomix.cluster.trainjob), not the waiting pod's
    assert "emptyDirMounts" not in step


def test_a_sweep_on_two_nodes_trains_every_run_through_a_trainjob(tmp_path):
    path = tmp_path / "sweep.yaml"
    assert (
        main(
            [
                "compile",
                "--output",
                str(path),
                "--workspace",
                str(PROJECT),
                "--sweep",
                "--methods",
                "mixup,cutmix",
                "--num-gpus",
                "2",
                "--num-nodes",
                "2",
            ]
        )
        == 0
    )
    spec, _ = yaml.safe_load_all(path.read_text())
    assert set(inner_tasks(spec)) == {"train", "evaluate"}
    assert "job_options" in inner_tasks(spec)["train"]["inputs"]["parameters"]


@pytest.mark.parametrize("values", [{"num_nodes": 0}, {"schedule_timeout": 0}])
def test_cluster_sizes_are_checked(values):
    with pytest.raises(ConfigError, match="must be >= 1"):
        ClusterSettings(**values)


def test_a_bad_node_count_fails_on_the_command_line_and_writes_nothing(tmp_path, capsys):
    path = tmp_path / "pipeline.yaml"
    assert (
        main(["compile", "--output", str(path), "--workspace", str(PROJECT), "--num-nodes", "0"])
        == 2
    )
    assert "num_nodes must be >= 1, got 0" in capsys.readouterr().err and not path.exists()


@pytest.mark.parametrize("num_gpus, num_nodes", [(4, 1), (2, 3), (0, 3)])
def test_a_batch_that_does_not_split_over_the_processes_fails_at_compile_time(num_gpus, num_nodes):
    processes = max(num_gpus, 1) * num_nodes
    with pytest.raises(ConfigError, match=f"must split evenly over the {processes} processes"):
        training_arguments(
            workspace=PROJECT,
            method="mixup",
            batch_size=processes * 8 + 1,
            num_gpus=num_gpus,
            num_nodes=num_nodes,
        )
    assert (
        training_arguments(
            workspace=PROJECT,
            method="mixup",
            batch_size=processes * 8,
            num_gpus=num_gpus,
            num_nodes=num_nodes,
        )["config"]["batch_size"]
        == processes * 8
    )
