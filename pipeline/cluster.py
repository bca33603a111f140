"""What a cluster run needs besides the pipeline parameters: GPUs, scheduling, storage, secrets.

Nothing here is secret. Credentials reach the pods as environment variables from Kubernetes
secrets that are named here and created once per namespace (docs/cluster.md); their values never
appear in the parameters or the compiled YAML."""

from __future__ import annotations

from dataclasses import dataclass, field

from kfp import kubernetes
from kfp.dsl import PipelineTask

from adautomix.config import ConfigError

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
    # ClusterTrainingRuntime, and fails if the job has no running node after schedule_timeout s.
    num_nodes: int = 1
    trainer_runtime: str = "torch-distributed"
    schedule_timeout: int = 1800

    def __post_init__(self):
        if self.num_nodes < 1 or self.schedule_timeout < 1:
            raise ConfigError(f"num_nodes ({self.num_nodes}) and schedule_timeout "
                              f"({self.schedule_timeout} s) must be >= 1")


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
    """`count` GPUs (a pipeline parameter) on a node that has them."""
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
