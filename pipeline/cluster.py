"""What a cluster run needs besides the pipeline parameters: GPUs, scheduling, storage, secrets.

Nothing here is secret. Credentials reach the pods as environment variables from Kubernetes
secrets that are named here and created once per namespace (docs/cluster.md); their values never
appear in the parameters or the compiled YAML."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

from kfp import kubernetes
from kfp.dsl import PipelineTask

from adautomix.config import ConfigError
from adautomix.cluster.multinode import check_trainer

# secret key -> environment variable; the optional ones may be absent from the secret.
S3_KEYS = {"AWS_ACCESS_KEY_ID": "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY": "AWS_SECRET_ACCESS_KEY"}
S3_OPTIONAL_KEYS = {"AWS_ENDPOINT_URL": "AWS_ENDPOINT_URL"}
MLFLOW_KEYS = {"MLFLOW_TRACKING_URI": "MLFLOW_TRACKING_URI"}
MLFLOW_OPTIONAL_KEYS = {"MLFLOW_TRACKING_USERNAME": "MLFLOW_TRACKING_USERNAME",
                        "MLFLOW_TRACKING_PASSWORD": "MLFLOW_TRACKING_PASSWORD"}


@dataclass(frozen=True)
class ClusterSettings:
    workspace_pvc: str = "adautomix-workspace"   # a ReadWriteMany claim: data, DVC cache, checkpoints
    workspace_path: str = "/mnt/adautomix"       # where it is mounted in the data/train/evaluate pods
    gpu_resource: str = "nvidia.com/gpu"
    # taint keys of the GPU nodes, tolerated with operator Exists
    gpu_tolerations: tuple[str, ...] = ("nvidia.com/gpu",)
    node_selector: dict[str, str] = field(default_factory=dict)   # e.g. {"gpu": "a100"}
    s3_secret: str = "adautomix-s3"
    mlflow_secret: str = "adautomix-mlflow"
    sweep_parallelism: int = 4                   # sweep runs at once (each with its own GPUs)
    # More than one node: the train step hands training to a Kubeflow Trainer TrainJob of this
    # ClusterTrainingRuntime (trainer "trainjob") or to the older training operator's PyTorchJob
    # ("pytorchjob"), and fails if the job has no running node after schedule_timeout s.
    num_nodes: int = 1
    trainer: str = "trainjob"
    trainer_runtime: str = "torch-distributed"
    schedule_timeout: int = 1800
    image: str = ""                  # every step's image, '' for docker/IMAGE; IMAGE@sha256:... pins it
    image_pull_secrets: tuple[str, ...] = ()     # docker-registry secrets of a private registry
    # the workspace claim submit creates when it is missing (docs/cluster.md, deploy/workspace-pvc.yaml)
    storage_class: str = ""                      # '' for the cluster's default class
    access_mode: str = "ReadWriteMany"
    workspace_size: str = "100Gi"

    def __post_init__(self):
        if self.num_nodes < 1 or self.schedule_timeout < 1:
            raise ConfigError(f"num_nodes ({self.num_nodes}) and schedule_timeout "
                              f"({self.schedule_timeout} s) must be >= 1")
        check_trainer(self.trainer)
        if self.image and not IMAGE_REFERENCE.match(self.image):
            raise ConfigError(f"image {self.image!r} is not an image reference: "
                              "REGISTRY/NAME:TAG or REGISTRY/NAME@sha256:<64 hex digits>")
        if self.access_mode not in ACCESS_MODES:
            raise ConfigError(f"access mode {self.access_mode!r}: use one of {', '.join(ACCESS_MODES)}")
        if self.access_mode != "ReadWriteMany" and self.sweep_parallelism > 1:
            raise ConfigError(
                f"a {self.access_mode} workspace is attached to one node at a time, so parallel "
                "sweep runs on other nodes cannot mount it: use --parallelism 1 (runs one after "
                "another, the volume follows them), or a storage class with ReadWriteMany")


ACCESS_MODES = ("ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod")
# NAME[:TAG][@sha256:DIGEST], NAME being lower-case path components after an optional registry host
IMAGE_REFERENCE = re.compile(r"^(?:[a-zA-Z0-9.-]+(?::\d+)?/)?[a-z0-9]+(?:[._-][a-z0-9]+)*"
                             r"(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*(?::[\w][\w.-]{0,127})?"
                             r"(?:@sha256:[0-9a-f]{64})?$")


@dataclass(frozen=True)
class StepResources:
    """CPU and memory of one step's container: the defaults of its pipeline parameters
    STEP_cpu_request, STEP_cpu_limit, STEP_memory_request and STEP_memory_limit."""
    cpu_request: str
    cpu_limit: str
    memory_request: str
    memory_limit: str


# Requests are what the scheduler reserves, limits where the container is throttled (CPU) or
# killed (memory). The train and evaluate limits cover their memory-backed /dev/shm, which counts
# as the container's memory.
STEP_RESOURCES = {
    "data": StepResources("1", "2", "2Gi", "8Gi"),          # DVC pull and hash check
    "train": StepResources("4", "8", "16Gi", "32Gi"),       # loader workers feeding one GPU
    "evaluate": StepResources("2", "4", "8Gi", "16Gi"),
    "register": StepResources("250m", "1", "1Gi", "2Gi"),   # MLflow calls only
}


DATA, TRAIN, EVALUATE, REGISTER = (STEP_RESOURCES[s] for s in ("data", "train", "evaluate", "register"))


def cpu_only(cluster: ClusterSettings) -> ClusterSettings:
    """The settings for runs with no GPU: no GPU request, no GPU toleration."""
    return replace(cluster, gpu_resource="", gpu_tolerations=())


def use_image(task: PipelineTask, cluster: ClusterSettings) -> PipelineTask:
    """The image (when not docker/IMAGE's) and the secrets to pull it with."""
    if cluster.image:
        task.set_container_image(cluster.image)
    if cluster.image_pull_secrets:
        kubernetes.set_image_pull_secrets(task, list(cluster.image_pull_secrets))
    return task


def use_resources(task: PipelineTask, cpu_request, cpu_limit, memory_request,
                  memory_limit) -> PipelineTask:
    """Requests and limits from pipeline parameters, so a run can change them."""
    return (task.set_cpu_request(cpu_request).set_cpu_limit(cpu_limit)
            .set_memory_request(memory_request).set_memory_limit(memory_limit))


def use_workspace(task: PipelineTask, cluster: ClusterSettings) -> PipelineTask:
    return kubernetes.mount_pvc(task, pvc_name=cluster.workspace_pvc,
                                mount_path=cluster.workspace_path)


def use_s3(task: PipelineTask, cluster: ClusterSettings) -> PipelineTask:
    kubernetes.use_secret_as_env(task, cluster.s3_secret, S3_KEYS)
    return kubernetes.use_secret_as_env(task, cluster.s3_secret, S3_OPTIONAL_KEYS, optional=True)


def use_mlflow(task: PipelineTask, cluster: ClusterSettings) -> PipelineTask:
    kubernetes.use_secret_as_env(task, cluster.mlflow_secret, MLFLOW_KEYS)
    return kubernetes.use_secret_as_env(task, cluster.mlflow_secret, MLFLOW_OPTIONAL_KEYS,
                                        optional=True)


def use_gpus(task: PipelineTask, count, cluster: ClusterSettings) -> PipelineTask:
    """`count` GPUs (a pipeline parameter) on a node that has them; with no gpu_resource
    (cpu_only) only the node selector."""
    if cluster.gpu_resource:
        task.set_accelerator_type(cluster.gpu_resource).set_accelerator_limit(count)
    for key in cluster.gpu_tolerations:
        kubernetes.add_toleration(task, key=key, operator="Exists", effect="NoSchedule")
    for key, value in cluster.node_selector.items():
        kubernetes.add_node_selector(task, label_key=key, label_value=value)
    return task


def use_shared_memory(task: PipelineTask) -> PipelineTask:
    """A memory-backed /dev/shm: NCCL between the pod's GPU processes and DataLoader workers pass
    tensors through it, and a container's default is 64 MiB."""
    return kubernetes.empty_dir_mount(task, volume_name="dshm", mount_path="/dev/shm",
                                      medium="Memory")
