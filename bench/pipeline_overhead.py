"""The local pipeline's wall time against a direct `adautomix train` plus `adautomix evaluate`
on the same configuration.

Both sides run as the user would run them, as CLI processes, against one fresh SQLite MLflow
store, on the same prepared Fashion-MNIST:
- direct: `adautomix train ...` then `adautomix evaluate OUTPUT_DIR`;
- pipeline: `python -m pipeline run --local ...` in a DVC workspace seeded from this checkout
  whose data is already in the DVC cache (the steady state; the first run also caches it).
Each repeat starts from no checkpoint, and the two sides alternate so that a shared machine's
drifts hit both. Besides wall time, each side's CPU time (user + system, summed over every process
it started) is reported: on a machine other jobs share it moves far less than wall time. The
pipeline does more than the direct pair (the DVC check, a confusion matrix, logging the model
with its signature, registering it), so its extra time is mostly fixed: the overhead shrinks as
the training grows.

    python bench/pipeline_overhead.py                      # AdAutoMix, 2 epochs x 500 images
    python bench/pipeline_overhead.py --subset 500 --epochs 1 --method mixup --repeats 2
    python bench/pipeline_overhead.py --dry-run     # check both sides' flags, run nothing

--dry-run (tests/test_bench.py) builds both sides' configs from their command lines, the direct
one through `adautomix train`'s parser and the pipeline one by compiling the pipeline with the
same flags, so a renamed flag or field fails here too; it trains nothing.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from workspace import ROOT, fresh_workspace

CLI = [sys.executable, "-m", "adautomix.cli"]
PIPELINE = [sys.executable, "-m", "pipeline"]  # the pipeline layer is not installed: PYTHONPATH


def timed(*commands: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds and CPU seconds of running the commands one after the other."""
    started, cpu = time.perf_counter(), _children_cpu()
    for command in commands:
        subprocess.run(
            command,
            cwd=cwd,
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    return time.perf_counter() - started, _children_cpu() - cpu


def _children_cpu() -> float:
    # every descendant that has been waited for, grandchildren (the pipeline's steps) included
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def dry_run(run: list[str]) -> None:
    """Both sides' configs built from their flags, without training."""
    from adautomix.cli import build_parser, config_from_args

    config = config_from_args(build_parser().parse_args(["train", *run, "--no-progress"]))
    with tempfile.TemporaryDirectory() as scratch:
        subprocess.run(
            [
                *PIPELINE,
                "compile",
                *run,
                "--num-gpus",
                "0",
                "--output",
                str(Path(scratch) / "pipeline.yaml"),
            ],
            cwd=ROOT,
            check=True,
            stdout=subprocess.DEVNULL,
        )
    print(
        f"dry run: direct side {config.method} {config.model} {config.epochs} epoch(s) x "
        f"{config.subset} images; the pipeline compiles with the same flags"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", default="adautomix")
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--subset", type=int, default=500)
    parser.add_argument("--test-subset", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="check both sides' command lines and exit; trains nothing",
    )
    args = parser.parse_args()
    run = [
        "--dataset",
        "fashion-mnist",
        "--model",
        args.model,
        "--method",
        args.method,
        "--epochs",
        str(args.epochs),
        "--subset",
        str(args.subset),
        "--test-subset",
        str(args.test_subset),
        "--batch-size",
        str(args.batch_size),
        "--lr",
        str(args.lr),
        "--experiment",
        "overhead",
    ]
    if args.dry_run:
        dry_run(run)
        return

    scratch = Path(tempfile.mkdtemp(prefix="pipeline-overhead-"))
    workspace, env = fresh_workspace(scratch)
    results = {"direct": [], "pipeline": []}
    try:
        for repeat in range(args.repeats):
            out = scratch / f"direct-{repeat}"
            train = [
                *CLI,
                "train",
                *run,
                "--data-root",
                str(workspace / "data"),
                "--output-dir",
                str(out),
                "--no-progress",
            ]
            shutil.rmtree(workspace / "runs", ignore_errors=True)
            sides = {
                "direct": lambda train=train, out=out: timed(
                    train, [*CLI, "evaluate", str(out)], cwd=scratch, env=env
                ),
                "pipeline": lambda: timed(
                    [*PIPELINE, "run", "--local", *run, "--num-gpus", "0"], cwd=workspace, env=env
                ),
            }
            for name in sorted(sides, reverse=repeat % 2 == 1):
                wall, cpu = sides[name]()
                results[name].append((wall, cpu))
                print(
                    f"repeat {repeat + 1} {name:8s} wall {wall:7.1f} s  cpu {cpu:7.1f} s",
                    flush=True,
                )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(
        f"\n{args.method}, {args.model}, {args.epochs} epochs x {args.subset} images, "
        f"test {args.test_subset}, batch {args.batch_size}, {args.repeats} repeat(s), median:"
    )
    for index, kind in enumerate(("wall", "cpu")):
        d = statistics.median(r[index] for r in results["direct"])
        p = statistics.median(r[index] for r in results["pipeline"])
        print(
            f"{kind:4s}: direct train + evaluate {d:.1f} s, local pipeline {p:.1f} s: "
            f"overhead {p - d:+.1f} s ({100 * (p / d - 1):+.1f} %)"
        )


if __name__ == "__main__":
    main()
