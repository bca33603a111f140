"""Check a pipeline's parameters, then compile it to IR YAML, run it here, or submit it.

Every entry point goes through `training_arguments` or `sweep_arguments` first, so bad input
(negative epochs, an unknown method, a batch smaller than the method mixes, a data version that
is not a DVC hash) fails on the user's machine in a second, not an hour into a cluster run. The
arguments they return are complete: the preset's values fill every parameter the user left out,
and an empty data version becomes the one data.dvc tracks, so the data step's cache key is always
the data version itself."""

import dataclasses
import sys
import time
import warnings
from dataclasses import replace
from pathlib import Path

from adautomix.config import ConfigError, RunConfig
from adautomix.data.errors import DataError
from adautomix.errors import RunFailure
from adautomix.data.versioning import check_subset_fits, normalise_version, tracked_version
from adautomix.registry import default_model_name
from adautomix.steps import STEP_FIELDS, build_config, check_run, checkpoint_root
from adautomix.steps.failures import failures_since
from pipeline import credentials
from pipeline.cluster_settings import ClusterSettings, for_run
from pipeline.settings import CLUSTER_DATA_REMOTE, PipelineSettings, as_parameters
from pipeline.sweep import sweep_pipeline
from pipeline.training import training_pipeline

# RunConfig fields that are pipeline parameters of their own, not part of `config`: the data
# and register steps take the dataset too (pipeline/training.py).
OWN_PARAMETERS = ("dataset",)


class SubmitError(RunFailure):
    """The Kubeflow Pipelines endpoint refused or could not be reached; names the host."""


def training_arguments(**values) -> dict:
    """The training pipeline's arguments from `values`: PipelineSettings fields by their names,
    `preset`, `saved_config` (a saved config's fields) and `num_nodes` (ClusterSettings' node
    count, not a parameter: the batch must split over every process), and any RunConfig fields
    (`method_args` included). The run is the preset (or the defaults) with the saved config's
    fields and then the RunConfig values on top, checked as one run configuration and passed as
    `dataset` and `config`; the data version and the registry name are resolved, the test
    metrics checked."""
    return _pipeline_arguments([{}], values)


def sweep_arguments(
    methods: list[str], seeds: list[int], method_options: dict[str, dict] | None = None, **values
) -> dict:
    """The sweep's arguments (`values` as for training_arguments): every method x seed is checked
    as a run configuration; the grid holds what each run changes of the first one's `config`. A
    run whose method is the preset's (or the saved config's) keeps its method options; another
    method starts from its own, with `method_options[method]` (a sweep preset's options for it)
    on top; `method_args` given in `values` go on top of either."""
    if not methods or not seeds:
        raise ConfigError("a sweep needs at least one method and one seed (--methods, --seeds)")
    if {"method", "seed"} & values.keys():
        raise ConfigError("a sweep takes --methods and --seeds, not --method and --seed")
    given = values.pop("method_args", {})
    grid = [
        {"method": m, "seed": s, "method_args": {**(method_options or {}).get(m, {}), **given}}
        # seed-major: a sweep cut short still holds every method for its first seeds
        for s in seeds
        for m in methods
    ]
    return _pipeline_arguments(grid, values, sweep=True)


def _pipeline_arguments(grid: list[dict], values: dict, sweep: bool = False) -> dict:
    """Each of `grid`'s overrides on the run `values` describe, checked as a run configuration;
    the first one's `config`, the grid (a sweep's) and the resolved settings."""
    preset, saved_config = values.pop("preset", ""), values.pop("saved_config", None)
    num_nodes = values.pop("num_nodes", 1)
    own = {f.name for f in dataclasses.fields(PipelineSettings) if f.init}
    settings = PipelineSettings(**{k: v for k, v in values.items() if k in own})
    run_values = {k: v for k, v in values.items() if k not in own}
    configs = [
        _checked_config(
            preset, saved_config, settings.num_gpus, {**run_values, **overrides}, num_nodes
        )
        for overrides in grid
    ]
    arguments = _run_parameters(configs[0])
    if sweep:
        arguments["grid"] = [
            {"method": c.method, "seed": c.seed, "method_args": c.method_args} for c in configs
        ]
    resolved = _resolved(settings, configs[0].dataset)
    for config in configs:  # where the workspace knows the data's size: refused before any step
        check_subset_fits(
            config.dataset,
            resolved.data_version,
            resolved.workspace,
            config.subset,
            config.val_size,
        )
    return {**arguments, **as_parameters(resolved)}


def check_arguments(arguments: dict, sweep: bool = False) -> None:
    """Each run of a pipeline's arguments is a valid RunConfig, whoever assembled them: what
    compile, run and submit check last, so that a hand-edited `config` fails here, not in a
    pod."""
    config = arguments["config"]
    if not isinstance(config, dict):
        raise ConfigError(f"config must be a dict of RunConfig fields, got {config!r}")
    misplaced = sorted(set(config) & {*STEP_FIELDS, *OWN_PARAMETERS})
    if misplaced:
        raise ConfigError(
            f"config holds {misplaced}: {', '.join(OWN_PARAMETERS)} is a pipeline "
            f"parameter of its own and {', '.join(STEP_FIELDS)} are decided by "
            "the steps; leave them out of config"
        )
    for overrides in arguments["grid"] if sweep else [{}]:
        RunConfig.from_dict({**config, **overrides, **{f: arguments[f] for f in OWN_PARAMETERS}})


def compile_pipeline(
    path: str | Path,
    arguments: dict,
    sweep: bool = False,
    cluster: ClusterSettings = ClusterSettings(),
) -> Path:
    """Write the IR YAML, with `arguments` as its parameters' defaults."""
    from kfp import compiler

    check_arguments(arguments, sweep)
    compiler.Compiler().compile(
        _build(sweep, cluster, arguments),
        str(path),
        pipeline_parameters=on_cluster(arguments, cluster),
    )
    return Path(path)


def on_cluster(arguments: dict, cluster: ClusterSettings) -> dict:
    """The arguments as a cluster's steps see them: the workspace where its volume is mounted,
    and the data read from CLUSTER_DATA_REMOTE unless another remote was named."""
    return {
        **arguments,
        "workspace": cluster.workspace_path,
        "data_remote": arguments["data_remote"] or CLUSTER_DATA_REMOTE,
    }


def _build(sweep: bool, cluster: ClusterSettings, arguments: dict):
    """The pipeline for the cluster and the run's GPUs (train's resources scale with them; no GPU
    settings at all without)."""
    build = sweep_pipeline if sweep else training_pipeline
    return build(for_run(cluster, arguments["num_gpus"]))


def run_local(
    arguments: dict, sweep: bool = False, pipeline_root: str | Path = "runs/pipeline"
) -> dict:
    """Run the pipeline here with kfp.local, each step a subprocess of this environment (and of
    this working directory, so they share MLflow's default store), in the arguments' workspace
    (the project checkout: data.dvc, data/, runs/checkpoints/); a data_remote '' is its DVC
    default remote. Returns the register step's outputs (version, aliases, tracking_uri)."""
    from kfp import local

    check_arguments(arguments, sweep)
    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(Path(pipeline_root).resolve()),
    )
    build = sweep_pipeline if sweep else training_pipeline
    with warnings.catch_warnings():
        # kfp.local warns that an image without "python" in its name may lack Python; ours is
        # built from this environment's lock, which is exactly what runs here.
        warnings.filterwarnings(
            "ignore", message=".*non-Python base image", category=RuntimeWarning
        )
        started = time.time()
        try:
            task = build(None)(**arguments)
        except RuntimeError as failed:  # kfp.local names the failed task, not why it failed
            causes = failures_since(checkpoint_root(arguments["workspace"]), started)
            if not causes:
                raise
            raise RuntimeError(f"{failed} Its error: {causes[-1]}") from None
    return dict(task.outputs)


def submit(
    host: str,
    arguments: dict,
    experiment: str,
    run_name: str,
    sweep: bool = False,
    cluster: ClusterSettings = ClusterSettings(),
    namespace: str | None = None,
    cache: bool = True,
    kube_api=None,
    preflight: bool = True,
) -> str:
    """Compile and start a run on a Kubeflow Pipelines endpoint; returns the run id. `cache`
    False runs every step again even where an identical one (same inputs, same data version)
    already ran. Credentials and the namespace come from the environment (pipeline.credentials).
    With `preflight` and a Kubernetes API (`kube_api`, else the kubeconfig's), the namespace is
    checked first (pipeline.preflight) and the workspace claim created if missing."""
    import kfp

    check_arguments(arguments, sweep)
    try:
        auth = credentials.resolve(namespace)
    except credentials.CredentialsError as error:
        raise SubmitError(str(error)) from None
    if preflight:
        _preflight(kube_api, auth.namespace, cluster)
    from pipeline.backend_version import BackendTooOld, check_backend

    try:
        client = kfp.Client(host=host, **auth.client_arguments())
        pipeline = _build(sweep, cluster, arguments)
        # an older backend fails every step, or silently drops settings, only once the run starts
        check_backend(client, host, pipeline)
        started = client.create_run_from_pipeline_func(
            pipeline,
            arguments=on_cluster(arguments, cluster),
            run_name=run_name,
            experiment_name=experiment,
            enable_caching=cache,
        )
    except BackendTooOld:
        raise
    except Exception as exc:  # connection, auth and API errors all mean the same to the user
        message = auth.redact(f"{exc}")
        refused = credentials.refusal(host, auth, getattr(exc, "status", None), message)
        # `from None`: the chained exception would print the request, token included
        raise SubmitError(
            refused
            or (
                f"Kubeflow Pipelines at {host} did not accept the run ({type(exc).__name__}: "
                f"{(message.splitlines() or [''])[0][:300]}); check the URL (the KFP API or UI "
                "address), the namespace and your access"
                + (
                    ""
                    if auth.source
                    else f"; behind a Kubeflow login it also needs credentials: "
                    f"{credentials.HOW_TO_AUTHENTICATE}"
                )
            )
        ) from None
    return started.run_id


def _preflight(kube_api, namespace: str | None, cluster: ClusterSettings) -> None:
    from pipeline import preflight

    api = kube_api or preflight.api_client()
    if api is None:
        print(
            "note: no Kubernetes API here (kubeconfig); the namespace's secrets and workspace "
            "claim were not checked",
            file=sys.stderr,
        )
        return
    problems = preflight.check_namespace(api, namespace or _kube_namespace(), cluster)
    if problems:
        raise SubmitError("the namespace is not ready for the run:\n  " + "\n  ".join(problems))


def _kube_namespace() -> str:
    """The kubeconfig context's namespace, the namespace a single-user install runs in."""
    from kubernetes import config

    try:
        return config.list_kube_config_contexts()[1]["context"].get("namespace", "kubeflow")
    except Exception:
        return "kubeflow"


def local_summary(arguments: dict, registered: dict) -> str:
    """What a local run ends by printing: the registered model, the MLflow store, its UI."""
    name, uri = arguments["registered_model"], registered["tracking_uri"]
    ui = (
        f"open {uri} in a browser"
        if uri.startswith("http")
        else f"mlflow ui --backend-store-uri {uri}   (then open http://127.0.0.1:5000)"
    )
    return (
        f"\nregistered model {name} version {registered['version']}, aliases "
        f"{', '.join(registered['aliases'])}  (load: models:/{name}@{registered['aliases'][-1]})"
        f"\nMLflow: {uri}, experiment {arguments['config']['experiment']}"
        f"\nMLflow UI: {ui}"
    )


def _checked_config(
    preset: str, saved_config: dict | None, num_gpus: int, run_values: dict, num_nodes: int = 1
):
    decided = sorted(set(run_values) & set(STEP_FIELDS))
    if decided:
        raise ConfigError(
            f"{decided} are decided by the pipeline's steps (the checkpoint folder, "
            "the data step's folder, the MLflow run name); leave them out"
        )
    # where the saved run trained, its data and its MLflow name are the steps' to decide here
    saved = {k: v for k, v in (saved_config or {}).items() if k not in STEP_FIELDS}
    config = build_config(preset, saved=saved, **run_values)
    check_run(config, num_gpus, num_nodes)
    return config


def _run_parameters(config: RunConfig) -> dict:
    """The run's pipeline parameters: its own (OWN_PARAMETERS) and `config`, the rest of its
    fields but those the steps decide."""
    values = config.to_dict()
    return {
        **{f: values.pop(f) for f in OWN_PARAMETERS},
        "config": {k: v for k, v in values.items() if k not in STEP_FIELDS},
    }


def _resolved(settings: PipelineSettings, dataset: str) -> PipelineSettings:
    """The settings with what '' stands for filled in (the data version data.dvc tracks, the
    registry's default name), the test metrics checked and the workspace made absolute."""
    from adautomix.eval import check_metrics

    try:
        version = normalise_version(settings.data_version) or tracked_version(
            dataset, settings.workspace
        )
    except DataError as exc:  # a pipeline parameter, so a configuration error to the caller
        raise ConfigError(str(exc)) from None
    return replace(
        settings,
        data_version=version,
        registered_model=settings.registered_model or default_model_name(dataset),
        test_metrics=tuple(check_metrics(settings.test_metrics)),
        workspace=str(Path(settings.workspace).resolve()),
    )
