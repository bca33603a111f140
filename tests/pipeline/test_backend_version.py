"""The Kubeflow Pipelines backend a compiled pipeline needs: every field of every pipeline the
project compiles (default flags, several nodes, every optional cluster flag, a sweep:
tests/pipeline/conftest.py) is classified by the backend release that honours it, the default
pipeline needs the release docs/cluster.md and the README state, and submitting to an older
backend (a stand-in KFP API answering healthz as the real one does) stops before anything is
created, in one line."""

from __future__ import annotations

import copy
import re

import pytest

from pipeline import backend_version
from pipeline.backend_version import FIELDS, BackendTooOld, parse_release, required_backend
from tests.helpers import PROJECT
from tests.pipeline.stand_in_apis import KfpApi, serving

pytestmark = pytest.mark.filterwarnings("ignore:This client only works:FutureWarning")

STATED_MINIMUM = re.compile(r"Kubeflow\s+Pipelines\s+backend\s+(\d+\.\d+\.\d+)\s+or\s+newer")


def test_every_field_the_pipelines_hold_is_classified_and_every_classified_field_occurs(
    compiled_pipelines,
):
    present = set().union(
        *(backend_version.pipeline_fields(*docs) for docs in compiled_pipelines.values())
    )
    unclassified = present - FIELDS.keys()
    assert not unclassified, (
        f"{sorted(unclassified)}: find the first Kubeflow Pipelines backend release that honours "
        "each and add it to pipeline/backend_version.FIELDS"
    )
    # a field no pipeline holds any more would keep a stale minimum alive
    assert FIELDS.keys() - present == set()


def test_the_default_pipeline_needs_the_backend_the_docs_state(compiled_pipelines):
    stated = {
        page: set(STATED_MINIMUM.findall((PROJECT / page).read_text()))
        for page in ("docs/cluster.md", "README.md")
    }
    needed, because = required_backend(*compiled_pipelines["default"])
    assert stated == {page: {backend_version.dotted(needed)} for page in stated}
    # the optional MLflow and S3 keys: what an older driver rejects (<= 2.4) or drops (2.5-2.14)
    assert because == ["secretAsEnv[].optional"]


def test_several_nodes_need_the_backend_that_fills_the_task_config(compiled_pipelines):
    needed, because = required_backend(*compiled_pipelines["several nodes"])
    assert needed == (2, 15, 0)
    assert "pipelineSpec:taskConfigPassthroughs" in because


def test_a_field_the_table_does_not_classify_fails_loudly(compiled_pipelines):
    spec, platform = copy.deepcopy(compiled_pipelines["default"])
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    # a kfp-kubernetes field no pipeline here uses yet: mount_pvc(sub_path=...)
    executors["exec-train"]["pvcMount"][0]["subPath"] = "runs"
    with pytest.raises(backend_version.UnclassifiedField, match=r"pvcMount\[\]\.subPath"):
        required_backend(spec, platform)


@pytest.mark.parametrize(
    "tag, release",
    [
        ("2.15.0", (2, 15, 0)),
        ("v2.4.1", (2, 4, 1)),
        ("2.16.0-rc.1", (2, 16, 0)),
        ("unknown", None),
        ("master", None),
        ("", None),
    ],
)
def test_release_tags_as_the_healthz_endpoint_reports_them(tag, release):
    assert parse_release(tag) == release


class VersionedKfpApi(KfpApi):
    """The stand-in KFP API whose healthz answers as the real API server's does: its release as
    `tag_name` (the TAG_NAME it was built with, "unknown" from a source build), beside
    `commit_sha` and `multi_user`."""

    def __init__(self, token: str, tag_name: str):
        super().__init__(token)
        self.tag_name = tag_name

    def answer(self, handler, method: str, body: dict) -> None:
        if handler.path.startswith("/apis/v2beta1/healthz"):
            self.requests.append(
                {
                    "method": method,
                    "path": handler.path,
                    "body": body,
                    "authorization": handler.headers.get("Authorization"),
                }
            )
            return handler._reply(
                200, {"commit_sha": "0123abc", "tag_name": self.tag_name, "multi_user": True}
            )
        super().answer(handler, method, body)


TOKEN = "eyJhbGciOiJSUzI1NiJ9.backend-version-test.c2lnbmF0dXJl"


@pytest.fixture
def token(monkeypatch):
    for name in ("KF_PIPELINES_TOKEN_FILE", "KF_PIPELINES_SA_TOKEN_PATH"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KF_PIPELINES_TOKEN", TOKEN)
    monkeypatch.setenv("KF_PIPELINES_NAMESPACE", "kubeflow-user-example-com")


@pytest.fixture(scope="module")
def arguments():
    from pipeline.run import training_arguments

    return training_arguments(workspace=PROJECT, method="mixup")


def creations(server: KfpApi) -> list[dict]:
    return [r for r in server.requests if r["method"] == "POST"]


def test_an_older_backend_is_refused_in_one_line_before_anything_is_created(
    token, arguments, capsys
):
    from pipeline.run import submit

    server = VersionedKfpApi(TOKEN, "2.4.0")
    with serving(server) as url, pytest.raises(BackendTooOld) as refused:
        submit(url, arguments, "adautomix", "run-1", preflight=False)
    message = str(refused.value)
    assert "\n" not in message
    assert f"Kubeflow Pipelines at {url} runs backend 2.4.0" in message
    assert "needs 2.15.0 or newer" in message and "secretAsEnv[].optional" in message
    assert "upgrade Kubeflow Pipelines to 2.15.0 or newer" in message
    assert creations(server) == []  # no experiment, no pipeline, no run
    # behind a Kubeflow login the version is read with the run's credentials
    assert server.requests and {r["authorization"] for r in server.requests} == {f"Bearer {TOKEN}"}
    assert all(r["path"].startswith("/apis/v2beta1/healthz") for r in server.requests)
    assert TOKEN not in capsys.readouterr().err


@pytest.mark.parametrize("tag_name", ["2.15.0", "2.17.3"])
def test_a_backend_of_the_minimum_or_newer_gets_the_run(tag_name, token, arguments):
    from pipeline.run import submit

    server = VersionedKfpApi(TOKEN, tag_name)
    with serving(server) as url:
        assert submit(url, arguments, "adautomix", "run-1", preflight=False) == "run-1"
    assert any(r["path"].endswith("/runs") for r in creations(server))


def test_a_backend_that_does_not_report_its_release_gets_the_run_and_a_note(
    token, arguments, capsys
):
    from pipeline.run import submit

    server = VersionedKfpApi(TOKEN, "unknown")
    with serving(server) as url:
        assert submit(url, arguments, "adautomix", "run-1", preflight=False) == "run-1"
    err = capsys.readouterr().err
    assert f"note: Kubeflow Pipelines at {url} does not report its version" in err
    assert "needs backend 2.15.0 or newer" in err


def test_the_command_line_exits_1_with_the_line(token, capsys):
    from pipeline.cli import main

    server = VersionedKfpApi(TOKEN, "2.5.0")
    with serving(server) as url:
        status = main(
            ["submit", "--host", url, "--run-name", "r", "--no-preflight"]
            + ["--workspace", str(PROJECT), "--method", "mixup"]
        )
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 1
    assert err[-1].startswith(f"error: Kubeflow Pipelines at {url} runs backend 2.5.0")
    assert creations(server) == []
