"""Submitting as a multi-user Kubeflow user: the token and namespace from the environment or a
file reach the KFP API (a stand-in that refuses as multi-user KFP does), never the output; no
credentials gets one line naming the variables; the preflight names a missing storage class or
pull secret and creates a missing workspace claim with the class and access mode asked for."""

from __future__ import annotations

import pytest
from kubernetes import client as kube

from pipeline.cluster_settings import ClusterSettings
from pipeline.run import SubmitError, submit, training_arguments
from tests.pipeline.stand_in_apis import KfpApi, KubernetesApi, serving
from tests.workspaces import PROJECT

TOKEN = "eyJhbGciOiJSUzI1NiJ9.sa-token-for-the-test.c2lnbmF0dXJl"
NAMESPACE = "kubeflow-user-example-com"
AUTH_VARIABLES = (
    "KF_PIPELINES_TOKEN",
    "KF_PIPELINES_TOKEN_FILE",
    "KF_PIPELINES_NAMESPACE",
    "KF_PIPELINES_SA_TOKEN_PATH",
)
pytestmark = pytest.mark.filterwarnings("ignore:This client only works:FutureWarning")


@pytest.fixture
def no_credentials(monkeypatch):
    for name in AUTH_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.fixture(scope="module")
def arguments():
    return training_arguments(workspace=PROJECT, method="mixup")


@pytest.fixture
def kfp_api():
    server = KfpApi(TOKEN)
    with serving(server) as url:
        yield server, url


def run_creations(server: KfpApi) -> list[dict]:
    return [r for r in server.requests if r["method"] == "POST" and r["path"].endswith("/runs")]


@pytest.mark.parametrize("source", ["env", "file"])
def test_the_token_and_namespace_from_the_environment_reach_the_api_and_never_the_output(
    source, kfp_api, arguments, no_credentials, tmp_path, capsys
):
    server, url = kfp_api
    if source == "env":
        no_credentials.setenv("KF_PIPELINES_TOKEN", TOKEN)
    else:
        (tmp_path / "token").write_text(TOKEN + "\n")
        no_credentials.setenv("KF_PIPELINES_TOKEN_FILE", str(tmp_path / "token"))
    no_credentials.setenv("KF_PIPELINES_NAMESPACE", NAMESPACE)

    assert submit(url, arguments, "adautomix", "run-1", preflight=False) == "run-1"
    assert {r["authorization"] for r in server.requests} == {f"Bearer {TOKEN}"}
    experiment = next(
        r for r in server.requests if r["path"].endswith("/experiments") and r["method"] == "POST"
    )
    assert experiment["body"]["namespace"] == NAMESPACE
    assert len(run_creations(server)) == 1
    printed = capsys.readouterr()
    assert TOKEN not in printed.out + printed.err


def test_without_credentials_a_multi_user_endpoint_gets_the_variables_to_set(
    kfp_api, arguments, no_credentials
):
    _, url = kfp_api
    with pytest.raises(SubmitError, match="asks for credentials") as refused:
        submit(url, arguments, "adautomix", "run-1", preflight=False)
    assert "KF_PIPELINES_TOKEN" in str(refused.value) and "KF_PIPELINES_NAMESPACE" in str(
        refused.value
    )


def test_a_wrong_token_is_named_by_its_source_not_its_value(kfp_api, arguments, no_credentials):
    _, url = kfp_api
    no_credentials.setenv("KF_PIPELINES_TOKEN", "expired-" + TOKEN)
    with pytest.raises(
        SubmitError, match="refused the credentials from KF_PIPELINES_TOKEN"
    ) as refused:
        submit(url, arguments, "adautomix", "run-1", namespace=NAMESPACE, preflight=False)
    assert TOKEN not in str(refused.value)


def test_an_unreadable_token_file_is_named(arguments, no_credentials, tmp_path):
    no_credentials.setenv("KF_PIPELINES_TOKEN_FILE", str(tmp_path / "missing"))
    with pytest.raises(
        SubmitError, match="KF_PIPELINES_TOKEN_FILE names .*missing, which cannot be read"
    ):
        submit("http://127.0.0.1:9", arguments, "adautomix", "run-1", preflight=False)


# --- the preflight against a Kubernetes API -----------------------------------------------------


def kube_client(url: str) -> kube.ApiClient:
    configuration = kube.Configuration()
    configuration.host = url
    return kube.ApiClient(configuration)


def ready_namespace(**overrides) -> KubernetesApi:
    state = dict(
        secrets={
            "adautomix-s3": "Opaque",
            "adautomix-mlflow": "Opaque",
            "regcred": "kubernetes.io/dockerconfigjson",
        },
        claims={},
        storage_classes={"standard": True, "fast-rwx": False},
    )
    return KubernetesApi(**{**state, **overrides})


def test_submit_creates_the_missing_workspace_with_the_class_and_mode_asked_for(
    kfp_api, arguments, no_credentials
):
    server, url = kfp_api
    no_credentials.setenv("KF_PIPELINES_TOKEN", TOKEN)
    kubernetes_api = ready_namespace()
    cluster = ClusterSettings(
        storage_class="fast-rwx",
        access_mode="ReadWriteOnce",
        sweep_parallelism=1,
        workspace_size="20Gi",
        image_pull_secrets=("regcred",),
    )
    with serving(kubernetes_api) as kube_url:
        submit(
            url,
            arguments,
            "adautomix",
            "run-1",
            cluster=cluster,
            namespace=NAMESPACE,
            kube_api=kube_client(kube_url),
        )
    (claim,) = kubernetes_api.created
    assert claim["metadata"]["name"] == "adautomix-workspace"
    assert claim["spec"]["storageClassName"] == "fast-rwx"
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "20Gi"
    assert len(run_creations(server)) == 1


@pytest.mark.parametrize(
    "cluster, state, message",
    [
        (ClusterSettings(storage_class="nvme"), {}, "storage class 'nvme' does not exist"),
        (
            ClusterSettings(image_pull_secrets=("ghcr-pull",)),
            {},
            "image pull secret 'ghcr-pull' does not exist in namespace " + NAMESPACE,
        ),
        (
            ClusterSettings(),
            {"secrets": {"adautomix-s3": "Opaque"}},
            "secret 'adautomix-mlflow' does not exist",
        ),
        (ClusterSettings(mlflow_ca_secret="mlflow-ca"), {}, "secret 'mlflow-ca' does not exist"),
        (
            ClusterSettings(),
            {"claims": {"adautomix-workspace": ["ReadWriteOnce"]}},
            "is ReadWriteOnce, not ReadWriteMany: pass --access-mode ReadWriteOnce",
        ),
        (ClusterSettings(), {"storage_classes": {"slow": False}}, "no default storage class"),
    ],
)
def test_what_the_namespace_lacks_is_named_and_nothing_is_submitted(
    cluster, state, message, kfp_api, arguments, no_credentials
):
    server, url = kfp_api
    no_credentials.setenv("KF_PIPELINES_TOKEN", TOKEN)
    kubernetes_api = ready_namespace(**state)
    with serving(kubernetes_api) as kube_url:
        with pytest.raises(SubmitError, match=message):
            submit(
                url,
                arguments,
                "adautomix",
                "run-1",
                cluster=cluster,
                namespace=NAMESPACE,
                kube_api=kube_client(kube_url),
            )
    assert not run_creations(server) and not kubernetes_api.created
