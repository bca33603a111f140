"""docs/cluster.md is runnable: every `python -m pipeline ...` command it shows runs here exactly as
written, in the order written, from a checkout's workspace, with the shell variables the page
sets (NS, IMAGE, KFP, the data versions): compile writes its YAML, and submit goes through the
namespace check (a stand-in Kubernetes API, reached through a kubeconfig as on a laptop) to a
stand-in multi-user KFP API, with the token and namespace the page exports."""

from __future__ import annotations

import re
import shlex

import pytest
import yaml
from kubernetes import client as kube
from kubernetes.config import kube_config

from pipeline.cli import main
from tests.pipeline.stand_in_apis import KfpApi, KubernetesApi, serving
from tests.workspaces import PROJECT

DOC = PROJECT / "docs" / "cluster.md"
BASH_BLOCK = re.compile(r"^```bash\n(.*?)^```", re.M | re.S)
VARIABLE = re.compile(r"\$\{?(\w+)\}?")
TOKEN = "eyJhbGciOiJSUzI1NiJ9.docs-test-token.c2lnbmF0dXJl"
pytestmark = pytest.mark.filterwarnings("ignore:This client only works:FutureWarning")


def documented_commands() -> list[str]:
    """The page's `python -m pipeline` command lines, continuation lines joined, comments cut."""
    commands = []
    for block in BASH_BLOCK.findall(DOC.read_text()):
        for line in re.sub(r"\\\n\s*", " ", block).splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line.startswith("python -m pipeline "):
                commands.append(line)
    return commands


def assigned_variables() -> set[str]:
    """The shell variables the page's bash blocks set (NAME=... at a line's start, or exported)."""
    text = "\n".join(BASH_BLOCK.findall(DOC.read_text()))
    return set(re.findall(r"^(?:export\s+)?(\w+)=", text, re.M))


def expand(command: str, values: dict[str, str]) -> list[str]:
    unknown = sorted(set(VARIABLE.findall(command)) - set(values))
    assert not unknown, f"{command!r} uses {unknown}, which this test does not set"
    return shlex.split(VARIABLE.sub(lambda m: values[m[1]], command))


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    """A directory that reads as the project checkout (its DVC config and .dvc files), so that
    the commands' default --workspace . and their -o files stay out of the repository."""
    for name in (".dvc", "data.dvc", "data"):
        (tmp_path / name).symlink_to(PROJECT / name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_the_page_shows_compile_and_submit_commands_and_sets_what_they_use():
    commands = documented_commands()
    assert sum(c.startswith("python -m pipeline compile") for c in commands) >= 1
    assert sum(c.startswith("python -m pipeline submit") for c in commands) >= 4
    used = {name for c in commands for name in VARIABLE.findall(c)}
    # the page itself says how each variable is set (step 3 sets the ones for the data)
    assert used <= assigned_variables() | {"IMAGENET_VERSION"}, used - assigned_variables()
    for command in commands:
        assert "--image $IMAGE" in command, f"{command!r} does not pin the image"


def test_every_documented_pipeline_command_runs_as_written(workspace, monkeypatch, tmp_path):
    kfp_api = KfpApi(TOKEN)
    namespace = "kubeflow-user-example-com"
    kubernetes_api = KubernetesApi(
        secrets={
            "adautomix-s3": "Opaque",
            "adautomix-mlflow": "Opaque",
            "mlflow-ca": "Opaque",
            "regcred": "kubernetes.io/dockerconfigjson",
        },
        claims={},
        storage_classes={"standard": True},
    )
    image = "registry.example.com/ml/adautomix@sha256:" + "0123456789abcdef" * 4
    previous = kube.Configuration.get_default_copy()
    with serving(kfp_api) as kfp_url, serving(kubernetes_api) as kube_url:
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "current-context": "c",
                    "clusters": [{"name": "stand-in", "cluster": {"server": kube_url}}],
                    "users": [{"name": "u", "user": {"token": "kube-token"}}],
                    "contexts": [
                        {
                            "name": "c",
                            "context": {"cluster": "stand-in", "user": "u", "namespace": namespace},
                        }
                    ],
                }
            )
        )
        # what a shell's KUBECONFIG gives the client at start-up (read when it is imported)
        monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
        monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(kubeconfig))
        monkeypatch.delenv("KF_PIPELINES_TOKEN_FILE", raising=False)
        monkeypatch.setenv("KF_PIPELINES_TOKEN", TOKEN)  # as the page exports them
        monkeypatch.setenv("KF_PIPELINES_NAMESPACE", namespace)
        values = {
            "NS": namespace,
            "IMAGE": image,
            "KFP": kfp_url,
            "CIFAR100_VERSION": "c" * 32,
            "IMAGENET_VERSION": "d" * 32,
        }
        try:
            for command in documented_commands():
                argv = expand(command, values)
                assert argv[:3] == ["python", "-m", "pipeline"]
                runs_before = len(created_runs(kfp_api))
                assert main(argv[3:]) == 0, command
                if argv[3] == "submit":
                    (run,) = created_runs(kfp_api)[runs_before:]
                    assert run["body"]["display_name"] == argv[argv.index("--run-name") + 1]
                    assert image in str(run["body"]), "the run does not use the pinned image"
                else:
                    compiled = workspace / argv[argv.index("--output") + 1]
                    assert image in compiled.read_text()
        finally:
            kube.Configuration.set_default(previous)
    # the first submit created the workspace claim, as the page says
    assert [c["metadata"]["name"] for c in kubernetes_api.created] == ["adautomix-workspace"]


def created_runs(server: KfpApi) -> list[dict]:
    return [r for r in server.requests if r["method"] == "POST" and r["path"].endswith("/runs")]
