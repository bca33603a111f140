"""Every Kubernetes manifest in the repository (deploy/ and the YAML blocks of the docs) validates
against the Kubernetes schemas kubernetes-validate ships (offline), strictly: an unknown or
misspelt field fails, for the oldest and the newest Kubernetes the docs name; and each
round-trips through the kubernetes client's typed model of its kind without losing a field."""

from __future__ import annotations

import re
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from tests.helpers import kubernetes_round_trip, lost_fields

ROOT = Path(__file__).resolve().parents[2]
KUBERNETES_VERSIONS = ("1.29.0", "1.37.0")  # docs/cluster.md: Kubernetes 1.29 or newer
FENCED_YAML = re.compile(r"^```ya?ml\n(.*?)^```", re.M | re.S)
HEREDOC_YAML = re.compile(r"<<'?YAML'?\n(.*?)^YAML$", re.M | re.S)


def manifests() -> list[tuple[str, dict]]:
    found = []
    for path in sorted((ROOT / "deploy").rglob("*.yaml")):
        found += [
            (str(path.relative_to(ROOT)), d) for d in yaml.safe_load_all(path.read_text()) if d
        ]
    for path in sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]:
        text = path.read_text()
        for block in FENCED_YAML.findall(text) + HEREDOC_YAML.findall(text):
            found += [
                (str(path.relative_to(ROOT)), d)
                for d in yaml.safe_load_all(block)
                if isinstance(d, dict) and "apiVersion" in d
            ]
    return found


def test_the_repository_has_the_manifests_the_docs_apply():
    kinds = {d["kind"] for _, d in manifests()}
    assert {
        "Namespace",
        "Deployment",
        "Service",
        "StatefulSet",
        "ConfigMap",
        "PersistentVolumeClaim",
        "ServiceAccount",
        "RoleBinding",
    } <= kinds


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_manifest_validates_strictly(version):
    for source, document in manifests():
        try:
            kubernetes_validate.validate(document, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(
                f"{source}: {document['kind']} {document['metadata'].get('name')}: "
                f"{'.'.join(map(str, error.path))}: {error.message}"
            )


def model_of(document: dict) -> str:
    """The kubernetes client's model of a manifest's kind: V1Deployment for apps/v1 Deployment."""
    version = document["apiVersion"].rsplit("/", 1)[-1]
    return f"{version[0].upper()}{version[1:]}{document['kind']}"


def test_every_manifest_round_trips_through_the_kubernetes_client_models():
    for source, document in manifests():
        back = kubernetes_round_trip(document, model_of(document))
        assert lost_fields(document, back) == [], f"{source}: {document['kind']}"


def test_a_misspelt_field_is_lost_in_the_round_trip_and_refused_by_the_schema():
    source, deployment = next((s, d) for s, d in manifests() if d["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    misspelt = {
        **deployment,
        "spec": {
            **deployment["spec"],
            "template": {
                **deployment["spec"]["template"],
                "spec": {**pod, "securityContex": pod["securityContext"]},
            },
        },
    }
    assert lost_fields(misspelt, kubernetes_round_trip(misspelt, "V1Deployment")) == [
        ".spec.template.spec.securityContex (dropped)"
    ], source
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(misspelt, KUBERNETES_VERSIONS[-1], strict=True)
