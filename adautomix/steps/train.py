"""The train step: train a configuration in a checkpoint folder named by what it computes (the
config, the data version and the code version), so a retried or re-run step resumes there
instead of starting over, and a new image starts a new folder instead of reusing an old model;
in this process, as several processes of torch's launcher, or (`prepare_run`,
`finished_result`) by a TrainJob's nodes. Nothing is written before the run's checks pass."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from ..config import UNCOMPUTED_FIELDS, ConfigError, RunConfig
from ..errors import RunFailure
from ..provenance import Provenance, code_version
from .checks import build_config, check_run
from .failures import recorded_failures


def checkpoint_dir(
    root: str | Path, config: RunConfig, data_version: str, code: str | None = None
) -> Path:
    """A folder named by what the run computes: its config less config.UNCOMPUTED_FIELDS (so a
    re-run resumes whatever the run name, data location or worker count), the data version and
    the code version (`code`, default this code's: provenance.code_version), so that a retried
    or re-run step of the same code finds its own checkpoint and resumes, and other code starts
    anew."""
    keyed = {k: v for k, v in config.to_dict().items() if k not in UNCOMPUTED_FIELDS}
    text = json.dumps(
        {"config": keyed, "data_version": data_version, "code_version": code or code_version()},
        sort_keys=True,
    )
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    return (
        Path(root) / f"{config.dataset}-{config.model}-{config.method}-seed{config.seed}-{digest}"
    )


def train_step(
    checkpoint_root: str | Path,
    data_version: str,
    preset: str = "",
    nproc: int = 1,
    data_source: str = "",
    tags: dict[str, str] | None = None,
    **values: Any,
):
    """Train the configuration `build_config(preset, **values)` in its persistent checkpoint
    folder under `checkpoint_root`, resuming from the checkpoint there if there is one.
    `data_source` (the DVC remote) and `tags` (the pipeline run's) go to its MLflow run.

    `nproc` > 1 starts that many processes here through torch's launcher (one per GPU, Gloo
    processes on a machine without CUDA) and reads the result back from the checkpoint.

    In a pipeline run (`tags` name it), a failure that a retry cannot change (bad input, a
    diverged loss) is recorded, and a retry fails at once with its line (steps/failures.py)."""
    arguments = dict(data_version=data_version, preset=preset, nproc=nproc, values=values)
    with recorded_failures(checkpoint_root, tags, arguments):
        return _train(checkpoint_root, data_version, preset, nproc, data_source, tags, values)


def _train(checkpoint_root, data_version, preset, nproc, data_source, tags, values):
    if nproc <= 1:  # the engine checks, then writes config.json and provenance.json
        from ..engine.train import train

        config, provenance = planned_run(
            checkpoint_root, data_version, preset, data_source, tags, values
        )
        return _timed(train(config, resume=True, provenance=provenance))
    import torch

    from ..cluster.launch import single_pod_command

    visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if 0 < visible < nproc:
        raise ConfigError(
            f"num_gpus {nproc} but this machine sees {visible} GPU(s); request "
            f"{nproc} GPUs for the step or lower --num-gpus"
        )
    config = prepare_run(
        checkpoint_root, data_version, preset, data_source=data_source, tags=tags, **values
    )
    out = Path(config.output_dir)
    run_ranks(single_pod_command(nproc, out / "config.json"), out, nproc)
    return _timed(finished_result(out))


def run_ranks(command: list[str], out: Path, nproc: int) -> None:
    """Run torchrun's `command` to its end; a SIGTERM (a pod's eviction, when it reaches this
    process alone) is passed on to torchrun, which passes it to its workers, and they checkpoint
    at their next step boundary while this process waits. A RunFailure if it did not succeed."""
    from ..engine.preemption import Preempted, run_passing_on_signals

    status, passed_on = run_passing_on_signals(command)
    if status == 0:
        return
    if passed_on:
        raise Preempted(
            f"stopped by {passed_on}, passed on to torchrun's {nproc} processes, which "
            f"checkpoint at their next step boundary (torchrun's status {status}); start it "
            f"again (a retried pipeline step does) to resume from the checkpoint in {out}"
        )
    raise RunFailure(
        f"torchrun with {nproc} processes exited with status {status} (the failing rank's "
        f"error is above); the last checkpoint in {out} is intact and a re-run resumes from it"
    )


def _timed(result):
    """The result, once the step's time so far is in its MLflow run."""
    if result.run_id is not None:
        from ..tracking import log_step_seconds

        log_step_seconds(result.run_id, "train")
    return result


def prepare_run(
    checkpoint_root: str | Path,
    data_version: str,
    preset: str = "",
    data_source: str = "",
    tags: dict[str, str] | None = None,
    **values: Any,
) -> RunConfig:
    """The run's configuration with its persistent output folder, saved there as config.json,
    and where its data and code came from, as provenance.json: what a launcher elsewhere
    (torchrun, a TrainJob's nodes) trains from. Written only once `check_start` has passed."""
    config, provenance = planned_run(
        checkpoint_root, data_version, preset, data_source, tags, values
    )
    check_start(config, adopting=_job_hosts(provenance.tags, config.output_dir))
    Path(config.output_dir).mkdir(parents=True, exist_ok=True)
    config.save(Path(config.output_dir) / "config.json")
    provenance.save(config.output_dir)
    return config


def planned_run(
    checkpoint_root: str | Path,
    data_version: str,
    preset: str,
    data_source: str,
    tags: dict[str, str] | None,
    values: dict[str, Any],
) -> tuple[RunConfig, Provenance]:
    """The run's configuration in its checkpoint folder, and its provenance; nothing written."""
    # A preset names its runs after itself; a pipeline's runs are named method-model-dataset-seed
    # (tracking.run_name), so that a sweep's runs tell themselves apart in MLflow's list.
    config = build_config(preset, **{"run_name": "", **values})
    config = config.replace(output_dir=str(checkpoint_dir(checkpoint_root, config, data_version)))
    return config, Provenance(data_version, data_source, dict(tags or {}))


def _job_hosts(tags: dict[str, str], output_dir: str) -> str:
    """What the host names of the job a retry of this step adopts start with: the job is named
    after the pipeline run and the folder (cluster/job.py job_name), and its pods after the job.
    '' outside a pipeline run, whose jobs get fresh names and are never adopted."""
    from ..cluster.job import job_name

    run_id = tags.get("kfp_run_id", "")
    return f"{job_name(run_id, output_dir)}-" if run_id else ""


def check_start(config: RunConfig, adopting: str = "") -> None:
    """What the engine's setup checks before it writes, made here for a run that processes
    elsewhere will train: the tracking store, the method's options and smallest batch, the data
    and the network's input size, the resume from the folder's checkpoint (its config and code
    version) and the folder's lock, which a pod whose host name starts with `adopting` may hold:
    the job of the attempt before, which a retried step adopts rather than being refused by it."""
    from ..data import Recipe, ensure_dataset
    from ..engine import run_lock
    from ..engine.train import resumable_state
    from ..models import check_input_size, create_model
    from ..tracking import check_store

    check_store()  # the ranks would find it cannot take the run only after config.json is written
    check_run(config)
    manifest = ensure_dataset(config.dataset, config.data_root)
    model = create_model(
        config.model, manifest.num_classes, in_chans=manifest.channels, width=config.model_width
    )
    check_input_size(
        model, config.model, manifest.channels, Recipe.from_config(config, manifest).image_size
    )
    resumable_state(config, resume=True)
    run_lock.check_free(config.output_dir, adopting=adopting)


def finished_result(run_dir: str | Path):
    """The TrainResult of a run trained by other processes, read from its checkpoint; an error
    if the run stopped before its last epoch (the checkpoint stays for the re-run to resume)."""
    from ..engine.checkpoint import RESUME_KEYS, load_checkpoint
    from ..engine.train import TrainResult, final_metrics

    run_dir = Path(run_dir)
    config = RunConfig.load(run_dir / "config.json")
    # what the result is read from, not the networks
    needed = {k: RESUME_KEYS[k] for k in ("epoch", "history", "run_id")}
    state = load_checkpoint(run_dir, map_location="cpu", keys=needed)
    epoch = state["epoch"] if state is not None else 0
    if epoch < config.epochs:
        raise RunFailure(
            f"training in {run_dir} stopped after epoch {epoch} of {config.epochs}; "
            "its checkpoint is intact and a re-run resumes from it"
        )
    return TrainResult(final_metrics(state["history"]), run_dir, state["run_id"], state["history"])
