"""Compiling and submitting: parameters checked first, GPUs and secrets in the YAML, no secret
values anywhere."""

from __future__ import annotations

import socket

import pytest
import yaml

from adautomix.config import ConfigError
from adautomix.data.versioning import tracked_version
from pipeline.cli import main
from pipeline.run import SubmitError, submit, sweep_arguments, training_arguments
from tests.workspaces import PROJECT

SECRETS = {"AWS_ACCESS_KEY_ID": "AKIAEXAMPLEKEYID0000", "AWS_SECRET_ACCESS_KEY": "s3-secret-value-123",
           "MLFLOW_TRACKING_PASSWORD": "mlflow-secret-value-456",
           "MLFLOW_TRACKING_USERNAME": "mlflow-user-789"}


def compile_yaml(tmp_path, monkeypatch, *flags: str) -> tuple[str, dict]:
    for name, value in SECRETS.items():     # what a user's shell might hold while compiling
        monkeypatch.setenv(name, value)
    path = tmp_path / "pipeline.yaml"
    assert main(["compile", "-o", str(path), "--workspace", str(PROJECT), *flags]) == 0
    text = path.read_text()
    return text, list(yaml.safe_load_all(text))


def executor_of(spec: dict, name: str) -> dict:
    return spec["deploymentSpec"]["executors"][f"exec-{name}"]["container"]


def test_the_training_yaml_requests_gpus_and_reads_secrets_by_name_only(tmp_path, monkeypatch):
    text, (spec, platform) = compile_yaml(tmp_path, monkeypatch, "--method", "mixup",
                                          "--num-gpus", "1", "--node-selector", "gpu=a100")
    for step, count in (("train", "num_gpus"), ("evaluate", "evaluate_gpus")):
        accelerator = executor_of(spec, step)["resources"]["accelerator"]
        assert accelerator["resourceType"] == "nvidia.com/gpu"
        assert count in accelerator["resourceCount"]
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert executors["exec-train"]["nodeSelector"]["labels"] == {"gpu": "a100"}
    assert executors["exec-train"]["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert {e["envVar"] for s in executors["exec-data"]["secretAsEnv"] for e in s["keyToEnv"]} \
        == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL"}
    assert {s["secretName"] for s in executors["exec-register"]["secretAsEnv"]} == {"adautomix-mlflow"}
    assert executors["exec-train"]["pvcMount"][0]["mountPath"] == "/mnt/adautomix"
    for value in SECRETS.values():
        assert value not in text
    defaults = spec["root"]["inputDefinitions"]["parameters"]
    assert defaults["method"]["defaultValue"] == "mixup"
    # cached steps are keyed on the concrete data version, never on "whatever data.dvc says"
    assert defaults["data_version"]["defaultValue"] == tracked_version("fashion-mnist", PROJECT)
    assert spec["root"]["dag"]["tasks"]["data"]["cachingOptions"]["enableCache"]
    assert "data_version" in spec["components"]["comp-train"]["inputDefinitions"]["parameters"]
    train = spec["components"]["comp-adautomix-train-and-evaluate"]["dag"]["tasks"]["train"]
    assert train["retryPolicy"]["maxRetryCount"] >= 1


def test_the_sweep_yaml_fans_out_over_the_grid_and_registers_the_best(tmp_path, monkeypatch):
    text, (spec, _) = compile_yaml(tmp_path, monkeypatch, "--sweep", "--methods", "mixup,cutmix",
                                   "--seeds", "0,1", "--parallelism", "2")
    tasks = spec["root"]["dag"]["tasks"]
    loop = next(t for t in tasks.values() if "parameterIterator" in t)
    assert loop["iteratorPolicy"]["parallelismLimit"] == 2
    grid = spec["root"]["inputDefinitions"]["parameters"]["grid"]["defaultValue"]
    assert grid == [{"method": m, "seed": s} for m in ("mixup", "cutmix") for s in (0, 1)]
    assert "register-best" in tasks
    for value in SECRETS.values():
        assert value not in text


@pytest.mark.parametrize("flags, message", [
    (["--epochs", "-1"], "epochs must be > 0"),
    (["--method", "nomix"], "unknown method 'nomix'"),
    (["--method", "adautomix", "--batch-size", "2"], "smaller than method 'adautomix' needs"),
    (["--data-version", "latest"], "not a DVC hash"),
    (["--num-gpus", "-1"], "num_gpus must be >= 0"),
    (["--sweep", "--seeds", "0"], "at least one method"),
    (["--test-metrics", "top1,nonsense"], "unknown metric 'nonsense'; valid: top1"),
])
def test_bad_parameters_fail_at_compile_time_and_write_nothing(tmp_path, capsys, flags, message):
    path = tmp_path / "pipeline.yaml"
    assert main(["compile", "-o", str(path), "--workspace", str(PROJECT), *flags]) == 2
    assert message in capsys.readouterr().err and not path.exists()


def test_run_without_local_points_to_submit(capsys):
    assert main(["run"]) == 2
    assert "pipeline submit --host" in capsys.readouterr().err


def test_the_preset_fills_the_parameters_the_user_left_out():
    from adautomix.presets import get_preset

    arguments = training_arguments(preset="cifar100-r18-adautomix", epochs=3,
                                   data_version="c" * 32, project=PROJECT)
    recipe = get_preset("cifar100-r18-adautomix")
    assert arguments["epochs"] == 3 and arguments["data_version"] == "c" * 32 + ".dir"
    assert (arguments["method"], arguments["model"], arguments["lr"], arguments["batch_size"]) \
        == (recipe.method, recipe.model, recipe.lr, recipe.batch_size)
    assert arguments["registered_model"] == "adautomix-cifar100"


def test_a_sweep_checks_every_method_before_anything_runs():
    with pytest.raises(ConfigError, match="smaller than method 'adautomix'"):
        sweep_arguments(["mixup", "adautomix"], [0], batch_size=2, project=PROJECT)


@pytest.mark.filterwarnings("ignore:This client only works:FutureWarning")
def test_submit_names_an_unreachable_host():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    host = f"http://127.0.0.1:{port}"
    arguments = training_arguments(project=PROJECT, method="mixup")
    with pytest.raises(SubmitError, match=f"127.0.0.1:{port}"):
        submit(host, arguments, "adautomix", "run-1")


def test_the_robustness_metrics_are_a_pipeline_parameter(tmp_path, monkeypatch):
    metrics = "top1,ece,fgsm:epsilon=0.0157,occlusion,corruption:severities=1+5"
    _, (spec, _) = compile_yaml(tmp_path, monkeypatch, "--test-metrics", metrics)
    defaults = spec["root"]["inputDefinitions"]["parameters"]
    assert defaults["test_metrics"]["defaultValue"] == metrics.split(",")
