"""Provenance: where a run's data came from and what launched it, beyond its config.

The train step writes it beside config.json (`provenance.json`), so that training started
elsewhere (torchrun's processes, a TrainJob's nodes) records the same thing in its MLflow run:
the dataset's DVC version and remote as the run's MLflow input, and the pipeline run as tags.

And the image a run ran from (`running_image`): its reference and the digest of what ran, not
the tag it was built under (ADAUTOMIX_IMAGE, baked into the image, names the build's tag, which a
later push may move). In order:
1. ADAUTOMIX_IMAGE pinned by digest (NAME@sha256:...; a pipeline compiled with such an `--image`
   may set it): the digest is in the reference itself.
2. In a Kubernetes pod: the pod's own status (containerStatuses[].imageID) read through the
   API with the pod's service account, which needs `get` on pods (deploy/rbac.yaml).
3. Neither: the digest is recorded as "unknown", and image_digest_source says why and what fix
   records it.

`code_version` names the code that computes a run: the package version and the git commit (baked
into the image as $ADAUTOMIX_GIT_COMMIT; a dirty checkout's marked as such), or, for code whose
commit is unknown, the image's pinned digest or a hash of the code itself: never "unknown", which
every image built outside docker/Makefile would share. The pipeline keys its checkpoint folders by
it, and a resume under another one is refused unless asked for (engine/checkpoint.py)."""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

from . import __version__, checkout

FILE_NAME = "provenance.json"
IMAGE_ENV = "ADAUTOMIX_IMAGE"
# The container of this pod that is this process, when the pod has several (a sidecar).
CONTAINER_ENV = "ADAUTOMIX_CONTAINER"
UNKNOWN_DIGEST = "unknown"
# KFP names a step's container "main"; the Trainer's and the training operator's node pods have
# one container of their own, beside at most these sidecars.
MAIN_CONTAINER = "main"
SIDECARS = ("istio-proxy", "linkerd-proxy", "istio-init")
POD_READ_TIMEOUT_S = 5
_DIGEST = re.compile(r"(sha256:[0-9a-f]{64})$")
COMMIT_ENV = "ADAUTOMIX_GIT_COMMIT"


def git_commit() -> str:
    """The commit the code came from: $ADAUTOMIX_GIT_COMMIT (set in images) or the checkout's
    (adautomix/checkout.py: HEAD, or HEAD.dirty.HASH when the package has uncommitted changes),
    else 'unknown'."""
    commit = os.environ.get(COMMIT_ENV)
    if not commit:
        commit = _checkout_commit(CHECKOUT)
        # Inherited by the processes this one starts (torchrun's workers, a resumed run), so
        # that one run names its code alike even if the tree is edited while it runs.
        os.environ[COMMIT_ENV] = commit
    return commit


# The package folder whose checkout names the code; a module constant so that tests can point
# it at a checkout of their own.
CHECKOUT = checkout.PACKAGE


@functools.lru_cache(maxsize=4)  # the code a process runs is what it imported at its start
def _checkout_commit(folder: Path) -> str:
    return checkout.commit(folder)


def code_version() -> str:
    """The code that computes a run: `VERSION+COMMIT` (git_commit). Where the commit is unknown
    (an image that kaniko or buildkit built without the GIT_COMMIT argument, an installed copy)
    `VERSION+image.sha256.DIGEST` of the image when $ADAUTOMIX_IMAGE pins it, else
    `VERSION+source.HASH` of the package's files and the installed distributions.

    Not the digest a pod's status reports (running_image): a multi-node job's pods may not be
    allowed to read it where the step's pod is, and every process of a run must name its code
    alike, or a retried step refuses the checkpoint its nodes wrote. The pinned reference reaches
    them all through the environment, and the source hash is the same wherever the code is."""
    commit = git_commit()
    if commit != checkout.UNKNOWN:
        return f"{__version__}+{commit}"
    digest = pinned_digest(os.environ.get(IMAGE_ENV, ""))
    if digest:
        return f"{__version__}+image.{digest.replace(':', '.')}"
    return f"{__version__}+source.{source_hash(CHECKOUT)}"


@functools.lru_cache(maxsize=4)
def source_hash(package: Path) -> str:
    """16 hex digits of a sha256 over the package's files (relative paths and bytes, compiled
    caches left out) and the name and version of every installed distribution: what decides a
    run's computation, for code whose commit is unknown."""
    digest = hashlib.sha256()
    files = sorted(
        path
        for path in Path(package).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    )
    for path in files:
        digest.update(f"{path.relative_to(package).as_posix()}\0".encode())
        digest.update(path.read_bytes() + b"\0")
    installed = {
        f"{d.metadata['Name'] or ''}=={d.version}" for d in importlib.metadata.distributions()
    }
    digest.update("\n".join(sorted(installed)).encode())
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class Provenance:
    data_version: str = ""  # the DVC version; '' records the dataset's content hash instead
    data_source: str = ""  # the DVC remote's URL; '' records the local dataset folder
    tags: dict[str, str] = field(default_factory=dict)  # e.g. the pipeline run's id and name

    def save(self, folder: str | Path) -> Path:
        path = Path(folder) / FILE_NAME
        path.write_text(json.dumps(asdict(self), indent=2, sort_keys=True) + "\n")
        return path

    @classmethod
    def load(cls, folder: str | Path) -> Provenance:
        """The provenance saved in `folder`, or an empty one (a run started by hand)."""
        path = Path(folder) / FILE_NAME
        if not path.exists():
            return cls()
        values = json.loads(path.read_text())
        return cls(
            str(values.get("data_version", "")),
            str(values.get("data_source", "")),
            {str(k): str(v) for k, v in values.get("tags", {}).items()},
        )


@dataclass(frozen=True)
class ImageRecord:
    """The image a process ran from: the reference it was started with, the digest of what
    ran (sha256:<64 hex digits>, or "unknown"), and how the digest was learnt or why not."""

    reference: str
    digest: str
    source: str

    def tags(self) -> dict[str, str]:
        return {
            "image": self.reference,
            "image_digest": self.digest,
            "image_digest_source": self.source,
        }


def pinned_digest(reference: str) -> str:
    """The digest of a reference pinned as NAME@sha256:<64 hex>, else ''."""
    name, at, digest = reference.rpartition("@")
    return digest if at and name and _DIGEST.fullmatch(digest) else ""


def image_id_digest(image_id: str) -> str:
    """The digest in a container status's imageID, else ''. Runtimes spell it
    `REGISTRY/NAME@sha256:...` (containerd, CRI-O), `docker-pullable://NAME@sha256:...` (Docker),
    or `docker://sha256:...` for an image that was never pulled (its local ID)."""
    found = _DIGEST.search(image_id or "")
    return found[1] if found else ""


def container_image(pod: Mapping[str, Any], container: str = "") -> tuple[str, str, str]:
    """(container name, reference, imageID) of this process's container in `pod` (the API's
    JSON): `container` if named, else KFP's "main", else the one container that is not a known
    sidecar. A ValueError says why none is found."""
    statuses = {s.get("name"): s for s in pod.get("status", {}).get("containerStatuses") or []}
    specs = {c.get("name"): c for c in pod.get("spec", {}).get("containers") or []}
    if container:
        chosen = container
    elif MAIN_CONTAINER in specs:
        chosen = MAIN_CONTAINER
    else:
        own = [name for name in specs if name not in SIDECARS]
        if len(own) != 1:
            raise ValueError(
                f"the pod has containers {sorted(specs)}; set {CONTAINER_ENV} to "
                "the one that trains"
            )
        chosen = own[0]
    if chosen not in specs:
        raise ValueError(f"the pod has no container {chosen!r} (it has {sorted(specs)})")
    return chosen, specs[chosen].get("image", ""), statuses.get(chosen, {}).get("imageID", "")


def pod_image(
    api_client: Any,
    namespace: str,
    pod_name: str,
    container: str = "",
    fallback_reference: str = "",
) -> ImageRecord:
    """The image of this process's container, read from its pod's status through `api_client`
    (a kubernetes ApiClient); an "unknown" digest that says why when the read fails."""
    from .cluster.pod import PodReadError, read_pod

    try:
        pod = read_pod(api_client, namespace, pod_name, POD_READ_TIMEOUT_S)
        name, reference, image_id = container_image(pod, container)
    except PodReadError as exc:
        why = f"{exc.status} {exc.reason}"
        fix = (
            "grant the pod's service account `get` on pods (deploy/rbac.yaml)"
            if exc.status in (401, 403)
            else "check the pod's name and namespace"
        )
        return _unknown(
            fallback_reference,
            f"reading pod {namespace}/{pod_name} failed ({why}); "
            f"{fix}, or run a pinned image (--image NAME@sha256:DIGEST)",
        )
    except Exception as exc:  # no API, no answer, or a pod not shaped as expected
        detail = (str(exc).splitlines() or [""])[0][:200]
        return _unknown(
            fallback_reference,
            f"reading pod {namespace}/{pod_name} failed "
            f"({type(exc).__name__}: {detail}); run a pinned image "
            "(--image NAME@sha256:DIGEST)",
        )
    digest = pinned_digest(reference) or image_id_digest(image_id)
    if not digest:
        return _unknown(
            reference or fallback_reference,
            f"pod {namespace}/{pod_name} container {name} reports no digest (imageID {image_id!r})",
        )
    kind = (
        "runtime's local image ID"
        if "@" not in image_id and not pinned_digest(reference)
        else "digest"
    )
    return ImageRecord(
        reference or fallback_reference,
        digest,
        f"pod {namespace}/{pod_name} container {name} status imageID ({kind})",
    )


def running_image(environ: Mapping[str, str] | None = None) -> ImageRecord:
    """The image this process runs from, as far as it can be known here (see the module's
    docstring); never raises and, outside a pod, never touches the network."""
    env = os.environ if environ is None else environ
    reference = env.get(IMAGE_ENV, "")
    if pinned_digest(reference):
        return ImageRecord(reference, pinned_digest(reference), f"pinned reference ({IMAGE_ENV})")
    if env.get("KUBERNETES_SERVICE_HOST"):
        try:
            from .cluster.pod import in_cluster_api_client, own_name, own_namespace

            api_client = in_cluster_api_client()
            namespace, pod_name = own_namespace(env), own_name(env)
        except Exception as exc:
            detail = (str(exc).splitlines() or [""])[0][:200]
            return _unknown(
                reference,
                f"no in-cluster Kubernetes API ({type(exc).__name__}: "
                f"{detail}); run a pinned image (--image NAME@sha256:DIGEST)",
            )
        return pod_image(api_client, namespace, pod_name, env.get(CONTAINER_ENV, ""), reference)
    if reference:
        return _unknown(
            reference,
            f"not in a Kubernetes pod, and {IMAGE_ENV} {reference} is a "
            "tag, not a digest; run a pinned image (NAME@sha256:DIGEST)",
        )
    return ImageRecord(
        "local", UNKNOWN_DIGEST, f"not run from the project's image ({IMAGE_ENV} is unset)"
    )


def _unknown(reference: str, why: str) -> ImageRecord:
    return ImageRecord(reference or UNKNOWN_DIGEST, UNKNOWN_DIGEST, why)


def machine() -> str:
    """What a run ran on, for its record and a results page: CPU model and the cores this
    process may use, torch's threads and version, and the GPU if one is visible."""
    import os
    import platform

    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(
                (line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu
            )
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (
        f"{cpu}, {cores} cores ({torch.get_num_threads()} torch threads), {gpu}, "
        f"torch {torch.__version__}"
    )
