"""A run configuration built and checked before any data exists: what a pipeline checks when it
is compiled, and what each step checks again when it runs; and what a pipeline's train step
hands the train step's functions (`step_arguments`), the same for the one-pod and the
several-node step."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from ..config import METHODS, ConfigError, RunConfig

# Fields a pipeline's steps decide, not the user: where the checkpoints go (a folder keyed by
# what the run computes), where the data step put the data, and the MLflow run's name
# (method-model-dataset-seed, so that a sweep's runs tell themselves apart).
STEP_FIELDS = ("output_dir", "data_root", "run_name")


def merged_values(base: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """`values` over `base` (a preset's or a saved config's fields). The base's method options
    carry over while the method stays the base's, and `values`' method options add to them;
    a different method starts from its own defaults."""
    for given in (base, values):
        if not isinstance(given.get("method_args", {}), dict):
            raise ConfigError(
                f"method_args must be a dict of method options, got {given['method_args']!r}"
            )
    base_args, method_args = base.get("method_args", {}), values.get("method_args", {})
    if values.get("method", base.get("method")) != base.get("method"):
        base_args = {}
    return {**base, **values, "method_args": {**base_args, **method_args}}


def build_config(
    preset: str = "", *, saved: dict[str, Any] | None = None, **values: Any
) -> RunConfig:
    """A preset's recipe (or the defaults when `preset` is empty), then a `saved` config's
    fields, with `values` on top (merged_values), its method options checked and recorded as
    the method takes them."""
    base: dict[str, Any] = {}
    if preset:
        from ..presets import get_preset

        base = get_preset(preset).to_dict()
    values = merged_values({**base, **(saved or {})}, values)
    if values.get("method_args"):
        from ..mixers import checked_options

        values["method_args"] = checked_options(
            values.get("method", RunConfig.method), values["method_args"]
        )
    return RunConfig.from_dict(values)


def check_run(config: RunConfig, num_gpus: int = 0, num_nodes: int = 1) -> None:
    """The checks RunConfig cannot make alone, made before any data exists: the method's options
    (by building the method on the configured network), the GPU and node counts, and the batch
    against the processes the engine will split it over (one per GPU, or one per CPU node, on
    each node): it splits evenly and each share holds what the method mixes into one sample."""
    from ..engine.distributed import check_method_batch
    from ..mixers import create_method
    from ..models import create_model

    if num_gpus < 0:
        raise ConfigError(f"num_gpus must be >= 0, got {num_gpus}")
    if num_nodes < 1:
        raise ConfigError(f"num_nodes must be >= 1, got {num_nodes}")
    # Class and channel counts do not change which options or batch sizes a method accepts.
    model = create_model(config.model, num_classes=10, in_chans=3, width=config.model_width)
    method = create_method(config.method, model, 10, **config.method_args)
    per_node = max(num_gpus, 1)
    check_method_batch(
        config.batch_size,
        per_node * num_nodes,
        config.method,
        getattr(method, "min_batch_size", 1),
        layout=f"{per_node} per node x {num_nodes} node(s)",
    )


def checkpoint_root(workspace: str | Path) -> str:
    """Where the runs of a workspace (a project checkout, or its volume) keep their checkpoint
    folders and the train step's failure records."""
    return f"{workspace}/runs/checkpoints"


def step_arguments(
    workspace: str,
    prepared: dict[str, Any],
    config: dict[str, Any],
    overrides: dict[str, Any],
    pipeline_name: str,
    pipeline_run_id: str,
    pipeline_run_name: str,
) -> dict[str, Any]:
    """What a pipeline's train step passes `train_step` or `prepare_run`: the run configuration
    (`config`, with a sweep's per-run `overrides` on top, on the data the data step `prepared`:
    its artifact's metadata), the checkpoint root in the workspace, the data's provenance and the
    pipeline run as MLflow tags."""
    decided = sorted(set(STEP_FIELDS) & (config.keys() | overrides.keys()))
    if decided:
        raise ConfigError(
            f"{decided} are decided by the pipeline's steps, not its config "
            "parameter; leave them out"
        )
    check_prepared(prepared)
    values = _as_declared(
        {**config, **overrides, "dataset": prepared["dataset"], "data_root": prepared["data_root"]}
    )
    return dict(
        checkpoint_root=checkpoint_root(workspace),
        # the data step's version, carried by its artifact: a loop's task could not take it as a
        # parameter (kfp.local hands a ParallelFor body's upstream outputs the loop item instead)
        data_version=prepared.get("data_version", ""),
        data_source=prepared.get("remote_url", ""),
        tags={
            "kfp_pipeline": pipeline_name,
            "kfp_run_id": pipeline_run_id,
            "kfp_run_name": pipeline_run_name,
        },
        **values,
    )


def check_prepared(prepared: dict[str, Any]) -> None:
    """The data the data step reported (its artifact's metadata) is where it said, with the
    content hash it said. Kubeflow Pipelines can hand on a cached data step's result from a run
    on another volume, or from before this one was recreated or emptied: the dataset is then
    missing or another, and the fix is a run without the cache, not `dvc pull`. Metadata without
    the data step's content hash (an artifact made by hand) has nothing to check against."""
    from ..data.errors import DataError
    from ..data.prepare import MANIFEST

    expected = prepared.get("sha256")
    if not expected:
        return
    name, root = prepared["dataset"], Path(prepared["data_root"])
    claim = prepared.get("workspace_volume")
    cached = (
        "the data step's result came from Kubeflow Pipelines' cache of a run on another "
        f"workspace volume, or on {f'claim {claim}' if claim else 'this one'} before it was "
        "recreated or emptied; submit the run again with --no-cache"
    )
    manifest = root / name / MANIFEST
    if not manifest.exists():
        raise DataError(f"dataset {name} is not in {root}, where the data step put it: {cached}")
    try:
        found = json.loads(manifest.read_text()).get("sha256")
    except (OSError, ValueError):
        found = None
    if found != expected:
        raise DataError(
            f"{root / name} holds other data (content hash {str(found)[:12]}) than the data "
            f"step prepared ({expected[:12]}): {cached}"
        )


def _as_declared(values: dict[str, Any]) -> dict[str, Any]:
    """`values` with the integers they were written with: a pipeline passes a dict parameter
    through protobuf's Struct, whose numbers are all floats (a batch size of 100 arrives as
    100.0), so whole numbers become ints again where RunConfig or the method declares an int."""

    def declared(value: Any, kind: Any) -> Any:
        if kind is int and isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(kind, tuple) and isinstance(value, list):
            return [declared(v, k) for v, k in zip(value, kind)]
        return value

    kinds = {f.name: int for f in dataclasses.fields(RunConfig) if f.type == "int"}
    typed = {k: declared(v, kinds.get(k)) for k, v in values.items()}
    if typed.get("method_args") and typed.get("method") in METHODS:
        from ..mixers import method_defaults

        defaults = method_defaults(typed["method"])
        typed["method_args"] = {
            k: declared(
                v,
                tuple(map(type, defaults[k]))
                if isinstance(defaults.get(k), tuple)
                else type(defaults.get(k)),
            )
            for k, v in typed["method_args"].items()
        }
    return typed
