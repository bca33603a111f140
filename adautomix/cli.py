"""The front door: `adautomix train | evaluate | presets | data prepare | data verify |
pipeline compile | pipeline run --local | pipeline submit | compare`.

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

from .config import DATASETS, LOADERS, METHODS, MODELS, OPTIMIZERS, ConfigError, RunConfig, parse_override
from .errors import DEBUG_ENV, debug_requested, exit_status, one_line
from .redact import redact_handlers

HELP = {
    "dataset": f"dataset name: {', '.join(DATASETS)}",
    "model": f"network: {', '.join(MODELS)}",
    "method": f"training method: {', '.join(METHODS)}",
    "pretrained": "start from torchvision's ImageNet weights (tv_* models; must be in TORCH_HOME)",
    "data_root": "folder holding prepared datasets (data_root/NAME/)",
    "subset": "train on the first N images of a fixed shuffle (0 = all); for quick runs",
    "val_subset": "evaluate on the first N test images (0 = all)",
    "loader": f"data loader: {', '.join(LOADERS)}",
    "num_workers": "worker processes of the torch loader",
    "image_size": "side of the images fed to the network (0 = native for arrays, 224 for folders)",
    "train_crop": "auto, pad (reflect-padded random crop) or rrc (RandomResizedCrop)",
    "crop_scale": "area fraction range of the rrc crop: LOW HIGH",
    "interpolation": "of every resize: bilinear or bicubic",
    "resize_before_crop": "rrc only: resize the shorter side to this first (0 = off)",
    "randaugment": "RandAugment (2 ops, magnitude 9) after the crop; torch and dali loaders",
    "normalize_mean": "per-channel mean in [0, 1], e.g. 0.485 0.456 0.406 (none: the dataset's own)",
    "normalize_std": "per-channel std in [0, 1], one value per channel like normalize_mean",
    "mix_block_lr": "AutoMix/AdAutoMix: the mix block's own lr, annealed to mix_block_min_lr (0 = the main lr)",
    "mix_block_min_lr": "cosine floor of mix_block_lr",
    "exclude_norm_bias_decay": "no weight decay on norms, biases and position tables (the ViT recipes)",
    "grad_clip": "clip the global gradient norm to this (0 = off)",
    "epochs": "training epochs",
    "batch_size": "images per optimiser step (under torchrun: the global batch, split over the processes)",
    "optimizer": f"{', '.join(OPTIMIZERS)}",
    "lr": "peak learning rate",
    "min_lr": "cosine floor of the learning rate",
    "warmup_epochs": "linear warm-up length in epochs",
    "lr_schedule_by": "'epoch' (lr changes once per epoch, as the official recipes) or 'step'",
    "momentum": "SGD momentum",
    "weight_decay": "weight decay",
    "label_smoothing": "label smoothing of the targets",
    "ema_decay": "decay of the EMA network evaluated every epoch (0 disables; AdAutoMix/AutoMix use their own teacher)",
    "amp": "mixed precision on CUDA",
    "channels_last": "NHWC memory format for the networks (faster convolutions on CPU and GPU)",
    "sync_bn": "under torchrun: BatchNorm statistics over the whole global batch (SyncBatchNorm; CUDA only)",
    "seed": "random seed",
    "deterministic": "deterministic algorithms (slower; exact resume on GPU)",
    "device": "auto, cpu or cuda",
    "output_dir": "where config.json and checkpoint.pt are written",
    "experiment": "MLflow experiment name",
    "run_name": "MLflow run name",
    "log_images_every": "epochs between mixed-sample grids logged to MLflow (0 = never)",
    "progress": "show a progress bar",
}


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("run configuration (defaults in brackets)")
    defaults = RunConfig()
    for f in dataclasses.fields(RunConfig):
        if f.name == "method_args":
            continue
        default = getattr(defaults, f.name)
        flag = "--" + f.name.replace("_", "-")
        help_text = f"{HELP.get(f.name, '')} [{default}]"
        if isinstance(default, bool):
            group.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction,
                               default=argparse.SUPPRESS, help=help_text)
        elif isinstance(default, list):
            group.add_argument(flag, dest=f.name, type=type(default[0]) if default else float,
                               nargs=len(default) or "+",
                               default=argparse.SUPPRESS, metavar=f.name.upper(),
                               help=help_text)
        else:
            group.add_argument(flag, dest=f.name, type=type(default), default=argparse.SUPPRESS,
                               metavar=f.name.upper(), help=help_text)
    group.add_argument("-o", "--method-arg", dest="method_arg", action="append", default=[],
                       metavar="KEY=VALUE",
                       help="a method option, repeatable: -o alpha=0.2 -o mix_samples=3 "
                            "(`adautomix presets --methods` lists them)")


def config_from_args(args: argparse.Namespace) -> RunConfig:
    values: dict[str, Any] = {}
    if getattr(args, "preset", None):
        from .presets import get_preset
        values = get_preset(args.preset).to_dict()
    if getattr(args, "config", None):
        values.update(read_config_file(args.config))
    fields = {f.name for f in dataclasses.fields(RunConfig)}
    values.update({k: v for k, v in vars(args).items() if k in fields})
    method_args = values.get("method_args", {})
    if not isinstance(method_args, dict):
        raise ConfigError(f"method_args must be a dict of method options, got {method_args!r}")
    method_args = {**method_args, **dict(parse_override(o) for o in args.method_arg)}
    if method_args:   # as the method takes them, so the records show what the run used
        from .mixers import resolve_options
        method_args = resolve_options(values.get("method", RunConfig.method), method_args)
    values["method_args"] = method_args
    return RunConfig.from_dict(values)


def read_config_file(path: str) -> dict[str, Any]:
    """A saved config.json's fields, or a ConfigError naming the file and what is wrong."""
    try:
        values = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"--config {path}: no such file; pass a config.json that a run wrote "
                          "(OUTPUT_DIR/config.json) or that `adautomix presets NAME` printed") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--config {path} cannot be read ({exc})") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--config {path} is not valid JSON ({exc}); fix it or write it again "
                          "with `adautomix presets NAME > FILE`") from None
    if not isinstance(values, dict):
        raise ConfigError(f"--config {path} holds a JSON {type(values).__name__}, not an object "
                          "of config fields")
    return values


def cmd_train(args: argparse.Namespace) -> int:
    from .engine.train import train

    config = config_from_args(args)
    result = train(config, resume={"auto": True, "must": "must", None: False}[args.resume])
    m = result.metrics
    print(f"\nfinished: top-1 {m['val_top1']:.2f}% (online)"
          + (f", {m['val_top1_ema']:.2f}% (EMA; median of last 10 epochs {m['val_top1_ema_median10']:.2f}%)"
             if "val_top1_ema" in m else ""))
    print(f"checkpoint and config: {result.output_dir.resolve()}")
    from .tracking import display_uri
    print(f"MLflow run {result.run_id} in {display_uri()}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .eval.run import evaluate_run

    metrics = evaluate_run(args.run_dir, metrics=args.metrics.split(","))
    print(json.dumps(metrics, indent=2, sort_keys=True))
    return 0


def cmd_presets(args: argparse.Namespace) -> int:
    from .mixers import available_methods, method_defaults
    from .presets import PRESETS, get_preset

    if args.methods:
        for name in available_methods():
            print(f"{name:12s} {json.dumps(method_defaults(name))}")
    elif args.name:
        print(json.dumps(get_preset(args.name).to_dict(), indent=2, sort_keys=True))
    else:
        for name, preset in PRESETS.items():
            print(f"{name:28s} {preset.dataset:14s} {preset.model:14s} {preset.method:10s} "
                  f"{preset.epochs:4d} epochs")
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    from .data import prepare, verify

    if args.data_command == "prepare":
        manifest = prepare(args.name, source=args.source, data_root=args.data_root, force=args.force)
        print(f"{args.name}: {manifest.counts} images in {Path(args.data_root, args.name).resolve()}"
              f"\ncontent hash {manifest.sha256}")
    else:
        manifest = verify(args.name, data_root=args.data_root)
        print(f"{args.name}: content hash {manifest.sha256} verified")
    return 0


def _pipeline_arguments(args: argparse.Namespace) -> dict:
    from pipeline.run import RUN_FIELDS, sweep_arguments, training_arguments

    run_values = {f: getattr(args, f) for f in RUN_FIELDS if getattr(args, f, None) is not None}
    common = dict(preset=args.preset, data_version=args.data_version, num_gpus=args.num_gpus,
                  registered_model=args.registered_model, project=args.workspace,
                  test_metrics=tuple(args.test_metrics.split(",")), **run_values)
    if args.sweep:
        return sweep_arguments(args.methods.split(",") if args.methods else [],
                               [int(s) for s in args.seeds.split(",")], **common)
    return training_arguments(**common)


def _cluster_settings(args: argparse.Namespace):
    from pipeline.cluster import ClusterSettings

    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(ClusterSettings)
             if hasattr(args, f.name)}
    if "gpu_tolerations" in given:
        given["gpu_tolerations"] = tuple(given["gpu_tolerations"])
    if "node_selector" in given:
        given["node_selector"] = dict(parse_override(item) for item in given["node_selector"])
    return ClusterSettings(**given)


def cmd_pipeline(args: argparse.Namespace) -> int:
    from pipeline.run import compile_pipeline, local_summary, run_local, submit

    if args.pipeline_command == "run" and not args.local:
        raise ConfigError("`pipeline run` runs on this machine and needs --local; use "
                          "`pipeline submit --host URL` for a Kubeflow cluster")
    arguments = _pipeline_arguments(args)
    try:
        if args.pipeline_command == "compile":
            path = compile_pipeline(args.output, arguments, args.sweep, _cluster_settings(args))
            print(f"wrote {path.resolve()}")
        elif args.pipeline_command == "submit":
            run_id = submit(args.host, arguments, arguments["experiment"], args.run_name,
                            args.sweep, _cluster_settings(args), args.namespace,
                            cache=not args.no_cache)
            print(f"submitted run {run_id} to {args.host}, experiment {arguments['experiment']}")
        else:
            registered = run_local(arguments, args.sweep, args.pipeline_root, args.workspace,
                                   args.data_remote)
            print(local_summary(arguments, registered))
    # SubmitError, or kfp.local's report of a failed step (whose log is printed above it)
    except RuntimeError as exc:
        print(one_line(exc), file=sys.stderr)
        return 1
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from .compare import compare

    chart = args.chart or f"compare-{args.experiment}.png"
    print(compare(args.experiment, chart))   # a TrackingError is one line, from main
    print(f"\nbar chart: {Path(chart).resolve()}")
    return 0


def _add_pipeline_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("pipeline parameters (unset ones come from the preset)")
    for name in ("dataset", "model", "method", "experiment"):
        group.add_argument("--" + name, help=HELP[name])
    for name, kind in (("epochs", int), ("batch_size", int), ("lr", float), ("seed", int),
                       ("subset", int), ("val_subset", int)):
        group.add_argument("--" + name.replace("_", "-"), dest=name, type=kind, help=HELP[name])
    group.add_argument("--preset", default="", help="start from a named recipe")
    group.add_argument("--data-version", default="",
                       help="DVC hash of the dataset version [the one data.dvc tracks]")
    group.add_argument("--num-gpus", type=int, default=1, help="GPUs per training run [1]")
    group.add_argument("--registered-model", default="",
                       help="MLflow registered model name [adautomix-DATASET]")
    group.add_argument("--test-metrics", default="top1,top5,loss",
                       help="what the evaluate step measures, comma-separated [top1,top5,loss]")
    group.add_argument("--workspace", default=".",
                       help="the project checkout: data.dvc, data/, runs/checkpoints/ [.]")
    group.add_argument("--sweep", action="store_true",
                       help="the sweep pipeline: --methods x --seeds in parallel, the best registered")
    group.add_argument("--methods", help="sweep: comma-separated methods")
    group.add_argument("--seeds", default="0", help="sweep: comma-separated seeds [0]")


def _add_cluster_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "cluster (defaults in pipeline/cluster.py; secrets are named, never given: docs/cluster.md)")
    flags = [("--pvc", "workspace_pvc", "the workspace PersistentVolumeClaim"),
             ("--mount-path", "workspace_path", "where the workspace is mounted"),
             ("--gpu-resource", "gpu_resource", "the GPU resource name"),
             ("--s3-secret", "s3_secret", "the secret with the S3 credentials"),
             ("--mlflow-secret", "mlflow_secret", "the secret with the MLflow URI and credentials")]
    for flag, dest, help_text in flags:
        group.add_argument(flag, dest=dest, default=argparse.SUPPRESS, help=help_text)
    group.add_argument("--gpu-toleration", dest="gpu_tolerations", action="append",
                       default=argparse.SUPPRESS, metavar="TAINT_KEY",
                       help="tolerate this taint key on GPU steps (repeatable)")
    group.add_argument("--node-selector", dest="node_selector", action="append",
                       default=argparse.SUPPRESS, metavar="KEY=VALUE",
                       help="run GPU steps on nodes with this label (repeatable)")
    group.add_argument("--parallelism", dest="sweep_parallelism", type=int,
                       default=argparse.SUPPRESS, help="sweep runs at once")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="adautomix",
        description="Adversarial AutoMixup and the mixup baselines of its paper. "
                    "Quick start: adautomix train --dataset fashion-mnist --method adautomix --epochs 1 --subset 2000")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--debug", action="store_true",
                        help=f"show the traceback behind an error line (or set {DEBUG_ENV}=1)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a network with a mixing method",
                       description="Train, evaluate every epoch, checkpoint every epoch, log to MLflow "
                                   "(MLFLOW_TRACKING_URI, default sqlite:///mlflow.db).")
    p.add_argument("--preset", help="start from a named recipe (adautomix presets lists them)")
    p.add_argument("--config", help="start from a saved config.json")
    p.add_argument("--resume", nargs="?", const="auto", choices=("auto", "must"),
                   help="continue from output_dir/checkpoint.pt, in the same MLflow run, under "
                        "the config it was written with (epochs, workers and logging may "
                        "change); with no checkpoint, say so and start anew. `--resume must` "
                        "fails instead")
    _add_config_flags(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="evaluate a trained run's online and EMA networks")
    p.add_argument("run_dir", help="a training output_dir (holds config.json and checkpoint.pt)")
    p.add_argument("--metrics", default="top1,top5,loss", help="comma-separated metric names")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("presets", help="list the official recipes, or print one")
    p.add_argument("name", nargs="?", help="print this preset's full config")
    p.add_argument("--methods", action="store_true", help="list every method and its options")
    p.set_defaults(func=cmd_presets)

    p = sub.add_parser("data", help="prepare or verify a dataset")
    data_sub = p.add_subparsers(dest="data_command", required=True)
    q = data_sub.add_parser("prepare", help="write a dataset once in the canonical format under DATA_ROOT/NAME")
    q.add_argument("name", choices=DATASETS)
    q.add_argument("--source", help="the raw dataset's folder (Fashion-MNIST needs none)")
    q.add_argument("--data-root", default="data")
    q.add_argument("--force", action="store_true", help="rewrite it even if it exists")
    q = data_sub.add_parser("verify", help="recompute the content hash and compare with the manifest")
    q.add_argument("name", choices=DATASETS)
    q.add_argument("--data-root", default="data")
    p.set_defaults(func=cmd_data)

    p = sub.add_parser("pipeline", help="the Kubeflow pipeline: compile, run here, or submit",
                       description="Parameters are checked as one run configuration before "
                                   "anything is compiled, run or submitted.")
    pipeline_sub = p.add_subparsers(dest="pipeline_command", required=True)
    q = pipeline_sub.add_parser("compile", help="write the pipeline as IR YAML")
    q.add_argument("-o", "--output", default="adautomix-pipeline.yaml", help="the YAML file")
    _add_pipeline_flags(q)
    _add_cluster_flags(q)
    q = pipeline_sub.add_parser("run", help="run the whole pipeline on this machine (kfp.local)")
    q.add_argument("--local", action="store_true", help="run here, each step a subprocess")
    q.add_argument("--pipeline-root", default="runs/pipeline", help="where step outputs go")
    q.add_argument("--data-remote", default="", help="DVC remote [the default remote]")
    _add_pipeline_flags(q)
    q = pipeline_sub.add_parser("submit", help="compile and start a run on a Kubeflow endpoint")
    q.add_argument("--host", required=True, help="the Kubeflow Pipelines API or UI URL")
    q.add_argument("--run-name", required=True, help="the Kubeflow run name")
    q.add_argument("--namespace", help="the Kubeflow namespace (multi-user installs)")
    q.add_argument("--no-cache", action="store_true",
                   help="run every step, even where an identical one already ran")
    _add_pipeline_flags(q)
    _add_cluster_flags(q)
    p.set_defaults(func=cmd_pipeline)

    p = sub.add_parser("compare", help="the paper-style table of an MLflow experiment's runs")
    p.add_argument("--experiment", required=True, help="MLflow experiment name")
    p.add_argument("--chart", help="bar chart PNG [compare-EXPERIMENT.png]")
    p.set_defaults(func=cmd_compare)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
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
