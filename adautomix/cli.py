"""The front door: `adautomix train | evaluate | presets | data prepare | data verify | compare`.

The Kubeflow pipeline has its own front door in the pipeline layer (`python -m pipeline compile |
run --local | submit`, pipeline/cli.py): the package never imports the layers built on it.

Every RunConfig field is a flag of `train` (`--batch-size 64`); a preset, a saved config file and
the flags stack in that order, the later winning."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from pathlib import Path
from typing import Any

from .config import (
    DATASETS,
    EVAL_METRICS,
    LOADERS,
    METHODS,
    MODELS,
    OPTIMIZERS,
    ConfigError,
    RunConfig,
    parse_override,
    upgrade_saved_config,
)
from .errors import DEBUG_ENV, debug_requested, exit_status, one_line
from .redact import redact_handlers

# The corrupted test sets `data prepare` makes (adautomix/data/corrupted.py): array datasets only.
CORRUPTED_DATASETS = tuple(
    f"{name}-c" for name in ("fashion-mnist", "cifar10", "cifar100", "tiny-imagenet")
)

HELP = {
    "dataset": f"dataset name: {', '.join(DATASETS)}",
    "model": f"network: {', '.join(MODELS)}",
    "method": f"training method: {', '.join(METHODS)}",
    "model_width": "CIFAR-stem ResNets: channels of the stem and first stage (0 = the paper's 64)",
    "pretrained": "start from torchvision's ImageNet weights (tv_* models; must be in TORCH_HOME)",
    "data_root": "folder holding prepared datasets (data_root/NAME/)",
    "subset": "train on the first N images of a fixed shuffle (0 = all); for quick runs",
    "test_subset": "the test split is its first N images (0 = all)",
    "epoch_test_subset": "each epoch's test figures during training on the first N test images "
    "only (0 = the whole test split); the selected networks are evaluated on all of it",
    "val_size": "hold out N training images (stratified) as the validation split that selects "
    "the checkpoint and judges the champion (0 = none: the paper's protocol)",
    "loader": f"data loader: {', '.join(LOADERS)}",
    "num_workers": "worker processes of the torch loader",
    "image_size": "side of the images fed to the network (0 = native for arrays, 224 for folders)",
    "train_crop": "auto, pad (reflect-padded random crop), flip (the whole image, flipped half "
    "the time) or rrc (RandomResizedCrop)",
    "crop_scale": "area fraction range of the rrc crop: LOW HIGH",
    "interpolation": "of every resize: bilinear or bicubic",
    "resize_before_crop": "rrc only: resize the shorter side to this first (0 = off)",
    "randaugment": "RandAugment (2 ops, magnitude 9) after the crop; torch and dali loaders",
    "normalize_mean": "per-channel mean in [0, 1], e.g. 0.485 0.456 0.406 (none: the dataset's "
    "own)",
    "normalize_std": "per-channel std in [0, 1], one value per channel like normalize_mean",
    "mix_block_lr": "AutoMix/AdAutoMix: the mix block's own lr, annealed to mix_block_min_lr (0 "
    "= the main lr)",
    "mix_block_min_lr": "cosine floor of mix_block_lr",
    "exclude_norm_bias_decay": "no weight decay on norms, biases and position tables (the ViT "
    "recipes)",
    "grad_clip": "clip the global gradient norm to this (0 = off)",
    "epochs": "training epochs",
    "batch_size": "images per optimiser step (under torchrun: the global batch, split over the "
    "processes)",
    "optimizer": f"{', '.join(OPTIMIZERS)}",
    "lr": "peak learning rate",
    "min_lr": "cosine floor of the learning rate",
    "warmup_epochs": "linear warm-up length in epochs",
    "lr_schedule_by": "'epoch' (lr changes once per epoch, as the official recipes) or 'step'",
    "momentum": "SGD momentum (AutoMix/AdAutoMix's teacher has its own: -o teacher_momentum=...)",
    "weight_decay": "weight decay",
    "label_smoothing": "label smoothing of the targets",
    "ema_decay": "decay of the EMA network evaluated every epoch (0 disables; AdAutoMix/AutoMix "
    "use their own teacher)",
    "ema_warmup": "warm the EMA's decay up as min(ema_decay, (1 + step) / (10 + step)), so a "
    "short run's EMA is not its random init",
    "precision": "fp32 (the paper's), bf16 (autocast; CPU or CUDA) or fp16 (autocast and loss "
    "scaling; CUDA only)",
    "eval_batch_size": "images per evaluation batch (0 = batch_size); larger is faster",
    "channels_last": "NHWC memory format for the networks (faster convolutions on CPU and GPU)",
    "sync_bn": "under torchrun: BatchNorm statistics over the whole global batch "
    "(SyncBatchNorm; CUDA only)",
    "seed": "random seed",
    "deterministic": "deterministic algorithms (slower; exact resume on GPU)",
    "device": "auto, cpu or cuda",
    "output_dir": "where config.json and checkpoint.pt are written",
    "experiment": "MLflow experiment name",
    "run_name": "MLflow run name",
    "log_images_every": "epochs between mixed-sample grids logged to MLflow (0 = never)",
    "progress": "show a progress bar",
    "nonfinite_loss_limit": "stop the run (FAILED, nothing checkpointed) once this many training "
    "losses were NaN or infinite; below it such a step is skipped",
    "checkpoint_minutes": "minutes between checkpoints within an epoch (0 = at epoch ends "
    "only); a SIGTERM also checkpoints, then stops",
    "method_args": "the method's options (-o KEY=VALUE)",
}


def add_run_flags(parser: argparse.ArgumentParser, leave_out: tuple[str, ...] = ()) -> None:
    """A flag for every RunConfig field but those in `leave_out` (`--batch-size 64`, lists as
    `--crop-scale 0.5 1`, booleans as `--progress/--no-progress`), with its help from HELP, and
    `-o KEY=VALUE` for the method's options: `adautomix train`'s flags, and the pipeline's."""
    group = parser.add_argument_group("run configuration (defaults in brackets)")
    defaults = RunConfig()
    for f in dataclasses.fields(RunConfig):
        if f.name == "method_args" or f.name in leave_out:
            continue
        default = getattr(defaults, f.name)
        flag = "--" + f.name.replace("_", "-")
        help_text = f"{HELP.get(f.name, '')} [{default}]"
        if isinstance(default, bool):
            group.add_argument(
                flag,
                dest=f.name,
                action=argparse.BooleanOptionalAction,
                default=argparse.SUPPRESS,
                help=help_text,
            )
        elif isinstance(default, list):
            group.add_argument(
                flag,
                dest=f.name,
                type=type(default[0]) if default else float,
                nargs=len(default) or "+",
                default=argparse.SUPPRESS,
                metavar=f.name.upper(),
                help=help_text,
            )
        else:
            group.add_argument(
                flag,
                dest=f.name,
                type=type(default),
                default=argparse.SUPPRESS,
                metavar=f.name.upper(),
                help=help_text,
            )
    group.add_argument(
        "-o",
        "--method-arg",
        dest="method_arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a method option, repeatable: -o alpha=0.2 -o mix_samples=3 "
        "(`adautomix presets --methods` lists them)",
    )


def flag_values(args: argparse.Namespace) -> dict[str, Any]:
    """The RunConfig fields given as flags (add_run_flags), and the method options given as
    `-o`, as `method_args`: what goes on top of a preset or a saved config."""
    fields = {f.name for f in dataclasses.fields(RunConfig)}
    values = {k: v for k, v in vars(args).items() if k in fields}
    if args.method_arg:
        values["method_args"] = dict(parse_override(o) for o in args.method_arg)
    return values


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """The preset, then the saved config (--config), then the flags."""
    from .steps.checks import build_config

    saved = read_config_file(args.config) if getattr(args, "config", None) else None
    return build_config(getattr(args, "preset", None) or "", saved=saved, **flag_values(args))


def read_config_file(path: str) -> dict[str, Any]:
    """A saved config.json's fields, or a ConfigError naming the file and what is wrong."""
    try:
        values = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(
            f"--config {path}: no such file; pass a config.json that a run wrote "
            "(OUTPUT_DIR/config.json) or that `adautomix presets NAME` printed"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--config {path} cannot be read ({exc})") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"--config {path} is not valid JSON ({exc}); fix it or write it again "
            "with `adautomix presets NAME > FILE`"
        ) from None
    if not isinstance(values, dict):
        raise ConfigError(
            f"--config {path} holds a JSON {type(values).__name__}, not an object of config fields"
        )
    return upgrade_saved_config(values, path)


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
    if args.subset is not None and args.subset < 0:
        raise ConfigError(f"--subset must be >= 0 (0: the whole test split), got {args.subset}")
    run = load_run(args.run_dir, args.device, subset=args.subset)
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
    p.add_argument("--preset", help="start from a named recipe (adautomix presets lists them)")
    p.add_argument("--config", help="start from a saved config.json")
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
        "--subset",
        type=int,
        help="evaluate on the first N test images, every "
        "metric on the same ones [the run's test_subset]",
    )
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


def main(argv: list[str] | None = None, parser: argparse.ArgumentParser | None = None) -> int:
    """Parse `argv` with `parser` (this CLI's by default; pipeline/cli.py passes its own), run
    the chosen command, and turn every error the user can act on into one line and an exit
    status (run_reporting_errors)."""
    args = (parser or build_parser()).parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)
    redact_handlers()
    return run_reporting_errors(args.func, args)


def run_reporting_errors(func, args: argparse.Namespace) -> int:
    """`func(args)`, with every failure the user can act on as one line on stderr, `error: ...`,
    credentials masked, and its exit status (errors.exit_status: 2 bad input, 1 a failed run;
    130 for Ctrl-C). A bug keeps its traceback, and so does everything under --debug or
    ADAUTOMIX_DEBUG=1."""
    debug = debug_requested(getattr(args, "debug", False))
    try:
        return func(args)
    except KeyboardInterrupt:
        if debug:
            raise
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        status = exit_status(exc)
        if status is None or debug:
            raise
        print(one_line(exc), file=sys.stderr)
        return status


if __name__ == "__main__":
    sys.exit(main())
