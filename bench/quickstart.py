"""The README's main job, timed and scored: wall time of the whole local pipeline, each step's
share, and the registered champion's figures, against the quickstart's goal (at most 5 minutes
on 2 quiet CPU cores, champion at least 85 % top-1 on the full Fashion-MNIST test split).

It runs exactly what `scripts/quickstart.sh` runs after set-up (`python -m pipeline run --local
--preset fashion-mnist-quickstart --num-gpus 0 --experiment quickstart-pipeline`), in a scratch
workspace with a fresh MLflow store (bench/workspace.py), so no earlier checkpoint is resumed and
no earlier champion is compared against. About 5 minutes.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python bench/quickstart.py
    .venv/bin/python bench/quickstart.py --dry-run   # compile the same pipeline, run nothing
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from workspace import ROOT, fresh_workspace

GOAL_SECONDS, GOAL_TOP1 = 300, 85.0
MODEL = "adautomix-fashion-mnist"
# kfp.local's lines: "06:09:05.290 - INFO - Executing task 'data'" (the name in colour codes)
STEP = re.compile(
    r"(\d\d:\d\d:\d\d\.\d+) - INFO - (?:Executing task|Task) '(\w+)'"
    r"(?: finished)?"
)
COLOUR = re.compile(r"\x1b\[[0-9;]*m")


def step_seconds(log: str) -> dict[str, float]:
    """Each pipeline step's wall seconds, from its start and finish lines."""
    started, seconds = {}, {}
    for line in COLOUR.sub("", log).splitlines():
        match = STEP.search(line)
        if not match:
            continue
        at, step = datetime.strptime(match[1], "%H:%M:%S.%f"), match[2]
        if "finished" in line:
            seconds[step] = (at - started.pop(step)).total_seconds()
        else:
            started[step] = at
    return seconds


def champion_figures(env: dict[str, str]) -> dict[str, float]:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"])
    run = client.get_run(client.get_model_version_by_alias(MODEL, "champion").run_id)
    return run.data.metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("extra", nargs="*", help="more `pipeline run` flags, after --")
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="compile the pipeline with the same flags (the check the test "
        "suite runs) and parse a kfp.local log line; run nothing",
    )
    args = parser.parse_args()
    flags = [
        "--preset",
        "fashion-mnist-quickstart",
        "--num-gpus",
        "0",
        "--experiment",
        "quickstart-pipeline",
        *args.extra,
    ]
    if args.dry_run:
        with tempfile.TemporaryDirectory() as scratch:
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pipeline",
                    "compile",
                    *flags,
                    "--output",
                    str(Path(scratch) / "pipeline.yaml"),
                ],
                cwd=ROOT,
                check=True,
                stdout=subprocess.DEVNULL,
            )
        log = (
            "06:09:05.290 - INFO - Executing task \x1b[96m'train'\x1b[0m\n"
            "06:11:05.790 - INFO - Task \x1b[96m'train'\x1b[0m finished with status SUCCESS"
        )
        print(f"dry run: the pipeline compiles; a kfp.local log reads as {step_seconds(log)}")
        return
    scratch = Path(tempfile.mkdtemp(prefix="quickstart-"))
    try:
        workspace, env = fresh_workspace(scratch)
        command = [sys.executable, "-m", "pipeline", "run", "--local", *flags]
        print(
            f"load average before: {os.getloadavg()[0]:.2f}; running: {' '.join(command[1:])}",
            flush=True,
        )
        started = time.perf_counter()
        done = subprocess.run(
            command,
            cwd=workspace,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        wall = time.perf_counter() - started
        if done.returncode:
            print(done.stdout[-3000:])
            sys.exit(f"the pipeline failed (exit {done.returncode}) after {wall:.0f} s")
        steps = step_seconds(done.stdout)
        metrics = champion_figures(env)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    print(
        f"wall, whole pipeline: {wall:.0f} s ({wall // 60:.0f} min {wall % 60:.0f} s); "
        "steps: "
        + ", ".join(f"{name} {s:.0f} s" for name, s in steps.items())
        + f"; before the first step {wall - sum(steps.values()):.0f} s"
    )
    for name in (
        "model_val_top1",
        "model_test_top1",
        "test_top1",
        "test_top1_ema",
        "test_top1_ema_median10",
        "selected_epoch",
    ):
        print(f"champion {name}: {metrics[name]:g}")
    met = wall <= GOAL_SECONDS and metrics["model_test_top1"] >= GOAL_TOP1
    print(
        f"goal (<= {GOAL_SECONDS} s, champion >= {GOAL_TOP1} % test top-1): "
        f"{'met' if met else 'NOT met'}"
    )


if __name__ == "__main__":
    main()
