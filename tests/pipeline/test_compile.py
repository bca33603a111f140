"""Compiling and submitting: parameters checked first, GPUs and secrets in the YAML, no secret
values anywhere."""

from __future__ import annotations

import os
import re
import socket

import pytest
import yaml

from adautomix.config import ConfigError
from adautomix.data.versioning import tracked_version
from pipeline.cli import main
from pipeline.run import SubmitError, submit, sweep_arguments, training_arguments
from tests.workspaces import PROJECT

SECRETS = {
    "AWS_ACCESS_KEY_ID": "AKIAEXAMPLEKEYID0000",
    "AWS_SECRET_ACCESS_KEY": "s3-secret-value-123",
    "MLFLOW_TRACKING_PASSWORD": "mlflow-secret-value-456",
    "MLFLOW_TRACKING_USERNAME": "mlflow-user-789",
}


def compile_yaml(tmp_path, monkeypatch, *flags: str) -> tuple[str, dict]:
    for name, value in SECRETS.items():  # what a user's shell might hold while compiling
        monkeypatch.setenv(name, value)
    path = tmp_path / "pipeline.yaml"
    assert main(["compile", "--output", str(path), "--workspace", str(PROJECT), *flags]) == 0
    text = path.read_text()
    return text, list(yaml.safe_load_all(text))


def executor_of(spec: dict, name: str) -> dict:
    return spec["deploymentSpec"]["executors"][f"exec-{name}"]["container"]


def test_the_training_yaml_requests_gpus_and_reads_secrets_by_name_only(tmp_path, monkeypatch):
    text, (spec, platform) = compile_yaml(
        tmp_path, monkeypatch, "--method", "mixup", "--num-gpus", "1", "--node-selector", "gpu=a100"
    )
    for step, count in (("train", "num_gpus"), ("evaluate", "evaluate_gpus")):
        accelerator = executor_of(spec, step)["resources"]["accelerator"]
        assert accelerator["resourceType"] == "nvidia.com/gpu"
        assert count in accelerator["resourceCount"]
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert executors["exec-train"]["nodeSelector"]["labels"] == {"gpu": "a100"}
    assert executors["exec-train"]["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert {e["envVar"] for s in executors["exec-data"]["secretAsEnv"] for e in s["keyToEnv"]} == {
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_ENDPOINT_URL",
    }
    assert {s["secretName"] for s in executors["exec-register"]["secretAsEnv"]} == {
        "adautomix-mlflow"
    }
    assert executors["exec-train"]["pvcMount"][0]["mountPath"] == "/mnt/adautomix"
    for value in SECRETS.values():
        assert value not in text
    defaults = spec["root"]["inputDefinitions"]["parameters"]
    assert defaults["config"]["defaultValue"]["method"] == "mixup"
    # cached steps are keyed on the concrete data version, never on "whatever data.dvc says"
    assert defaults["data_version"]["defaultValue"] == tracked_version("fashion-mnist", PROJECT)
    assert spec["root"]["dag"]["tasks"]["data"]["cachingOptions"]["enableCache"]
    # the train step reads the data version from the data step's artifact, not a parameter
    assert "data_version" not in spec["components"]["comp-train"]["inputDefinitions"]["parameters"]
    assert "prepared" in spec["components"]["comp-train"]["inputDefinitions"]["artifacts"]
    train = spec["components"]["comp-adautomix-train-and-evaluate"]["dag"]["tasks"]["train"]
    assert train["retryPolicy"]["maxRetryCount"] >= 1


def test_the_sweep_yaml_fans_out_over_the_grid_and_registers_the_best(tmp_path, monkeypatch):
    text, (spec, _) = compile_yaml(
        tmp_path,
        monkeypatch,
        "--sweep",
        "--methods",
        "mixup,cutmix",
        "--seeds",
        "0,1",
        "--parallelism",
        "2",
    )
    tasks = spec["root"]["dag"]["tasks"]
    loop = next(t for t in tasks.values() if "parameterIterator" in t)
    assert loop["iteratorPolicy"]["parallelismLimit"] == 2
    grid = spec["root"]["inputDefinitions"]["parameters"]["grid"]["defaultValue"]
    assert [(run["method"], run["seed"]) for run in grid] == [
        (m, s) for s in (0, 1) for m in ("mixup", "cutmix")
    ]
    assert "register" in tasks
    for value in SECRETS.values():
        assert value not in text


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--epochs", "-1"], "epochs must be > 0"),
        (["--method", "nomix"], "unknown method 'nomix'"),
        (["--method", "adautomix", "--batch-size", "2"], "smaller than method 'adautomix' needs"),
        (["--data-version", "latest"], "not a DVC hash"),
        (["--num-gpus", "-1"], "num_gpus must be >= 0"),
        (["--sweep", "--seeds", "0"], "at least one method"),
        (
            ["--sweep", "--methods", "mixup", "--seeds", "0,x"],
            "--seeds takes comma-separated integers, e.g. 0,1,2; got '0,x'",
        ),
        (["--method", "mixup", "-o", "alpha=-1"], "alpha"),
        (["--method", "mixup", "-o", "beta=0.3"], "method 'mixup' has no option(s) ['beta']"),
        (
            ["-o", "pipeline.yaml"],
            "-o takes a method option KEY=VALUE, got 'pipeline.yaml'; the YAML file is --output "
            "FILE",
        ),
        (["--test-metrics", "top1,nonsense"], "unknown metric 'nonsense'; valid: top1"),
        # renamed: the old name is refused with the new one, not as an unknown argument
        (["--val-subset", "500"], "--val-subset is now --test-subset"),
    ],
)
def test_bad_parameters_fail_at_compile_time_and_write_nothing(tmp_path, capsys, flags, message):
    path = tmp_path / "pipeline.yaml"
    assert main(["compile", "--output", str(path), "--workspace", str(PROJECT), *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and not path.exists()


def test_run_without_local_points_to_submit(capsys):
    assert main(["run"]) == 2
    assert "pipeline submit --host" in capsys.readouterr().err


def test_the_preset_fills_the_parameters_the_user_left_out():
    from adautomix.presets import get_preset

    arguments = training_arguments(
        preset="cifar100-r18-adautomix", epochs=3, data_version="c" * 32, workspace=PROJECT
    )
    recipe = get_preset("cifar100-r18-adautomix")
    config = arguments["config"]
    assert config["epochs"] == 3 and arguments["data_version"] == "c" * 32 + ".dir"
    assert (
        config["method"],
        config["model"],
        config["lr"],
        config["batch_size"],
        config["method_args"],
    ) == (recipe.method, recipe.model, recipe.lr, recipe.batch_size, recipe.method_args)
    assert arguments["dataset"] == recipe.dataset
    assert arguments["registered_model"] == "adautomix-cifar100"


def test_a_sweep_checks_every_method_before_anything_runs():
    with pytest.raises(ConfigError, match="smaller than method 'adautomix'"):
        sweep_arguments(["mixup", "adautomix"], [0], batch_size=2, workspace=PROJECT)


@pytest.mark.filterwarnings("ignore:This client only works:FutureWarning")
def test_submit_names_an_unreachable_host():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    host = f"http://127.0.0.1:{port}"
    arguments = training_arguments(workspace=PROJECT, method="mixup")
    with pytest.raises(SubmitError, match=f"127.0.0.1:{port}"):
        submit(host, arguments, "adautomix", "run-1")


def test_the_robustness_metrics_are_a_pipeline_parameter(tmp_path, monkeypatch):
    metrics = "top1,ece,fgsm:epsilon=0.0157,occlusion,corruption:severities=1+5"
    _, (spec, _) = compile_yaml(tmp_path, monkeypatch, "--test-metrics", metrics)
    defaults = spec["root"]["inputDefinitions"]["parameters"]
    assert defaults["test_metrics"]["defaultValue"] == metrics.split(",")


def test_the_pipeline_takes_every_run_flag_of_adautomix_train(tmp_path, monkeypatch):
    from adautomix.cli import build_parser, config_from_args

    flags = [
        "--preset",
        "cifar100-r18-adautomix",
        "--optimizer",
        "adamw",
        "--lr",
        "0.2",
        "--train-crop",
        "rrc",
        "--crop-scale",
        "0.5",
        "1",
        "--no-channels-last",
        "--normalize-mean",
        "0.5",
        "0.5",
        "0.5",
        "--normalize-std",
        "0.2",
        "0.2",
        "0.2",
        "-o",
        "mix_samples=2",
        "-o",
        "beta=0.5",
        "--label-smoothing",
        "0.1",
        "--data-version",
        "c" * 32,
    ]
    _, (spec, _) = compile_yaml(tmp_path, monkeypatch, *flags)
    defaults = spec["root"]["inputDefinitions"]["parameters"]
    trained = config_from_args(build_parser().parse_args(["train", *flags[:-2]])).to_dict()
    assert trained["method_args"]["mix_samples"] == 2 and trained["optimizer"] == "adamw"
    compiled = {
        **defaults["config"]["defaultValue"],
        "dataset": defaults["dataset"]["defaultValue"],
    }
    # what the steps decide stays out; every other field is the one `adautomix train` would use
    assert compiled == {
        k: v for k, v in trained.items() if k not in ("output_dir", "data_root", "run_name")
    }
    train = spec["components"]["comp-adautomix-train-and-evaluate"]["dag"]["tasks"]["train"]
    assert train["inputs"]["parameters"]["config"]["componentInputParameter"] == "config"


def test_a_hand_edited_config_is_checked_as_a_run_config_before_compiling(tmp_path):
    from pipeline.run import compile_pipeline

    arguments = training_arguments(workspace=PROJECT, method="mixup")
    path = tmp_path / "pipeline.yaml"
    for change, message in (
        (dict(epochs=-1), "epochs must be > 0"),
        (dict(optimiser="adamw"), "unknown config field(s) ['optimiser']"),
        (dict(output_dir="/tmp/x"), "leave them out of config"),
    ):
        edited = {**arguments, "config": {**arguments["config"], **change}}
        with pytest.raises(ConfigError, match=re.escape(message)):
            compile_pipeline(path, edited)
    assert not path.exists()


# Run in a copy of the code whose RunConfig has one field more, and nothing else changed: the
# field is a flag of `python -m pipeline`, a value of the compiled pipeline's `config`, and the
# train component's run configuration. (The engine's training, which would only carry the field
# along, is replaced by its preparation: the component's own code runs as it is.)
NEW_FIELD_PROBE = """
import json, sys, types
import yaml
import adautomix.steps
from pipeline.cli import main
from components.train import train
from kfp import dsl

out, project, workspace = sys.argv[1:4]
assert main(["compile", "--output", out, "--workspace", project, "--method", "mixup",
             "--added-in-test", "7"]) == 0
spec = next(yaml.safe_load_all(open(out)))
config = spec["root"]["inputDefinitions"]["parameters"]["config"]["defaultValue"]

def prepared_only(nproc, **arguments):
    run = adautomix.steps.prepare_run(**arguments)
    return types.SimpleNamespace(output_dir=run.output_dir, run_id="probe", metrics={})

adautomix.steps.train_step = prepared_only
checkpoint = dsl.Model(name="checkpoint", uri=workspace + "/checkpoint")
prepared = dsl.Dataset(name="prepared", uri=workspace + "/prepared",
                       metadata={"dataset": "fashion-mnist", "data_root": workspace + "/data",
                                 "data_version": "a" * 32 + ".dir"})
train.python_func(prepared=prepared, config=config,
                  overrides={}, workspace=workspace, pipeline_name="p", pipeline_run_id="r",
                  pipeline_run_name="n", checkpoint=checkpoint)
saved = json.load(open(checkpoint.path + "/config.json"))
print(json.dumps({"compiled": config["added_in_test"], "trained": saved["added_in_test"]}))
"""


def run_in_a_copy_with(tmp_path, insertions: dict[str, tuple[str, str]], probe: str) -> dict:
    """`probe` run in a copy of the code in which each file of `insertions` has `text` inserted
    before its `marker` (path -> (marker, text)), and nothing else changed: its last line of
    output, as JSON."""
    import json
    import shutil
    import subprocess
    import sys

    copy = tmp_path / "code"
    for folder in ("adautomix", "components", "pipeline"):
        shutil.copytree(
            PROJECT / folder, copy / folder, ignore=shutil.ignore_patterns("__pycache__")
        )
    (copy / "docker").mkdir()
    shutil.copy(PROJECT / "docker" / "IMAGE", copy / "docker" / "IMAGE")
    for path, (marker, text) in insertions.items():
        source = (copy / path).read_text()
        assert source.count(marker) == 1, (path, marker)
        (copy / path).write_text(source.replace(marker, text + marker))
    done = subprocess.run(
        [sys.executable, "-c", probe, str(tmp_path / "p.yaml"), str(PROJECT), str(tmp_path / "ws")],
        cwd=copy,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(copy)},
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def test_a_field_added_to_run_config_alone_reaches_the_compiled_pipeline_and_the_component(
    tmp_path,
):
    added = {
        "adautomix/config.py": (
            "\n    def __post_init__(self) -> None:",
            '\n    added_in_test: int = setting(0, "a field added by a test")',
        )
    }
    assert run_in_a_copy_with(tmp_path, added, NEW_FIELD_PROBE) == {"compiled": 7, "trained": 7}


# Run in a copy whose PipelineSettings and ClusterSettings have one field more each, and whose
# task wiring uses the cluster's: each is a flag of `python -m pipeline compile`, the pipeline
# setting a parameter of the compiled pipeline, the cluster setting on every step's container.
NEW_SETTINGS_PROBE = """
import json, sys
import yaml
from pipeline.cli import main

out, project = sys.argv[1:3]
assert main(["compile", "--output", out, "--workspace", project, "--method", "mixup",
             "--added-pipeline-setting", "7", "--added-cluster-setting", "on"]) == 0
spec = next(yaml.safe_load_all(open(out)))
parameter = spec["root"]["inputDefinitions"]["parameters"]["added_pipeline_setting"]
env = {
    name.removeprefix("exec-"): {e["name"]: e["value"] for e in executor["container"]["env"]}
    ["ADDED_CLUSTER_SETTING"]
    for name, executor in spec["deploymentSpec"]["executors"].items()
}
print(json.dumps({"parameter": parameter, "env": env}))
"""


def test_a_pipeline_and_a_cluster_setting_added_alone_reach_the_compiled_pipeline(tmp_path):
    added = {
        "pipeline/settings.py": (
            "\n    # Evaluation is one pass",
            '\n    added_pipeline_setting: int = setting(0, "a setting added by a test")\n',
        ),
        "pipeline/cluster_settings.py": (
            "\n    # the run's GPUs per pod",
            '\n    added_cluster_setting: str = setting("", "a setting added by a test")\n',
        ),
        # the code that uses it
        "pipeline/cluster_tasks.py": (
            "\n    use_image(task, cluster)",
            '\n    task.set_env_variable("ADDED_CLUSTER_SETTING", cluster.added_cluster_setting)',
        ),
    }
    found = run_in_a_copy_with(tmp_path, added, NEW_SETTINGS_PROBE)
    assert found["parameter"] == {
        "defaultValue": 7,
        "isOptional": True,
        "parameterType": "NUMBER_INTEGER",
    }
    assert found["env"] == {step: "on" for step in ("data", "train", "evaluate", "register")}


def test_a_saved_config_is_a_pipeline_run_with_the_flags_on_top(tmp_path, monkeypatch):
    from adautomix.presets import get_preset

    recipe = get_preset("cifar100-r18-adautomix")
    saved = tmp_path / "config.json"
    recipe.save(saved)
    _, (spec, _) = compile_yaml(
        tmp_path,
        monkeypatch,
        "--config",
        str(saved),
        "--epochs",
        "3",
        "-o",
        "beta=0.5",
        "--data-version",
        "c" * 32,
    )
    config = spec["root"]["inputDefinitions"]["parameters"]["config"]["defaultValue"]
    expected = recipe.replace(epochs=3, method_args={**recipe.method_args, "beta": 0.5})
    assert config == {
        k: v
        for k, v in expected.to_dict().items()
        if k not in ("dataset", "output_dir", "data_root", "run_name")
    }
    # a sweep over it: its method keeps the saved options, another starts from its own
    _, (spec, _) = compile_yaml(
        tmp_path,
        monkeypatch,
        "--config",
        str(saved),
        "--sweep",
        "--methods",
        "mixup,adautomix",
        "--data-version",
        "c" * 32,
    )
    grid = spec["root"]["inputDefinitions"]["parameters"]["grid"]["defaultValue"]
    assert [run["method_args"] for run in grid] == [{}, recipe.method_args]


def test_a_sweep_preset_gives_the_whole_table_seed_major_with_each_methods_options(
    tmp_path, monkeypatch
):
    from adautomix.presets import SWEEPS

    sweep = SWEEPS["fashion-mnist-cpu-table"]
    _, (spec, _) = compile_yaml(
        tmp_path, monkeypatch, "--sweep", "--preset", sweep.name, "--num-gpus", "0"
    )
    parameters = spec["root"]["inputDefinitions"]["parameters"]
    grid = parameters["grid"]["defaultValue"]
    assert [(run["method"], int(run["seed"])) for run in grid] == [
        (m, s) for s in (0, 1, 2) for m in sweep.methods
    ]
    assert len(grid) == 30 and grid[0]["method"] == "vanilla"
    options = {run["method"]: run["method_args"] for run in grid}
    assert options["automix"]["teacher_momentum"] == 0.9
    assert options["adautomix"]["mix_samples"] == 2
    assert options["mixup"] == {}
    assert parameters["test_metrics"]["defaultValue"] == list(sweep.test_metrics)
    config = parameters["config"]["defaultValue"]
    assert (config["subset"], config["epochs"], config["experiment"]) == (
        sweep.run.subset,
        sweep.run.epochs,
        "results-fashion-mnist-cpu-table",
    )


def test_an_unknown_preset_lists_the_valid_ones(tmp_path, capsys):
    path = tmp_path / "pipeline.yaml"
    assert main(["compile", "--output", str(path), "--sweep", "--preset", "no-such"]) == 2
    err = capsys.readouterr().err
    assert "unknown preset 'no-such'" in err and "fashion-mnist-cpu-table" in err
    assert not path.exists()
