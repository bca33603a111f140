"""This process's own pod, read through the Kubernetes API: which pod it is (namespace and name),
an API client from its service account, and the pod's object. provenance.py reads it for the
image digest that ran, cluster/job.py for the owner reference a job it creates carries; kept here
so that the Kubernetes client stays inside cluster/ and the pod is found one way."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")


class PodReadError(Exception):
    """The API answered a pod read with an error status."""

    def __init__(self, status: int, reason: str):
        super().__init__(f"{status} {reason}")
        self.status, self.reason = status, reason


def own_namespace(environ: Mapping[str, str] | None = None) -> str:
    """The pod's namespace: POD_NAMESPACE where the downward API sets it, else its service
    account's (raises outside a pod)."""
    env = os.environ if environ is None else environ
    return env.get("POD_NAMESPACE") or (SERVICE_ACCOUNT / "namespace").read_text().strip()


def own_name(environ: Mapping[str, str] | None = None) -> str:
    """The pod's name: POD_NAME where the downward API sets it, else the HOSTNAME Kubernetes
    gives each pod's containers (the pod's name), else the host's."""
    env = os.environ if environ is None else environ
    return env.get("POD_NAME") or env.get("HOSTNAME") or os.uname().nodename


def in_cluster_api_client() -> Any:
    """An ApiClient from the pod's service account (raises outside a pod)."""
    from kubernetes import client, config

    config.load_incluster_config()
    return client.ApiClient()


def in_cluster_client() -> tuple[Any, str]:
    """An ApiClient from the pod's service account, and the pod's namespace."""
    return in_cluster_api_client(), own_namespace()


def read_pod(api_client: Any, namespace: str, pod_name: str, timeout: float | None = None) -> dict:
    """The pod's object as plain JSON; PodReadError when the API refuses or lacks it. `timeout`
    in seconds (None: the client's own)."""
    from kubernetes import client

    try:
        response = client.CoreV1Api(api_client).read_namespaced_pod(
            pod_name, namespace, _preload_content=False, _request_timeout=timeout
        )
    except client.ApiException as exc:
        raise PodReadError(exc.status, exc.reason) from None
    return json.loads(response.data)
