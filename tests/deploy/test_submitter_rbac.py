"""deploy/kfp-submitter.yaml grants what `submit` does and no more: a submit whose every request
is checked against its Role (by stand-ins of the KFP and Kubernetes APIs that refuse with 403, as
the real ones do, whatever the Role does not allow) goes through, preflight included; and the
Role reads no secret but the ones a run names."""

from __future__ import annotations

import re

import pytest
import yaml
from kubernetes import client as kube

from pipeline.cluster_settings import ClusterSettings
from pipeline.run import submit, training_arguments
from tests.pipeline.stand_in_apis import KfpApi, KubernetesApi, serving
from tests.workspaces import PROJECT

TOKEN = "eyJhbGciOiJSUzI1NiJ9.submitter-token.c2lnbmF0dXJl"
NAMESPACE = "kubeflow-user-example-com"
pytestmark = pytest.mark.filterwarnings("ignore:This client only works:FutureWarning")


def submitter() -> list[dict]:
    return [
        d for d in yaml.safe_load_all((PROJECT / "deploy" / "kfp-submitter.yaml").read_text()) if d
    ]


def granted(group: str, resource: str, verb: str, name: str = "") -> bool:
    """Whether the Role bound to the submitter allows the request (RBAC's rule matching)."""
    docs = submitter()
    (binding,) = [d for d in docs if d["kind"] == "RoleBinding"]
    (role,) = [d for d in docs if d["kind"] == binding["roleRef"]["kind"]]
    assert role["metadata"]["name"] == binding["roleRef"]["name"]
    return any(
        group in rule["apiGroups"]
        and resource in rule["resources"]
        and verb in rule["verbs"]
        and (not rule.get("resourceNames") or (name and name in rule["resourceNames"]))
        for rule in role["rules"]
    )


def verb(method: str, name: str) -> str:
    return {"POST": "create", "GET": "get" if name else "list"}[method]


class RbacKubernetes(KubernetesApi):
    """The namespace's API, answering 403 to what the submitter's Role does not allow."""

    def answer(self, handler, method, body):
        path = handler.path.split("?")[0]
        found = re.fullmatch(r"/api/v1/namespaces/[^/]+/([a-z]+)(?:/([^/]+))?", path)
        request = ("", *found.groups()) if found else ("storage.k8s.io", "storageclasses", "")
        group, resource, name = request[0], request[1], request[2] or ""
        self.seen.append((verb(method, name), resource, name))
        if not granted(group, resource, verb(method, name), name):
            self.refused.append((verb(method, name), resource, name))
            return handler._reply(403, {"kind": "Status", "code": 403, "reason": "Forbidden"})
        return super().answer(handler, method, body)


class RbacKfp(KfpApi):
    """Multi-user KFP, which asks Kubernetes whether the caller may act on its
    pipelines.kubeflow.org resources in the namespace, and refuses with 403 otherwise."""

    def answer(self, handler, method, body):
        found = re.search(r"/apis/v2beta1/(experiments|runs)", handler.path)
        if found:
            request = (verb(method, ""), found[1])
            self.seen.append(request)
            if not granted("pipelines.kubeflow.org", request[1], request[0]):
                self.refused.append(request)
                return handler._reply(403, {"code": 7, "message": "PermissionDenied"})
        return super().answer(handler, method, body)


def test_a_submit_needs_nothing_the_submitter_role_does_not_grant(monkeypatch):
    for name in ("KF_PIPELINES_TOKEN_FILE", "KF_PIPELINES_SA_TOKEN_PATH"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KF_PIPELINES_TOKEN", TOKEN)
    kfp_api = RbacKfp(TOKEN)
    kubernetes_api = RbacKubernetes(
        secrets={
            "adautomix-s3": "Opaque",
            "adautomix-mlflow": "Opaque",
            "mlflow-ca": "Opaque",
            "regcred": "kubernetes.io/dockerconfigjson",
        },
        claims={},
        storage_classes={"standard": True},
    )
    kfp_api.seen, kfp_api.refused = [], []
    kubernetes_api.seen, kubernetes_api.refused = [], []
    cluster = ClusterSettings(image_pull_secrets=("regcred",), mlflow_ca_secret="mlflow-ca")
    with serving(kfp_api) as kfp_url, serving(kubernetes_api) as kube_url:
        configuration = kube.Configuration()
        configuration.host = kube_url
        run_id = submit(
            kfp_url,
            training_arguments(workspace=PROJECT, method="mixup"),
            "adautomix",
            "run-1",
            cluster=cluster,
            namespace=NAMESPACE,
            kube_api=kube.ApiClient(configuration),
        )
    assert run_id == "run-1"
    assert ("create", "runs") in kfp_api.seen and not kfp_api.refused
    # every secret read, the claim's read and its creation were allowed ...
    assert {("get", "secrets", "regcred"), ("create", "persistentvolumeclaims", "")} <= set(
        kubernetes_api.seen
    )
    assert [c["metadata"]["name"] for c in kubernetes_api.created] == ["adautomix-workspace"]
    # ... but for the cluster-wide storage classes, which a Role cannot grant; the check skips
    assert kubernetes_api.refused == [("list", "storageclasses", "")]


def test_the_submitter_reads_only_the_secrets_a_run_names_and_is_not_kubeflow_edit():
    assert not granted("", "secrets", "get", "some-other-secret")
    assert not granted("", "secrets", "list")
    assert granted("", "secrets", "get", "adautomix-mlflow")
    (binding,) = [d for d in submitter() if d["kind"] == "RoleBinding"]
    assert binding["roleRef"]["kind"] == "Role"  # not the profile's kubeflow-edit ClusterRole
    (role,) = [d for d in submitter() if d["kind"] == "Role"]
    for rule in role["rules"]:
        assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"]
