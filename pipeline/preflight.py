"""What `submit` checks in the namespace before it starts a run, where the Kubernetes API is
reachable (a kubeconfig, or a pod's service account): the workspace claim (created when missing,
with the storage class and access mode asked for), the image pull secrets, and the S3 and MLflow
secrets. A run that lacks one would otherwise wait as a Pending pod or fail pulling its image an
hour later; here each problem is one line naming the thing and the fix."""

from __future__ import annotations

from pipeline.cluster_settings import ClusterSettings


def api_client(context: str | None = None):
    """A Kubernetes API client from the kubeconfig or the pod's service account; None when
    neither is there."""
    from kubernetes import client, config

    try:
        config.load_kube_config(context=context)
    except Exception:  # no kubeconfig, or no such context: try the in-cluster identity
        try:
            config.load_incluster_config()
        except config.ConfigException:
            return None
    return client.ApiClient()


def check_namespace(
    api, namespace: str, cluster: ClusterSettings, create_workspace: bool = True
) -> list[str]:
    """The problems found in `namespace`, [] when it holds what a run needs. Creates the
    workspace claim when it is missing and `create_workspace`."""
    from kubernetes import client

    core, storage = client.CoreV1Api(api), client.StorageV1Api(api)
    problems = []
    for name in cluster.image_pull_secrets:
        secret = _read(core.read_namespaced_secret, name, namespace)
        if secret is None:
            problems.append(
                f"image pull secret {name!r} does not exist in namespace {namespace}: create it "
                f"from a registry login file (podman login --authfile FILE REGISTRY) with "
                f"kubectl -n {namespace} create secret generic {name} "
                "--type=kubernetes.io/dockerconfigjson --from-file=.dockerconfigjson=FILE"
            )
        elif secret.type != "kubernetes.io/dockerconfigjson":
            problems.append(
                f"image pull secret {name!r} in namespace {namespace} is of type "
                f"{secret.type}, not kubernetes.io/dockerconfigjson (create it with --type="
                "kubernetes.io/dockerconfigjson, as docs/cluster.md step 5 shows)"
            )
    for name in (cluster.s3_secret, cluster.mlflow_secret, cluster.mlflow_ca_secret):
        if not name:
            continue
        if _read(core.read_namespaced_secret, name, namespace) is None:
            problems.append(
                f"secret {name!r} does not exist in namespace {namespace}: create "
                "it as docs/cluster.md shows (step 5)"
            )
    claim = _read(core.read_namespaced_persistent_volume_claim, cluster.workspace_pvc, namespace)
    if claim is not None:
        if cluster.access_mode not in (claim.spec.access_modes or []):
            problems.append(
                f"workspace claim {cluster.workspace_pvc!r} is {', '.join(claim.spec.access_modes)}"
                f", not {cluster.access_mode}: pass --access-mode {claim.spec.access_modes[0]}"
                " (with --parallelism 1 for a sweep unless it is ReadWriteMany)"
            )
        return problems
    class_problem = _storage_class_problem(storage, cluster.storage_class)
    if class_problem:
        return problems + [class_problem]
    if create_workspace and not problems:
        core.create_namespaced_persistent_volume_claim(namespace, workspace_claim(cluster))
    elif not create_workspace:
        problems.append(
            f"workspace claim {cluster.workspace_pvc!r} does not exist in namespace "
            f"{namespace}: kubectl -n {namespace} apply -f deploy/workspace-pvc.yaml"
        )
    return problems


def workspace_claim(cluster: ClusterSettings):
    from kubernetes import client

    return client.V1PersistentVolumeClaim(
        metadata=client.V1ObjectMeta(
            name=cluster.workspace_pvc, labels={"app.kubernetes.io/part-of": "adautomix"}
        ),
        spec=client.V1PersistentVolumeClaimSpec(
            access_modes=[cluster.access_mode],
            storage_class_name=cluster.storage_class or None,
            resources=client.V1VolumeResourceRequirements(
                requests={"storage": cluster.workspace_size}
            ),
        ),
    )


def _storage_class_problem(storage, name: str) -> str | None:
    from kubernetes.client.exceptions import ApiException

    try:
        classes = storage.list_storage_class().items
    except ApiException as error:
        if (
            error.status == 403
        ):  # storage classes are cluster-wide: a profile user may not list them
            return None
        raise
    names = sorted(c.metadata.name for c in classes)
    if name and name not in names:
        return (
            f"storage class {name!r} does not exist in this cluster (there are: "
            f"{', '.join(names) or 'none'}): pass one of them as --storage-class"
        )
    default = [
        c
        for c in classes
        if (c.metadata.annotations or {}).get("storageclass.kubernetes.io/is-default-class")
        == "true"
    ]
    if not name and not default:
        return (
            f"the cluster has no default storage class for the workspace claim: pass one of "
            f"{', '.join(names) or '(none: ask the cluster administrator)'} as --storage-class"
        )
    return None


def _read(reader, name: str, namespace: str):
    from kubernetes.client.exceptions import ApiException

    try:
        return reader(name, namespace)
    except ApiException as error:
        if error.status == 404:
            return None
        raise
