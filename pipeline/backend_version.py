"""Which Kubeflow Pipelines backend a compiled pipeline needs, and the check before a run is sent.

The compiled YAML names each step's Kubernetes settings (secrets, the workspace claim, pull
secrets, tolerations, /dev/shm, timeouts) in kfp-kubernetes' executor config, which the backend's
driver parses when the step starts. A field the backend does not know is not an error the
upload reports:

- 2.4.0 and older parse the config strictly, and every step fails with "failed to
  unmarshal Kubernetes config: unknown field ...";
- from 2.5.0 it drops unknown fields (kubeflow/pipelines#11662), silently: a dropped
  `secretAsEnv[].optional: true` makes the optional MLflow and S3 keys required, and pods made
  with secrets that lack them stop in CreateContainerConfigError.

So a pipeline needs, for every field it contains, the first backend release that honours it.
FIELDS holds that, one entry per field the project's pipelines can contain; `required_backend`
takes the maximum over the fields present, and `check_backend` compares it with the version the
endpoint reports before a run is sent. Where a field's release came from: the kubeflow/pipelines
pull request that added the backend's side of it (its number in FIELDS), and its CHANGELOG.md.
(`tests/pipeline/test_backend_version.py` fails when a compiled pipeline holds a field FIELDS
does not classify.)"""

from __future__ import annotations

import json
import re
import sys
import tempfile
from pathlib import Path
from typing import NamedTuple

from adautomix.errors import RunFailure

Release = tuple[int, int, int]


class Since(NamedTuple):
    release: Release
    source: str  # the kubeflow/pipelines change that made the backend honour the field


# Field paths: in a step's executor config (platforms.kubernetes.deploymentSpec.executors.*),
# `[]` marking a list's items; a path names a field whole, what it holds included (a parameter
# spec, a map of labels). `pipelineSpec:` marks a feature of the pipeline spec itself (wherever
# in it the key is), found by `spec_features`.
FIELDS: dict[str, Since] = {
    # secrets as environment variables (kfp-kubernetes' use_secret_as_env)
    "secretAsEnv[].secretName": Since((2, 0, 0), "#9178 secrets"),
    "secretAsEnv[].keyToEnv[].secretKey": Since((2, 0, 0), "#9178 secrets"),
    "secretAsEnv[].keyToEnv[].envVar": Since((2, 0, 0), "#9178 secrets"),
    "secretAsEnv[].secretNameParameter": Since((2, 5, 0), "#11770 input parameterization"),
    # false would be harmless to drop (2.5-2.14), but a strict driver (<= 2.4) refuses it too,
    # and the optional keys need true honoured
    "secretAsEnv[].optional": Since((2, 15, 0), "optional secret keys as env, kfp 2.15"),
    # a CA bundle as a file (--mlflow-ca-secret)
    "secretAsVolume[].secretName": Since((2, 0, 0), "#9178 secrets"),
    "secretAsVolume[].mountPath": Since((2, 0, 0), "#9178 secrets"),
    "secretAsVolume[].optional": Since((2, 2, 0), "#10550 optional secret volumes"),
    "secretAsVolume[].secretNameParameter": Since((2, 5, 0), "#11770 input parameterization"),
    # the workspace claim
    "pvcMount[].constant": Since((2, 0, 0), "kfp-kubernetes 1.0 mount_pvc"),
    "pvcMount[].mountPath": Since((2, 0, 0), "kfp-kubernetes 1.0 mount_pvc"),
    "pvcMount[].pvcNameParameter": Since((2, 5, 0), "#11770 input parameterization"),
    # --image-pull-secret
    "imagePullSecret[].secretName": Since((2, 1, 0), "#10427 image pull secrets"),
    "imagePullSecret[].secretNameParameter": Since((2, 5, 0), "#11770 input parameterization"),
    # GPU taints and --node-selector
    "tolerations[].key": Since((2, 1, 0), "#10471 tolerations"),
    "tolerations[].operator": Since((2, 1, 0), "#10471 tolerations"),
    "tolerations[].effect": Since((2, 1, 0), "#10471 tolerations"),
    "nodeSelector.labels": Since((2, 0, 0), "kfp-kubernetes 1.0 add_node_selector"),
    # --step-timeout
    "activeDeadlineSeconds": Since((2, 1, 0), "#10481 timeout in the pod spec"),
    # the sized, memory-backed /dev/shm
    "emptyDirMounts[].volumeName": Since((2, 3, 0), "#10913 emptyDir"),
    "emptyDirMounts[].mountPath": Since((2, 3, 0), "#10913 emptyDir"),
    "emptyDirMounts[].medium": Since((2, 3, 0), "#10913 emptyDir"),
    "emptyDirMounts[].sizeLimit": Since((2, 3, 0), "#10913 emptyDir"),
    # pipeline spec: the multi-node step's dsl.TaskConfig (an older backend refuses the upload)
    "pipelineSpec:taskConfigPassthroughs": Since((2, 15, 0), "#12185 task config forwarding"),
    # pipeline spec: the GPU count as a placeholder that a pipeline parameter fills in
    "pipelineSpec:accelerator.resourceCount": Since((2, 4, 0), "#11501 placeholders in limits"),
    # pipeline spec: a sweep's --parallelism (an older backend runs every configuration at once)
    "pipelineSpec:iteratorPolicy.parallelismLimit": Since((2, 4, 0), "#10798 ParallelFor limit"),
}

VERSION = re.compile(r"v?(\d+)\.(\d+)\.(\d+)")


class BackendTooOld(RunFailure):
    """The endpoint's Kubeflow Pipelines backend is older than the pipeline needs."""


class UnclassifiedField(LookupError):
    """A compiled pipeline holds a field FIELDS does not classify: a newer kfp-kubernetes emits
    it, and which backend honours it must be found out and added (a bug of this module)."""


def executor_fields(config: dict, path: str = "") -> set[str]:
    """Every field path in one step's executor config, as FIELDS spells them; a path FIELDS does
    not hold is returned too (descended into while its value has fields of its own)."""
    found = set()
    for key, value in config.items():
        field = f"{path}.{key}" if path else key
        if field in FIELDS:
            found.add(field)
        elif isinstance(value, dict) and value:
            found |= executor_fields(value, field)
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            for item in value:
                found |= executor_fields(item, f"{field}[]")
        else:
            found.add(field)
    return found


def spec_features(spec) -> set[str]:
    """The pipeline spec's features FIELDS classifies (`pipelineSpec:` entries), wherever in the
    spec they are: a component's task config passthroughs, a GPU count that is a placeholder, a
    loop's parallelism limit."""
    found = set()
    if isinstance(spec, dict):
        if "taskConfigPassthroughs" in spec:
            found.add("pipelineSpec:taskConfigPassthroughs")
        if "{{" in str((spec.get("accelerator") or {}).get("resourceCount", "")):
            found.add("pipelineSpec:accelerator.resourceCount")
        if (spec.get("iteratorPolicy") or {}).get("parallelismLimit"):
            found.add("pipelineSpec:iteratorPolicy.parallelismLimit")
        for value in spec.values():
            found |= spec_features(value)
    elif isinstance(spec, list):
        for value in spec:
            found |= spec_features(value)
    return found


def pipeline_fields(spec: dict, platform: dict | None) -> set[str]:
    """The field paths of a compiled pipeline (its pipeline spec and its platform spec) that
    FIELDS classifies, and any executor config field it does not."""
    executors = (
        ((platform or {}).get("platforms") or {})
        .get("kubernetes", {})
        .get("deploymentSpec", {})
        .get("executors", {})
    )
    found = spec_features(spec)
    for config in executors.values():
        found |= executor_fields(config)
    return found


def required_backend(spec: dict, platform: dict | None) -> tuple[Release, list[str]]:
    """The oldest backend that honours every field of the compiled pipeline, and the fields
    that need exactly that one (the reason to name)."""
    fields = pipeline_fields(spec, platform)
    unknown = sorted(fields - FIELDS.keys())
    if unknown:
        raise UnclassifiedField(
            f"the compiled pipeline holds {unknown}, which pipeline/backend_version.FIELDS does "
            "not classify: add each with the first backend release that honours it"
        )
    needed = max((FIELDS[f].release for f in fields), default=(2, 0, 0))
    return needed, sorted(f for f in fields if FIELDS[f].release == needed)


def compiled_documents(pipeline) -> tuple[dict, dict | None]:
    """A pipeline function compiled as `submit` sends it: (pipeline spec, platform spec)."""
    import yaml
    from kfp import compiler

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "pipeline.yaml"
        compiler.Compiler().compile(pipeline, str(path))
        documents = list(yaml.safe_load_all(path.read_text()))
    return documents[0], documents[1] if len(documents) > 1 else None


def parse_release(tag: str) -> Release | None:
    """`2.15.0`, `v2.15.0` or `2.15.0-rc.1` as (2, 15, 0); None for what names no release
    (`unknown`, a branch, a commit)."""
    match = VERSION.match(tag.strip())
    return tuple(int(n) for n in match.groups()) if match else None


def dotted(release: Release) -> str:
    return ".".join(map(str, release))


def reported_tag(client) -> str:
    """The backend's version as its healthz endpoint reports it (`tag_name`), '' if it does not.
    Read raw: kfp-server-api's typed healthz response has no field for the version, so
    kfp.Client.get_kfp_healthz drops it. An HTTP or connection error propagates, for the caller
    to report as any refused request."""
    response = client.healthzs.healthz_service_get_healthz(
        _preload_content=False, _request_timeout=30
    )
    try:
        body = json.loads(response.data or b"{}")
    except ValueError:
        return ""
    return str(body.get("tag_name") or "") if isinstance(body, dict) else ""


def check_backend(client, host: str, pipeline) -> None:
    """Before a run of `pipeline` (a pipeline function) is sent: refuse, in one line, a backend
    older than the pipeline needs. A backend that does not report a release (built from source:
    `unknown`) gets a note on stderr, since its version cannot be known here."""
    needed, because = required_backend(*compiled_documents(pipeline))
    tag = reported_tag(client)
    found = parse_release(tag)
    if found is None:
        print(
            f"note: Kubeflow Pipelines at {host} does not report its version "
            f"(tag_name {tag or 'missing'}); this pipeline needs backend {dotted(needed)} or "
            "newer (docs/cluster.md)",
            file=sys.stderr,
        )
        return
    if found < needed:
        raise BackendTooOld(
            f"Kubeflow Pipelines at {host} runs backend {tag}, but this pipeline needs "
            f"{dotted(needed)} or newer (for {', '.join(because)}, which an older driver "
            f"rejects or drops); upgrade Kubeflow Pipelines to {dotted(needed)} or newer "
            "(docs/cluster.md, 'First install')"
        )
