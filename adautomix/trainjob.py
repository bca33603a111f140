"""Runs on several nodes, handed to Kubeflow Trainer: the TrainJob manifest, its creation through
the Kubernetes API, and the wait for its end.

The manifest is built from the Trainer API's own typed models (`kubeflow-trainer-api`, the
models the Kubeflow SDK builds its TrainJobs from), for `trainer.kubeflow.org/v1alpha1` as its
CRD defines it: `spec.runtimeRef` names the `torch-distributed` ClusterTrainingRuntime,
`spec.trainer` carries the image, the command, the environment, `numNodes`, `numProcPerNode` and
`resourcesPerNode`, and one `spec.runtimePatches` entry adds to the runtime's `node` pods what
the CRD does not let `trainer` say: volumes and their mounts, node selector, affinity and
tolerations. The Kubeflow SDK's `TrainerClient` is not used to create the job because its trainer
environment takes plain values only, and the credentials here must stay references to secrets.

Where the pod settings come from: the pipeline configures the TrainJob step exactly as it
configures the single-pod train step (GPUs, workspace volume, secrets as environment, node
selector, tolerations) and Kubeflow Pipelines hands those settings to the step as a
`dsl.TaskConfig`, whose fields are Kubernetes JSON; `node_settings` reads one.

What can go wrong is named: Trainer not installed (its API group is not served), the runtime
missing, the service account not allowed (RBAC, deploy/rbac.yaml), a job that fails (its
condition's reason and message), a job that gets no running node within `schedule_timeout`
(deleted, so it does not start later). The checkpoints live on the shared volume, so whatever
happens the last one stays for the re-run to resume from.

(No torch import here; kubernetes and kubeflow_trainer_api are imported where they are used.)"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any, Callable

from .errors import RunFailure

GROUP, VERSION = "trainer.kubeflow.org", "v1alpha1"
TRAINJOBS, RUNTIMES = "trainjobs", "clustertrainingruntimes"
DEFAULT_RUNTIME = "torch-distributed"
# The runtime's trainer: the replicated job and its container are both called "node".
NODE = "node"
PATCH_MANAGER = "adautomix.dev/pipeline"
# NCCL and DataLoader workers pass tensors through /dev/shm; a container's default is 64 MiB.
SHM_VOLUME = {"name": "dshm", "emptyDir": {"medium": "Memory"}}
SHM_MOUNT = {"name": "dshm", "mountPath": "/dev/shm"}
SERVICE_ACCOUNT_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


class TrainJobError(RunFailure):
    """The TrainJob could not be created, failed, or never ran; the message says which and why."""


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
    an RFC 1035 label, as the CRD requires."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def trainjob_manifest(name: str, image: str, command: list[str], num_nodes: int,
                      gpus_per_node: int, node: NodeSettings, output_dir: str,
                      gpu_resource: str = "nvidia.com/gpu", runtime: str = DEFAULT_RUNTIME,
                      labels: dict[str, str] | None = None):
    """The TrainJob (a kubeflow_trainer_api TrainerV1alpha1TrainJob): `num_nodes` nodes of
    `gpus_per_node` GPUs and as many processes (one process on a node without GPUs)."""
    from kubeflow_trainer_api import models as m

    if num_nodes < 1 or gpus_per_node < 0:
        raise ValueError(f"num_nodes must be >= 1 and gpus_per_node >= 0, got {num_nodes}, "
                         f"{gpus_per_node}")
    _check_node_settings(node, output_dir)
    resources = {key: dict(node.resources.get(key) or {}) for key in ("limits", "requests")}
    if gpus_per_node:   # the step's own request, whatever the task config carried
        resources["limits"][gpu_resource] = str(gpus_per_node)
    has_shm = any(m_.get("mountPath") == SHM_MOUNT["mountPath"] for m_ in node.volume_mounts)
    volumes = node.volumes + ([] if has_shm else [SHM_VOLUME])
    mounts = node.volume_mounts + ([] if has_shm else [SHM_MOUNT])

    resources = {k: v for k, v in resources.items() if v}
    trainer = m.TrainerV1alpha1Trainer(
        image=image, command=command, numNodes=num_nodes,
        numProcPerNode=max(gpus_per_node, 1),
        env=[m.IoK8sApiCoreV1EnvVar.from_dict(e) for e in node.env] or None,
        resourcesPerNode=m.IoK8sApiCoreV1ResourceRequirements.from_dict(resources)
        if resources else None)
    pod = m.TrainerV1alpha1PodSpecPatch(
        volumes=[m.IoK8sApiCoreV1Volume.from_dict(v) for v in volumes],
        containers=[m.TrainerV1alpha1ContainerPatch(
            name=NODE, volumeMounts=[m.IoK8sApiCoreV1VolumeMount.from_dict(v) for v in mounts])],
        nodeSelector=node.node_selector or None,
        tolerations=[m.IoK8sApiCoreV1Toleration.from_dict(t) for t in node.tolerations] or None,
        affinity=m.IoK8sApiCoreV1Affinity.from_dict(node.affinity) if node.affinity else None)
    patch = m.TrainerV1alpha1RuntimePatch(
        manager=PATCH_MANAGER,
        trainingRuntimeSpec=m.TrainerV1alpha1TrainingRuntimeSpecPatch(
            template=m.TrainerV1alpha1JobSetTemplatePatch(
                spec=m.TrainerV1alpha1JobSetSpecPatch(replicatedJobs=[
                    m.TrainerV1alpha1ReplicatedJobPatch(
                        name=NODE, template=m.TrainerV1alpha1JobTemplatePatch(
                            spec=m.TrainerV1alpha1JobSpecPatch(
                                template=m.TrainerV1alpha1PodTemplatePatch(spec=pod))))]))))
    return m.TrainerV1alpha1TrainJob(
        apiVersion=f"{GROUP}/{VERSION}", kind="TrainJob",
        metadata=m.IoK8sApimachineryPkgApisMetaV1ObjectMeta(name=name, labels=labels),
        spec=m.TrainerV1alpha1TrainJobSpec(
            runtimeRef=m.TrainerV1alpha1RuntimeRef(name=runtime, kind="ClusterTrainingRuntime",
                                                   apiGroup=GROUP),
            trainer=trainer, runtimePatches=[patch]))


def _check_node_settings(node: NodeSettings, output_dir: str) -> None:
    """The nodes must log to the same MLflow server and checkpoint to the volume this step reads:
    an empty task config (a Kubeflow Pipelines backend that does not fill dsl.TaskConfig) would
    otherwise train somewhere nobody looks."""
    if not any(e.get("name") == "MLFLOW_TRACKING_URI" for e in node.env):
        raise TrainJobError("the task config carries no MLFLOW_TRACKING_URI for the TrainJob's "
                            "nodes: run on a Kubeflow Pipelines backend that fills dsl.TaskConfig "
                            "(docs/cluster.md) with the MLflow secret attached to the step")
    out = PurePosixPath(output_dir)
    if not any(out.is_relative_to(m_["mountPath"]) for m_ in node.volume_mounts
               if "mountPath" in m_):
        raise TrainJobError(f"no volume in the task config is mounted above {output_dir}: the "
                            "nodes would checkpoint where this step cannot read; attach the "
                            "workspace PVC to the step (docs/cluster.md)")


def in_cluster_client():
    """A Kubernetes API client from the pod's service account, and its namespace."""
    from kubernetes import client, config

    config.load_incluster_config()
    with open(SERVICE_ACCOUNT_NAMESPACE) as f:
        return client.ApiClient(), f.read().strip()


def run_trainjob(job, namespace: str, api_client, schedule_timeout: float = 1800,
                 poll_interval: float = 15, say: Callable[[str], None] = print):
    """Create `job` in `namespace` and wait until it completes; returns the final TrainJob
    (typed). Raises TrainJobError naming the cause otherwise."""
    from kubernetes import client

    api = client.CustomObjectsApi(api_client)
    name, runtime = job.metadata.name, job.spec.runtime_ref.name
    where = f"TrainJob {namespace}/{name}"
    _check_trainer_installed(api, runtime)
    try:
        api.create_namespaced_custom_object(GROUP, VERSION, namespace, TRAINJOBS, job.to_dict())
    except client.ApiException as exc:
        raise TrainJobError(f"creating {where} was refused: {_api_reason(exc, namespace)}") from None
    say(f"created {where}: {job.spec.trainer.num_nodes} nodes x "
        f"{job.spec.trainer.num_proc_per_node} processes, runtime {runtime}")

    started, scheduled, state = time.monotonic(), False, None
    while True:
        current = _read_trainjob(api, namespace, name)
        status = current.status
        conditions = {c.type: c for c in (status.conditions or [])} if status else {}
        failed, complete = conditions.get("Failed"), conditions.get("Complete")
        if failed is not None and failed.status == "True":
            raise TrainJobError(f"{where} failed: {failed.reason}: {failed.message} (kubectl -n "
                                f"{namespace} logs -l jobset.sigs.k8s.io/jobset-name={name}); "
                                "the last checkpoint is intact and a re-run resumes from it")
        if complete is not None and complete.status == "True":
            say(f"{where} complete")
            return current
        node = next((j for j in (status.jobs_status or []) if j.name == NODE), None) if status else None
        if node is not None and (node.ready or node.succeeded or node.failed):
            if not scheduled:
                say(f"{where} running on {job.spec.trainer.num_nodes} nodes")
            scheduled = True
        now = f"suspended ({conditions['Suspended'].reason})" if "Suspended" in conditions and \
            conditions["Suspended"].status == "True" else "waiting for its nodes"
        if not scheduled and state != now:
            say(f"{where} {now}")
            state = now
        if not scheduled and time.monotonic() - started > schedule_timeout:
            _delete(api, namespace, name)
            raise TrainJobError(
                f"{where} had no running node after {schedule_timeout:g} s ({now}): the cluster "
                f"could not place {job.spec.trainer.num_nodes} nodes with "
                f"{_gpus(job)} each (GPUs, quota or node selector); the job is deleted, the "
                "last checkpoint is intact and a re-run resumes from it")
        time.sleep(poll_interval)


def _check_trainer_installed(api, runtime: str) -> None:
    from kubernetes import client

    try:
        served = api.get_api_resources(GROUP, VERSION)
    except client.ApiException as exc:
        if exc.status == 404:
            raise TrainJobError(f"Kubeflow Trainer is not installed on this cluster: the API "
                                f"{GROUP}/{VERSION} is not served (HTTP 404); install Trainer "
                                "(docs/cluster.md) or train on one node (--num-nodes 1)") from None
        raise TrainJobError(f"the Kubernetes API refused {GROUP}/{VERSION}: "
                            f"{_api_reason(exc, '')}") from None
    if TRAINJOBS not in {r.name for r in served.resources or []}:
        raise TrainJobError(f"{GROUP}/{VERSION} is served without {TRAINJOBS}: install Kubeflow "
                            "Trainer v2 (docs/cluster.md)")
    try:
        api.get_cluster_custom_object(GROUP, VERSION, RUNTIMES, runtime)
    except client.ApiException as exc:
        if exc.status == 404:
            raise TrainJobError(f"the ClusterTrainingRuntime {runtime!r} does not exist: install "
                                "Trainer's runtimes (docs/cluster.md) or name another one "
                                "(--trainer-runtime)") from None
        if exc.status != 403:    # reading runtimes is a courtesy check, creating jobs is not
            raise TrainJobError(f"reading the ClusterTrainingRuntime {runtime!r} failed: "
                                f"{_api_reason(exc, '')}") from None


def _read_trainjob(api, namespace: str, name: str):
    from kubeflow_trainer_api import models as m
    from kubernetes import client

    try:
        return m.TrainerV1alpha1TrainJob.from_dict(
            api.get_namespaced_custom_object(GROUP, VERSION, namespace, TRAINJOBS, name))
    except client.ApiException as exc:
        if exc.status == 404:
            raise TrainJobError(f"TrainJob {namespace}/{name} is gone: it was deleted while the "
                                "step waited; the last checkpoint is intact and a re-run resumes "
                                "from it") from None
        raise TrainJobError(f"reading TrainJob {namespace}/{name} failed: "
                            f"{_api_reason(exc, namespace)}") from None


def _delete(api, namespace: str, name: str) -> None:
    from kubernetes import client

    try:
        api.delete_namespaced_custom_object(GROUP, VERSION, namespace, TRAINJOBS, name)
    except client.ApiException:
        pass   # the error that follows matters more; a leftover job shows in kubectl


def _api_reason(exc, namespace: str) -> str:
    if exc.status == 403:
        return (f"HTTP 403 Forbidden: the step's service account may not manage {TRAINJOBS} "
                f"in namespace {namespace or '(cluster)'}; apply deploy/rbac.yaml there")
    if exc.status == 404:
        return (f"HTTP 404: {GROUP}/{VERSION} {TRAINJOBS} are not served; is Kubeflow Trainer "
                "installed?")
    return f"HTTP {exc.status} {exc.reason}: {str(exc.body)[:300]}"


def _gpus(job) -> str:
    limits = (job.spec.trainer.resources_per_node.limits or {}) \
        if job.spec.trainer.resources_per_node else {}
    gpus = {k: v.to_dict() if hasattr(v, "to_dict") else v for k, v in limits.items()
            if "gpu" in k}
    return ", ".join(f"{v} {k}" for k, v in gpus.items()) or "no GPUs"
