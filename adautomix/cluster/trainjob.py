"""Runs on several nodes, handed to Kubeflow Trainer: the TrainJob manifest, its creation through
the Kubernetes API, and the wait for its end.

The manifest is built from the Trainer API's own typed models (`kubeflow-trainer-api`, the
models the Kubeflow SDK builds its TrainJobs from), for `trainer.kubeflow.org/v1alpha1` as its
CRD defines it: `spec.runtimeRef` names the `torch-distributed` ClusterTrainingRuntime,
`spec.trainer` carries the image, the command, the environment, `numNodes`, `numProcPerNode` and
`resourcesPerNode` (GPUs, CPU, memory), `spec.activeDeadlineSeconds` bounds the run, and one
`spec.runtimePatches` entry adds to the runtime's `node` pods what the CRD does not let `trainer`
say: volumes and their mounts (a sized /dev/shm), image pull secrets, node selector, affinity,
tolerations, the termination grace period, the pods' labels and annotations, and the security
context the restricted Pod Security Standard asks for. The Kubeflow
SDK's `TrainerClient` is not used to create the job because its trainer environment takes plain
values only, and the credentials here must stay references to secrets.

Where the pod settings come from: the pipeline configures the TrainJob step as it configures the
single-pod train step (workspace volume, secrets as environment, node selector, tolerations) and
Kubeflow Pipelines hands those settings to the step as a `dsl.TaskConfig`, whose fields are
Kubernetes JSON (`node_settings` reads one); the rest comes as the step's JobOptions.

What can go wrong is named: Trainer not installed (its API group is not served), the runtime
missing, the service account not allowed (RBAC, deploy/rbac.yaml), a job that fails (its
condition's reason and message), a job that gets no running node within `schedule_timeout`
(deleted, so it does not start later). The checkpoints live on the shared volume, so whatever
happens the last one stays for the re-run to resume from.

What both operators' jobs share (the pod settings, the checks, the wait, adoption and deletion)
is adautomix/cluster/job.py; the older training operator's PyTorchJob is
adautomix/cluster/pytorchjob.py.
(No torch import here; kubernetes and kubeflow_trainer_api are imported where they are used.)"""

from __future__ import annotations

from .job import (
    CONTAINER_SECURITY,
    POD_SECURITY,
    JobKind,
    JobRequest,
    NodeSettings,
    Progress,
    api_reason,
    gpu_summary,
    job_name,
    node_settings,
    read_progress,
    run_job,
)
from ..errors import RunFailure

__all__ = [
    "TrainJobError",
    "NodeSettings",
    "node_settings",
    "job_name",
    "trainjob_manifest",
    "run_trainjob",
]

GROUP, VERSION = "trainer.kubeflow.org", "v1alpha1"
TRAINJOBS, RUNTIMES = "trainjobs", "clustertrainingruntimes"
# The runtime's trainer: the replicated job and its container are both called "node".
NODE = "node"
PATCH_MANAGER = "adautomix.dev/pipeline"


class TrainJobError(RunFailure):
    """The TrainJob could not be created, failed, or never ran; the message says which and why."""


TRAINJOB = JobKind(
    GROUP,
    VERSION,
    TRAINJOBS,
    "TrainJob",
    operator="Kubeflow Trainer",
    install="install Trainer (docs/cluster.md) or train on one node (--num-nodes 1)",
    served_without="install Kubeflow Trainer v2 (docs/cluster.md)",
    logs="jobset.sigs.k8s.io/jobset-name={name}",
    error=TrainJobError,
)


def trainjob_manifest(request: JobRequest):
    """The TrainJob (a kubeflow_trainer_api TrainerV1alpha1TrainJob) that `request` asks for, on
    the ClusterTrainingRuntime its options name. Its options add the nodes' CPU and memory,
    /dev/shm size, pull secrets, labels and annotations, termination grace period and the job's
    deadline."""
    from kubeflow_trainer_api import models as m

    node, options = request.node, request.options
    resources, volumes, mounts = request.pod_parts(TRAINJOB)
    trainer = m.TrainerV1alpha1Trainer(
        image=options.image,
        command=request.command,
        numNodes=options.num_nodes,
        numProcPerNode=request.processes_per_node,
        env=[m.IoK8sApiCoreV1EnvVar.from_dict(e) for e in node.env] or None,
        resourcesPerNode=m.IoK8sApiCoreV1ResourceRequirements.from_dict(resources)
        if resources
        else None,
    )
    pod = m.TrainerV1alpha1PodSpecPatch(
        volumes=[m.IoK8sApiCoreV1Volume.from_dict(v) for v in volumes],
        containers=[
            m.TrainerV1alpha1ContainerPatch(
                name=NODE,
                volumeMounts=[m.IoK8sApiCoreV1VolumeMount.from_dict(v) for v in mounts],
                securityContext=m.IoK8sApiCoreV1SecurityContext.from_dict(CONTAINER_SECURITY),
            )
        ],
        securityContext=m.IoK8sApiCoreV1PodSecurityContext.from_dict(POD_SECURITY),
        nodeSelector=node.node_selector or None,
        tolerations=[m.IoK8sApiCoreV1Toleration.from_dict(t) for t in node.tolerations] or None,
        affinity=m.IoK8sApiCoreV1Affinity.from_dict(node.affinity) if node.affinity else None,
        imagePullSecrets=[
            m.IoK8sApiCoreV1LocalObjectReference.from_dict(s) for s in options.pull_secrets()
        ]
        or None,
        terminationGracePeriodSeconds=options.termination_grace_seconds or None,
    )
    pod_metadata = options.pod_metadata()
    patch = m.TrainerV1alpha1RuntimePatch(
        manager=PATCH_MANAGER,
        trainingRuntimeSpec=m.TrainerV1alpha1TrainingRuntimeSpecPatch(
            template=m.TrainerV1alpha1JobSetTemplatePatch(
                spec=m.TrainerV1alpha1JobSetSpecPatch(
                    replicatedJobs=[
                        m.TrainerV1alpha1ReplicatedJobPatch(
                            name=NODE,
                            template=m.TrainerV1alpha1JobTemplatePatch(
                                spec=m.TrainerV1alpha1JobSpecPatch(
                                    template=m.TrainerV1alpha1PodTemplatePatch(
                                        metadata=m.IoK8sApimachineryPkgApisMetaV1ObjectMeta(
                                            **pod_metadata
                                        )
                                        if pod_metadata
                                        else None,
                                        spec=pod,
                                    )
                                )
                            ),
                        )
                    ]
                )
            )
        ),
    )
    return m.TrainerV1alpha1TrainJob(
        apiVersion=f"{GROUP}/{VERSION}",
        kind="TrainJob",
        metadata=m.IoK8sApimachineryPkgApisMetaV1ObjectMeta(
            name=request.name,
            labels=options.labels or None,
            ownerReferences=[
                m.IoK8sApimachineryPkgApisMetaV1OwnerReference.from_dict(request.owner)
            ]
            if request.owner
            else None,
        ),
        spec=m.TrainerV1alpha1TrainJobSpec(
            runtimeRef=m.TrainerV1alpha1RuntimeRef(
                name=options.runtime, kind="ClusterTrainingRuntime", apiGroup=GROUP
            ),
            trainer=trainer,
            runtimePatches=[patch],
            activeDeadlineSeconds=options.deadline_seconds or None,
        ),
    )


def run_trainjob(job, namespace: str, api_client, **waiting):
    """Create `job` in `namespace` and wait until it completes (`waiting`: run_job's
    schedule_timeout, poll_interval and say); returns the final TrainJob (typed). Raises
    TrainJobError naming the cause otherwise."""
    from kubeflow_trainer_api import models as m

    runtime, trainer = job.spec.runtime_ref.name, job.spec.trainer
    limits = trainer.resources_per_node.limits if trainer.resources_per_node else None
    final = run_job(
        TRAINJOB,
        job.to_dict(),
        namespace,
        api_client,
        _progress,
        nodes=trainer.num_nodes,
        gpus=gpu_summary(
            {k: v.to_dict() if hasattr(v, "to_dict") else v for k, v in (limits or {}).items()}
        ),
        created=f"{trainer.num_nodes} nodes x {trainer.num_proc_per_node} processes, "
        f"runtime {runtime}",
        before=lambda api: _check_runtime(api, runtime),
        **waiting,
    )
    return m.TrainerV1alpha1TrainJob.from_dict(final)


def _progress(job: dict) -> Progress:
    status = job.get("status") or {}
    node = next((j for j in status.get("jobsStatus") or [] if j.get("name") == NODE), None)
    return read_progress(
        status,
        "Complete",
        running=bool(node and (node.get("ready") or node.get("succeeded") or node.get("failed"))),
    )


def _check_runtime(api, runtime: str) -> None:
    from kubernetes import client

    try:
        api.get_cluster_custom_object(GROUP, VERSION, RUNTIMES, runtime)
    except client.ApiException as exc:
        if exc.status == 404:
            raise TrainJobError(
                f"the ClusterTrainingRuntime {runtime!r} does not exist: install "
                "Trainer's runtimes (docs/cluster.md) or name another one "
                "(--trainer-runtime)"
            ) from None
        if exc.status != 403:  # reading runtimes is a courtesy check, creating jobs is not
            raise TrainJobError(
                f"reading the ClusterTrainingRuntime {runtime!r} failed: "
                f"{api_reason(exc, TRAINJOB, '')}"
            ) from None
