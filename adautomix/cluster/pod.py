"""This process's own pod, read through the Kubernetes API: what provenance.py needs to record
the image digest that ran, kept here so that the Kubernetes client stays inside cluster/."""

from __future__ import annotations

import json
from typing import Any


class PodReadError(Exception):
    """The API answered a pod read with an error status."""

    def __init__(self, status: int, reason: str):
        super().__init__(f"{status} {reason}")
        self.status, self.reason = status, reason


def in_cluster_api_client() -> Any:
    """An ApiClient from the pod's service account (raises outside a pod)."""
    from kubernetes import client, config

    config.load_incluster_config()
    return client.ApiClient()


def read_pod(api_client: Any, namespace: str, pod_name: str, timeout: float) -> dict:
    """The pod's object as plain JSON; PodReadError when the API refuses or lacks it."""
    from kubernetes import client

    try:
        response = client.CoreV1Api(api_client).read_namespaced_pod(
            pod_name, namespace, _preload_content=False, _request_timeout=timeout
        )
    except client.ApiException as exc:
        raise PodReadError(exc.status, exc.reason) from None
    return json.loads(response.data)
