"""Several nodes: the TrainJob the pipeline builds, checked field by field against the Trainer
v1alpha1 CRD, and its life (created, watched, failed, never scheduled, Trainer missing) against a
stand-in Kubernetes API server on 127.0.0.1 that records every request. No cluster runs here."""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from kfp import dsl

from adautomix.cluster.launch import trainer_node_command
from adautomix.cluster.trainjob import (TrainJobError, job_name, node_settings, run_trainjob,
                                trainjob_manifest)

PROJECT = Path(__file__).resolve().parents[2]
OUT = "/mnt/adautomix/runs/checkpoints/fashion-mnist-resnet18-mixup-seed0-0123456789ab"
SECRET_ENV = [   # what kfp-kubernetes' use_secret_as_env becomes in the task config
    {"name": "MLFLOW_TRACKING_URI",
     "valueFrom": {"secretKeyRef": {"name": "adautomix-mlflow", "key": "MLFLOW_TRACKING_URI"}}},
    {"name": "MLFLOW_TRACKING_PASSWORD",
     "valueFrom": {"secretKeyRef": {"name": "adautomix-mlflow", "key": "MLFLOW_TRACKING_PASSWORD",
                                    "optional": True}}},
]
# kfp's TaskConfig as the Kubeflow Pipelines backend fills it for a step with 4 GPUs, the workspace
# claim, the MLflow secret, the GPU taint tolerated and a node selector.
TASK_CONFIG = dsl.TaskConfig(
    resources={"limits": {"nvidia.com/gpu": "4"}, "requests": {"cpu": "8", "memory": "32Gi"}},
    env=SECRET_ENV,
    volumes=[{"name": "workspace", "persistentVolumeClaim": {"claimName": "adautomix-workspace"}}],
    volume_mounts=[{"name": "workspace", "mountPath": "/mnt/adautomix"}],
    tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
    node_selector={"gpu": "a100"})

# The fields the v1alpha1 TrainJob CRD (manifests/base/crds/trainer.kubeflow.org_trainjobs.yaml,
# Go types pkg/apis/trainer/v1alpha1/trainjob_types.go) defines on the paths this job uses.
CRD_FIELDS = {
    "": {"apiVersion", "kind", "metadata", "spec", "status"},
    "spec": {"runtimeRef", "initializer", "trainer", "runtimePatches", "suspend",
             "activeDeadlineSeconds", "managedBy"},
    "spec.runtimeRef": {"name", "apiGroup", "kind"},
    "spec.trainer": {"image", "command", "args", "env", "numNodes", "resourcesPerNode",
                     "numProcPerNode"},
    "spec.runtimePatches[]": {"manager", "time", "trainingRuntimeSpec"},
    "spec.runtimePatches[].trainingRuntimeSpec": {"template"},
    "spec.runtimePatches[].trainingRuntimeSpec.template": {"metadata", "spec"},
    "spec.runtimePatches[].trainingRuntimeSpec.template.spec": {"replicatedJobs"},
    "spec.runtimePatches[].trainingRuntimeSpec.template.spec.replicatedJobs[]": {"name", "template"},
    "spec.runtimePatches[].trainingRuntimeSpec.template.spec.replicatedJobs[].template":
        {"metadata", "spec"},
    "spec.runtimePatches[].trainingRuntimeSpec.template.spec.replicatedJobs[].template.spec":
        {"template"},
    "spec.runtimePatches[].trainingRuntimeSpec.template.spec.replicatedJobs[].template.spec."
    "template": {"metadata", "spec"},
    "spec.runtimePatches[].trainingRuntimeSpec.template.spec.replicatedJobs[].template.spec."
    "template.spec": {"serviceAccountName", "volumes", "initContainers", "containers",
                      "imagePullSecrets", "securityContext", "nodeSelector", "affinity",
                      "tolerations", "schedulingGates"},
    "spec.runtimePatches[].trainingRuntimeSpec.template.spec.replicatedJobs[].template.spec."
    "template.spec.containers[]": {"name", "env", "volumeMounts", "securityContext"},
}


def two_nodes(node=TASK_CONFIG, name="adautomix-0123456789"):
    return trainjob_manifest(name, "registry.example.com/ml/adautomix:0.1.0",
                             trainer_node_command(f"{OUT}/config.json"), num_nodes=2,
                             gpus_per_node=4, node=node_settings(node), output_dir=OUT)


def check_against_crd(obj, path: str = "") -> None:
    if path in CRD_FIELDS:
        unknown = set(obj) - CRD_FIELDS[path]
        assert not unknown, f"{path or 'TrainJob'} has fields the CRD does not define: {unknown}"
        for key, value in obj.items():
            child = f"{path}.{key}" if path else key
            if isinstance(value, dict):
                check_against_crd(value, child)
            elif isinstance(value, list) and value and isinstance(value[0], dict):
                for item in value:
                    check_against_crd(item, child + "[]")


def node_pod(manifest: dict) -> dict:
    (patch,) = manifest["spec"]["runtimePatches"]
    (job,) = patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]
    assert job["name"] == "node"      # the trainer job of the torch-distributed runtime
    return job["template"]["spec"]["template"]["spec"]


def test_two_nodes_of_four_gpus_as_the_trainer_crd_defines_them():
    manifest = two_nodes().to_dict()
    check_against_crd(manifest)
    assert (manifest["apiVersion"], manifest["kind"]) == ("trainer.kubeflow.org/v1alpha1", "TrainJob")
    name = manifest["metadata"]["name"]
    assert re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", name) and len(name) <= 63
    assert manifest["spec"]["runtimeRef"] == {"name": "torch-distributed",
                                              "kind": "ClusterTrainingRuntime",
                                              "apiGroup": "trainer.kubeflow.org"}
    trainer = manifest["spec"]["trainer"]
    assert trainer["image"] == "registry.example.com/ml/adautomix:0.1.0"
    # torchrun takes the node count, rank and rendezvous from Trainer's PET_* variables
    assert trainer["command"] == ["torchrun", "-m", "adautomix.cli", "train", "--config",
                                  f"{OUT}/config.json", "--resume"]
    assert (trainer["numNodes"], trainer["numProcPerNode"]) == (2, 4)
    assert trainer["resourcesPerNode"] == {"limits": {"nvidia.com/gpu": "4"},
                                           "requests": {"cpu": "8", "memory": "32Gi"}}
    assert trainer["env"] == SECRET_ENV          # references to the secret, never its values
    pod = node_pod(manifest)
    assert {"name": "workspace", "persistentVolumeClaim": {"claimName": "adautomix-workspace"}} \
        in pod["volumes"]
    assert {"name": "dshm", "emptyDir": {"medium": "Memory"}} in pod["volumes"]
    (container,) = pod["containers"]
    assert container["name"] == "node"
    assert {(m["name"], m["mountPath"]) for m in container["volumeMounts"]} \
        == {("workspace", "/mnt/adautomix"), ("dshm", "/dev/shm")}
    assert pod["nodeSelector"] == {"gpu": "a100"}
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists",
                                   "effect": "NoSchedule"}]


def test_the_gpu_count_comes_from_the_step_and_nodes_without_gpus_run_one_process():
    no_gpu_request = dsl.TaskConfig(**{**vars(TASK_CONFIG), "resources": None})
    manifest = trainjob_manifest("adautomix-cpu", "img", ["torchrun"], 3, 0,
                                 node_settings(no_gpu_request), OUT).to_dict()
    assert manifest["spec"]["trainer"]["numProcPerNode"] == 1
    assert "resourcesPerNode" not in manifest["spec"]["trainer"]
    manifest = trainjob_manifest("adautomix-gpu", "img", ["torchrun"], 3, 2,
                                 node_settings(no_gpu_request), OUT).to_dict()
    assert manifest["spec"]["trainer"]["resourcesPerNode"] == {"limits": {"nvidia.com/gpu": "2"}}


@pytest.mark.parametrize("missing, message", [
    ({"env": None}, "no MLFLOW_TRACKING_URI"),
    ({"volumes": None, "volume_mounts": None}, "no volume in the task config is mounted above"),
])
def test_an_empty_task_config_is_refused_before_anything_is_created(missing, message):
    with pytest.raises(TrainJobError, match=message):
        two_nodes(dsl.TaskConfig(**{**vars(TASK_CONFIG), **missing}))


def test_job_names_are_fresh_rfc1035_labels():
    names = {job_name() for _ in range(20)}
    assert len(names) == 20
    assert all(re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", n) and len(n) <= 63 for n in names)


# -- the stand-in Kubernetes API server ---------------------------------------------------------

API = "/apis/trainer.kubeflow.org/v1alpha1"
RESOURCES = {"kind": "APIResourceList", "apiVersion": "v1",
             "groupVersion": "trainer.kubeflow.org/v1alpha1",
             "resources": [{"name": "trainjobs", "singularName": "trainjob", "namespaced": True,
                            "kind": "TrainJob", "verbs": ["create", "get", "delete"]}]}


MAX_GETS = 300   # 6 s of polling every 0.02 s


def condition(kind: str, reason: str, message: str) -> dict:
    return {"type": kind, "status": "True", "reason": reason, "message": message,
            "lastTransitionTime": "2026-12-01T20:00:00Z"}


def node_jobs(ready: int) -> list[dict]:
    return [{"name": "node", "ready": ready, "succeeded": 0, "failed": 0, "active": 1,
             "suspended": 0}]


class StandInKubernetes:
    """Answers the discovery, runtime, create, get and delete calls; each GET of the TrainJob
    returns the next of `statuses` (the last one repeats). A subclass serves another operator's
    API by changing the class attributes."""

    api, plural, resources = API, "trainjobs", RESOURCES

    def __init__(self, statuses=(), served=True, runtime=True, create_status=201, vanish=False):
        self.statuses, self.served, self.runtime = list(statuses), served, runtime
        self.vanish = vanish     # the job is deleted by someone else right after it is created
        self.create_status, self.requests, self.created = create_status, [], None
        self.gets = 0
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
            return (200, {"metadata": {"name": "torch-distributed"}}) if self.runtime \
                else (404, _status(404, "NotFound"))
        if method == "POST" and path == jobs:
            if self.create_status != 201:
                return self.create_status, _status(self.create_status, "Forbidden")
            self.created = body
            return 201, body
        if method == "GET" and self.created and not self.vanish \
                and path == f"{jobs}/{self.created['metadata']['name']}":
            self.gets += 1
            if self.gets > MAX_GETS:   # a step that never sees the end fails the test, not hangs
                return 404, _status(404, "NotFound")
            status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
            return 200, {**self.created, "status": status}
        if method == "DELETE":
            return 200, _status(200, "Success")
        return 404, _status(404, "NotFound")

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

            do_GET = do_POST = do_DELETE = _reply

            def log_message(self, *args):
                pass

        return Handler


def _status(code: int, reason: str) -> dict:
    return {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason,
            "code": code, "message": f"stand-in {reason}"}


def run(stand_in, schedule_timeout=30.0, said=None):
    return run_trainjob(two_nodes(), "team-a", stand_in.client, schedule_timeout=schedule_timeout,
                        poll_interval=0.02, say=(said.append if said is not None else print))


def test_a_trainjob_is_created_as_built_and_watched_until_it_completes():
    statuses = [{}, {"jobsStatus": node_jobs(ready=1)},
                {"conditions": [condition("Complete", "JobsCompleted", "done")],
                 "jobsStatus": node_jobs(ready=0)}]
    said = []
    with StandInKubernetes(statuses) as k8s:
        final = run(k8s, said=said)
    assert k8s.created == two_nodes().to_dict()
    assert ("POST", f"{API}/namespaces/team-a/trainjobs") in k8s.requests
    assert [c.type for c in final.status.conditions] == ["Complete"]
    assert any("running on 2 nodes" in line for line in said)
    assert not any(method == "DELETE" for method, _ in k8s.requests)


def test_a_failed_trainjob_fails_the_step_with_its_reason():
    failed = {"conditions": [condition("Failed", "BackoffLimitExceeded",
                                       "node-0 exited with code 1")]}
    with StandInKubernetes([{"jobsStatus": node_jobs(ready=1)}, failed]) as k8s:
        with pytest.raises(TrainJobError, match="failed: BackoffLimitExceeded: node-0 exited "
                                                "with code 1.*re-run resumes"):
            run(k8s)


def test_a_trainjob_that_never_gets_its_nodes_times_out_and_is_deleted():
    waiting = {"conditions": [condition("Suspended", "Suspended", "waiting for quota")],
               "jobsStatus": node_jobs(ready=0)}
    with StandInKubernetes([waiting]) as k8s:
        with pytest.raises(TrainJobError, match=r"no running node after 0.2 s \(suspended "
                                                r"\(Suspended\)\).*2 nodes with 4 nvidia.com/gpu"):
            run(k8s, schedule_timeout=0.2)
    name = k8s.created["metadata"]["name"]
    assert ("DELETE", f"{API}/namespaces/team-a/trainjobs/{name}") in k8s.requests


def test_a_trainjob_deleted_while_the_step_waits_fails_the_step():
    with StandInKubernetes(vanish=True) as k8s:
        with pytest.raises(TrainJobError, match="is gone: it was deleted while the step waited"):
            run(k8s)


def test_without_trainer_installed_the_step_says_so_and_creates_nothing():
    with StandInKubernetes(served=False) as k8s:
        with pytest.raises(TrainJobError, match="Kubeflow Trainer is not installed.*HTTP 404"):
            run(k8s)
    assert k8s.requests == [("GET", API)]


def test_a_missing_runtime_is_named():
    with StandInKubernetes(runtime=False) as k8s:
        with pytest.raises(TrainJobError, match="ClusterTrainingRuntime 'torch-distributed' "
                                                "does not exist"):
            run(k8s)
    assert k8s.created is None


def test_a_service_account_without_rbac_is_pointed_at_the_manifest():
    with StandInKubernetes(create_status=403) as k8s:
        with pytest.raises(TrainJobError, match="403 Forbidden.*team-a.*deploy/rbac.yaml"):
            run(k8s)


def shipped_rbac():
    return list(yaml.safe_load_all((PROJECT / "deploy" / "rbac.yaml").read_text()))


def role_verbs(docs, resource: str, group: str) -> set[str]:
    """What deploy/rbac.yaml's namespaced Role lets the pipeline do to `resource` of `group`."""
    role = next(d for d in docs if d["kind"] == "Role")
    return {v for rule in role["rules"] if resource in rule["resources"]
            and group in rule["apiGroups"] for v in rule["verbs"]}


def test_the_shipped_rbac_lets_the_pipeline_create_watch_and_delete_trainjobs():
    docs = shipped_rbac()
    assert {"create", "get", "delete"} <= role_verbs(docs, "trainjobs", "trainer.kubeflow.org")
    runtimes = [r for r in docs if r["kind"] == "ClusterRole"
                for rule in r["rules"] if "clustertrainingruntimes" in rule["resources"]]
    assert runtimes, "reading the runtime is what names a missing one"
    binding = next(d for d in docs if d["kind"] == "RoleBinding")
    role = next(d for d in docs if d["kind"] == "Role")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]


def test_a_run_that_stopped_early_is_not_passed_on_and_its_checkpoint_stays(tmp_path):
    """What the TrainJob step reads back once the job is over: only a finished run goes on to
    evaluate and register; an unfinished one keeps its checkpoint for the re-run."""
    from adautomix.config import RunConfig
    from adautomix.engine.checkpoint import CHECKPOINT_NAME, save_checkpoint
    from adautomix.steps import finished_result

    RunConfig(epochs=2, output_dir=str(tmp_path)).save(tmp_path / "config.json")
    with pytest.raises(RuntimeError, match="no checkpoint|after epoch 0 of 2"):
        finished_result(tmp_path)
    epoch = {"epoch": 1, "step": 3, "run_id": "r1",
             "history": [{"epoch": 1, "train_loss": 2.0, "test_top1": 10.0}]}
    save_checkpoint(epoch, tmp_path)
    with pytest.raises(RuntimeError, match="stopped after epoch 1 of 2.*re-run resumes"):
        finished_result(tmp_path)
    assert (tmp_path / CHECKPOINT_NAME).exists()
    save_checkpoint({**epoch, "epoch": 2, "history": [*epoch["history"],
                                                      {"epoch": 2, "train_loss": 1.0, "test_top1": 30.0}]},
                    tmp_path)
    result = finished_result(tmp_path)
    assert (result.run_id, result.metrics["test_top1"], result.metrics["test_top1_median10"]) \
        == ("r1", 30.0, 20.0)
