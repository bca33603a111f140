"""What the pipeline layer builds, checked against the upstream definitions rather than stand-ins:
each compiled pipeline (tests/pipeline/conftest.py) parses into kfp's own protobuf messages with
unknown fields refused (its pipeline spec, its platform spec, and every step's Kubernetes config
as kfp-kubernetes' KubernetesExecutorConfig, the message the backend's driver parses) and back
without losing a field; the workspace claim `submit` creates validates strictly against the
Kubernetes schemas and round-trips through the kubernetes client's model. (The TrainJob and
PyTorchJob: tests/pipeline/test_trainjob.py, test_pytorchjob.py; deploy/: tests/deploy/.)"""

from __future__ import annotations

import copy

import kubernetes_validate
import pytest
from google.protobuf import json_format
from kfp.kubernetes import kubernetes_executor_config_pb2
from kfp.pipeline_spec import pipeline_spec_pb2

from tests.helpers import kubernetes_round_trip, lost_fields
from tests.pipeline.pod_security import KUBERNETES_VERSIONS


def protobuf_round_trip(document: dict, message) -> dict:
    """`document` parsed into the protobuf `message` strictly (an unknown field raises
    ParseError) and written back as the compiler writes it."""
    parsed = json_format.ParseDict(document, message, ignore_unknown_fields=False)
    return json_format.MessageToDict(parsed)


def executor_configs(platform: dict) -> dict[str, dict]:
    return platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]


def test_every_step_s_kubernetes_config_is_kfp_kubernetes_own_message(compiled_pipelines):
    for variant, (spec, platform) in compiled_pipelines.items():
        configs = executor_configs(platform)
        assert configs, variant  # every pipeline configures its steps' pods
        for name, config in configs.items():
            message = kubernetes_executor_config_pb2.KubernetesExecutorConfig()
            assert lost_fields(config, protobuf_round_trip(config, message)) == [], (variant, name)
        for document, message in (
            (platform, pipeline_spec_pb2.PlatformSpec()),
            (spec, pipeline_spec_pb2.PipelineSpec()),
        ):
            assert lost_fields(document, protobuf_round_trip(document, message)) == [], variant


def test_a_field_kfp_kubernetes_does_not_define_fails_the_check(compiled_pipelines):
    _, platform = compiled_pipelines["default"]
    config = copy.deepcopy(executor_configs(platform)["exec-train"])
    config["secretAsEnv"][1]["optionnal"] = True  # misspelt: a driver would reject or drop it
    with pytest.raises(json_format.ParseError, match="optionnal"):
        protobuf_round_trip(config, kubernetes_executor_config_pb2.KubernetesExecutorConfig())


def workspace_claim() -> dict:
    from kubernetes.client import ApiClient

    from pipeline.cluster_settings import ClusterSettings
    from pipeline.preflight import workspace_claim as build

    cluster = ClusterSettings(storage_class="fast-rwx", workspace_size="20Gi")
    sent = ApiClient().sanitize_for_serialization(build(cluster))
    # the API server takes the kind from the path it is posted to (.../persistentvolumeclaims)
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", **sent}


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_the_workspace_claim_submit_creates_is_a_valid_claim(version):
    claim = workspace_claim()
    kubernetes_validate.validate(claim, version, strict=True)
    assert lost_fields(claim, kubernetes_round_trip(claim, "V1PersistentVolumeClaim")) == []
    misspelt = copy.deepcopy(claim)
    misspelt["spec"]["storageClass"] = misspelt["spec"].pop("storageClassName")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(misspelt, version, strict=True)
    assert lost_fields(misspelt, kubernetes_round_trip(misspelt, "V1PersistentVolumeClaim"))
