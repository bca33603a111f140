"""Every component runs in the one image that docker/ builds, and installs nothing at run time.
The tests parse the Dockerfile (with BuildKit's own parser) and run its checks; the build itself
is docker/smoke.sh (make -C docker smoke), minutes long, outside the suite."""

from __future__ import annotations

import fnmatch
import subprocess
import sys
from pathlib import Path

import dockerfile
from kfp.dsl.base_component import BaseComponent

import components
from components import data, evaluate, register, train, train_job

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
INSTRUCTIONS = {
    "FROM",
    "ARG",
    "ENV",
    "WORKDIR",
    "COPY",
    "RUN",
    "LABEL",
    "USER",
    "ENTRYPOINT",
    "CMD",
    "EXPOSE",
    "VOLUME",
    "SHELL",
    "HEALTHCHECK",
    "ADD",
    "STOPSIGNAL",
    "ONBUILD",
}


def every_component() -> list[BaseComponent]:
    return [
        value
        for module in (data, train, train_job, evaluate, register)
        for value in vars(module).values()
        if isinstance(value, BaseComponent)
    ]


def test_every_component_uses_the_image_named_in_docker():
    image = (DOCKER / "IMAGE").read_text().strip()
    assert components.BASE_IMAGE == image
    found = every_component()
    assert {c.name for c in found} == {"data", "train", "evaluate", "register"}
    for component in found:
        container = component.component_spec.implementation.container
        assert container.image == image, component.name
        assert "pip install" not in " ".join(container.command + (container.args or []))


def test_the_dockerfile_copies_only_what_the_context_holds_and_installs_offline():
    commands = dockerfile.parse_file(str(DOCKER / "Dockerfile"))
    assert {c.cmd for c in commands} <= INSTRUCTIONS
    assert [c.cmd for c in commands if c.cmd not in ("ARG",)][0] == "FROM"
    ignored = [
        line
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    for command in (c for c in commands if c.cmd == "COPY"):
        for source in command.value[:-1]:
            assert (ROOT / source).exists(), f"the Dockerfile copies {source}, which does not exist"
            assert _kept(source, ignored), (
                f"the Dockerfile copies {source}, which .dockerignore leaves out"
            )
            assert source != "wheelhouse", "a copied wheelhouse stays in a layer: bind-mount it"
    runs = [c for c in commands if c.cmd == "RUN"]
    installs = [c for c in runs if "pip install" in c.value[0]]
    assert installs and all("--no-index" in c.value[0] for c in installs)  # never the network
    locked = next(c for c in installs if "-r requirements.lock" in c.value[0])
    assert "--require-hashes" in locked.value[0]
    assert "--mount=type=bind,source=wheelhouse,target=/wheelhouse" in locked.flags
    assert _kept("wheelhouse", ignored)  # the bind mount reads it from the context
    assert (
        "pip install --quiet --no-index --no-deps --no-build-isolation ." in installs[-1].value[0]
    )
    user = [c.value[0] for c in commands if c.cmd == "USER"]
    assert user and user[-1].split(":")[0].isdigit() and user[-1].split(":")[0] != "0"


def test_the_image_leaves_gpu_visibility_to_the_device_plugin():
    """NVIDIA_VISIBLE_DEVICES=all in the image would expose every GPU of a node to pods that
    requested none; the device plugin sets it per pod to the GPUs it allocated."""
    commands = dockerfile.parse_file(str(DOCKER / "Dockerfile"))
    env = [value for c in commands if c.cmd == "ENV" for value in c.value]
    assert env and not any("NVIDIA_VISIBLE_DEVICES" in value for value in env)
    assert "NVIDIA_DRIVER_CAPABILITIES" in env  # what the toolkit mounts stays named


def test_a_base_without_python_3_11_stops_the_build_at_once_saying_so(tmp_path):
    """The Dockerfile's own first RUN, in a shell whose python3 is 3.12."""
    check = next(
        c.value[0] for c in dockerfile.parse_file(str(DOCKER / "Dockerfile")) if c.cmd == "RUN"
    )
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "python3").write_text(
        f"#!/bin/sh\nexec /usr/bin/env -u PATH {sys.executable} -c 'import sys; "
        f'sys.exit(1)\' "$@"\n'
    )
    (fake / "python3").chmod(0o755)
    done = subprocess.run(
        ["sh", "-c", check],
        capture_output=True,
        text=True,
        env={"PATH": f"{fake}:/usr/bin:/bin", "PYTHON_IMAGE": "python:3.12-slim"},
    )
    assert done.returncode == 1
    assert "python:3.12-slim has no Python 3.11" in done.stderr
    passes = subprocess.run(
        ["sh", "-c", check],
        capture_output=True,
        text=True,
        env={"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"},
    )
    assert passes.returncode == 0, passes.stderr


def test_a_wheelhouse_missing_packages_names_each(tmp_path):
    lock = tmp_path / "requirements.lock"
    lock.write_text(
        f"antlr4-python3-runtime==4.9.3 \\\n    --hash=sha256:{'a' * 64}\n"
        f"torch==2.14.0 \\\n    --hash=sha256:{'b' * 64}\nzc-lockfile==4.0\n"
    )
    wheelhouse = tmp_path / "wheelhouse"
    wheelhouse.mkdir()
    (wheelhouse / "antlr4-python3-runtime-4.9.3.tar.gz").touch()
    (wheelhouse / "zc.lockfile-4.0-py3-none-any.whl").touch()
    (
        wheelhouse / "torch-2.13.0-cp311-cp311-manylinux_2_28_x86_64.whl"
    ).touch()  # not the pinned one
    check = [sys.executable, str(DOCKER / "check_wheelhouse.py"), str(lock), str(wheelhouse)]
    done = subprocess.run(check, capture_output=True, text=True)
    assert done.returncode == 1
    assert "lacks 1 package(s) of requirements.lock: torch==2.14.0" in done.stderr
    (wheelhouse / "torch-2.14.0-cp311-cp311-manylinux_2_28_x86_64.whl").touch()
    assert subprocess.run(check, capture_output=True).returncode == 0


def _kept(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last matching pattern wins; '!' re-includes."""
    kept = True
    for pattern in patterns:
        negated = pattern.startswith("!")
        if fnmatch.fnmatch(path, pattern.lstrip("!")) or path.startswith(pattern.lstrip("!") + "/"):
            kept = negated
    return kept


def test_make_builds_offline_with_docker_or_podman_and_pushes_the_one_name():
    image = (DOCKER / "IMAGE").read_text().strip()
    plan = subprocess.run(
        ["make", "-n", "-B", "-C", str(DOCKER), "push"], capture_output=True, text=True, check=True
    ).stdout
    assert "pip download" in plan and "--require-hashes" in plan  # the wheelhouse first
    assert "docker build  -f Dockerfile" in plan and f"-t {image} " in plan
    assert f"docker push {image}\n" in plan
    podman = subprocess.run(
        [
            "make",
            "-n",
            "-C",
            str(DOCKER),
            "build",
            "DOCKER=podman",
            "ISOLATION=chroot",
            "PYTHON_IMAGE=localhost/bookworm-python:3.11",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "podman build --isolation chroot -f Dockerfile" in podman
    assert "--build-arg PYTHON_IMAGE=localhost/bookworm-python:3.11" in podman


SMOKE_STAGES = ("build", "help", "data", "train", "evaluate", "register", "registered")


def smoke_report(tmp_path, lines: list[str]) -> subprocess.CompletedProcess:
    log = tmp_path / "smoke.log"
    log.write_text("\n".join(lines) + "\n")
    return subprocess.run(
        [sys.executable, str(DOCKER / "smoke_report.py"), str(log)], capture_output=True, text=True
    )


def test_the_smoke_report_passes_only_when_every_stage_ran_ok(tmp_path):
    size = "image localhost/adautomix:smoke size 8123456789 bytes"
    ok = [size] + [f"stage {s} ok {i + 1.5} s" for i, s in enumerate(SMOKE_STAGES)]
    passed = smoke_report(tmp_path, ok)
    assert passed.returncode == 0, passed.stderr
    assert "8.12 GB" in passed.stdout and "total" in passed.stdout
    failed = smoke_report(tmp_path, ok[:4] + ["stage evaluate FAILED 3.0 s (exit 1; log x)"])
    assert failed.returncode == 1
    assert (
        "stage evaluate failed" in failed.stderr and "stage register did not run" in failed.stderr
    )
    assert smoke_report(tmp_path, ok[1:]).returncode == 1  # no size printed
