"""Every component runs in the one image that docker/ builds, and installs nothing at run time.
No Docker engine runs here, so the Dockerfiles are parsed (with BuildKit's own parser) and
checked, not built."""

from __future__ import annotations

import fnmatch
import subprocess
from pathlib import Path

import dockerfile
import pytest
from kfp.dsl.base_component import BaseComponent

import components
from components import data, evaluate, register, train

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
INSTRUCTIONS = {"FROM", "ARG", "ENV", "WORKDIR", "COPY", "RUN", "LABEL", "USER", "ENTRYPOINT",
                "CMD", "EXPOSE", "VOLUME", "SHELL", "HEALTHCHECK", "ADD", "STOPSIGNAL", "ONBUILD"}


def every_component() -> list[BaseComponent]:
    return [value for module in (data, train, evaluate, register) for value in vars(module).values()
            if isinstance(value, BaseComponent)]


def test_every_component_uses_the_image_named_in_docker():
    image = (DOCKER / "IMAGE").read_text().strip()
    assert components.BASE_IMAGE == image
    found = every_component()
    assert {c.name for c in found} == {"data", "train", "evaluate", "register", "register-best"}
    for component in found:
        container = component.component_spec.implementation.container
        assert container.image == image, component.name
        assert "pip install" not in " ".join(container.command + (container.args or []))


@pytest.mark.parametrize("name", ["Dockerfile.gpu", "Dockerfile.cpu"])
def test_the_dockerfiles_parse_and_copy_only_what_the_context_holds(name):
    commands = dockerfile.parse_file(str(DOCKER / name))
    assert {c.cmd for c in commands} <= INSTRUCTIONS
    assert [c.cmd for c in commands if c.cmd not in ("ARG",)][0] == "FROM"
    ignored = [line for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line and not line.startswith("#")]
    for command in (c for c in commands if c.cmd == "COPY"):
        for source in command.value[:-1]:
            assert (ROOT / source).exists(), f"{name} copies {source}, which does not exist"
            assert _kept(source, ignored), f"{name} copies {source}, which .dockerignore leaves out"
    run = " ".join(c.value[0] for c in commands if c.cmd == "RUN")
    assert "requirements.lock" in run and "pip install --no-deps ." in run


def _kept(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last matching pattern wins; '!' re-includes."""
    kept = True
    for pattern in patterns:
        negated = pattern.startswith("!")
        if fnmatch.fnmatch(path, pattern.lstrip("!")) or path.startswith(pattern.lstrip("!") + "/"):
            kept = negated
    return kept


def test_make_push_builds_and_pushes_both_images_under_the_one_name():
    image = (DOCKER / "IMAGE").read_text().strip()
    plan = subprocess.run(["make", "-n", "-C", str(DOCKER), "push"], capture_output=True,
                          text=True, check=True).stdout
    assert "-f Dockerfile.gpu" in plan and f"-t {image} " in plan
    assert "-f Dockerfile.cpu" in plan and f"-t {image}-cpu " in plan
    assert f"docker push {image}\n" in plan and f"docker push {image}-cpu\n" in plan
