"""The pipelines the project compiles, once per session, for the tests that read every field of
them (tests/pipeline/test_backend_version.py, tests/pipeline/test_manifest_schemas.py)."""

from __future__ import annotations

import pytest

from tests.helpers import compiled_pipeline

# Every optional cluster flag that adds a field to a step's Kubernetes config.
EVERY_CLUSTER_FLAG = (
    "--image-pull-secret",
    "regcred",
    "--mlflow-ca-secret",
    "mlflow-ca",
    "--node-selector",
    "nvidia.com/gpu.product=NVIDIA-A100-SXM4-80GB",
    "--gpu-toleration",
    "example.com/gpu",
    "--step-timeout",
    "train=3600",
    "--pvc",
    "team-workspace",
    "--mlflow-ui-url",
    "https://mlflow.example.com",
)
# Default flags, several nodes, every cluster flag, a sweep with a parallelism limit.
PIPELINE_VARIANTS = {
    "default": ("--method", "mixup"),
    "several nodes": ("--method", "mixup", "--num-nodes", "2", "--num-gpus", "2"),
    "every cluster flag": ("--method", "mixup", *EVERY_CLUSTER_FLAG),
    "sweep": ("--sweep", "--methods", "mixup,cutmix", "--seeds", "0", "--parallelism", "2"),
}


@pytest.fixture(scope="session")
def compiled_pipelines(tmp_path_factory) -> dict[str, tuple[dict, dict]]:
    """Each of PIPELINE_VARIANTS compiled through the command line: (pipeline spec, platform
    spec). Shared: a test that changes one changes a copy."""
    return {
        name: compiled_pipeline(tmp_path_factory.mktemp(name.replace(" ", "-")), *flags)
        for name, flags in PIPELINE_VARIANTS.items()
    }
