"""What training on several nodes shares whichever Kubernetes operator runs the nodes (Kubeflow
Trainer's TrainJob, adautomix/cluster/trainjob.py, or the older training operator's PyTorchJob,
adautomix/cluster/pytorchjob.py): the nodes' pod settings from the step's dsl.TaskConfig and their checks,
the in-cluster API client, and the life of the job through the Kubernetes API (is its API served,
create, wait, fail with the job's own reason, delete a job that never runs).

The two operators differ in their manifests and in how their status says "running", "done" and
"failed"; each module supplies those and this one does the rest, so that both give the same
errors for the same causes. (No torch import here; kubernetes is imported where it is used.)"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any, Callable

from ..errors import RunFailure

# NCCL and DataLoader workers pass tensors through /dev/shm; a container's default is 64 MiB.
SHM_VOLUME = {"name": "dshm", "emptyDir": {"medium": "Memory"}}
SHM_MOUNT = {"name": "dshm", "mountPath": "/dev/shm"}
SERVICE_ACCOUNT_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
RESUMES = "the last checkpoint is intact and a re-run resumes from it"


@dataclass(frozen=True)
class NodeSettings:
    """What every training node gets, as Kubernetes JSON (the fields of kfp's dsl.TaskConfig)."""

    resources: dict[str, Any] = field(default_factory=dict)
    env: list[dict[str, Any]] = field(default_factory=list)
    volumes: list[dict[str, Any]] = field(default_factory=list)
    volume_mounts: list[dict[str, Any]] = field(default_factory=list)
    tolerations: list[dict[str, Any]] = field(default_factory=list)
    node_selector: dict[str, str] = field(default_factory=dict)
    affinity: dict[str, Any] | None = None


def node_settings(task_config: Any) -> NodeSettings:
    """NodeSettings from a dsl.TaskConfig (or anything with its attributes); unset fields empty."""
    return NodeSettings(**{name: getattr(task_config, name, None) or default
                           for name, default in (("resources", {}), ("env", []), ("volumes", []),
                                                 ("volume_mounts", []), ("tolerations", []),
                                                 ("node_selector", {}), ("affinity", None))})


def job_name(prefix: str = "adautomix") -> str:
    """A fresh name per attempt (a retried step makes a new job that resumes the checkpoint):
    an RFC 1035 label, as both operators' CRDs require."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def check_sizes(num_nodes: int, gpus_per_node: int) -> None:
    if num_nodes < 1 or gpus_per_node < 0:
        raise ValueError(f"num_nodes must be >= 1 and gpus_per_node >= 0, got {num_nodes}, "
                         f"{gpus_per_node}")


def node_resources(node: NodeSettings, gpus_per_node: int, gpu_resource: str) -> dict:
    """Limits and requests of one node (Kubernetes JSON, empty parts left out): the step's own GPU
    count wins over whatever the task config carried."""
    resources = {key: dict(node.resources.get(key) or {}) for key in ("limits", "requests")}
    if gpus_per_node:
        resources["limits"][gpu_resource] = str(gpus_per_node)
    return {k: v for k, v in resources.items() if v}


def pod_volumes(node: NodeSettings) -> tuple[list[dict], list[dict]]:
    """The task config's volumes and mounts, plus a memory-backed /dev/shm unless it has one."""
    has_shm = any(m.get("mountPath") == SHM_MOUNT["mountPath"] for m in node.volume_mounts)
    return (node.volumes + ([] if has_shm else [SHM_VOLUME]),
            node.volume_mounts + ([] if has_shm else [SHM_MOUNT]))


def check_node_settings(node: NodeSettings, output_dir: str, error: type[RunFailure],
                        kind: str) -> None:
    """The nodes must log to the same MLflow server and checkpoint to the volume this step reads:
    an empty task config (a Kubeflow Pipelines backend that does not fill dsl.TaskConfig) would
    otherwise train somewhere nobody looks."""
    if not any(e.get("name") == "MLFLOW_TRACKING_URI" for e in node.env):
        raise error(f"the task config carries no MLFLOW_TRACKING_URI for the {kind}'s "
                    "nodes: run on a Kubeflow Pipelines backend that fills dsl.TaskConfig "
                    "(docs/cluster.md) with the MLflow secret attached to the step")
    out = PurePosixPath(output_dir)
    if not any(out.is_relative_to(m["mountPath"]) for m in node.volume_mounts if "mountPath" in m):
        raise error(f"no volume in the task config is mounted above {output_dir}: the "
                    "nodes would checkpoint where this step cannot read; attach the "
                    "workspace PVC to the step (docs/cluster.md)")


def node_pod_parts(num_nodes: int, gpus_per_node: int, node: NodeSettings, output_dir: str,
                   gpu_resource: str, error: type[RunFailure], kind: str):
    """Checked sizes and settings, then one node's (resources, volumes, mounts) as Kubernetes
    JSON: what both jobs' manifests put in their pods."""
    check_sizes(num_nodes, gpus_per_node)
    check_node_settings(node, output_dir, error, kind)
    return (node_resources(node, gpus_per_node, gpu_resource), *pod_volumes(node))


def gpu_summary(limits: dict | None) -> str:
    gpus = {k: v for k, v in (limits or {}).items() if "gpu" in k}
    return ", ".join(f"{v} {k}" for k, v in gpus.items()) or "no GPUs"


def in_cluster_client():
    """A Kubernetes API client from the pod's service account, and its namespace."""
    from kubernetes import client, config

    config.load_incluster_config()
    with open(SERVICE_ACCOUNT_NAMESPACE) as f:
        return client.ApiClient(), f.read().strip()


@dataclass(frozen=True)
class JobKind:
    """One operator's job resource, and what the errors about it name."""

    group: str
    version: str
    plural: str
    kind: str
    operator: str                # who serves the API, e.g. "Kubeflow Trainer"
    install: str                 # the fix when the API is not served
    served_without: str          # the fix when the group is served without `plural`
    logs: str                    # a kubectl label selector of the job's pods, with {name}
    error: type[RunFailure]


@dataclass(frozen=True)
class Progress:
    """One reading of a job's status: failed (its reason and message), complete, whether a node
    has run yet, and what it waits for while none has."""

    failed: tuple[str, str] | None = None
    complete: bool = False
    running: bool = False
    waiting: str = "waiting for its nodes"


def true_conditions(status: dict | None) -> dict[str, dict]:
    """The conditions that hold (status "True"), by type: both operators report their job's
    state so (TrainJob: Complete, Failed, Suspended; PyTorchJob: Created, Running, Restarting,
    Succeeded, Failed, Suspended)."""
    return {c["type"]: c for c in (status or {}).get("conditions") or []
            if c.get("status") == "True"}


def check_served(api, kind: JobKind) -> None:
    """Fail naming the operator to install when its API group/version or resource is not served."""
    from kubernetes import client

    where = f"{kind.group}/{kind.version}"
    try:
        served = api.get_api_resources(kind.group, kind.version)
    except client.ApiException as exc:
        if exc.status == 404:
            raise kind.error(f"{kind.operator} is not installed on this cluster: the API {where} "
                             f"is not served (HTTP 404); {kind.install}") from None
        raise kind.error(f"the Kubernetes API refused {where}: {api_reason(exc, kind, '')}") \
            from None
    if kind.plural not in {r.name for r in served.resources or []}:
        raise kind.error(f"{where} is served without {kind.plural}: {kind.served_without}")


def run_job(kind: JobKind, body: dict, namespace: str, api_client,
            progress: Callable[[dict], Progress], nodes: int, gpus: str,
            schedule_timeout: float = 1800, poll_interval: float = 15,
            say: Callable[[str], None] = print, created: str = "",
            before: Callable[[Any], None] | None = None) -> dict:
    """Create the job `body` (Kubernetes JSON) in `namespace` and wait until it completes; returns
    its last state (JSON). `progress` reads a state; `nodes` nodes with `gpus` ("4 nvidia.com/gpu")
    each are what the cluster could not place if no node runs within `schedule_timeout`, in which
    case the job is deleted so that it does not start later. `before(api)` runs after the API is
    found served and before anything is created."""
    from kubernetes import client

    api = client.CustomObjectsApi(api_client)
    name = body["metadata"]["name"]
    where = f"{kind.kind} {namespace}/{name}"
    check_served(api, kind)
    if before is not None:
        before(api)
    try:
        api.create_namespaced_custom_object(kind.group, kind.version, namespace, kind.plural, body)
    except client.ApiException as exc:
        raise kind.error(f"creating {where} was refused: {api_reason(exc, kind, namespace)}") \
            from None
    say(f"created {where}{': ' + created if created else ''}")

    started, scheduled, state = time.monotonic(), False, None
    while True:
        current = _read(api, kind, namespace, name)
        now = progress(current)
        if now.failed is not None:
            reason, message = now.failed
            raise kind.error(f"{where} failed: {reason}: {message} (kubectl -n {namespace} logs "
                             f"-l {kind.logs.format(name=name)}); {RESUMES}")
        if now.complete:
            say(f"{where} complete")
            return current
        if now.running and not scheduled:
            say(f"{where} running on {nodes} nodes")
            scheduled = True
        if not scheduled and state != now.waiting:
            say(f"{where} {now.waiting}")
            state = now.waiting
        if not scheduled and time.monotonic() - started > schedule_timeout:
            _delete(api, kind, namespace, name)
            raise kind.error(
                f"{where} had no running node after {schedule_timeout:g} s ({now.waiting}): the "
                f"cluster could not place {nodes} nodes with {gpus} each (GPUs, quota or node "
                f"selector); the job is "
                f"deleted, {RESUMES}")
        time.sleep(poll_interval)


def _read(api, kind: JobKind, namespace: str, name: str) -> dict:
    from kubernetes import client

    try:
        return api.get_namespaced_custom_object(kind.group, kind.version, namespace, kind.plural,
                                                name)
    except client.ApiException as exc:
        if exc.status == 404:
            raise kind.error(f"{kind.kind} {namespace}/{name} is gone: it was deleted while the "
                             f"step waited; {RESUMES}") from None
        raise kind.error(f"reading {kind.kind} {namespace}/{name} failed: "
                         f"{api_reason(exc, kind, namespace)}") from None


def _delete(api, kind: JobKind, namespace: str, name: str) -> None:
    from kubernetes import client

    try:
        api.delete_namespaced_custom_object(kind.group, kind.version, namespace, kind.plural, name)
    except client.ApiException:
        pass   # the error that follows matters more; a leftover job shows in kubectl


def api_reason(exc, kind: JobKind, namespace: str) -> str:
    if exc.status == 403:
        return (f"HTTP 403 Forbidden: the step's service account may not manage {kind.plural} "
                f"in namespace {namespace or '(cluster)'}; apply deploy/rbac.yaml there")
    if exc.status == 404:
        return (f"HTTP 404: {kind.group}/{kind.version} {kind.plural} are not served; is "
                f"{kind.operator} installed?")
    return f"HTTP {exc.status} {exc.reason}: {str(exc.body)[:300]}"
