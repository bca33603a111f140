"""What a run records in MLflow: a readable name, the resolved setup, its dataset as an input, a
model that a clean environment loads and feeds with raw [0, 1] images, and the image it ran from
(its digest from a pinned reference or from the pod's status, through a stand-in Kubernetes API
that serves pods)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from http.server import ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient

from adautomix.config import RunConfig
from adautomix.models import create_model
from adautomix.provenance import (
    ImageRecord,
    container_image,
    image_id_digest,
    pinned_digest,
    pod_image,
    running_image,
)
from adautomix.tracking import Tracker, setup_params
from tests.pipeline.stand_in_apis import _Handler, serving

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
    config = RunConfig(
        method=method, model="resnet18", seed=3, run_name=name, experiment="test-tracking"
    )
    return Tracker(config, "0" * 64)


def test_the_logged_model_predicts_raw_images_without_the_project(mlflow_sqlite, tmp_path):
    torch.manual_seed(0)
    network = create_model("resnet18", 10, in_chans=1, width=8).eval()
    mean, std = (0.286,), (0.353,)
    images = torch.rand(3, 1, 28, 28)  # raw images in [0, 1]
    with torch.no_grad():
        expected = network((images - mean[0]) / std[0]).numpy()
    run = tracker()
    uri = run.log_model(network, images, mean, std)
    run.finish()
    np.save(tmp_path / "images.npy", images.numpy())
    script = CLEAN_PREDICT.format(root=str(ROOT), uri=uri, images=str(tmp_path / "images.npy"))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=300,
    )
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
    run.log_dataset("fashion-mnist", "a" * 32 + ".dir", "s3://bucket/dvc")  # a resume: once
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


# --- the image a run ran from ----------------------------------------------------------------

DIGEST = "sha256:" + "ab" * 32
PINNED = f"registry.example.com/ml/adautomix@{DIGEST}"
TAGGED = "registry.example.com/ml/adautomix:0.1.0"


def pod(containers: dict[str, tuple[str, str]]) -> dict:
    """A pod's JSON as the API serves it: container name -> (spec image, status imageID)."""
    return {
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": {"name": "p", "namespace": "team"},
        "spec": {"containers": [{"name": n, "image": i} for n, (i, _) in containers.items()]},
        "status": {
            "containerStatuses": [
                {"name": n, "image": i, "imageID": d} for n, (i, d) in containers.items()
            ]
        },
    }


class PodApi(ThreadingHTTPServer):
    """The Kubernetes API's pod reads of one namespace: `pods` by name, 403 for `forbidden`."""

    def __init__(self, pods: dict[str, dict], forbidden: tuple[str, ...] = ()):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.pods, self.forbidden = pods, forbidden

    def answer(self, handler, method: str, body: dict) -> None:
        name = handler.path.split("?")[0].rsplit("/", 1)[-1]
        if not handler.path.startswith("/api/v1/namespaces/team/pods/") or method != "GET":
            return handler._reply(404, {"kind": "Status", "code": 404, "reason": "NotFound"})
        if name in self.forbidden:
            return handler._reply(
                403,
                {
                    "kind": "Status",
                    "code": 403,
                    "reason": "Forbidden",
                    "message": f'pods "{name}" is forbidden',
                },
            )
        if name not in self.pods:
            return handler._reply(404, {"kind": "Status", "code": 404, "reason": "NotFound"})
        handler._reply(200, self.pods[name])


@pytest.mark.parametrize(
    "image_id,digest",
    [
        (f"docker.io/library/adautomix@{DIGEST}", DIGEST),  # containerd, CRI-O
        (f"docker-pullable://registry.example.com/ml/adautomix@{DIGEST}", DIGEST),  # Docker
        (f"docker://{DIGEST}", DIGEST),  # a local image's ID
        ("", ""),
        ("sha256:abc", ""),
    ],
)
def test_a_container_status_image_id_gives_its_digest(image_id, digest):
    assert image_id_digest(image_id) == digest


@pytest.mark.parametrize(
    "reference,digest",
    [
        (PINNED, DIGEST),
        (TAGGED, ""),
        (f"{TAGGED}@{DIGEST}", DIGEST),
        (f"@{DIGEST}", ""),
        (PINNED[:-1], ""),
    ],
)
def test_only_a_reference_pinned_by_a_whole_digest_gives_one(reference, digest):
    assert pinned_digest(reference) == digest


def test_the_training_container_is_main_or_the_one_beside_the_sidecars():
    kfp = pod({"main": (TAGGED, f"x@{DIGEST}"), "istio-proxy": ("istio/proxyv2", "y")})
    assert container_image(kfp) == ("main", TAGGED, f"x@{DIGEST}")
    node = pod({"istio-proxy": ("istio/proxyv2", "y"), "node": (PINNED, "z")})
    assert container_image(node)[:2] == ("node", PINNED)
    with pytest.raises(ValueError, match="set ADAUTOMIX_CONTAINER"):
        container_image(pod({"a": (TAGGED, ""), "b": (TAGGED, "")}))
    assert container_image(pod({"a": (TAGGED, ""), "b": (PINNED, "")}), "b")[1] == PINNED


def test_the_pod_status_gives_the_digest_that_ran_or_says_why_not():
    from kubernetes import client

    pods = {
        "step": pod(
            {
                "main": (TAGGED, f"docker.io/ml/adautomix@{DIGEST}"),
                "istio-proxy": ("istio/proxyv2:1.22", ""),
            }
        ),
        "pending": pod({"main": (TAGGED, "")}),
    }
    with serving(PodApi(pods, forbidden=("locked",))) as url:
        configuration = client.Configuration()
        configuration.host = url
        api = client.ApiClient(configuration)
        ran = pod_image(api, "team", "step")
        forbidden = pod_image(api, "team", "locked", fallback_reference=TAGGED)
        no_digest = pod_image(api, "team", "pending")
    assert ran == ImageRecord(
        TAGGED, DIGEST, "pod team/step container main status imageID (digest)"
    )
    assert forbidden.reference == TAGGED and forbidden.digest == "unknown"
    assert forbidden.source.startswith(
        "reading pod team/locked failed (403 Forbidden); grant "
        "the pod's service account `get` on pods (deploy/rbac.yaml)"
    )
    assert no_digest.digest == "unknown" and "reports no digest" in no_digest.source


def test_outside_a_pod_the_image_is_the_pinned_reference_or_an_unknown_digest_with_its_reason():
    assert running_image({"ADAUTOMIX_IMAGE": PINNED}) == ImageRecord(
        PINNED, DIGEST, "pinned reference (ADAUTOMIX_IMAGE)"
    )
    tagged = running_image({"ADAUTOMIX_IMAGE": TAGGED})
    assert tagged.reference == TAGGED and tagged.digest == "unknown"
    assert "is a tag, not a digest" in tagged.source
    assert running_image({}) == ImageRecord(
        "local", "unknown", "not run from the project's image (ADAUTOMIX_IMAGE is unset)"
    )
    # a pod whose API cannot be reached (here: no service account at all) still records a line
    unreachable = running_image(
        {
            "ADAUTOMIX_IMAGE": TAGGED,
            "KUBERNETES_SERVICE_HOST": "127.0.0.1",
            "KUBERNETES_SERVICE_PORT": "1",
            "HOSTNAME": "step",
        }
    )
    assert unreachable.reference == TAGGED and unreachable.digest == "unknown"
    assert unreachable.source.endswith("run a pinned image (--image NAME@sha256:DIGEST)")


def test_a_run_records_the_image_it_ran_from(mlflow_sqlite, monkeypatch):
    monkeypatch.setenv("ADAUTOMIX_IMAGE", PINNED)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    run = tracker()
    run.finish()
    tags = MlflowClient(mlflow_sqlite).get_run(run.run_id).data.tags
    assert (tags["image"], tags["image_digest"]) == (PINNED, DIGEST)
    assert tags["image_digest_source"] == "pinned reference (ADAUTOMIX_IMAGE)"


def test_the_shipped_rbac_lets_a_step_read_its_own_pod():
    import yaml

    role = next(
        d
        for d in yaml.safe_load_all((ROOT / "deploy" / "rbac.yaml").read_text())
        if d["kind"] == "Role"
    )
    assert any(
        "pods" in rule["resources"] and "" in rule["apiGroups"] and "get" in rule["verbs"]
        for rule in role["rules"]
    )
