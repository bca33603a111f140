"""Every Kubernetes manifest in the repository (deploy/ and the YAML blocks of the docs) validates
against the Kubernetes schemas kubernetes-validate ships (offline), strictly: an unknown or
misspelt field fails, for the oldest and the newest Kubernetes the docs name."""

from __future__ import annotations

import re
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

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
