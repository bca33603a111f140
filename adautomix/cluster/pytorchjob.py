"""Runs on several nodes, handed to the older Kubeflow training operator (v1.8 or newer, for
clusters that still run it instead of Kubeflow Trainer): the PyTorchJob manifest, its creation
and the wait.

The manifest is built from the training operator's own typed models (`kubeflow-training`, the
models its SDK builds its jobs from) for `kubeflow.org/v1` as the PyTorchJob CRD defines it:
`spec.pytorchReplicaSpecs` has a `Master` (1 replica, node rank 0) and `Worker` (K - 1 replicas),
each a pod template whose container must be called `pytorch` (the operator looks it up by that
name to add its port and environment), `spec.nprocPerNode` (a string in the CRD) is the processes
per node and `spec.runPolicy` says what happens on failure. The pod templates are the kubernetes
client's typed models (the SDK's models use them), filled from the same dsl.TaskConfig settings the
TrainJob gets (adautomix/cluster/job.py): GPUs, CPU and memory, environment from secrets, the
workspace volume, a sized /dev/shm, image pull secrets, node selector, affinity, tolerations, the
termination grace period, the pods' labels and annotations, and the security context of the
restricted Pod Security Standard; `runPolicy.activeDeadlineSeconds` bounds the run.

A pod that fails fails the job (restartPolicy Never, backoffLimit 0) rather than restarting in
place: one torchrun group cannot lose a node and go on, and the step's own retry makes a new job
that resumes from the checkpoint, as with a TrainJob. Pods still running when the job ends are
deleted (cleanPodPolicy Running), so a failed job frees its GPUs; finished pods stay for their logs.

The operator sets WORLD_SIZE, RANK, PET_NNODES, PET_NPROC_PER_NODE, PET_NODE_RANK, MASTER_ADDR and
MASTER_PORT in every replica; the command (adautomix.cluster.launch.pytorchjob_node_command) is
torchrun told where the master is, and torchrun gives each process the RANK, WORLD_SIZE and
LOCAL_RANK adautomix/engine/distributed.py reads. (No torch import here; kubernetes and
kubeflow.training are imported where they are used.)"""

from __future__ import annotations

import json
from .job import (
    CONTAINER_SECURITY,
    POD_SECURITY,
    JobKind,
    JobRequest,
    Progress,
    gpu_summary,
    read_progress,
    run_job,
    true_conditions,
)
from ..errors import RunFailure

GROUP, VERSION, PYTORCHJOBS = "kubeflow.org", "v1", "pytorchjobs"
# The operator finds the training container by this name (it adds the port and environment).
CONTAINER = "pytorch"
MASTER, WORKER = "Master", "Worker"


class PyTorchJobError(RunFailure):
    """The PyTorchJob could not be created, failed, or never ran; the message says which and why."""


PYTORCHJOB = JobKind(
    GROUP,
    VERSION,
    PYTORCHJOBS,
    "PyTorchJob",
    operator="the Kubeflow training operator",
    install="install training-operator v1.8 or newer (docs/cluster.md), train through Kubeflow "
    "Trainer (--trainer trainjob) or on one node (--num-nodes 1)",
    served_without="install training-operator v1.8 or newer, whose kubeflow.org/v1 serves "
    "PyTorchJobs (docs/cluster.md)",
    logs="training.kubeflow.org/job-name={name}",
    error=PyTorchJobError,
)


class _Response:
    """What ApiClient.deserialize reads from an HTTP response: its body."""

    def __init__(self, obj):
        self.data = json.dumps(obj)


def _typed(data, klass: str):
    """Kubernetes JSON as a typed model of kubeflow.training.models (which includes the
    kubernetes client's V1 models), through the SDK's own deserializer."""
    from kubeflow.training import ApiClient

    return ApiClient().deserialize(_Response(data), klass)


def as_dict(job) -> dict:
    """The typed job as the Kubernetes JSON the API takes (camelCase, unset fields left out)."""
    from kubernetes.client import ApiClient

    return ApiClient().sanitize_for_serialization(job)


def pytorchjob_manifest(request: JobRequest):
    """The PyTorchJob (a kubeflow.training KubeflowOrgV1PyTorchJob) that `request` asks for: one
    replica a node, one Master and the rest Workers. Its options as for the TrainJob
    (adautomix/cluster/trainjob.py)."""
    from kubeflow.training import models as m
    from kubernetes import client as k

    node, options = request.node, request.options
    resources, volumes, mounts = request.pod_parts(PYTORCHJOB)
    container = k.V1Container(
        name=CONTAINER,
        image=options.image,
        command=request.command,
        env=[_typed(e, "V1EnvVar") for e in node.env] or None,
        resources=k.V1ResourceRequirements(**resources) if resources else None,
        volume_mounts=[_typed(v, "V1VolumeMount") for v in mounts],
        security_context=_typed(CONTAINER_SECURITY, "V1SecurityContext"),
    )
    pod = k.V1PodSpec(
        containers=[container],
        volumes=[_typed(v, "V1Volume") for v in volumes],
        node_selector=node.node_selector or None,
        tolerations=[_typed(t, "V1Toleration") for t in node.tolerations] or None,
        affinity=_typed(node.affinity, "V1Affinity") if node.affinity else None,
        image_pull_secrets=[k.V1LocalObjectReference(**s) for s in options.pull_secrets()] or None,
        termination_grace_period_seconds=options.termination_grace_seconds or None,
        security_context=_typed(POD_SECURITY, "V1PodSecurityContext"),
    )
    pod_metadata = options.pod_metadata()

    def replicas(count: int):
        return m.KubeflowOrgV1ReplicaSpec(
            replicas=count,
            restart_policy="Never",
            template=k.V1PodTemplateSpec(
                metadata=k.V1ObjectMeta(**pod_metadata) if pod_metadata else None, spec=pod
            ),
        )

    specs = {MASTER: replicas(1)}
    if options.num_nodes > 1:
        specs[WORKER] = replicas(options.num_nodes - 1)
    return m.KubeflowOrgV1PyTorchJob(
        api_version=f"{GROUP}/{VERSION}",
        kind="PyTorchJob",
        metadata=k.V1ObjectMeta(
            name=request.name,
            labels=options.labels or None,
            owner_references=[_typed(request.owner, "V1OwnerReference")] if request.owner else None,
        ),
        spec=m.KubeflowOrgV1PyTorchJobSpec(
            pytorch_replica_specs=specs,
            nproc_per_node=str(request.processes_per_node),
            run_policy=m.KubeflowOrgV1RunPolicy(
                clean_pod_policy="Running",
                backoff_limit=0,
                active_deadline_seconds=options.deadline_seconds or None,
            ),
        ),
    )


def run_pytorchjob(job, namespace: str, api_client, **waiting):
    """Create `job` in `namespace` and wait until it succeeds (`waiting`: run_job's
    schedule_timeout, poll_interval and say); returns the final PyTorchJob (typed). Raises
    PyTorchJobError naming the cause otherwise."""
    specs = job.spec.pytorch_replica_specs
    nodes = sum(spec.replicas for spec in specs.values())
    container = specs[MASTER].template.spec.containers[0]
    limits = container.resources.limits if container.resources else None
    final = run_job(
        PYTORCHJOB,
        as_dict(job),
        namespace,
        api_client,
        _progress,
        nodes=nodes,
        gpus=gpu_summary(limits),
        created=f"1 master + {nodes - 1} workers x {job.spec.nproc_per_node} processes",
        **waiting,
    )
    return _typed(final, "KubeflowOrgV1PyTorchJob")


def _progress(job: dict) -> Progress:
    status = job.get("status") or {}
    conditions = true_conditions(status)
    ran = any(
        (r or {}).get(key)
        for r in (status.get("replicaStatuses") or {}).values()
        for key in ("active", "succeeded", "failed")
    )
    return read_progress(
        status,
        "Succeeded",
        running=ran or "Running" in conditions,
        waiting="waiting for its pods" if "Created" in conditions else "waiting for its nodes",
    )
