"""Check a pipeline's parameters, then compile it to IR YAML, run it here, or submit it.

Every entry point goes through `training_arguments` or `sweep_arguments` first, so bad input
(negative epochs, an unknown method, a batch smaller than the method mixes, a data version that
is not a DVC hash) fails on the user's machine in a second, not an hour into a cluster run. The
arguments they return are complete: the preset's values fill every parameter the user left out,
and an empty data version becomes the one data.dvc tracks, so the data step's cache key is always
the data version itself."""

import sys
import warnings
from pathlib import Path

from adautomix.config import ConfigError, RunConfig
from adautomix.data.errors import DataError
from adautomix.errors import RunFailure
from adautomix.data.versioning import normalise_version, tracked_version
from adautomix.gate import Gate
from adautomix.registry import default_model_name
from adautomix.steps import STEP_FIELDS, TEST_METRICS, build_config, check_run
from pipeline import credentials
from pipeline.cluster import ClusterSettings, for_run
from pipeline.sweep import sweep_pipeline
from pipeline.training import training_pipeline

# RunConfig fields that are pipeline parameters of their own, not part of `config`: the data
# and register steps take the dataset too (pipeline/training.py).
OWN_PARAMETERS = ("dataset",)


class SubmitError(RunFailure):
    """The Kubeflow Pipelines endpoint refused or could not be reached; names the host."""


def training_arguments(
    preset: str = "",
    data_version: str = "",
    num_gpus: int = 1,
    registered_model: str = "",
    test_metrics: tuple[str, ...] = TEST_METRICS,
    project: str | Path = ".",
    num_nodes: int = 1,
    gate: Gate = Gate(),
    saved_config: dict | None = None,
    **run_values,
) -> dict:
    """The training pipeline's arguments: the preset (or the defaults) with `run_values` (any
    RunConfig fields, `method_args` included) on top of a `saved_config`'s fields, checked as one
    run configuration and passed as `dataset` and `config`, plus the data version, the registry
    name and gate, and the test metrics. `num_nodes` (ClusterSettings' node count, not a
    parameter) checks that the batch splits over every process."""
    config = _checked_config(preset, saved_config, num_gpus, run_values, num_nodes)
    return {
        **_run(config),
        **_gpus(num_gpus),
        "test_metrics": _checked_metrics(test_metrics),
        **_gate(gate),
        **_data_and_registry(config.dataset, data_version, registered_model, project),
    }


def sweep_arguments(
    methods: list[str],
    seeds: list[int],
    preset: str = "",
    data_version: str = "",
    num_gpus: int = 1,
    registered_model: str = "",
    test_metrics: tuple[str, ...] = TEST_METRICS,
    project: str | Path = ".",
    num_nodes: int = 1,
    gate: Gate = Gate(),
    saved_config: dict | None = None,
    method_options: dict[str, dict] | None = None,
    **run_values,
) -> dict:
    """The sweep's arguments: every method x seed is checked as a run configuration; the grid
    holds what each run changes of the first one's `config`. A run whose method is the preset's
    (or the saved config's) keeps its method options; another method starts from its own, with
    `method_options[method]` (a sweep preset's options for it) on top; `method_args` given in
    `run_values` go on top of either."""
    if not methods or not seeds:
        raise ConfigError("a sweep needs at least one method and one seed (--methods, --seeds)")
    if {"method", "seed"} & run_values.keys():
        raise ConfigError("a sweep takes --methods and --seeds, not --method and --seed")
    given = run_values.pop("method_args", {})
    configs = [
        _checked_config(
            preset,
            saved_config,
            num_gpus,
            {
                **run_values,
                "method": m,
                "seed": s,
                "method_args": {**(method_options or {}).get(m, {}), **given},
            },
            num_nodes,
        )
        # seed-major: a sweep cut short still holds every method for its first seeds
        for s in seeds
        for m in methods
    ]
    shared = configs[0]
    return {
        **_run(shared),
        **_gpus(num_gpus),
        "grid": [
            {"method": c.method, "seed": c.seed, "method_args": c.method_args} for c in configs
        ],
        "test_metrics": _checked_metrics(test_metrics),
        **_gate(gate),
        **_data_and_registry(shared.dataset, data_version, registered_model, project),
    }


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
    for run in arguments["grid"] if sweep else [{}]:
        RunConfig.from_dict({**config, **run, **{f: arguments[f] for f in OWN_PARAMETERS}})


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
        _build(sweep, cluster, arguments), str(path), pipeline_parameters=arguments
    )
    return Path(path)


def _build(sweep: bool, cluster: ClusterSettings, arguments: dict):
    """The pipeline for the cluster and the run's GPUs (train's resources scale with them; no GPU
    settings at all without)."""
    build = sweep_pipeline if sweep else training_pipeline
    return build(for_run(cluster, arguments["num_gpus"]))


def run_local(
    arguments: dict,
    sweep: bool = False,
    pipeline_root: str | Path = "runs/pipeline",
    workspace: str | Path = ".",
    data_remote: str = "",
) -> dict:
    """Run the pipeline here with kfp.local, each step a subprocess of this environment (and of
    this working directory, so they share MLflow's default store).

    The workspace is the project checkout (data.dvc, data/, runs/checkpoints/); data_remote ''
    is its DVC default remote. Returns the register step's outputs (version, aliases,
    tracking_uri)."""
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
        task = build(None)(
            **arguments, workspace=str(Path(workspace).resolve()), data_remote=data_remote
        )
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
    try:
        client = kfp.Client(host=host, **auth.client_arguments())
        run = client.create_run_from_pipeline_func(
            _build(sweep, cluster, arguments),
            arguments=arguments,
            run_name=run_name,
            experiment_name=experiment,
            enable_caching=cache,
        )
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
    return run.run_id


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
    check_run(config, num_gpus)
    if num_nodes < 1:
        raise ConfigError(f"num_nodes must be >= 1, got {num_nodes}")
    # the engine splits the batch over the processes: one per GPU (or one per CPU node), per node
    processes = max(num_gpus, 1) * num_nodes
    if config.batch_size % processes:
        raise ConfigError(
            f"batch_size {config.batch_size} does not split evenly over "
            f"{processes} processes ({max(num_gpus, 1)} per node x {num_nodes} "
            f"node(s)); use a multiple of {processes}"
        )
    return config


def _run(config: RunConfig) -> dict:
    """The run's pipeline parameters: its own (OWN_PARAMETERS) and `config`, the rest of its
    fields but those the steps decide."""
    values = config.to_dict()
    return {
        **{f: values.pop(f) for f in OWN_PARAMETERS},
        "config": {k: v for k, v in values.items() if k not in STEP_FIELDS},
    }


def _gpus(num_gpus: int) -> dict:
    """Training's GPUs, and evaluation's: one whenever training has any (pipeline.training)."""
    return {"num_gpus": num_gpus, "evaluate_gpus": min(num_gpus, 1)}


def _gate(gate: Gate) -> dict:
    return {"chance_margin": gate.chance_margin, "min_score": gate.min_score}


def _checked_metrics(names: tuple[str, ...]) -> list[str]:
    from adautomix.eval import check_metrics

    return check_metrics(names)


def _data_and_registry(
    dataset: str, data_version: str, registered_model: str, project: str | Path
) -> dict:
    try:
        version = normalise_version(data_version) or tracked_version(dataset, project)
    except DataError as exc:  # a pipeline parameter, so a configuration error to the caller
        raise ConfigError(str(exc)) from None
    return {
        "data_version": version,
        "registered_model": registered_model or default_model_name(dataset),
    }
