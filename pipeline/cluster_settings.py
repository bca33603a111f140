"""A cluster run's settings besides the run's own configuration: GPUs, CPU and memory, scheduling,
storage, secrets' names, timeouts and a multi-node job's shape. All of it is decided when the
pipeline is compiled (ClusterSettings, whose fields are the cluster flags of `python -m pipeline
compile | submit`: adautomix.config_flags), so a run's form in the Kubeflow UI holds the run's
parameters only. Also here: Kubernetes CPU and memory quantities, and each step's resources.
What a pipeline task gets from these settings is pipeline/cluster_tasks.py.

Nothing here is secret. Credentials reach the pods from Kubernetes secrets that are named here
and created once per namespace (docs/cluster.md); their values never appear in the parameters or
the compiled YAML."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from fractions import Fraction
from urllib.parse import urlsplit

from adautomix.cluster.multinode import check_trainer
from adautomix.config import ConfigError, parse_override, setting

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
            cpu(getattr(self, name), f"--resources {step}={name.upper()}")
        for name in ("memory_request", "memory_limit"):
            memory(getattr(self, name), f"--resources {step}={name.upper()}")
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


def _pair(text: str, flag: str) -> tuple[str, str]:
    """KEY=VALUE as two strings (an annotation's "false" stays a string)."""
    if "=" not in text:
        raise ConfigError(f"{flag} {text!r}: expected KEY=VALUE")
    key, value = text.split("=", 1)
    return key.strip(), value.strip()


def _labels(given: list[str]) -> dict[str, str]:
    return {key: str(value) for key, value in (parse_override(item) for item in given)}


def _annotations(given: list[str]) -> dict[str, str]:
    """The job pods' annotations: the given ones over the defaults, KEY= dropping one."""
    annotations = dict(JOB_POD_ANNOTATIONS)
    for key, value in (_pair(item, "--job-pod-annotation") for item in given):
        annotations[key] = value
    return {k: v for k, v in annotations.items() if v}


def _timeouts(given: list[str]) -> dict[str, int]:
    timeouts = {}
    for step, seconds in (_pair(item, "--step-timeout") for item in given):
        if not seconds.isdigit():
            raise ConfigError(
                f"--step-timeout {step}={seconds}: give whole seconds, e.g. {step}=86400"
            )
        timeouts[step] = int(seconds)
    return timeouts


def _step_resources(given: list[str]) -> dict[str, StepResources]:
    return {
        step: StepResources.parse(value)
        for step, value in (_pair(item, "--resources") for item in given)
    }


@dataclass(frozen=True)
class ClusterSettings:
    workspace_pvc: str = setting(
        "adautomix-workspace",
        "the workspace PersistentVolumeClaim (data, DVC cache, checkpoints), mounted in the "
        "data, train and evaluate pods",
        flag="--pvc",
    )
    workspace_path: str = setting(
        "/mnt/adautomix", "where the workspace is mounted", flag="--mount-path"
    )
    gpu_resource: str = setting("nvidia.com/gpu", "the GPU resource name")
    gpu_tolerations: tuple[str, ...] = setting(
        ("nvidia.com/gpu",),
        "tolerate this taint key on GPU steps, operator Exists (repeatable)",
        flag="--gpu-toleration",
        metavar="TAINT_KEY",
    )
    node_selector: dict[str, str] = setting(
        {}, "run GPU steps on nodes with this label (repeatable)", parse=_labels
    )
    s3_secret: str = setting("adautomix-s3", "the secret with the S3 credentials")
    mlflow_secret: str = setting(
        "adautomix-mlflow",
        "the secret with the MLflow URI and credentials (username and password, or token)",
    )
    mlflow_ca_secret: str = setting(
        "",
        "a secret whose ca.crt signs the MLflow server's certificate (a private CA)",
        empty="none",
    )
    # the link is otherwise to the tracking URI's host, which is often an in-cluster name
    mlflow_ui_url: str = setting(
        "",
        "the MLflow UI's address as a browser opens it (e.g. an ingress), for the run page's link",
        empty="the tracking URI's host",
    )
    sweep_parallelism: int = setting(
        4, "sweep runs at once (each with its own GPUs)", flag="--parallelism"
    )
    # More than one node: the train step hands training to a job and waits for it.
    num_nodes: int = setting(
        1,
        "train on this many nodes of --num-gpus GPUs through a Kubeflow Trainer TrainJob or a "
        "PyTorchJob (--trainer); 1: one pod",
    )
    trainer: str = setting(
        "trainjob",
        "what runs the nodes: trainjob (Kubeflow Trainer v2) or pytorchjob (the training "
        "operator v1, for clusters that still run it)",
        metavar="trainjob|pytorchjob",
    )
    trainer_runtime: str = setting("torch-distributed", "the TrainJob's ClusterTrainingRuntime")
    schedule_timeout: int = setting(
        1800, "fail a job that has no running node after this long", metavar="SECONDS"
    )
    job_deadline: int = setting(
        0,
        "stop a multi-node job that runs longer (its activeDeadlineSeconds; 0: no deadline)",
        metavar="SECONDS",
    )
    termination_grace: int = setting(
        120,
        "a job node's time between SIGTERM and SIGKILL, to write its checkpoint",
        metavar="SECONDS",
    )
    job_pod_annotations: dict[str, str] = setting(
        JOB_POD_ANNOTATIONS,
        "an annotation on a multi-node job's pods (repeatable; KEY= drops one)",
        flag="--job-pod-annotation",
        parse=_annotations,
    )
    step_timeouts: dict[str, int] = setting(
        {},
        f"stop a step's pod after this long ({', '.join(STEPS)}; repeatable)",
        flag="--step-timeout",
        metavar="STEP=SECONDS",
        parse=_timeouts,
        empty="no limit",
    )
    image: str = setting(
        "", "every step's image; IMAGE@sha256:DIGEST pins it", empty="docker/IMAGE"
    )
    image_pull_secrets: tuple[str, ...] = setting(
        (),
        "a docker-registry secret to pull the image with (repeatable; multi-node jobs' pods "
        "get it too)",
        flag="--image-pull-secret",
        metavar="SECRET",
    )
    # the workspace claim submit creates when it is missing (docs/cluster.md,
    # deploy/workspace-pvc.yaml)
    storage_class: str = setting(
        "",
        "the workspace claim's storage class, when submit creates it",
        empty="the cluster's default",
    )
    access_mode: str = setting(
        "ReadWriteMany",
        "the workspace claim's access mode; ReadWriteOnce sweeps need --parallelism 1, "
        "several nodes need ReadWriteMany",
        choices=ACCESS_MODES,
    )
    workspace_size: str = setting("100Gi", "the workspace claim's size, when submit creates it")
    # Train's container (and each node of a multi-node job) per GPU; /dev/shm is
    # memory-backed, so its size counts as the container's memory (tmpfs pages).
    cpu_per_gpu: str = setting("4", "train's CPU request per GPU; the limit is twice it")
    memory_per_gpu: str = setting("16Gi", "train's memory request per GPU; the limit is twice it")
    shm_per_gpu: str = setting(
        "4Gi",
        "train's /dev/shm per GPU (evaluate's: one GPU's), added to the memory request and limit",
    )
    resources: dict[str, StepResources] = setting(
        {},
        "a step's own CPU and memory, replacing the defaults (train's: the per-GPU figures); "
        "/dev/shm is still added (repeatable)",
        metavar="STEP=CPU_REQUEST,CPU_LIMIT,MEMORY_REQUEST,MEMORY_LIMIT",
        parse=_step_resources,
        empty="pipeline/cluster_settings.py STEP_RESOURCES",
    )
    # the run's GPUs per pod (--num-gpus, a pipeline setting), which train's scale with
    train_gpus: int = setting(1, flag=None)

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
        if self.sweep_parallelism < 1:
            raise ConfigError(
                f"--parallelism (sweep runs at once) must be >= 1, got {self.sweep_parallelism}"
            )
        cpu(self.cpu_per_gpu, "--cpu-per-gpu")
        memory(self.memory_per_gpu, "--memory-per-gpu")
        memory(self.shm_per_gpu, "--shm-per-gpu")
        memory(self.workspace_size, "--workspace-size")
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


# -- quantities and each step's resources ---------------------------------------------------

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
MEMORY_FLOOR = _SUFFIXES["Mi"]
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
    size = Fraction(match[1]) * _SUFFIXES[match[2] or ""]
    # Kubernetes reads a bare number as bytes: "16" meant 16Gi, never 16 bytes of memory
    if size < MEMORY_FLOOR:
        raise ConfigError(
            f"{what} {text!r} is {int(size)} bytes, below {memory_text(MEMORY_FLOOR)}: give "
            "the unit, e.g. 16Gi (Ki, Mi, Gi, Ti or k, M, G, T)"
        )
    return size


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
