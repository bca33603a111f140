"""Kubeflow Pipelines components, one file per step (data, train, evaluate, register; the train
step's component for several nodes is train_job.py), each a thin adapter: arguments in, calls
into the adautomix package, artifacts out.

Every component is a lightweight Python component that runs in one image, built from docker/ and
named in docker/IMAGE (ADAUTOMIX_IMAGE overrides it; so does `--image` when compiling, per
task). The image holds the package and all its dependencies, so no step installs anything at
run time; on one machine kfp.local runs the same functions in the current environment."""

import os
from pathlib import Path

IMAGE_FILE = Path(__file__).resolve().parents[1] / "docker" / "IMAGE"


def _image() -> str:
    if os.environ.get("ADAUTOMIX_IMAGE"):
        return os.environ["ADAUTOMIX_IMAGE"]
    if not IMAGE_FILE.exists():
        raise RuntimeError(
            f"{IMAGE_FILE} is missing: the components take their image name from "
            "docker/IMAGE in the project checkout (pip install -e .), or from "
            "ADAUTOMIX_IMAGE"
        )
    return IMAGE_FILE.read_text().strip()


BASE_IMAGE = _image()
