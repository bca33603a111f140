"""The restricted Pod Security Standard (https://kubernetes.io/docs/concepts/security/pod-security-
standards/, "restricted", which includes "baseline"), as the checks the admission controller
makes on a pod spec (Kubernetes JSON), for the tests of the pods this project builds."""

from __future__ import annotations

RESTRICTED_VOLUMES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}
SECCOMP_TYPES = {"RuntimeDefault", "Localhost"}
KUBERNETES_VERSIONS = ("1.29.0", "1.37.0")  # docs/cluster.md: Kubernetes 1.29 or newer


def as_pod(spec: dict) -> dict:
    """A pod spec as a Pod, for kubernetes-validate."""
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "node"}, "spec": spec}


def restricted_violations(pod: dict) -> list[str]:
    """What in `pod` (a PodSpec) the restricted profile refuses; [] when it passes."""
    found = []
    pod_context = pod.get("securityContext") or {}
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(key):
            found.append(f"{key} is set")
    for volume in pod.get("volumes") or []:
        kinds = set(volume) - {"name"}
        if not kinds <= RESTRICTED_VOLUMES:
            found.append(f"volume {volume['name']} is of type {sorted(kinds)}")
    if pod_context.get("runAsUser") == 0:
        found.append("the pod runs as user 0")
    containers = [*(pod.get("initContainers") or []), *(pod.get("containers") or [])]
    for container in containers:
        name, context = container["name"], container.get("securityContext") or {}
        if context.get("privileged"):
            found.append(f"container {name} is privileged")
        if context.get("allowPrivilegeEscalation") is not False:
            found.append(f"container {name} does not set allowPrivilegeEscalation: false")
        capabilities = context.get("capabilities") or {}
        if "ALL" not in (capabilities.get("drop") or []):
            found.append(f"container {name} does not drop ALL capabilities")
        if set(capabilities.get("add") or []) - {"NET_BIND_SERVICE"}:
            found.append(f"container {name} adds capabilities {capabilities['add']}")
        non_root = context.get("runAsNonRoot", pod_context.get("runAsNonRoot"))
        if non_root is not True:
            found.append(f"container {name} may run as root (runAsNonRoot is not true)")
        if context.get("runAsUser") == 0:
            found.append(f"container {name} runs as user 0")
        seccomp = (context.get("seccompProfile") or pod_context.get("seccompProfile") or {}).get(
            "type"
        )
        if seccomp not in SECCOMP_TYPES:
            found.append(f"container {name} has seccomp profile {seccomp}, not RuntimeDefault")
        if any(port.get("hostPort") for port in container.get("ports") or []):
            found.append(f"container {name} uses a host port")
    return found
