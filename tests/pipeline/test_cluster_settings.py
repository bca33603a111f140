"""What the compiled YAML carries for a cluster: CPU and memory per step as pipeline parameters,
a memory-backed /dev/shm where the loaders run, the image flag's value and its pull secrets on
every step, and no GPU settings at all for a CPU-only run."""

from __future__ import annotations

import pytest
import yaml

from pipeline.cli import main
from tests.workspaces import PROJECT

DIGEST_IMAGE = "registry.example.com/ml/adautomix@sha256:" + "0123456789abcdef" * 4
STEPS = ("data", "train", "evaluate", "register")
# what docs/cluster.md promises as the defaults
DEFAULTS = {"data": ("1", "2", "2Gi", "8Gi"), "train": ("4", "8", "16Gi", "32Gi"),
            "evaluate": ("2", "4", "8Gi", "16Gi"), "register": ("250m", "1", "1Gi", "2Gi")}


def compiled(tmp_path, *flags: str) -> tuple[dict, dict]:
    path = tmp_path / "pipeline.yaml"
    assert main(["compile", "--output", str(path), "--workspace", str(PROJECT), "--method", "mixup",
                 *flags]) == 0
    spec, platform = yaml.safe_load_all(path.read_text())
    return spec, platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]


def containers(spec: dict) -> dict:
    return {name.removeprefix("exec-"): e["container"]
            for name, e in spec["deploymentSpec"]["executors"].items()}


@pytest.fixture(scope="module")
def gpu_yaml(tmp_path_factory):
    return compiled(tmp_path_factory.mktemp("gpu"), "--num-gpus", "1", "--image", DIGEST_IMAGE,
                    "--image-pull-secret", "regcred", "--image-pull-secret", "mirror-cred")


def test_every_step_has_cpu_and_memory_requests_and_limits_from_pipeline_parameters(gpu_yaml):
    spec, _ = gpu_yaml
    defaults = spec["root"]["inputDefinitions"]["parameters"]
    for step in STEPS:
        resources = containers(spec)[step]["resources"]
        for field, default in zip(("cpu_request", "cpu_limit", "memory_request", "memory_limit"),
                                  DEFAULTS[step]):
            assert defaults[f"{step}_{field}"]["defaultValue"] == default
            key = "resource" + "".join(part.capitalize() for part in field.split("_"))
            assert resources[key] == f"{{{{$.inputs.parameters['pipelinechannel--{step}_{field}']}}}}"


def test_a_run_can_change_a_step_s_resources_without_recompiling(tmp_path):
    from pipeline.run import compile_pipeline, training_arguments

    arguments = {**training_arguments(project=PROJECT, method="mixup"), "train_memory_limit": "64Gi"}
    spec = yaml.safe_load_all(compile_pipeline(tmp_path / "p.yaml", arguments).read_text())
    assert next(spec)["root"]["inputDefinitions"]["parameters"]["train_memory_limit"][
        "defaultValue"] == "64Gi"


def test_train_and_evaluate_get_a_memory_backed_dev_shm(gpu_yaml):
    _, executors = gpu_yaml
    for step in ("train", "evaluate"):
        (mount,) = executors[f"exec-{step}"]["emptyDirMounts"]
        assert (mount["mountPath"], mount["medium"]) == ("/dev/shm", "Memory")
    for step in ("data", "register"):
        assert "emptyDirMounts" not in executors[f"exec-{step}"]


def test_the_image_flag_and_its_pull_secrets_reach_every_step(gpu_yaml):
    spec, executors = gpu_yaml
    for step, container in containers(spec).items():
        assert container["image"] == DIGEST_IMAGE, step
        assert [s["secretName"] for s in executors[f"exec-{step}"]["imagePullSecret"]] \
            == ["regcred", "mirror-cred"]


def test_a_gpu_run_requests_gpus_and_tolerates_their_taint(gpu_yaml):
    spec, executors = gpu_yaml
    assert containers(spec)["train"]["resources"]["accelerator"]["resourceType"] == "nvidia.com/gpu"
    assert executors["exec-train"]["tolerations"][0]["key"] == "nvidia.com/gpu"


def test_no_gpus_means_no_gpu_request_and_no_gpu_toleration(tmp_path):
    spec, executors = compiled(tmp_path, "--num-gpus", "0", "--node-selector", "pool=cpu")
    for step, container in containers(spec).items():
        assert "accelerator" not in container["resources"], step
        assert "tolerations" not in executors[f"exec-{step}"], step
    assert executors["exec-train"]["nodeSelector"]["labels"] == {"pool": "cpu"}


@pytest.mark.parametrize("flags, message", [
    (["--image", "registry.example.com/ml/adautomix@sha256:abc"], "is not an image reference"),
    (["--sweep", "--methods", "mixup,cutmix", "--access-mode", "ReadWriteOnce"],
     "use --parallelism 1"),
])
def test_bad_cluster_settings_fail_at_compile_time_and_write_nothing(tmp_path, capsys, flags, message):
    path = tmp_path / "pipeline.yaml"
    assert main(["compile", "--output", str(path), "--workspace", str(PROJECT), *flags]) == 2
    assert message in capsys.readouterr().err and not path.exists()
