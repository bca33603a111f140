"""What the compiled YAML carries for a cluster: CPU and memory per step, decided at compile time
(train's per GPU), a sized memory-backed /dev/shm counted into the memory where the loaders run,
the image flag's value and its pull secrets on every step, step timeouts, the MLflow token and CA
bundle where MLflow is reached, and no GPU settings at all for a CPU-only run."""

from __future__ import annotations

import pytest

from pipeline.cli import main
from tests.helpers import PROJECT, compiled

DIGEST_IMAGE = "registry.example.com/ml/adautomix@sha256:" + "0123456789abcdef" * 4
STEPS = ("data", "train", "evaluate", "register")
GI = 2**30
# what docs/cluster.md promises as the defaults for one GPU: the container's own figures, plus
# /dev/shm (4Gi per GPU) in train's and evaluate's memory
DEFAULTS = {
    "data": ("1", "2", "2Gi", "8Gi"),
    "train": ("4", "8", "20Gi", "36Gi"),
    "evaluate": ("2", "4", "12Gi", "20Gi"),
    "register": ("250m", "1", "1Gi", "2Gi"),
}
FIELDS = ("resourceCpuRequest", "resourceCpuLimit", "resourceMemoryRequest", "resourceMemoryLimit")


def containers(spec: dict) -> dict:
    return {
        name.removeprefix("exec-"): e["container"]
        for name, e in spec["deploymentSpec"]["executors"].items()
    }


@pytest.fixture(scope="module")
def gpu_yaml(tmp_path_factory):
    return compiled(
        tmp_path_factory.mktemp("gpu"),
        "--num-gpus",
        "1",
        "--image",
        DIGEST_IMAGE,
        "--image-pull-secret",
        "regcred",
        "--image-pull-secret",
        "mirror-cred",
    )


def figures(spec: dict, step: str) -> tuple[str, ...]:
    resources = containers(spec)[step]["resources"]
    return tuple(resources[key] for key in FIELDS)


def test_every_step_has_cpu_and_memory_requests_and_limits_decided_at_compile_time(gpu_yaml):
    spec, _ = gpu_yaml
    for step in STEPS:
        assert figures(spec, step) == DEFAULTS[step], step
    parameters = spec["root"]["inputDefinitions"]["parameters"]
    assert not [name for name in parameters if "_cpu_" in name or "_memory_" in name]


def test_train_s_cpu_memory_and_shared_memory_scale_with_its_gpus_and_each_can_be_set(tmp_path):
    spec, executors = compiled(tmp_path, "--num-gpus", "8", "--batch-size", "128")
    # 8 GPUs x (4 CPU, 16Gi; limits twice) + 8 x 4Gi of /dev/shm in both memory figures
    assert figures(spec, "train") == ("32", "64", f"{8 * 16 + 8 * 4}Gi", f"{8 * 32 + 8 * 4}Gi")
    (shm,) = executors["exec-train"]["emptyDirMounts"]
    assert shm["sizeLimit"] == "32Gi"
    assert figures(spec, "evaluate") == DEFAULTS["evaluate"]  # one GPU whatever train took
    spec, executors = compiled(
        tmp_path,
        "--num-gpus",
        "2",
        "--cpu-per-gpu",
        "6",
        "--memory-per-gpu",
        "24Gi",
        "--shm-per-gpu",
        "512Mi",
        "--resources",
        "data=500m,1,1Gi,4Gi",
    )
    # 2 x 24Gi + 2 x 512Mi, and twice 2 x 24Gi + the same shm
    assert figures(spec, "train") == ("12", "24", "49Gi", "97Gi")
    assert executors["exec-train"]["emptyDirMounts"][0]["sizeLimit"] == "1Gi"
    assert figures(spec, "data") == ("500m", "1", "1Gi", "4Gi")
    spec, _ = compiled(tmp_path, "--resources", "train=3,6,10Gi,20Gi")
    assert figures(spec, "train") == ("3", "6", "14Gi", "24Gi")  # the shm still counted


def test_a_step_timeout_bounds_the_step_s_pod(tmp_path):
    _, executors = compiled(
        tmp_path, "--step-timeout", "train=86400", "--step-timeout", "data=3600"
    )
    assert executors["exec-train"]["activeDeadlineSeconds"] == "86400"
    assert executors["exec-data"]["activeDeadlineSeconds"] == "3600"
    assert "activeDeadlineSeconds" not in executors["exec-evaluate"]


def test_the_mlflow_token_and_ca_bundle_reach_every_step_that_talks_to_mlflow(tmp_path):
    spec, executors = compiled(tmp_path, "--mlflow-ca-secret", "mlflow-ca")
    for step in ("train", "evaluate", "register"):
        optional = {
            e["envVar"]
            for s in executors[f"exec-{step}"]["secretAsEnv"]
            if s.get("optional")
            for e in s["keyToEnv"]
        }
        assert {
            "MLFLOW_TRACKING_TOKEN",
            "MLFLOW_TRACKING_USERNAME",
            "MLFLOW_TRACKING_PASSWORD",
            "AWS_ACCESS_KEY_ID",
        } <= optional, step
        (volume,) = executors[f"exec-{step}"]["secretAsVolume"]
        assert (volume["secretName"], volume["mountPath"]) == (
            "mlflow-ca",
            "/etc/adautomix/mlflow-ca",
        )
        env = {e["name"]: e["value"] for e in containers(spec)[step]["env"]}
        assert env["MLFLOW_TRACKING_SERVER_CERT_PATH"] == "/etc/adautomix/mlflow-ca/ca.crt"
    assert "secretAsVolume" not in executors["exec-data"]


def test_train_and_evaluate_get_a_sized_memory_backed_dev_shm(gpu_yaml):
    _, executors = gpu_yaml
    for step in ("train", "evaluate"):
        (mount,) = executors[f"exec-{step}"]["emptyDirMounts"]
        assert (mount["mountPath"], mount["medium"], mount["sizeLimit"]) == (
            "/dev/shm",
            "Memory",
            "4Gi",
        )
    for step in ("data", "register"):
        assert "emptyDirMounts" not in executors[f"exec-{step}"]


def test_the_image_flag_and_its_pull_secrets_reach_every_step(gpu_yaml):
    spec, executors = gpu_yaml
    for step, container in containers(spec).items():
        assert container["image"] == DIGEST_IMAGE, step
        # what the step records as the image it ran from (the digest, without reading its pod)
        assert {"name": "ADAUTOMIX_IMAGE", "value": DIGEST_IMAGE} in container["env"], step
        assert [s["secretName"] for s in executors[f"exec-{step}"]["imagePullSecret"]] == [
            "regcred",
            "mirror-cred",
        ]


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


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--image", "registry.example.com/ml/adautomix@sha256:abc"], "is not an image reference"),
        (
            ["--sweep", "--methods", "mixup,cutmix", "--access-mode", "ReadWriteOnce"],
            "use --parallelism 1",
        ),
        (
            [
                "--num-nodes",
                "2",
                "--batch-size",
                "128",
                "--access-mode",
                "ReadWriteOnce",
                "--parallelism",
                "1",
            ],
            "a ReadWriteOnce workspace attaches to one node, so 2 training nodes",
        ),
        (
            [
                "--num-nodes",
                "2",
                "--batch-size",
                "128",
                "--access-mode",
                "ReadWriteOncePod",
                "--parallelism",
                "1",
            ],
            "use a ReadWriteMany storage class",
        ),
        (["--memory-per-gpu", "16GB"], "'16GB' is not a memory quantity"),
        (["--resources", "train=8,4,1Gi,2Gi"], "train's requests (8 CPU, 1Gi) exceed its limits"),
        (["--resources", "gpu=1,2,1Gi,2Gi"], "step(s) ['gpu'] in --step-timeout or --resources"),
        (["--step-timeout", "train=1d"], "--step-timeout train=1d: give whole seconds"),
        # a bare number is bytes to Kubernetes: 16 bytes of memory is never what was meant
        (["--memory-per-gpu", "16"], "--memory-per-gpu '16' is 16 bytes, below 1Mi: give the unit"),
        (["--shm-per-gpu", "64k"], "--shm-per-gpu '64k' is 64000 bytes, below 1Mi"),
        (["--workspace-size", "100"], "--workspace-size '100' is 100 bytes"),
        (
            ["--resources", "evaluate=1,2,8,16Gi"],
            "--resources evaluate=MEMORY_REQUEST '8' is 8 bytes",
        ),
        (["--parallelism", "-1"], "--parallelism (sweep runs at once) must be >= 1, got -1"),
        (["--sweep", "--methods", "mixup", "--parallelism", "0"], "--parallelism"),
    ],
)
def test_bad_cluster_settings_fail_at_compile_time_and_write_nothing(
    tmp_path, capsys, flags, message
):
    path = tmp_path / "pipeline.yaml"
    assert main(["compile", "--output", str(path), "--workspace", str(PROJECT), *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and not path.exists()
