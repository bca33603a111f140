"""What training on several nodes shares whichever Kubernetes operator runs the nodes (Kubeflow
Trainer's TrainJob, adautomix/cluster/trainjob.py, or the older training operator's PyTorchJob,
adautomix/cluster/pytorchjob.py): the nodes' pod settings (the step's dsl.TaskConfig and the
pipeline's JobOptions) and their checks, the owner reference to the step's pod (read through
cluster/pod.py), and the life of the job through the Kubernetes API (is its API served, create
or adopt, wait, fail with the job's own reason, delete a job the step stops watching).

A job belongs to its step: its name comes from the pipeline run and the checkpoint folder, so a
retried step finds the job an earlier attempt made and adopts it (or replaces it, if it failed)
instead of starting a second one into the same checkpoints; it carries an owner reference to the
step's pod, so Kubernetes deletes it with the run; and the step deletes it when it stops watching
for any reason but the job's own end (a failed status read, SIGTERM from a cancelled run, a step
timeout or an eviction, no node in time).

The two operators differ in their manifests and in how their status says "running", "done" and
"failed"; each module supplies those and this one does the rest, so that both give the same
errors for the same causes. (No torch import here; kubernetes is imported where it is used.)"""

from __future__ import annotations

import hashlib
import re
import signal
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field, fields
from pathlib import PurePosixPath
from typing import Any, Callable

from ..errors import RunFailure

# NCCL and DataLoader workers pass tensors through /dev/shm; a container's default is 64 MiB.
SHM_NAME, SHM_PATH = "dshm", "/dev/shm"
SHM_MOUNT = {"name": SHM_NAME, "mountPath": SHM_PATH}
# What the restricted Pod Security Standard asks of a pod and of each of its containers: a
# namespace that enforces it refuses the nodes' pods without them. runAsNonRoot holds for the
# project's image, whose user is numeric and not root (docker/Dockerfile: USER 1000:0).
POD_SECURITY = {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
CONTAINER_SECURITY = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
RESUMES = "the last checkpoint is intact and a re-run resumes from it"
LABEL_PREFIX = "adautomix.dev/"
# A label value: at most 63 alphanumerics, '-', '_' or '.', starting and ending alphanumeric.
_LABEL_VALUE = re.compile(r"[^A-Za-z0-9_.-]")


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
    return NodeSettings(
        **{
            name: getattr(task_config, name, None) or default
            for name, default in (
                ("resources", {}),
                ("env", []),
                ("volumes", []),
                ("volume_mounts", []),
                ("tolerations", []),
                ("node_selector", {}),
                ("affinity", None),
            )
        }
    )


@dataclass(frozen=True)
class JobOptions:
    """What the pipeline decided at compile time for the job and its pods (job_options in
    pipeline/cluster_tasks.py builds it from the cluster settings; the train step on several
    nodes receives it as JSON).

    `resources` are one node's CPU and memory requests and limits (Kubernetes JSON, without the
    GPUs, which follow the step's GPU count); `shm_size` sizes the nodes' memory-backed /dev/shm
    ('' leaves it unsized), and the pipeline counts it into `resources`' memory; `labels` go on
    the job and its pods, `annotations` on its pods (Istio's sidecar.istio.io/inject among them);
    `termination_grace_seconds` is the time a node has between SIGTERM and SIGKILL to write its
    checkpoint (0: Kubernetes' 30 s); `deadline_seconds` bounds the job's run (0: none)."""

    num_nodes: int = 2
    trainer: str = "trainjob"
    runtime: str = "torch-distributed"
    schedule_timeout: float = 1800
    image: str = ""
    gpu_resource: str = "nvidia.com/gpu"
    image_pull_secrets: tuple[str, ...] = ()
    resources: dict[str, dict[str, str]] = field(default_factory=dict)
    shm_size: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    termination_grace_seconds: int = 0
    deadline_seconds: int = 0

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> JobOptions:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(
                f"job options {unknown} are not known; known: {sorted(known)} "
                "(compile the pipeline with this package's version)"
            )
        values = dict(values)
        if "image_pull_secrets" in values:
            values["image_pull_secrets"] = tuple(values["image_pull_secrets"])
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        values = asdict(self)
        values["image_pull_secrets"] = list(self.image_pull_secrets)
        return values

    def pod_metadata(self) -> dict[str, dict[str, str]]:
        """The nodes' pod labels and annotations (Kubernetes JSON, empty parts left out)."""
        return {
            k: v
            for k, v in (("labels", dict(self.labels)), ("annotations", dict(self.annotations)))
            if v
        }

    def pull_secrets(self) -> list[dict[str, str]]:
        return [{"name": name} for name in self.image_pull_secrets]


@dataclass(frozen=True)
class JobRequest:
    """What the train step asks of a job, whichever operator runs it: the job's `name`, the
    `command` every node runs, `gpus_per_node` GPUs (and as many processes, one on a node
    without GPUs) on each of options.num_nodes nodes of options.image, the task config's pod
    settings (`node`), the checkpoint folder the nodes write (`output_dir`, which a volume of
    `node` must hold), the job options and an owner reference (pod_owner) or None."""

    name: str
    command: list[str]
    gpus_per_node: int
    node: NodeSettings
    output_dir: str
    options: JobOptions = field(default_factory=JobOptions)
    owner: dict | None = None

    @property
    def processes_per_node(self) -> int:
        return max(self.gpus_per_node, 1)

    def pod_parts(self, kind: JobKind) -> tuple[dict, list[dict], list[dict]]:
        """Checked sizes and settings, then one node's (resources, volumes, mounts) as
        Kubernetes JSON: what both operators' manifests put in their pods."""
        check_sizes(self.options.num_nodes, self.gpus_per_node)
        check_node_settings(self.node, self.output_dir, kind.error, kind.kind)
        return (
            node_resources(self.node, self.gpus_per_node, self.options),
            *pod_volumes(self.node, self.options.shm_size),
        )


def label_value(text: str) -> str:
    """`text` as a Kubernetes label value: odd characters become '-', at most 63 characters
    (the end kept: a checkpoint folder's name ends in its distinguishing key)."""
    return _LABEL_VALUE.sub("-", text)[-63:].strip("-_.")


def run_labels(pipeline: str, run_id: str, output_dir: str, step: str = "train") -> dict:
    """The labels that name who made a job: the pipeline, its run, the step and the checkpoint
    folder (`kubectl get trainjobs -l adautomix.dev/pipeline-run-id=RUN` lists a run's jobs)."""
    labels = {
        "app.kubernetes.io/part-of": "adautomix",
        "app.kubernetes.io/managed-by": "adautomix-pipeline",
        LABEL_PREFIX + "pipeline": pipeline,
        LABEL_PREFIX + "pipeline-run-id": run_id,
        LABEL_PREFIX + "step": step,
        LABEL_PREFIX + "checkpoint": PurePosixPath(output_dir).name,
    }
    return {key: label_value(value) for key, value in labels.items() if label_value(value)}


def job_name(run_id: str = "", output_dir: str = "", prefix: str = "adautomix") -> str:
    """An RFC 1035 label, as both operators' CRDs require. With a pipeline run id it is the same
    for every attempt of one step (the run and the checkpoint folder decide it), so that a retry
    finds the job of the attempt before; without one, a fresh name."""
    if not run_id:
        return f"{prefix}-{uuid.uuid4().hex[:10]}"
    return f"{prefix}-{hashlib.sha256(f'{run_id}/{output_dir}'.encode()).hexdigest()[:16]}"


def check_sizes(num_nodes: int, gpus_per_node: int) -> None:
    if num_nodes < 1 or gpus_per_node < 0:
        raise ValueError(
            f"num_nodes must be >= 1 and gpus_per_node >= 0, got {num_nodes}, {gpus_per_node}"
        )


def node_resources(node: NodeSettings, gpus_per_node: int, options: JobOptions) -> dict:
    """Limits and requests of one node (Kubernetes JSON, empty parts left out): the job options'
    CPU and memory over whatever the task config carried, and the step's own GPU count (of
    options.gpu_resource) over both."""
    resources = {
        key: {**(node.resources.get(key) or {}), **(options.resources.get(key) or {})}
        for key in ("limits", "requests")
    }
    if gpus_per_node:
        resources["limits"][options.gpu_resource] = str(gpus_per_node)
    return {k: v for k, v in resources.items() if v}


def pod_volumes(node: NodeSettings, shm_size: str = "") -> tuple[list[dict], list[dict]]:
    """The task config's volumes and mounts, plus a memory-backed /dev/shm (of `shm_size`, when
    given) unless it has one."""
    has_shm = any(m.get("mountPath") == SHM_PATH for m in node.volume_mounts)
    if has_shm:
        return node.volumes, node.volume_mounts
    shm = {
        "name": SHM_NAME,
        "emptyDir": {"medium": "Memory", **({"sizeLimit": shm_size} if shm_size else {})},
    }
    return node.volumes + [shm], node.volume_mounts + [SHM_MOUNT]


def check_node_settings(
    node: NodeSettings, output_dir: str, error: type[RunFailure], kind: str
) -> None:
    """The nodes must log to the same MLflow server and checkpoint to the volume this step reads:
    an empty task config (a Kubeflow Pipelines backend that does not fill dsl.TaskConfig) would
    otherwise train somewhere nobody looks."""
    if not any(e.get("name") == "MLFLOW_TRACKING_URI" for e in node.env):
        raise error(
            f"the task config carries no MLFLOW_TRACKING_URI for the {kind}'s "
            "nodes: run on a Kubeflow Pipelines backend that fills dsl.TaskConfig "
            "(docs/cluster.md) with the MLflow secret attached to the step"
        )
    out = PurePosixPath(output_dir)
    if not any(out.is_relative_to(m["mountPath"]) for m in node.volume_mounts if "mountPath" in m):
        raise error(
            f"no volume in the task config is mounted above {output_dir}: the "
            "nodes would checkpoint where this step cannot read; attach the "
            "workspace PVC to the step (docs/cluster.md)"
        )


def gpu_summary(limits: dict | None) -> str:
    gpus = {k: v for k, v in (limits or {}).items() if "gpu" in k}
    return ", ".join(f"{v} {k}" for k, v in gpus.items()) or "no GPUs"


def pod_owner(
    api_client, namespace: str, pod_name: str | None = None, say: Callable[[str], None] = print
) -> dict | None:
    """An owner reference to the pod this step runs in (named as pod.own_name finds it), for a
    job it creates: Kubernetes' garbage collector deletes the job once every pod that owns it is
    gone, so a deleted pipeline run takes its jobs with it. None, said, when the pod cannot be
    read (the service account may not get pods: deploy/rbac.yaml grants it)."""
    from .pod import PodReadError, own_name, read_pod

    name = pod_name or own_name()
    try:
        pod = read_pod(api_client, namespace, name)
    except (PodReadError, ValueError) as exc:
        say(
            f"note: the job gets no owner reference (reading pod {namespace}/{name or '?'} "
            f"failed: {getattr(exc, 'status', '') or exc}); grant get on pods (deploy/rbac.yaml) "
            "so that deleting the run deletes its job"
        )
        return None
    # not blocking: the pod's deletion must not wait for the job's
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "name": name,
        "uid": pod["metadata"]["uid"],
        "controller": False,
        "blockOwnerDeletion": False,
    }


@dataclass(frozen=True)
class JobKind:
    """One operator's job resource, and what the errors about it name."""

    group: str
    version: str
    plural: str
    kind: str
    operator: str  # who serves the API, e.g. "Kubeflow Trainer"
    install: str  # the fix when the API is not served
    served_without: str  # the fix when the group is served without `plural`
    logs: str  # a kubectl label selector of the job's pods, with {name}
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
    return {
        c["type"]: c for c in (status or {}).get("conditions") or [] if c.get("status") == "True"
    }


def read_progress(
    status: dict | None, complete: str, running: bool, waiting: str = "waiting for its nodes"
) -> Progress:
    """A job's Progress from its status: both operators say it failed or is suspended by the
    conditions of those names; `complete` names the condition of its success, `running` says
    whether a node has run, and `waiting` what it waits for while none has."""
    conditions = true_conditions(status)
    failed, suspended = conditions.get("Failed"), conditions.get("Suspended")
    return Progress(
        failed=(failed.get("reason"), failed.get("message")) if failed else None,
        complete=complete in conditions,
        running=running,
        waiting=f"suspended ({suspended.get('reason')})" if suspended else waiting,
    )


def check_served(api, kind: JobKind) -> None:
    """Fail naming the operator to install when its API group/version or resource is not served."""
    from kubernetes import client

    where = f"{kind.group}/{kind.version}"
    try:
        served = api.get_api_resources(kind.group, kind.version)
    except client.ApiException as exc:
        if exc.status == 404:
            raise kind.error(
                f"{kind.operator} is not installed on this cluster: the API {where} "
                f"is not served (HTTP 404); {kind.install}"
            ) from None
        raise kind.error(
            f"the Kubernetes API refused {where}: {api_reason(exc, kind, '')}"
        ) from None
    if kind.plural not in {r.name for r in served.resources or []}:
        raise kind.error(f"{where} is served without {kind.plural}: {kind.served_without}")


def run_job(
    kind: JobKind,
    body: dict,
    namespace: str,
    api_client,
    progress: Callable[[dict], Progress],
    nodes: int,
    gpus: str,
    schedule_timeout: float = 1800,
    poll_interval: float = 15,
    say: Callable[[str], None] = print,
    created: str = "",
    before: Callable[[Any], None] | None = None,
) -> dict:
    """Create the job `body` (Kubernetes JSON) in `namespace`, or adopt the one of that name an
    earlier attempt of the step made, and wait until it completes; returns its last state (JSON).
    `progress` reads a state; `nodes` nodes with `gpus` ("4 nvidia.com/gpu") each are what the
    cluster could not place if no node runs within `schedule_timeout`. `before(api)` runs after
    the API is found served and before anything is created.

    The job is deleted whenever the step stops watching it before its end: no node in time, a
    failed status read, SIGTERM (a cancelled run, a step timeout, an evicted pod), any error. A
    job that failed by itself is kept, for its pods' logs: its pods have ended, and the step's
    retry replaces it."""
    from kubernetes import client

    api = client.CustomObjectsApi(api_client)
    name = body["metadata"]["name"]
    where = f"{kind.kind} {namespace}/{name}"
    check_served(api, kind)
    if before is not None:
        before(api)
    _create_or_adopt(
        api, kind, namespace, body, progress, where, poll_interval, schedule_timeout, say, created
    )

    keep = False  # True once the job is gone or ended on its own
    try:
        with _sigterm_raises(
            kind.error(
                f"this step was stopped (SIGTERM: the run was cancelled, the step timed out or "
                f"its pod was evicted) while {where} ran; the job is deleted, {RESUMES}"
            )
        ):
            started, scheduled, state = time.monotonic(), False, None
            while True:
                try:
                    current = _read(api, kind, namespace, name)
                except _Gone as gone:
                    keep = True
                    raise gone.error from None
                now = progress(current)
                if now.failed is not None:
                    keep = True
                    reason, message = now.failed
                    raise kind.error(
                        f"{where} failed: {reason}: {message} (kubectl -n "
                        f"{namespace} logs -l {kind.logs.format(name=name)}); "
                        f"{RESUMES}"
                    )
                if now.complete:
                    keep = True
                    say(f"{where} complete")
                    return current
                if now.running and not scheduled:
                    say(f"{where} running on {nodes} nodes")
                    scheduled = True
                if not scheduled and state != now.waiting:
                    say(f"{where} {now.waiting}")
                    state = now.waiting
                if not scheduled and time.monotonic() - started > schedule_timeout:
                    raise kind.error(
                        f"{where} had no running node after {schedule_timeout:g} s "
                        f"({now.waiting}): the cluster could not place {nodes} nodes with "
                        f"{gpus} each (GPUs, CPU or memory, quota, node selector, or an image "
                        f"its pods cannot pull: kubectl -n {namespace} get events); the job is "
                        f"deleted, {RESUMES}"
                    )
                time.sleep(poll_interval)
    except BaseException:
        if not keep:
            _delete(api, kind, namespace, name)
        raise


class _Gone(Exception):
    def __init__(self, error: RunFailure):
        super().__init__(str(error))
        self.error = error


def _create_or_adopt(
    api,
    kind: JobKind,
    namespace: str,
    body: dict,
    progress: Callable[[dict], Progress],
    where: str,
    poll_interval: float,
    patience: float,
    say: Callable[[str], None],
    created: str,
) -> None:
    """Create the job; if one of its name exists (an earlier attempt of this step made it),
    adopt it, adding this pod to its owners, unless it failed: then delete it, wait until it is
    gone, and create it anew."""
    from kubernetes import client

    name = body["metadata"]["name"]
    for _ in range(2):
        try:
            api.create_namespaced_custom_object(
                kind.group, kind.version, namespace, kind.plural, body
            )
            say(f"created {where}{': ' + created if created else ''}")
            return
        except client.ApiException as exc:
            if exc.status != 409:
                raise kind.error(
                    f"creating {where} was refused: {api_reason(exc, kind, namespace)}"
                ) from None
        try:
            existing = _read(api, kind, namespace, name)
        except _Gone:  # deleted between the two calls: create it again
            continue
        if progress(existing).failed is None:
            _add_owners(api, kind, namespace, existing, body)
            say(f"adopted {where}, which an earlier attempt of this step created")
            return
        say(f"{where}, left by an earlier attempt, failed; replacing it")
        _delete(api, kind, namespace, name)
        _wait_until_gone(api, kind, namespace, name, where, poll_interval, patience)
    raise kind.error(
        f"{where} exists and could not be replaced; delete it (kubectl -n "
        f"{namespace} delete {kind.plural} {name}) and re-run"
    )


def _add_owners(api, kind: JobKind, namespace: str, existing: dict, body: dict) -> None:
    """This attempt's pod joins the adopted job's owners, so the job outlives the pod of the
    attempt that made it (a merge patch replaces the list: it carries the old owners too)."""
    from kubernetes import client

    owners = existing.get("metadata", {}).get("ownerReferences") or []
    new = [
        o
        for o in body["metadata"].get("ownerReferences") or []
        if o["uid"] not in {old.get("uid") for old in owners}
    ]
    if not new:
        return
    try:
        api.patch_namespaced_custom_object(
            kind.group,
            kind.version,
            namespace,
            kind.plural,
            existing["metadata"]["name"],
            {"metadata": {"ownerReferences": owners + new}},
        )
    except client.ApiException:
        pass  # the job still runs and is watched; only the garbage collection is weaker


def _wait_until_gone(
    api, kind: JobKind, namespace: str, name: str, where: str, poll_interval: float, patience: float
) -> None:
    started = time.monotonic()
    while time.monotonic() - started <= patience:
        try:
            _read(api, kind, namespace, name)
        except _Gone:
            return
        time.sleep(poll_interval)
    raise kind.error(
        f"{where} was deleted but still exists after {patience:g} s; delete it "
        f"(kubectl -n {namespace} delete {kind.plural} {name}) and re-run"
    )


class _sigterm_raises:
    """While the block runs (in the main thread), SIGTERM raises `error`: what Kubernetes sends a
    pod that is cancelled, timed out or evicted, so that the step can delete its job first."""

    def __init__(self, error: BaseException):
        self.error, self.previous = error, None

    def _raise(self, signum, frame):
        raise self.error

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGTERM, self._raise)
        return self

    def __exit__(self, *exc):
        if self.previous is not None:
            signal.signal(signal.SIGTERM, self.previous)
        return False


def _read(api, kind: JobKind, namespace: str, name: str) -> dict:
    from kubernetes import client

    try:
        return api.get_namespaced_custom_object(
            kind.group, kind.version, namespace, kind.plural, name
        )
    except client.ApiException as exc:
        if exc.status == 404:
            raise _Gone(
                kind.error(
                    f"{kind.kind} {namespace}/{name} is gone: it was deleted "
                    f"while the step waited; {RESUMES}"
                )
            ) from None
        raise kind.error(
            f"reading {kind.kind} {namespace}/{name} failed: "
            f"{api_reason(exc, kind, namespace)}; the job is deleted, so that it "
            f"does not train unwatched, and {RESUMES}"
        ) from None


def _delete(api, kind: JobKind, namespace: str, name: str) -> None:
    from kubernetes import client

    try:
        # Foreground: the job stays until its pods are gone, so a replacement cannot start
        # while they still write checkpoints
        api.delete_namespaced_custom_object(
            kind.group, kind.version, namespace, kind.plural, name, propagation_policy="Foreground"
        )
    except client.ApiException:
        pass  # the error that follows matters more; a leftover job shows in kubectl


def api_reason(exc, kind: JobKind, namespace: str) -> str:
    if exc.status == 403:
        return (
            f"HTTP 403 Forbidden: the step's service account may not manage {kind.plural} "
            f"in namespace {namespace or '(cluster)'}; apply deploy/rbac.yaml there"
        )
    if exc.status == 404:
        return (
            f"HTTP 404: {kind.group}/{kind.version} {kind.plural} are not served; is "
            f"{kind.operator} installed?"
        )
    return f"HTTP {exc.status} {exc.reason}: {str(exc.body)[:300]}"
