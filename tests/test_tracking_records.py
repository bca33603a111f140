"""What a run records in MLflow: a readable name, the resolved setup, its dataset as an input, and
a model that a clean environment loads and feeds with raw [0, 1] images."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import torch
from mlflow.tracking import MlflowClient

from adautomix.config import RunConfig
from adautomix.models import create_model
from adautomix.tracking import Tracker, setup_params

ROOT = Path(__file__).resolve().parents[1]

# Run in a fresh interpreter: the project (this checkout, and the editable install's finder in
# site-packages) is taken off the import path first, and the test checks adautomix is gone
# before MLflow loads the model, which must bring its own copy of the code.
CLEAN_PREDICT = textwrap.dedent("""
    import importlib.util, json, sys
    sys.meta_path = [f for f in sys.meta_path if "editable" not in repr(f).lower()]
    sys.path = [p for p in sys.path if p not in ("", ".", {root!r})
                and not (p.startswith({root!r} + "/") and "site-packages" not in p)]
    assert importlib.util.find_spec("adautomix") is None, "the project is still importable"
    import numpy as np, mlflow.pyfunc
    model = mlflow.pyfunc.load_model({uri!r})
    images = np.load({images!r})
    print(json.dumps(np.asarray(model.predict(images)).tolist()))
""")


def tracker(name: str = "", method: str = "mixup") -> Tracker:
    config = RunConfig(method=method, model="resnet18", seed=3, run_name=name,
                       experiment="test-tracking")
    return Tracker(config, "0" * 64)


def test_the_logged_model_predicts_raw_images_without_the_project(mlflow_sqlite, tmp_path):
    torch.manual_seed(0)
    network = create_model("resnet18", 10, in_chans=1, width=8).eval()
    mean, std = (0.286,), (0.353,)
    images = torch.rand(3, 1, 28, 28)                          # raw images in [0, 1]
    with torch.no_grad():
        expected = network((images - mean[0]) / std[0]).numpy()
    run = tracker()
    uri = run.log_model(network, images, mean, std)
    run.finish()
    np.save(tmp_path / "images.npy", images.numpy())
    script = CLEAN_PREDICT.format(root=str(ROOT), uri=uri, images=str(tmp_path / "images.npy"))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          cwd=tmp_path, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    predicted = np.array(json.loads(done.stdout.strip().splitlines()[-1]))
    np.testing.assert_allclose(predicted, expected, rtol=1e-4, atol=1e-4)


def test_a_torchvision_network_requires_torchvision(mlflow_sqlite, tmp_path):
    network = create_model("tv_resnet18", 10, in_chans=3).eval()
    run = tracker()
    uri = run.log_model(network, torch.rand(1, 3, 32, 32), (0.5,) * 3, (0.25,) * 3)
    run.finish()
    import mlflow.pyfunc
    requirements = Path(mlflow.pyfunc.get_model_dependencies(uri)).read_text()
    assert "torchvision==" in requirements and "torch==" in requirements


def test_a_run_has_a_readable_name_its_commit_its_setup_and_its_dataset(mlflow_sqlite):
    run = tracker()
    run.log_params(setup_params({"alpha": 1.0}, {"mean": [0.5], "train_crop": "pad"}))
    run.log_dataset("fashion-mnist", "a" * 32 + ".dir", "s3://bucket/dvc")
    run.log_dataset("fashion-mnist", "a" * 32 + ".dir", "s3://bucket/dvc")   # a resume: once
    run.finish()
    logged = MlflowClient(mlflow_sqlite).get_run(run.run_id)
    assert logged.info.run_name == "mixup-resnet18-fashion-mnist-seed3"
    assert logged.data.tags["mlflow.source.git.commit"] == logged.data.tags["git_commit"]
    params = logged.data.params
    assert params["method.alpha"] == "1.0" and params["recipe.mean"] == "[0.5]"
    assert params["recipe.train_crop"] == "pad"
    (dataset,) = logged.inputs.dataset_inputs
    assert dataset.dataset.name == "fashion-mnist"
    assert dataset.dataset.digest == "a" * 32 + ".dir"
    assert json.loads(dataset.dataset.source) == {"uri": "s3://bucket/dvc"}
    assert dataset.tags[0].value == "training"


def test_a_run_name_given_is_kept(mlflow_sqlite):
    run = tracker(name="my-run")
    run.finish()
    assert MlflowClient(mlflow_sqlite).get_run(run.run_id).info.run_name == "my-run"
