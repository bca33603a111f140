"""Helpers that several test modules share, so that no test module imports another: the small
training run they build, a config as an earlier version wrote it, bit-exact comparison of
checkpoints, the pipeline compiled through its command line, and the cluster jobs' fixtures (a
step's task config and job options, a stand-in Kubernetes API server, the shipped RBAC).

torch, numpy, yaml and the pipeline are imported where they are used."""

from __future__ import annotations

import json
import os
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from kfp import dsl

from adautomix.cluster.job import JobOptions, run_labels
from adautomix.config import RunConfig

PROJECT = Path(__file__).resolve().parents[1]


def small_run_values(data_root, **changes: Any) -> dict[str, Any]:
    """The fields of a one-epoch Fashion-MNIST ResNet-18 run on the prepared data in
    `data_root`, with no progress bar and no sample grids; `changes` on top. Loose, as the
    pipeline's steps take them."""
    values = dict(
        dataset="fashion-mnist",
        model="resnet18",
        epochs=1,
        data_root=str(data_root),
        progress=False,
        log_images_every=0,
    )
    return {**values, **changes}


def small_run(data_root, output_dir, experiment: str, **changes: Any) -> RunConfig:
    """small_run_values as a RunConfig that writes to `output_dir` and logs to `experiment`."""
    return RunConfig(
        **small_run_values(data_root, output_dir=str(output_dir), experiment=experiment, **changes)
    )


def old_format(config: RunConfig, **extra: Any) -> dict:
    """`config` as a config.json written before the renames: val_subset, the teacher's
    momentum as `momentum`, and (as the quickstart preset wrote) an EMA decay it never used."""
    values = config.to_dict()
    values["val_subset"] = values.pop("test_subset")
    options = values["method_args"]
    if "teacher_momentum" in options:
        options["momentum"] = options.pop("teacher_momentum")
    return {**values, **extra}


def assert_same(actual, expected, where: str = "checkpoint") -> None:
    """Equal to the bit: tensors with torch.equal, containers element by element."""
    import numpy as np
    import torch

    if isinstance(expected, torch.Tensor):
        assert isinstance(actual, torch.Tensor) and torch.equal(actual, expected), where
    elif isinstance(expected, np.ndarray):  # numpy's RNG state
        assert np.array_equal(actual, expected), where
    elif isinstance(expected, dict):
        assert set(actual) == set(expected), where
        for key in expected:
            assert_same(actual[key], expected[key], f"{where}[{key!r}]")
    elif isinstance(expected, (list, tuple)):
        assert len(actual) == len(expected), where
        for i, (a, e) in enumerate(zip(actual, expected)):
            assert_same(a, e, f"{where}[{i}]")
    else:
        assert actual == expected, where


def compiled(tmp_path: Path, *flags: str) -> tuple[dict, dict]:
    """The training pipeline compiled through the command line, as a user would:
    (pipeline spec, Kubernetes executor configs)."""
    import yaml

    from pipeline.cli import main

    path = tmp_path / "pipeline.yaml"
    status = main(
        ["compile", "--output", str(path), "--workspace", str(PROJECT), "--method", "mixup", *flags]
    )
    assert status == 0
    spec, platform = yaml.safe_load_all(path.read_text())
    return spec, platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]


def inner_tasks(spec: dict) -> dict:
    """The tasks of a compiled pipeline's train-and-evaluate sub-graph."""
    return spec["components"]["comp-adautomix-train-and-evaluate"]["dag"]["tasks"]


# -- a training step on a cluster: its task config, job options and owner ------------------------

OUT = "/mnt/adautomix/runs/checkpoints/fashion-mnist-resnet18-mixup-seed0-0123456789ab"
SECRET_ENV = [  # what kfp-kubernetes' use_secret_as_env becomes in the task config
    {
        "name": "MLFLOW_TRACKING_URI",
        "valueFrom": {"secretKeyRef": {"name": "adautomix-mlflow", "key": "MLFLOW_TRACKING_URI"}},
    },
    {
        "name": "MLFLOW_TRACKING_PASSWORD",
        "valueFrom": {
            "secretKeyRef": {
                "name": "adautomix-mlflow",
                "key": "MLFLOW_TRACKING_PASSWORD",
                "optional": True,
            }
        },
    },
]
# kfp's TaskConfig as the Kubeflow Pipelines backend fills it for a step with 4 GPUs, the workspace
# claim, the MLflow secret, the GPU taint tolerated and a node selector.
TASK_CONFIG = dsl.TaskConfig(
    resources={"limits": {"nvidia.com/gpu": "4"}, "requests": {"cpu": "8", "memory": "32Gi"}},
    env=SECRET_ENV,
    volumes=[{"name": "workspace", "persistentVolumeClaim": {"claimName": "adautomix-workspace"}}],
    volume_mounts=[{"name": "workspace", "mountPath": "/mnt/adautomix"}],
    tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
    node_selector={"gpu": "a100"},
)


# What pipeline/cluster_tasks.py's job_options hands the step for 4 GPUs per node (computed by hand:
# 4 x 4 CPU, 4 x 16Gi + 16Gi of /dev/shm; limits twice the per-GPU figures plus the same shm),
# with a pull secret and the default Istio annotation; the labels are the step's run's.
OPTIONS = JobOptions(
    image_pull_secrets=("regcred",),
    shm_size="16Gi",
    resources={
        "requests": {"cpu": "16", "memory": "80Gi"},
        "limits": {"cpu": "32", "memory": "144Gi"},
    },
    labels=run_labels("adautomix-training", "run-7f3a", OUT),
    annotations={"sidecar.istio.io/inject": "false"},
    termination_grace_seconds=120,
    deadline_seconds=86400,
)
OWNER = {
    "apiVersion": "v1",
    "kind": "Pod",
    "name": "step-pod",
    "uid": "uid-step-pod",
    "controller": False,
    "blockOwnerDeletion": False,
}


# -- the stand-in Kubernetes API server ---------------------------------------------------------

API = "/apis/trainer.kubeflow.org/v1alpha1"
RESOURCES = {
    "kind": "APIResourceList",
    "apiVersion": "v1",
    "groupVersion": "trainer.kubeflow.org/v1alpha1",
    "resources": [
        {
            "name": "trainjobs",
            "singularName": "trainjob",
            "namespaced": True,
            "kind": "TrainJob",
            "verbs": ["create", "get", "delete"],
        }
    ],
}


MAX_GETS = 300  # 6 s of polling every 0.02 s


def condition(kind: str, reason: str, message: str) -> dict:
    return {
        "type": kind,
        "status": "True",
        "reason": reason,
        "message": message,
        "lastTransitionTime": "2026-12-01T20:00:00Z",
    }


class StandInKubernetes:
    """Answers the discovery, runtime, create, get and delete calls; each GET of the TrainJob
    returns the next of `statuses` (the last one repeats). A subclass serves another operator's
    API by changing the class attributes."""

    api, plural, resources = API, "trainjobs", RESOURCES

    def __init__(
        self,
        statuses=(),
        served=True,
        runtime=True,
        create_status=201,
        vanish=False,
        existing=None,
        read_error_after=None,
        on_get=None,
        pod_readable=True,
    ):
        self.statuses, self.served, self.runtime = list(statuses), served, runtime
        self.vanish = vanish  # the job is deleted by someone else right after it is created
        self.create_status, self.requests, self.created = create_status, [], None
        self.gets = 0
        # a job of the same name that an earlier attempt of the step made: its first reading is
        # its own, the later ones follow `statuses`, as a created job's do
        self.existing, self.existing_reads = existing, 0
        self.read_error_after = read_error_after  # GETs of the job fail (HTTP 500) after this
        self.on_get = on_get  # called with the count at each GET of the job
        self.pod_readable, self.patches = pod_readable, []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        from kubernetes import client

        configuration = client.Configuration()
        configuration.host = f"http://127.0.0.1:{self.server.server_port}"
        self.client = client.ApiClient(configuration)
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def answer(self, method: str, path: str, body: dict | None):
        self.requests.append((method, path))
        jobs = f"{self.api}/namespaces/team-a/{self.plural}"
        if path == self.api:
            return (200, self.resources) if self.served else (404, _status(404, "NotFound"))
        if path == f"{API}/clustertrainingruntimes/torch-distributed":
            return (
                (200, {"metadata": {"name": "torch-distributed"}})
                if self.runtime
                else (404, _status(404, "NotFound"))
            )
        existing = f"{jobs}/{self.existing['metadata']['name']}" if self.existing else None
        if path.startswith("/api/v1/namespaces/team-a/pods/") and method == "GET":
            name = path.rsplit("/", 1)[1]
            return (
                (200, {"metadata": {"name": name, "uid": f"uid-{name}"}})
                if self.pod_readable
                else (403, _status(403, "Forbidden"))
            )
        if method == "POST" and path == jobs:
            if self.create_status != 201:
                return self.create_status, _status(self.create_status, "Forbidden")
            if existing and body["metadata"]["name"] == self.existing["metadata"]["name"]:
                return 409, _status(409, "AlreadyExists")
            self.created = body
            return 201, body
        if method == "GET" and existing and path == existing and not self.created:
            self.existing_reads += 1
            if self.existing_reads == 1:
                return 200, self.existing
            return self._next_state(self.existing)
        if (
            method == "GET"
            and self.created
            and not self.vanish
            and path == f"{jobs}/{self.created['metadata']['name']}"
        ):
            return self._next_state(self.created)
        if method == "PATCH" and existing and path == existing:
            self.patches.append(body)
            return 200, self.existing
        if method == "DELETE":
            if existing and path == existing:
                self.existing = None
            return 200, _status(200, "Success")
        return 404, _status(404, "NotFound")

    def _next_state(self, job: dict):
        self.gets += 1
        if self.on_get is not None:
            self.on_get(self.gets)
        if self.gets > MAX_GETS:  # a step that never sees the end fails the test, not hangs
            return 404, _status(404, "NotFound")
        if self.read_error_after is not None and self.gets > self.read_error_after:
            return 500, _status(500, "InternalError")
        status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
        return 200, {**job, "status": status}

    def _handler(self):
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def _reply(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                code, payload = stand_in.answer(self.command, self.path.split("?")[0], body)
                data = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = do_PATCH = _reply

            def log_message(self, *args):
                pass

        return Handler


def _status(code: int, reason: str) -> dict:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "reason": reason,
        "code": code,
        "message": f"stand-in {reason}",
    }


def shipped_rbac():
    import yaml

    return list(yaml.safe_load_all((PROJECT / "deploy" / "rbac.yaml").read_text()))


def role_verbs(docs, resource: str, group: str) -> set[str]:
    """What deploy/rbac.yaml's namespaced Role lets the pipeline do to `resource` of `group`."""
    role = next(d for d in docs if d["kind"] == "Role")
    return {
        v
        for rule in role["rules"]
        if resource in rule["resources"] and group in rule["apiGroups"]
        for v in rule["verbs"]
    }


def onto_a_full_disk(monkeypatch, after: int = 0) -> None:
    """Checkpoint writes after the first `after` go to /dev/full, where every write fails as on
    a full disk (ENOSPC), from a temporary file that exists as a real one would."""
    mkstemp, made = tempfile.mkstemp, []

    def full(*args, **kwargs):
        fd, path = mkstemp(*args, **kwargs)
        made.append(path)
        if len(made) > after:
            device = os.open("/dev/full", os.O_WRONLY)
            os.dup2(device, fd)
            os.close(device)
        return fd, path

    # checkpoint.py's own: MLflow's temporary files stay on the disk
    from adautomix.engine import checkpoint

    monkeypatch.setattr(checkpoint, "tempfile", SimpleNamespace(mkstemp=full))


# -- manifests against the upstream typed models -------------------------------------------------


def lost_fields(original, round_tripped, path: str = "") -> list[str]:
    """Where `round_tripped` (a manifest deserialized into a typed model and serialized back)
    differs from `original`: a field the model dropped is one it does not define."""
    if isinstance(original, dict) and isinstance(round_tripped, dict):
        return [
            lost
            for key, value in original.items()
            for lost in (
                lost_fields(value, round_tripped[key], f"{path}.{key}")
                if key in round_tripped
                else [f"{path}.{key} (dropped)"]
            )
        ]
    if isinstance(original, list) and isinstance(round_tripped, list):
        if len(original) != len(round_tripped):
            return [f"{path}: {len(original)} items became {len(round_tripped)}"]
        return [
            lost
            for i, (a, b) in enumerate(zip(original, round_tripped))
            for lost in lost_fields(a, b, f"{path}[{i}]")
        ]
    return [] if original == round_tripped else [f"{path}: {original!r} became {round_tripped!r}"]


class _Body:
    """What the OpenAPI clients' deserialize reads from an HTTP response: its body."""

    def __init__(self, obj):
        self.data = json.dumps(obj)


def kubernetes_round_trip(manifest: dict, klass: str, api_client=None) -> dict:
    """`manifest` deserialized into the OpenAPI client model `klass` (the kubernetes client's,
    e.g. V1Deployment, or `api_client`'s: kubeflow.training's ApiClient for its PyTorchJob) and
    serialized back as the API takes it (attribute_map names, unset fields left out)."""
    from kubernetes.client import ApiClient

    client = api_client or ApiClient()
    return client.sanitize_for_serialization(client.deserialize(_Body(manifest), klass))


def compiled_pipeline(tmp_path: Path, *flags: str) -> tuple[dict, dict]:
    """A pipeline compiled through the command line with exactly `flags` (a sweep's included):
    (pipeline spec, platform spec)."""
    import yaml

    from pipeline.cli import main

    path = tmp_path / "pipeline.yaml"
    assert main(["compile", "--output", str(path), "--workspace", str(PROJECT), *flags]) == 0
    spec, platform = yaml.safe_load_all(path.read_text())
    return spec, platform
