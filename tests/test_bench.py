"""Every benchmark script runs, so none can rot unnoticed (bench/distributed.py did, when
ModelEma.update gained its step): each script under bench/ with its smallest arguments on the
CPU, as a user would start it, and bench/gpu.sh in its smoke mode (its parts with tiny sizes),
which covers the scripts it runs. The figures of these runs mean nothing; the runs must finish."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
# Run by bench/gpu.sh --smoke (test_gpu_script_smoke_runs_every_part)
IN_GPU_SCRIPT = {"step_cost.py", "epoch.py", "distributed.py"}
MODULES = {"workspace.py"}  # imported by the scripts, not run


def tiny_runs(fmnist_root: Path, tmp_path: Path) -> dict[str, tuple[list[str], str]]:
    """script -> (its smallest arguments, a line its output must hold)."""
    data_root = tmp_path / "data"  # loaders.py writes its JPEGs beside the prepared datasets
    data_root.mkdir()
    (data_root / "fashion-mnist").symlink_to(fmnist_root / "fashion-mnist")
    return {
        "loaders.py": (
            [
                "--tiny",
                "--data-root",
                str(data_root),
                "--rounds",
                "1",
                "--fmnist-subset",
                "64",
                "--jpeg-images",
                "10",
                "--wait-subset",
                "48",
            ],
            "| memory |",
        ),
        "pass_cost.py": (
            [
                "--width",
                "4",
                "--batch-size",
                "2",
                "--image-size",
                "16",
                "--num-classes",
                "4",
                "--repeats",
                "1",
                "--threads",
                "1",
            ],
            "AdAutoMix (N >= 3): floor",
        ),
        "robustness.py": (["--images", "10", "--batch-size", "10", "--threads", "1"], "one call"),
        "pipeline_overhead.py": (
            ["--dry-run", "--method", "vanilla", "--epochs", "1", "--subset", "100"],
            "the pipeline compiles",
        ),
        "quickstart.py": (["--dry-run"], "{'train': 120.5}"),
    }


def environment() -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "OMP_NUM_THREADS": "1",
    }


def test_every_script_has_a_smoke_run(fmnist_root, tmp_path):
    scripts = {p.name for p in BENCH.glob("*.py")} - MODULES
    assert scripts == set(tiny_runs(fmnist_root, tmp_path)) | IN_GPU_SCRIPT


@pytest.mark.parametrize(
    "script",
    ["loaders.py", "pass_cost.py", "robustness.py", "pipeline_overhead.py", "quickstart.py"],
)
def test_a_bench_script_runs_with_its_smallest_arguments(script, fmnist_root, tmp_path):
    arguments, expected = tiny_runs(fmnist_root, tmp_path)[script]
    result = subprocess.run(
        [sys.executable, str(BENCH / script), *arguments],
        cwd=tmp_path,
        env=environment(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert expected in result.stdout, result.stdout[-3000:]


def test_the_gpu_script_parses_and_says_so_where_there_is_no_gpu(tmp_path):
    assert subprocess.run(["bash", "-n", str(BENCH / "gpu.sh")]).returncode == 0
    # no nvidia-smi on the PATH: as on a machine without a GPU
    env = {**environment(), "PATH": "/usr/bin:/bin", "OUT": str(tmp_path / "out")}
    result = subprocess.run(
        ["bash", str(BENCH / "gpu.sh")], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0
    assert result.stdout.startswith("bench/gpu.sh: no GPU here")
    assert not (tmp_path / "out").exists()


def test_gpu_script_smoke_runs_every_part(tmp_path):
    out = tmp_path / "out"
    env = {**environment(), "OUT": str(out), "PYTHON": sys.executable}
    result = subprocess.run(
        ["bash", str(BENCH / "gpu.sh"), "--smoke"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "every part ran" in result.stdout and "!!" not in result.stdout
    assert (out / "summary.txt").read_text() == result.stdout
    steps = json.loads((out / "step_cost_b4.json").read_text())["figures"]
    assert {(f["method"], f["precision"]) for f in steps} == {
        (m, p) for m in ("vanilla", "mixup") for p in ("fp32", "bf16")
    }
    assert all(f["step_ms"] > 0 for f in steps)
    epochs = json.loads((out / "epoch.json").read_text())
    assert [(f["method"], f["precision"]) for f in epochs["figures"]] == [("vanilla", "bf16")]
    assert all(f["train_s"] > 0 and f["test_one_network_s"] > 0 for f in epochs["figures"])
    assert "plain" in result.stdout and "torchrun×1" in result.stdout  # distributed.py's table
