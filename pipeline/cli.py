"""The pipeline's front door: `python -m pipeline compile | run --local | submit`, run from the
project checkout (the workspace: data.dvc, .dvc/config, runs/).

It lives in the pipeline layer because the package never imports the layers built on it. Its
flags are made from the settings' fields (adautomix.config_flags): `adautomix train`'s run flags
(every RunConfig field but those the steps decide, `-o` method options), the pipeline's own
(PipelineSettings, pipeline/settings.py) and the cluster's (ClusterSettings,
pipeline/cluster_settings.py); bad input is one line, as from `adautomix`
(adautomix.command_runner)."""

from __future__ import annotations

import argparse
import sys

from adautomix.command_runner import run_command
from adautomix.config import ConfigError
from adautomix.config_flags import add_run_flags, add_setting_flags, run_values, setting_values
from adautomix.errors import DEBUG_ENV, one_line
from adautomix.steps.checks import STEP_FIELDS
from pipeline.settings import PipelineSettings


def _pipeline_arguments(args: argparse.Namespace) -> dict:
    from pipeline.run import sweep_arguments, training_arguments

    for option in args.method_arg:
        if "=" not in option:  # `-o FILE` named compile's output before it was a method option
            raise ConfigError(
                f"-o takes a method option KEY=VALUE, got {option!r}; the YAML "
                "file is --output FILE"
            )

    sweep = _sweep_preset(args)
    preset, saved, values = run_values(args)
    settings = setting_values(args, PipelineSettings)
    if sweep and "test_metrics" not in settings:
        settings["test_metrics"] = sweep.test_metrics
    common = dict(
        preset=preset,
        saved_config=saved,
        num_nodes=getattr(args, "num_nodes", 1),
        **settings,
        # STEP_FIELDS have no run flag here: a value under such a name is the
        # pipeline's own (submit's --run-name names the Kubeflow run)
        **{k: v for k, v in values.items() if k not in STEP_FIELDS},
    )
    if args.sweep:
        methods = args.methods.split(",") if args.methods else list(sweep.methods if sweep else [])
        seeds = _seeds(args.seeds) if args.seeds else list(sweep.seeds if sweep else [0])
        return sweep_arguments(
            methods,
            seeds,
            method_options={m: sweep.method_options(m) for m in methods} if sweep else {},
            **common,
        )
    return training_arguments(**common)


def _sweep_preset(args: argparse.Namespace):
    """The sweep a `--sweep --preset NAME` names (adautomix.presets.SWEEPS), else None; an
    unknown preset is refused here, with the valid ones, before anything else is checked."""
    from adautomix.presets import SWEEPS, get_preset

    if args.preset:
        get_preset(args.preset)
    return SWEEPS.get(args.preset) if args.sweep else None


def _seeds(text: str) -> list[int]:
    try:
        return [int(seed) for seed in text.split(",")]
    except ValueError:
        raise ConfigError(
            f"--seeds takes comma-separated integers, e.g. 0,1,2; got {text!r}"
        ) from None


def cmd_pipeline(args: argparse.Namespace) -> int:
    from pipeline.cluster_settings import ClusterSettings
    from pipeline.run import compile_pipeline, local_summary, run_local, submit

    if args.pipeline_command == "run" and not args.local:
        raise ConfigError(
            "`run` runs on this machine and needs --local; use "
            "`python -m pipeline submit --host URL` for a Kubeflow cluster"
        )
    arguments = _pipeline_arguments(args)
    cluster = ClusterSettings(**setting_values(args, ClusterSettings))
    try:
        if args.pipeline_command == "compile":
            path = compile_pipeline(args.output, arguments, args.sweep, cluster)
            print(f"wrote {path.resolve()}")
        elif args.pipeline_command == "submit":
            experiment = arguments["config"]["experiment"]
            run_id = submit(
                args.host,
                arguments,
                experiment,
                args.run_name,
                args.sweep,
                cluster,
                args.namespace,
                cache=not args.no_cache,
                preflight=not args.no_preflight,
            )
            print(f"submitted run {run_id} to {args.host}, experiment {experiment}")
        else:
            try:
                registered = run_local(arguments, args.sweep, args.pipeline_root)
                print(local_summary(arguments, registered))
            finally:  # a sweep cut short still gets its page, which marks what is missing
                if args.results_page:
                    _write_results_page(args, arguments)
    # SubmitError, or kfp.local's report of a failed step (whose one-line error is printed above)
    except RuntimeError as exc:
        print(one_line(exc), file=sys.stderr)
        return 1
    return 0


def _write_results_page(args: argparse.Namespace, arguments: dict) -> None:
    from adautomix.presets import SWEEPS
    from adautomix.results import sweep_command, write_results

    grid = arguments.get("grid", [])
    sweep = SWEEPS.get(args.preset)
    page = write_results(
        arguments["config"]["experiment"],
        args.results_page,
        methods=list(dict.fromkeys(overrides["method"] for overrides in grid)),
        seeds=sorted({int(overrides["seed"]) for overrides in grid}),
        command=sweep_command(args.preset, args.results_page) if sweep else "",
        title=f"Results: {sweep.name} ({sweep.sized_for})" if sweep else "",
        pilots=sweep.pilots if sweep else (),
        preset=args.preset,
    )
    print(f"results page: {page.resolve()}")


def _add_pipeline_flags(parser: argparse.ArgumentParser) -> None:
    """`adautomix train`'s run flags (but the fields the steps decide) and the pipeline's own."""
    add_run_flags(parser, leave_out=STEP_FIELDS)
    group = parser.add_argument_group(
        f"pipeline parameters ({', '.join(STEP_FIELDS)} are decided by the steps)"
    )
    add_setting_flags(group, PipelineSettings)
    group.add_argument(
        "--sweep",
        action="store_true",
        help="the sweep pipeline: --methods x --seeds in parallel, the best registered",
    )
    group.add_argument(
        "--methods", help="sweep: comma-separated methods [a sweep preset's (adautomix presets)]"
    )
    group.add_argument(
        "--seeds", default="", help="sweep: comma-separated seeds [a sweep preset's, else 0]"
    )


def _add_cluster_flags(parser: argparse.ArgumentParser) -> None:
    from pipeline.cluster_settings import ClusterSettings

    group = parser.add_argument_group("cluster (secrets are named, never given: docs/cluster.md)")
    add_setting_flags(group, ClusterSettings)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline",
        description="The Kubeflow pipeline: compile, run here, or submit. Parameters are checked "
        "as one run configuration before anything is compiled, run or submitted. "
        "Quick start: python -m pipeline run --local --method mixup --epochs 4",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument(
        "--debug",
        action="store_true",
        help=f"show the traceback behind an error line (or set {DEBUG_ENV}=1)",
    )
    sub = parser.add_subparsers(dest="pipeline_command", required=True)
    q = sub.add_parser("compile", help="write the pipeline as IR YAML")
    # `-o` is a method option, as for `adautomix train`
    q.add_argument("--output", default="adautomix-pipeline.yaml", help="the YAML file")
    _add_pipeline_flags(q)
    _add_cluster_flags(q)
    q = sub.add_parser("run", help="run the whole pipeline on this machine (kfp.local)")
    q.add_argument("--local", action="store_true", help="run here, each step a subprocess")
    q.add_argument("--pipeline-root", default="runs/pipeline", help="where step outputs go")
    q.add_argument(
        "--results-page",
        default="",
        help="with --sweep: afterwards, write the sweep's results page here from the MLflow "
        "store (adautomix results), its figures and CSV in a folder of the same name",
    )
    _add_pipeline_flags(q)
    q = sub.add_parser("submit", help="compile and start a run on a Kubeflow endpoint")
    q.add_argument("--host", required=True, help="the Kubeflow Pipelines API or UI URL")
    q.add_argument("--run-name", required=True, help="the Kubeflow run name")
    q.add_argument(
        "--namespace",
        help="the Kubeflow profile namespace (multi-user installs) "
        "[KF_PIPELINES_NAMESPACE]; the token comes from "
        "KF_PIPELINES_TOKEN or KF_PIPELINES_TOKEN_FILE",
    )
    q.add_argument(
        "--no-preflight",
        action="store_true",
        help="skip checking the namespace's secrets, pull secrets and workspace claim "
        "through the Kubernetes API (kubeconfig)",
    )
    q.add_argument(
        "--no-cache",
        action="store_true",
        help="run every step, even where an identical one already ran",
    )
    _add_pipeline_flags(q)
    _add_cluster_flags(q)
    for q in sub.choices.values():
        q.set_defaults(func=cmd_pipeline)
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_command(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
