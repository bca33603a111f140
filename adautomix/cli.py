"""The front door: `adautomix train | evaluate | presets | data prepare | data verify | compare`.

The Kubeflow pipeline has its own front door in the pipeline layer (`python -m pipeline compile |
run --local | submit`, pipeline/cli.py): the package never imports the layers built on it.

Every RunConfig field is a flag of `train` (`--batch-size 64`), made from the field
(adautomix/config_flags.py); a preset, a saved config file and the flags stack in that order, the
later winning."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .command_runner import run_command
from .config import DATASETS, EVAL_METRICS, ConfigError, RunConfig
from .config_flags import add_run_flags, run_values
from .errors import DEBUG_ENV, one_line

# The corrupted test sets `data prepare` makes (adautomix/data/corrupted.py): array datasets only.
CORRUPTED_DATASETS = tuple(
    f"{name}-c" for name in ("fashion-mnist", "cifar10", "cifar100", "tiny-imagenet")
)


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """The preset, then the saved config (--config), then the flags."""
    from .steps.checks import build_config

    preset, saved, values = run_values(args)
    return build_config(preset, saved=saved, **values)


def cmd_train(args: argparse.Namespace) -> int:
    from .engine.distributed import ranks_from_environment
    from .engine.train import train

    config = config_from_args(args)
    result = train(
        config,
        resume={"auto": True, "must": "must", None: False}[args.resume],
        allow_code_change=args.allow_code_change,
    )
    if not ranks_from_environment().is_main:  # under torchrun: rank 0 reports for all
        return 0
    m = result.metrics
    print(
        f"\nfinished: test top-1 {m['test_top1']:.2f}% (online)"
        + (
            f", {m['test_top1_ema']:.2f}% (EMA; median of last 10 epochs "
            f"{m['test_top1_ema_median10']:.2f}%)"
            if "test_top1_ema" in m
            else ""
        )
        + (f"; validation selects epoch {m['selected_epoch']}" if "val_top1" in m else "")
    )
    print(f"checkpoint and config: {result.output_dir.resolve()}")
    from .tracking import display_uri

    print(f"MLflow run {result.run_id} in {display_uri()}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .engine.saved_run import evaluate_networks, load_run, log_report
    from .eval import check_metrics

    metrics = check_metrics(args.metrics.split(","))  # before anything is loaded
    subset = args.test_subset
    if args.subset_before_rename is not None:
        print(
            "warning: evaluate's --subset is now --test-subset (train's --subset counts "
            "training images)",
            file=sys.stderr,
        )
        subset = args.subset_before_rename if subset is None else subset
    if subset is not None and subset < 0:
        raise ConfigError(f"--test-subset must be >= 0 (0: the whole test split), got {subset}")
    run = load_run(args.run_dir, args.device, subset=subset)
    report = evaluate_networks(run, metrics, progress=True)
    print(json.dumps(report.metrics, indent=2, sort_keys=True))
    if run.run_id is None or args.no_log:
        print(
            "not logged to MLflow"
            + (
                ""
                if args.no_log
                else ": the checkpoint names no MLflow run (it was trained without tracking)"
            )
        )
        return 0
    from .tracking import Tracker, display_uri

    tracker = Tracker(run.config, run.manifest.sha256, run_id=run.run_id)
    try:
        log_report(tracker, report, step=run.config.epochs)
        tracker.set_tags(
            {"eval_test_subset": str(run.loader.subset), "eval_metrics": ",".join(metrics)}
        )
    except BaseException:
        tracker.finish("FAILED")
        raise
    tracker.finish(tracker.previous_status or "FINISHED")
    print(f"logged as test_* to MLflow run {run.run_id} in {display_uri()}")
    return 0


def cmd_presets(args: argparse.Namespace) -> int:
    from .mixers import available_methods, method_defaults
    from .presets import PRESETS, SWEEPS, get_preset

    if args.methods:
        for name in available_methods():
            print(f"{name:12s} {json.dumps(method_defaults(name))}")
    elif args.name:
        print(json.dumps(get_preset(args.name).to_dict(), indent=2, sort_keys=True))
        if args.name in SWEEPS:  # on stderr: stdout stays a config file --config reads
            sweep = SWEEPS[args.name]
            print(
                f"sweep ({sweep.sized_for}): methods {','.join(sweep.methods)}; seeds "
                f"{','.join(map(str, sweep.seeds))}; method options "
                f"{json.dumps(sweep.method_args, sort_keys=True)}; test metrics "
                f"{','.join(sweep.test_metrics)}",
                file=sys.stderr,
            )
    else:
        for name, preset in PRESETS.items():
            sweep = SWEEPS.get(name)
            print(
                f"{name:28s} {preset.dataset:14s} {preset.model:14s} {preset.method:10s} "
                f"{preset.epochs:4d} epochs"
                + (
                    f"  (sweep: {len(sweep.methods)} methods x {len(sweep.seeds)} seeds)"
                    if sweep
                    else ""
                )
            )
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    from .data import prepare, verify

    if args.data_command == "prepare" and args.name in CORRUPTED_DATASETS:
        from .data.corrupted import prepare_corrupted

        manifest = prepare_corrupted(
            args.name, source=args.source, data_root=args.data_root, force=args.force, progress=True
        )
        print(
            f"{args.name}: {len(manifest.counts)} corrupted test sets of "
            f"{next(iter(manifest.counts.values()))} images in "
            f"{Path(args.data_root, args.name).resolve()}\ncontent hash {manifest.sha256}"
            f"\nversion it with: dvc add {Path(args.data_root, args.name)}"
        )
    elif args.data_command == "prepare":
        manifest = prepare(
            args.name, source=args.source, data_root=args.data_root, force=args.force
        )
        print(
            f"{args.name}: {manifest.counts} images in {Path(args.data_root, args.name).resolve()}"
            f"\ncontent hash {manifest.sha256}"
        )
    else:
        manifest = verify(args.name, data_root=args.data_root)
        print(f"{args.name}: content hash {manifest.sha256} verified")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from .compare import CompareError, compare
    from .tracking import TrackingError

    chart = None if args.no_chart else args.chart or f"compare-{args.experiment}.png"
    try:
        print(
            compare(
                args.experiment,
                chart,
                args.format,
                metric=_names(args.metric),
                robustness=None if args.robustness is None else _names(args.robustness),
                ignore=_names(args.ignore),
            )
        )
    except (TrackingError, CompareError) as exc:
        print(one_line(exc), file=sys.stderr)
        return 1
    if chart is not None:  # on stderr, so that stdout is the table alone (a CSV to redirect)
        print(f"bar chart: {Path(chart).resolve()}", file=sys.stderr)
    return 0


def cmd_results(args: argparse.Namespace) -> int:
    from .presets import SWEEPS
    from .results import sweep_command, write_results

    sweep = None
    if args.preset:
        if args.preset not in SWEEPS:
            raise ConfigError(f"unknown sweep preset {args.preset!r}; valid: {', '.join(SWEEPS)}")
        sweep = SWEEPS[args.preset]
    experiment = args.experiment or (sweep.run.experiment if sweep else "")
    if not experiment:
        raise ConfigError("name the sweep: --preset NAME (adautomix presets) or --experiment")
    methods = _names(args.methods) if args.methods else (sweep.methods if sweep else ())
    seeds = (
        [int(s) for s in _names(args.seeds)] if args.seeds else list(sweep.seeds if sweep else [])
    )
    page = write_results(
        experiment,
        args.output,
        methods=methods,
        seeds=seeds,
        command=args.command_text or (sweep_command(args.preset, args.output) if sweep else ""),
        title=f"Results: {sweep.name} ({sweep.sized_for})" if sweep else "",
        pilots=sweep.pilots if sweep else (),
        preset=args.preset,
    )
    print(f"wrote {page.resolve()} and {page.with_suffix('').resolve()}/")
    return 0


def _names(text: str) -> tuple[str, ...]:
    return tuple(n.strip() for n in text.split(",") if n.strip())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="adautomix",
        description="Adversarial AutoMixup and the mixup baselines of its paper. "
        "Quick start: adautomix train --dataset fashion-mnist --method adautomix --epochs 1 "
        "--subset 2000",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument(
        "--debug",
        action="store_true",
        help=f"show the traceback behind an error line (or set {DEBUG_ENV}=1)",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "train",
        help="train a network with a mixing method",
        description="Train, evaluate every epoch, checkpoint every epoch, log to MLflow "
        "(MLFLOW_TRACKING_URI, default sqlite:///mlflow.db).",
    )
    p.add_argument(
        "--resume",
        nargs="?",
        const="auto",
        choices=("auto", "must"),
        help="continue from output_dir/checkpoint.pt, in the same MLflow run, under "
        "the config it was written with (epochs, workers and logging may "
        "change); with no checkpoint, say so and start anew. `--resume must` "
        "fails instead",
    )
    p.add_argument(
        "--allow-code-change",
        action="store_true",
        help="let --resume continue a checkpoint that another code version (package "
        "version and git commit) wrote; recorded in the run's resume_changes",
    )
    add_run_flags(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser(
        "evaluate",
        help="evaluate a trained run's online and EMA networks",
        description="Clean accuracy, robustness (corruptions, FGSM, occlusion) and "
        "calibration of a run's online and EMA networks on the test "
        "split, logged to the run's MLflow record as test_NAME and "
        "test_NAME_ema, with reliability, occlusion and corruption "
        "figures. What each metric reports: docs/evaluation.md.",
    )
    p.add_argument("run_dir", help="a training output_dir (holds config.json and checkpoint.pt)")
    p.add_argument(
        "--metrics",
        default=",".join(EVAL_METRICS),
        help="comma-separated metrics, each NAME or NAME:KEY=VALUE[:KEY=VALUE] "
        f"(lists joined by +); names: {', '.join(EVAL_METRICS)} [all of them]; "
        "e.g. top1,fgsm:epsilon=0.0157,corruption:severities=1+5",
    )
    p.add_argument(
        "--test-subset",
        type=int,
        metavar="N",
        help="evaluate on the first N test images, every metric on the same ones (0: the "
        "whole test split) [the run's test_subset]",
    )
    # the name before it said which split it counts; still read, with a warning
    p.add_argument("--subset", dest="subset_before_rename", type=int, help=argparse.SUPPRESS)
    p.add_argument("--device", default="auto", help="auto, cpu or cuda [auto]")
    p.add_argument("--no-log", action="store_true", help="print the metrics, log nothing")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("presets", help="list the official recipes, or print one")
    p.add_argument("name", nargs="?", help="print this preset's full config")
    p.add_argument("--methods", action="store_true", help="list every method and its options")
    p.set_defaults(func=cmd_presets)

    p = sub.add_parser("data", help="prepare or verify a dataset")
    data_sub = p.add_subparsers(dest="data_command", required=True)
    q = data_sub.add_parser(
        "prepare", help="write a dataset once in the canonical format under DATA_ROOT/NAME"
    )
    q.add_argument(
        "name",
        choices=DATASETS + CORRUPTED_DATASETS,
        help="a dataset, or NAME-c: its test split under the 19 CIFAR-C corruptions "
        "× 5 severities (cifar10-c / cifar100-c read the official arrays from "
        "--source; without --source they are generated from NAME)",
    )
    q.add_argument("--source", help="the raw dataset's folder (Fashion-MNIST needs none)")
    q.add_argument("--data-root", default="data")
    q.add_argument("--force", action="store_true", help="rewrite it even if it exists")
    q = data_sub.add_parser(
        "verify", help="recompute the content hash and compare with the manifest"
    )
    q.add_argument("name", choices=DATASETS + CORRUPTED_DATASETS)
    q.add_argument("--data-root", default="data")
    p.set_defaults(func=cmd_data)

    from .compare import FORMATS, HEADLINE

    p = sub.add_parser(
        "compare",
        help="the paper-style tables of an MLflow experiment's runs",
        description="One table per setting (runs pool only when their whole "
        "config but the seed and the method is the same): per method "
        "the seeds, mean ± std, the Δ to Vanilla and the robustness "
        "metrics, the best in bold; the latest run of each seed counts.",
    )
    p.add_argument("--experiment", required=True, help="MLflow experiment name")
    p.add_argument(
        "--format", choices=FORMATS, default="markdown", help="the tables' format [markdown]"
    )
    p.add_argument("--chart", help="bar chart PNG [compare-EXPERIMENT.png]")
    p.add_argument("--no-chart", action="store_true", help="write no bar chart")
    p.add_argument(
        "--metric",
        default=",".join(HEADLINE),
        help="the headline: the first of these metrics a run logged, comma-separated "
        f"[{','.join(HEADLINE)}]",
    )
    p.add_argument(
        "--robustness",
        metavar="NAMES",
        help="test metrics set beside the headline, comma-separated, e.g. "
        "corruption_top1,fgsm_error ('' for none) [every one the runs logged]",
    )
    p.add_argument(
        "--ignore",
        default="",
        metavar="FIELDS",
        help="config fields or tags to pool over, comma-separated, e.g. device "
        "(runs that differ only in them share a setting) [none]",
    )
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser(
        "results",
        help="a sweep's results page (tables, figures, CSV) from the MLflow store",
        description="Update the seed groups' summary runs of a sweep's experiment and write its "
        "page: per method mean ± std over seeds, Δ to Vanilla with a Welch p-value, the rank, "
        "robustness, the per-run cost, figures and a CSV beside the page (PAGE without .md/).",
    )
    p.add_argument(
        "--preset",
        default="",
        help="a sweep preset (adautomix presets): its experiment, methods and seeds",
    )
    p.add_argument("--experiment", default="", help="the MLflow experiment [the preset's]")
    p.add_argument(
        "--methods", default="", help="the methods the sweep meant to run [the preset's]"
    )
    p.add_argument("--seeds", default="", help="the seeds the sweep meant to run [the preset's]")
    p.add_argument("--output", default="docs/results.md", help="the page [docs/results.md]")
    p.add_argument("--command-text", default="", help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_results)
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_command(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
