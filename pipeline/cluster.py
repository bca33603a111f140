"""What a cluster run needs besides the run's own configuration: GPUs, CPU and memory, scheduling,
storage, secrets, timeouts, and the pods of a multi-node job. All of it is decided when the
pipeline is compiled (ClusterSettings, from the cluster flags), so a run's form in the Kubeflow UI
holds the run's parameters only.

The pipeline calls `configure(task, step, cluster, gpus)` once per task, and passes
`job_options(cluster)` to the multi-node train step; `add_cluster_flags` and `cluster_settings`
are the command line's side of the same settings.

Nothing here is secret. Credentials reach the pods as environment variables (and a CA bundle as a
file) from Kubernetes secrets that are named here and created once per namespace
(docs/cluster.md); their values never appear in the parameters or the compiled YAML."""

from __future__ import annotations

import argparse
import dataclasses
import re
from dataclasses import dataclass, field, replace
from fractions import Fraction
from urllib.parse import urlsplit

from kfp import kubernetes
from kfp.dsl import PipelineTask

from adautomix.cluster.job import JobOptions
from adautomix.cluster.multinode import check_trainer
from adautomix.config import ConfigError, parse_override
from adautomix.provenance import IMAGE_ENV
from adautomix.steps.evaluate import MLFLOW_UI_ENV

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

STEPS = ("data", "train", "evaluate", "register")
ACCESS_MODES = ("ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod")
# NAME[:TAG][@sha256:DIGEST], NAME being lower-case path components after an optional registry host
IMAGE_REFERENCE = re.compile(
    r"^(?:[a-zA-Z0-9.-]+(?::\d+)?/)?[a-z0-9]+(?:[._-][a-z0-9]+)*"
    r"(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*(?::[\w][\w.-]{0,127})?"
    r"(?:@sha256:[0-9a-f]{64})?$"
)
# Istio injects a sidecar into every pod of an injected namespace; a job's pods with one never
# complete (the sidecar outlives the trainer), so they opt out unless told otherwise.
JOB_POD_ANNOTATIONS = {"sidecar.istio.io/inject": "false"}


@dataclass(frozen=True)
class StepResources:
    """CPU and memory of one step's container, before its /dev/shm (which is added to the memory
    where a step mounts one: see `resources`)."""

    cpu_request: str
    cpu_limit: str
    memory_request: str
    memory_limit: str

    @classmethod
    def parse(cls, text: str) -> StepResources:
        parts = [p.strip() for p in text.split(",")]
        if len(parts) != 4:
            raise ConfigError(
                f"resources {text!r}: give CPU_REQUEST,CPU_LIMIT,MEMORY_REQUEST,"
                "MEMORY_LIMIT, e.g. 2,4,8Gi,16Gi"
            )
        return cls(*parts)

    def check(self, step: str) -> None:
        for name in ("cpu_request", "cpu_limit"):
            cpu(getattr(self, name), f"{step} {name}")
        for name in ("memory_request", "memory_limit"):
            memory(getattr(self, name), f"{step} {name}")
        if cpu(self.cpu_request) > cpu(self.cpu_limit) or memory(self.memory_request) > memory(
            self.memory_limit
        ):
            raise ConfigError(
                f"{step}'s requests ({self.cpu_request} CPU, {self.memory_request}) "
                f"exceed its limits ({self.cpu_limit} CPU, {self.memory_limit})"
            )


# Requests are what the scheduler reserves, limits where the container is throttled (CPU) or
# killed (memory). Train's are per GPU (cpu_per_gpu, memory_per_gpu); the multi-node step's own
# pod only waits for its job and reads the final checkpoint.
STEP_RESOURCES = {
    "data": StepResources("1", "2", "2Gi", "8Gi"),  # DVC pull and hash check
    "evaluate": StepResources("2", "4", "8Gi", "16Gi"),  # one GPU, one pass over the test split
    "register": StepResources("250m", "1", "1Gi", "2Gi"),  # MLflow calls only
}
WAITING_POD = StepResources("250m", "1", "1Gi", "2Gi")


@dataclass(frozen=True)
class ClusterSettings:
    # a ReadWriteMany claim (data, DVC cache, checkpoints), mounted in the data/train/evaluate pods
    workspace_pvc: str = "adautomix-workspace"
    workspace_path: str = "/mnt/adautomix"
    gpu_resource: str = "nvidia.com/gpu"
    # taint keys of the GPU nodes, tolerated with operator Exists
    gpu_tolerations: tuple[str, ...] = ("nvidia.com/gpu",)
    node_selector: dict[str, str] = field(default_factory=dict)  # e.g. {"gpu": "a100"}
    s3_secret: str = "adautomix-s3"
    mlflow_secret: str = "adautomix-mlflow"
    mlflow_ca_secret: str = ""  # a secret with ca.crt, for a private CA's server
    # the MLflow UI's address as a browser reaches it (an ingress), for the run page's link; ''
    # links to the tracking URI's host, which is often an in-cluster name
    mlflow_ui_url: str = ""
    sweep_parallelism: int = 4  # sweep runs at once (each with its own GPUs)
    # More than one node: the train step hands training to a Kubeflow Trainer TrainJob of this
    # ClusterTrainingRuntime (trainer "trainjob") or to the older training operator's PyTorchJob
    # ("pytorchjob"), and fails if the job has no running node after schedule_timeout s.
    num_nodes: int = 1
    trainer: str = "trainjob"
    trainer_runtime: str = "torch-distributed"
    schedule_timeout: int = 1800
    job_deadline: int = 0  # the job's activeDeadlineSeconds; 0: none
    termination_grace: int = 120  # job pods' SIGTERM-to-SIGKILL seconds
    job_pod_annotations: dict[str, str] = field(default_factory=lambda: dict(JOB_POD_ANNOTATIONS))
    step_timeouts: dict[str, int] = field(default_factory=dict)  # step -> seconds; none: no limit
    image: str = ""  # every step's image, '' for docker/IMAGE; IMAGE@sha256:... pins it
    image_pull_secrets: tuple[str, ...] = ()  # docker-registry secrets of a private registry
    # the workspace claim submit creates when it is missing (docs/cluster.md,
    # deploy/workspace-pvc.yaml)
    storage_class: str = ""  # '' for the cluster's default class
    access_mode: str = "ReadWriteMany"
    workspace_size: str = "100Gi"
    # Train's container (and each node of a multi-node job) per GPU: the CPU and memory requests,
    # whose limits are twice them, and the memory-backed /dev/shm, which is sized and added to
    # both memory figures (tmpfs pages count as the container's memory).
    cpu_per_gpu: str = "4"
    memory_per_gpu: str = "16Gi"
    shm_per_gpu: str = "4Gi"
    resources: dict[str, StepResources] = field(default_factory=dict)  # per-step overrides
    train_gpus: int = 1  # the run's GPUs per pod (--num-gpus), which train's scale with

    def __post_init__(self):
        if self.num_nodes < 1 or self.schedule_timeout < 1:
            raise ConfigError(
                f"num_nodes ({self.num_nodes}) and schedule_timeout "
                f"({self.schedule_timeout} s) must be >= 1"
            )
        check_trainer(self.trainer)
        if self.image and not IMAGE_REFERENCE.match(self.image):
            raise ConfigError(
                f"image {self.image!r} is not an image reference: "
                "REGISTRY/NAME:TAG or REGISTRY/NAME@sha256:<64 hex digits>"
            )
        if self.mlflow_ui_url:
            check_ui_url(self.mlflow_ui_url)
        if self.access_mode not in ACCESS_MODES:
            raise ConfigError(
                f"access mode {self.access_mode!r}: use one of {', '.join(ACCESS_MODES)}"
            )
        if self.access_mode != "ReadWriteMany" and self.num_nodes > 1:
            raise ConfigError(
                f"a {self.access_mode} workspace attaches to one node, so {self.num_nodes} "
                "training nodes cannot all mount it: use a ReadWriteMany storage class "
                "(--access-mode ReadWriteMany) or train on one node (--num-nodes 1)"
            )
        if self.access_mode != "ReadWriteMany" and self.sweep_parallelism > 1:
            raise ConfigError(
                f"a {self.access_mode} workspace is attached to one node at a time, so parallel "
                "sweep runs on other nodes cannot mount it: use --parallelism 1 (runs one after "
                "another, the volume follows them), or a storage class with ReadWriteMany"
            )
        for name, value in (
            ("job_deadline", self.job_deadline),
            ("termination_grace", self.termination_grace),
            *((f"step timeout of {s}", t) for s, t in self.step_timeouts.items()),
        ):
            if not isinstance(value, int) or value < 0:
                raise ConfigError(f"{name} must be a whole number of seconds >= 0, got {value!r}")
        unknown = sorted((set(self.step_timeouts) | set(self.resources)) - set(STEPS))
        if unknown:
            raise ConfigError(
                f"step(s) {unknown} in --step-timeout or --resources: the steps "
                f"are {', '.join(STEPS)}"
            )
        cpu(self.cpu_per_gpu, "--cpu-per-gpu")
        memory(self.memory_per_gpu, "--memory-per-gpu")
        memory(self.shm_per_gpu, "--shm-per-gpu")
        for step, given in self.resources.items():
            given.check(step)


def check_ui_url(url: str) -> str:
    """An http(s) address with a host and no credentials: the link is shown to whoever sees the
    run page."""
    from adautomix.redact import redact

    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or "@" in parts.netloc:
        raise ConfigError(
            f"--mlflow-ui-url {redact(url)!r}: give the MLflow UI's address as a browser opens "
            "it, without credentials, e.g. https://mlflow.example.com"
        )
    return url


def for_run(cluster: ClusterSettings, num_gpus: int) -> ClusterSettings:
    """The settings for a run of `num_gpus` GPUs per pod: train's resources scale with them, and
    a run without GPUs gets no GPU request and no GPU toleration (cpu_only)."""
    cluster = replace(cluster, train_gpus=num_gpus)
    return cluster if num_gpus else cpu_only(cluster)


def cpu_only(cluster: ClusterSettings) -> ClusterSettings:
    """The settings for runs with no GPU: no GPU request, no GPU toleration."""
    return replace(cluster, gpu_resource="", gpu_tolerations=())


# -- resources -----------------------------------------------------------------------------------

_SUFFIXES = {
    "": 1,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
}
_QUANTITY = re.compile(r"^(\d+(?:\.\d+)?)(m|k|M|G|T|Ki|Mi|Gi|Ti)?$")


def cpu(text: str, what: str = "CPU") -> Fraction:
    """A Kubernetes CPU quantity in cores ("4", "0.5", "250m")."""
    match = _QUANTITY.match(str(text))
    if not match or match[2] not in (None, "m"):
        raise ConfigError(
            f"{what} {text!r} is not a CPU quantity: cores (4, 0.5) or millicores (250m)"
        )
    return Fraction(match[1]) / (1000 if match[2] == "m" else 1)


def memory(text: str, what: str = "memory") -> Fraction:
    """A Kubernetes memory quantity in bytes ("16Gi", "512Mi", "8G")."""
    match = _QUANTITY.match(str(text))
    if not match or match[2] == "m":
        raise ConfigError(f"{what} {text!r} is not a memory quantity: e.g. 16Gi, 512Mi, 8G")
    return Fraction(match[1]) * _SUFFIXES[match[2] or ""]


def cpu_text(cores: Fraction) -> str:
    return str(int(cores)) if cores == int(cores) else f"{int(cores * 1000)}m"


def memory_text(size: Fraction) -> str:
    for suffix in ("Ti", "Gi", "Mi", "Ki"):
        if size % _SUFFIXES[suffix] == 0:
            return f"{int(size / _SUFFIXES[suffix])}{suffix}"
    return str(int(size))


def shm_size(cluster: ClusterSettings, step: str) -> str:
    """/dev/shm of train (per GPU) and evaluate (one GPU's); '' for the steps without one."""
    if step == "train":
        return memory_text(memory(cluster.shm_per_gpu) * max(cluster.train_gpus, 1))
    return cluster.shm_per_gpu if step == "evaluate" else ""


def resources(cluster: ClusterSettings, step: str) -> StepResources:
    """A step's container requests and limits, /dev/shm included: train's (and each of a
    multi-node job's nodes') scale with the GPUs, an override (--resources) replaces the
    per-GPU figures, and the sized /dev/shm is added to both memory figures."""
    if step in cluster.resources:
        own = cluster.resources[step]
    elif step == "train":
        gpus = max(cluster.train_gpus, 1)
        cores, size = cpu(cluster.cpu_per_gpu) * gpus, memory(cluster.memory_per_gpu) * gpus
        own = StepResources(
            cpu_text(cores), cpu_text(2 * cores), memory_text(size), memory_text(2 * size)
        )
    else:
        own = STEP_RESOURCES[step]
    shm = shm_size(cluster, step)
    if not shm:
        return own
    return replace(
        own,
        memory_request=memory_text(memory(own.memory_request) + memory(shm)),
        memory_limit=memory_text(memory(own.memory_limit) + memory(shm)),
    )


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


# -- what a task gets -----------------------------------------------------------------------------


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


# -- the command line -----------------------------------------------------------------------------


def add_cluster_flags(parser: argparse.ArgumentParser) -> None:
    """The flags of ClusterSettings (compile and submit); unset ones keep its defaults."""
    group = parser.add_argument_group(
        "cluster (defaults in pipeline/cluster.py; secrets are named, never given: docs/cluster.md)"
    )
    flags = [
        ("--pvc", "workspace_pvc", "the workspace PersistentVolumeClaim"),
        ("--mount-path", "workspace_path", "where the workspace is mounted"),
        ("--gpu-resource", "gpu_resource", "the GPU resource name"),
        ("--s3-secret", "s3_secret", "the secret with the S3 credentials"),
        (
            "--mlflow-secret",
            "mlflow_secret",
            "the secret with the MLflow URI and credentials (username and password, or token)",
        ),
        (
            "--mlflow-ca-secret",
            "mlflow_ca_secret",
            "a secret whose ca.crt signs the MLflow server's certificate (a private CA)",
        ),
        (
            "--mlflow-ui-url",
            "mlflow_ui_url",
            "the MLflow UI's address as a browser opens it (e.g. an ingress), for the run "
            "page's link [the tracking URI's host]",
        ),
    ]
    for flag, dest, help_text in flags:
        group.add_argument(flag, dest=dest, default=argparse.SUPPRESS, help=help_text)
    group.add_argument(
        "--gpu-toleration",
        dest="gpu_tolerations",
        action="append",
        default=argparse.SUPPRESS,
        metavar="TAINT_KEY",
        help="tolerate this taint key on GPU steps (repeatable)",
    )
    group.add_argument(
        "--node-selector",
        dest="node_selector",
        action="append",
        default=argparse.SUPPRESS,
        metavar="KEY=VALUE",
        help="run GPU steps on nodes with this label (repeatable)",
    )
    group.add_argument(
        "--parallelism",
        dest="sweep_parallelism",
        type=int,
        default=argparse.SUPPRESS,
        help="sweep runs at once",
    )
    group.add_argument(
        "--num-nodes",
        dest="num_nodes",
        type=int,
        default=argparse.SUPPRESS,
        help="train on this many nodes of --num-gpus GPUs through a Kubeflow "
        "Trainer TrainJob or a PyTorchJob (--trainer) [1: one pod]",
    )
    group.add_argument(
        "--trainer",
        dest="trainer",
        default=argparse.SUPPRESS,
        metavar="trainjob|pytorchjob",
        help="what runs the nodes: trainjob (Kubeflow Trainer v2) or pytorchjob "
        "(the training operator v1, for clusters that still run it) [trainjob]",
    )
    group.add_argument(
        "--trainer-runtime",
        dest="trainer_runtime",
        default=argparse.SUPPRESS,
        help="the TrainJob's ClusterTrainingRuntime [torch-distributed]",
    )
    group.add_argument(
        "--schedule-timeout",
        dest="schedule_timeout",
        type=int,
        default=argparse.SUPPRESS,
        metavar="SECONDS",
        help="fail a job that has no running node after this long [1800]",
    )
    group.add_argument(
        "--job-deadline",
        dest="job_deadline",
        type=int,
        default=argparse.SUPPRESS,
        metavar="SECONDS",
        help="stop a multi-node job that runs longer (its activeDeadlineSeconds) [0: no deadline]",
    )
    group.add_argument(
        "--termination-grace",
        dest="termination_grace",
        type=int,
        default=argparse.SUPPRESS,
        metavar="SECONDS",
        help="a job node's time between SIGTERM and SIGKILL, to write its checkpoint [120]",
    )
    group.add_argument(
        "--job-pod-annotation",
        dest="job_pod_annotations",
        action="append",
        default=argparse.SUPPRESS,
        metavar="KEY=VALUE",
        help="an annotation on a multi-node job's pods (repeatable; "
        "[sidecar.istio.io/inject=false]: KEY= drops one)",
    )
    group.add_argument(
        "--step-timeout",
        dest="step_timeouts",
        action="append",
        default=argparse.SUPPRESS,
        metavar="STEP=SECONDS",
        help=f"stop a step's pod after this long ({', '.join(STEPS)}; repeatable) [no limit]",
    )
    group.add_argument(
        "--cpu-per-gpu",
        dest="cpu_per_gpu",
        default=argparse.SUPPRESS,
        help="train's CPU request per GPU; the limit is twice it [4]",
    )
    group.add_argument(
        "--memory-per-gpu",
        dest="memory_per_gpu",
        default=argparse.SUPPRESS,
        help="train's memory request per GPU; the limit is twice it [16Gi]",
    )
    group.add_argument(
        "--shm-per-gpu",
        dest="shm_per_gpu",
        default=argparse.SUPPRESS,
        help="train's /dev/shm per GPU (evaluate's: one GPU's), added to the "
        "memory request and limit [4Gi]",
    )
    group.add_argument(
        "--resources",
        dest="resources",
        action="append",
        default=argparse.SUPPRESS,
        metavar="STEP=CPU_REQUEST,CPU_LIMIT,MEMORY_REQUEST,MEMORY_LIMIT",
        help="a step's own CPU and memory, replacing the defaults (train's: the "
        "per-GPU figures); /dev/shm is still added (repeatable)",
    )
    group.add_argument(
        "--image",
        default=argparse.SUPPRESS,
        help="every step's image [docker/IMAGE]; IMAGE@sha256:DIGEST pins it",
    )
    group.add_argument(
        "--image-pull-secret",
        dest="image_pull_secrets",
        action="append",
        default=argparse.SUPPRESS,
        metavar="SECRET",
        help="a docker-registry secret to pull the image with (repeatable; "
        "multi-node jobs' pods get it too)",
    )
    group.add_argument(
        "--storage-class",
        dest="storage_class",
        default=argparse.SUPPRESS,
        help="the workspace claim's storage class, when submit creates it [the cluster's default]",
    )
    group.add_argument(
        "--access-mode",
        dest="access_mode",
        default=argparse.SUPPRESS,
        choices=ACCESS_MODES,
        help="the workspace claim's access mode [ReadWriteMany]; ReadWriteOnce "
        "sweeps need --parallelism 1, several nodes need ReadWriteMany",
    )
    group.add_argument(
        "--workspace-size",
        dest="workspace_size",
        default=argparse.SUPPRESS,
        help="the workspace claim's size, when submit creates it [100Gi]",
    )


def cluster_settings(args: argparse.Namespace) -> ClusterSettings:
    """ClusterSettings from the flags add_cluster_flags defined (those given; defaults for the
    rest)."""
    given = {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(ClusterSettings)
        if hasattr(args, f.name)
    }
    for name in ("gpu_tolerations", "image_pull_secrets"):
        if name in given:
            given[name] = tuple(given[name])
    if "node_selector" in given:
        given["node_selector"] = {
            key: str(value)
            for key, value in (parse_override(item) for item in given["node_selector"])
        }
    if "job_pod_annotations" in given:
        annotations = dict(JOB_POD_ANNOTATIONS)
        for key, value in (
            _pair(item, "--job-pod-annotation") for item in given["job_pod_annotations"]
        ):
            annotations[key] = value
        given["job_pod_annotations"] = {k: v for k, v in annotations.items() if v}
    if "step_timeouts" in given:
        timeouts = {}
        for step, seconds in (_pair(item, "--step-timeout") for item in given["step_timeouts"]):
            if not seconds.isdigit():
                raise ConfigError(
                    f"--step-timeout {step}={seconds}: give whole seconds, e.g. {step}=86400"
                )
            timeouts[step] = int(seconds)
        given["step_timeouts"] = timeouts
    if "resources" in given:
        given["resources"] = {
            step: StepResources.parse(value)
            for step, value in (_pair(item, "--resources") for item in given["resources"])
        }
    return ClusterSettings(**given)


def _pair(text: str, flag: str) -> tuple[str, str]:
    """KEY=VALUE as two strings (an annotation's "false" stays a string)."""
    if "=" not in text:
        raise ConfigError(f"{flag} {text!r}: expected KEY=VALUE")
    key, value = text.split("=", 1)
    return key.strip(), value.strip()
