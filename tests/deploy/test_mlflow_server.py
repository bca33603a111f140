"""The MLflow server of deploy/mlflow/mlflow.yaml, run here with the manifest's own command line:
a SQLite file for PostgreSQL, moto's S3 on 127.0.0.1 for the bucket. A client with no S3
credentials logs artifacts and a model through it, and the in-cluster Host header is answered."""

from __future__ import annotations

import re
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import boto3
import mlflow
import pytest
import torch
import yaml

from tests.servers import serve_mlflow

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy" / "mlflow"
IN_CLUSTER_HOST = "mlflow.mlflow.svc:5000"
S3_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def manifest_command(env: dict[str, str]) -> list[str]:
    """The server container's arguments with Kubernetes' $(VAR) expansion done from `env`, less
    the bind address, port and worker count, which the test picks."""
    deployment = next(
        d
        for d in yaml.safe_load_all((DEPLOY / "mlflow.yaml").read_text())
        if d["kind"] == "Deployment"
    )
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["mlflow"] and container["args"][0] == "server"
    args = [re.sub(r"\$\((\w+)\)", lambda m: env[m[1]], a) for a in container["args"][1:]]
    return [a for a in args if not a.startswith(("--host=", "--port=", "--workers="))]


def deployment_env() -> dict[str, dict]:
    deployment = next(
        d
        for d in yaml.safe_load_all((DEPLOY / "mlflow.yaml").read_text())
        if d["kind"] == "Deployment"
    )
    return {e["name"]: e for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}


def test_the_database_password_reaches_the_server_through_its_environment_only():
    args = " ".join(manifest_command({"ARTIFACTS_DESTINATION": "s3://b/a", "ALLOWED_HOSTS": "h"}))
    assert "PASSWORD" not in args and "backend-store-uri" not in args
    env = deployment_env()
    # Kubernetes expands $(VAR) in an env value from the variables before it
    names = list(env)
    assert names.index("POSTGRES_PASSWORD") < names.index("MLFLOW_BACKEND_STORE_URI")
    assert "$(POSTGRES_PASSWORD)" in env["MLFLOW_BACKEND_STORE_URI"]["value"]


def config_value(key: str) -> str:
    return yaml.safe_load((DEPLOY / "config.yaml").read_text())["data"][key]


def status(url: str, host: str) -> int:
    request = urllib.request.Request(
        f"{url}/api/2.0/mlflow/experiments/search?max_results=1", headers={"Host": host}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


@pytest.fixture(scope="module")
def proxied_server(s3_server, tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("mlflow-proxied")
    bucket = f"mlflow-{uuid.uuid4().hex[:12]}"
    s3 = boto3.client(
        "s3",
        endpoint_url=s3_server,
        **{k.lower(): v for k, v in S3_CREDENTIALS.items() if k != "AWS_DEFAULT_REGION"},
        region_name="us-east-1",
    )
    s3.create_bucket(Bucket=bucket)
    args = manifest_command(
        {
            "ARTIFACTS_DESTINATION": f"s3://{bucket}/artifacts",
            # the test's client reaches the server at 127.0.0.1 on a free port
            "ALLOWED_HOSTS": config_value("ALLOWED_HOSTS") + ",127.0.0.1:*",
        }
    )
    # only the server holds the bucket's credentials, as in the Deployment
    # Every S3 endpoint setting points at this test's moto: the server inherits the test
    # process's environment, where an earlier test may have left another endpoint.
    # the database URI comes from the environment, as in the Deployment
    database = tmp_path / "mlflow.db"
    server_env = {
        **S3_CREDENTIALS,
        "MLFLOW_S3_ENDPOINT_URL": s3_server,
        "AWS_ENDPOINT_URL": s3_server,
        "AWS_ENDPOINT_URL_S3": s3_server,
        "MLFLOW_BACKEND_STORE_URI": f"sqlite:///{database}",
    }
    with serve_mlflow(args, tmp_path, server_env, health_headers={"Host": IN_CLUSTER_HOST}) as url:
        yield url, s3, bucket
        assert database.exists(), "the server did not take its database from the environment"


def test_a_client_without_s3_credentials_logs_artifacts_and_a_model_through_the_server(
    proxied_server, tmp_path, monkeypatch
):
    url, s3, bucket = proxied_server
    for name in (*S3_CREDENTIALS, "AWS_ENDPOINT_URL", "AWS_PROFILE", "MLFLOW_S3_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)

    client = mlflow.MlflowClient(url)
    experiment = client.create_experiment("deploy-test")
    (tmp_path / "notes.txt").write_text("through the proxy")
    network, probe = torch.nn.Linear(3, 2), torch.randn(4, 3)
    with mlflow.start_run(experiment_id=experiment) as run:
        assert run.info.artifact_uri.startswith("mlflow-artifacts:")  # HTTP, not s3://
        mlflow.log_artifact(str(tmp_path / "notes.txt"))
        mlflow.pytorch.log_model(
            network,
            name="model",
            input_example=probe.numpy(),
            # named, so MLflow does not spend seconds inferring them
            pip_requirements=["torch"],
            registered_model_name="deploy-test-model",
        )

    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert any(k.endswith(f"{run.info.run_id}/artifacts/notes.txt") for k in keys), keys
    assert any(k.endswith("/MLmodel") for k in keys), keys
    back = mlflow.artifacts.download_artifacts(
        run_id=run.info.run_id, artifact_path="notes.txt", dst_path=str(tmp_path / "back")
    )
    assert Path(back).read_text() == "through the proxy"
    loaded = mlflow.pytorch.load_model("models:/deploy-test-model/1")
    torch.testing.assert_close(loaded(probe), network(probe))


def test_the_in_cluster_host_is_answered_and_an_unknown_host_refused(proxied_server):
    url, _, _ = proxied_server
    assert status(url, IN_CLUSTER_HOST) == 200
    assert status(url, "mlflow.mlflow.svc.cluster.local:5000") == 200
    assert status(url, "attacker.example.com") == 403
