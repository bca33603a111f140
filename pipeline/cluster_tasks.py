"""What a pipeline task gets from the cluster settings (pipeline/cluster_settings.py): the
pipeline calls `configure(task, step, cluster, gpus)` once per task, and passes
`job_options(cluster)` to the multi-node train step. Credentials reach the pods as environment
variables (and a CA bundle as a file) from the Kubernetes secrets the settings name."""

from __future__ import annotations

from kfp import kubernetes
from kfp.dsl import PipelineTask

from adautomix.cluster.job import JobOptions
from adautomix.provenance import IMAGE_ENV
from adautomix.steps.evaluate import MLFLOW_UI_ENV
from pipeline.cluster_settings import (
    STEPS,
    WAITING_POD,
    ClusterSettings,
    StepResources,
    resources,
    shm_size,
)

# secret key -> environment variable; the optional ones may be absent from the secret.
S3_KEYS = {key: key for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
S3_OPTIONAL_KEYS = {"AWS_ENDPOINT_URL": "AWS_ENDPOINT_URL"}
MLFLOW_KEYS = {"MLFLOW_TRACKING_URI": "MLFLOW_TRACKING_URI"}
# Basic auth or a bearer token for a server behind a login; and, for a server that does not proxy
# artifacts (no --serve-artifacts), the artifact store's own credentials.
MLFLOW_OPTIONAL_KEYS = {
    key: key
    for key in (
        "MLFLOW_TRACKING_USERNAME",
        "MLFLOW_TRACKING_PASSWORD",
        "MLFLOW_TRACKING_TOKEN",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "MLFLOW_S3_ENDPOINT_URL",
    )
}
# A CA bundle for an MLflow server whose certificate a private CA signed: the secret's key
# MLFLOW_CA_KEY, mounted as a file that MLflow's client verifies the server with.
MLFLOW_CA_KEY = "ca.crt"
MLFLOW_CA_DIR = "/etc/adautomix/mlflow-ca"
MLFLOW_CA_ENV = "MLFLOW_TRACKING_SERVER_CERT_PATH"


def job_options(cluster: ClusterSettings) -> dict:
    """What the multi-node train step needs of the settings, as JSON (JobOptions): the job, the
    nodes' CPU, memory and /dev/shm (train's, per node), pull secrets, pod annotations, the
    termination grace period and the deadline."""
    from components import BASE_IMAGE

    node = resources(cluster, "train")
    return JobOptions(
        num_nodes=cluster.num_nodes,
        trainer=cluster.trainer,
        runtime=cluster.trainer_runtime,
        schedule_timeout=cluster.schedule_timeout,
        image=cluster.image or BASE_IMAGE,
        gpu_resource=cluster.gpu_resource,
        image_pull_secrets=cluster.image_pull_secrets,
        resources={
            "requests": {"cpu": node.cpu_request, "memory": node.memory_request},
            "limits": {"cpu": node.cpu_limit, "memory": node.memory_limit},
        },
        shm_size=shm_size(cluster, "train"),
        annotations=dict(cluster.job_pod_annotations),
        termination_grace_seconds=cluster.termination_grace,
        deadline_seconds=cluster.job_deadline,
    ).to_dict()


def configure(
    task: PipelineTask, step: str, cluster: ClusterSettings | None, gpus=None
) -> PipelineTask:
    """Everything the cluster gives the task of `step` (data, train, evaluate, register): image
    and pull secrets, CPU and memory, GPUs (`gpus`, a count or a pipeline parameter, for train
    and evaluate) with their tolerations and node selector, the workspace volume, /dev/shm, the
    secrets, the step's timeout. With several nodes, the train task is the step that waits for
    the job: the nodes' settings reach it as its task config (components/train_job.py), and its
    own pod gets a small CPU and memory request. None (kfp.local) leaves the task as it is."""
    if cluster is None:
        return task
    if step not in STEPS:
        raise ValueError(f"step {step!r} is not one of {STEPS}")
    waits = step == "train" and cluster.num_nodes > 1
    use_image(task, cluster)
    use_resources(task, WAITING_POD if waits else resources(cluster, step))
    if step == "data":
        use_workspace(task, cluster)
        use_s3(task, cluster)
    else:
        use_mlflow(task, cluster)
    if step == "evaluate" and cluster.mlflow_ui_url:  # the step that writes the run page's link
        task.set_env_variable(MLFLOW_UI_ENV, cluster.mlflow_ui_url)
    if step in ("train", "evaluate"):
        use_workspace(task, cluster)
        if waits:  # the job's nodes take the scheduling (passed through, not applied here)
            use_scheduling(task, cluster)
        else:
            use_gpus(task, gpus, cluster)
            use_shared_memory(task, shm_size(cluster, step))
    if cluster.step_timeouts.get(step):
        kubernetes.set_timeout(task, cluster.step_timeouts[step])
    return task


def use_image(task: PipelineTask, cluster: ClusterSettings) -> PipelineTask:
    """The image (when not docker/IMAGE's) and the secrets to pull it with. The step is told the
    reference it runs from, so that a pinned `--image` is recorded by its digest with no API read
    (adautomix.provenance.running_image); the env passes through to a multi-node job's nodes."""
    if cluster.image:
        task.set_container_image(cluster.image)
        task.set_env_variable(IMAGE_ENV, cluster.image)
    if cluster.image_pull_secrets:
        kubernetes.set_image_pull_secrets(task, list(cluster.image_pull_secrets))
    return task


def use_resources(task: PipelineTask, given: StepResources) -> PipelineTask:
    return (
        task.set_cpu_request(given.cpu_request)
        .set_cpu_limit(given.cpu_limit)
        .set_memory_request(given.memory_request)
        .set_memory_limit(given.memory_limit)
    )


def use_workspace(task: PipelineTask, cluster: ClusterSettings) -> PipelineTask:
    return kubernetes.mount_pvc(
        task, pvc_name=cluster.workspace_pvc, mount_path=cluster.workspace_path
    )


def use_s3(task: PipelineTask, cluster: ClusterSettings) -> PipelineTask:
    kubernetes.use_secret_as_env(task, cluster.s3_secret, S3_KEYS)
    return kubernetes.use_secret_as_env(task, cluster.s3_secret, S3_OPTIONAL_KEYS, optional=True)


def use_mlflow(task: PipelineTask, cluster: ClusterSettings) -> PipelineTask:
    """The tracking URI and the optional credentials; with mlflow_ca_secret, its ca.crt as a file
    and MLFLOW_TRACKING_SERVER_CERT_PATH naming it."""
    kubernetes.use_secret_as_env(task, cluster.mlflow_secret, MLFLOW_KEYS)
    kubernetes.use_secret_as_env(task, cluster.mlflow_secret, MLFLOW_OPTIONAL_KEYS, optional=True)
    if cluster.mlflow_ca_secret:
        kubernetes.use_secret_as_volume(task, cluster.mlflow_ca_secret, mount_path=MLFLOW_CA_DIR)
        task.set_env_variable(MLFLOW_CA_ENV, f"{MLFLOW_CA_DIR}/{MLFLOW_CA_KEY}")
    return task


def use_scheduling(task: PipelineTask, cluster: ClusterSettings) -> PipelineTask:
    """The GPU taints tolerated and the node selector."""
    for key in cluster.gpu_tolerations:
        kubernetes.add_toleration(task, key=key, operator="Exists", effect="NoSchedule")
    for key, value in cluster.node_selector.items():
        kubernetes.add_node_selector(task, label_key=key, label_value=value)
    return task


def use_gpus(task: PipelineTask, count, cluster: ClusterSettings) -> PipelineTask:
    """`count` GPUs (a pipeline parameter) on a node that has them; with no gpu_resource
    (cpu_only) only the node selector."""
    if cluster.gpu_resource:
        task.set_accelerator_type(cluster.gpu_resource).set_accelerator_limit(count)
    return use_scheduling(task, cluster)


def use_shared_memory(task: PipelineTask, size: str = "") -> PipelineTask:
    """A memory-backed /dev/shm of `size`: NCCL between the pod's GPU processes and DataLoader
    workers pass tensors through it, and a container's default is 64 MiB."""
    return kubernetes.empty_dir_mount(
        task, volume_name="dshm", mount_path="/dev/shm", medium="Memory", size_limit=size or None
    )
