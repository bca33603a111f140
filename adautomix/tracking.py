"""MLflow tracking: start or resume a run, log the config, metrics, images and models.

The embedded default is a SQLite store in the working directory (`mlflow.db`, artifacts under
`mlartifacts/`); `MLFLOW_TRACKING_URI` points anywhere else (an `http://` server, another file).
Only this module and registry.py import mlflow.

Every URI this module puts in a message goes through `redact`, and MLflow's own "View run at"
lines are turned off for a URI that carries credentials, so no password reaches a terminal or a
log. A run is tagged with its output folder: a fresh start there marks a run that a kill left
RUNNING as KILLED, so no run stays RUNNING with no process behind it.

The store is checked before a run writes anything (`check_store`): a SQLite file must lie in an
existing, writable folder (InputError, exit 2), and a server must answer one request within seconds,
with no retries (RunFailure, exit 1). That request goes through MLflow's own HTTP client with the
same credentials (MLFLOW_TRACKING_TOKEN, MLFLOW_TRACKING_USERNAME/PASSWORD, or the URI's
user:password@) and TLS settings (MLFLOW_TRACKING_SERVER_CERT_PATH,
MLFLOW_TRACKING_CLIENT_CERT_PATH, MLFLOW_TRACKING_INSECURE_TLS) as every later call, so an ingress
that wants a token or a private CA is reached by the check exactly as by the run.

A fresh run records the image it ran from (provenance.running_image: the reference, its digest
and how the digest was learnt) as the tags image, image_digest and image_digest_source."""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import mlflow
from mlflow.tracking import MlflowClient

from .config import RunConfig
from .errors import InputError, RunFailure
from .provenance import git_commit, machine, running_image
from .redact import redact, redact_handlers

log = logging.getLogger("adautomix.tracking")
DIGEST_LENGTH = 36

redact_handlers(logging.getLogger("mlflow"))  # MLflow logs URIs on its own handler

# The tag that ties a run to the folder it checkpoints in.
OUTPUT_DIR_TAG = "output_dir"
# Why a run ended FAILED or KILLED, when it did not end on its own.
FAILURE_TAG = "failure_reason"


class TrackingError(RunFailure):
    """The tracking server cannot be used; the message names the URI and the fix."""


class TrackingStoreError(InputError):
    """A tracking URI that cannot work as given (a SQLite file in a missing or read-only folder);
    the message names the path and the fix."""


# The reachability check: seconds to connect, then to answer. No retries: a refused or silent
# port is reported at once instead of after MLflow's backoff (about 34 s with two retries).
PROBE_TIMEOUT = (5, 30)
PROBE_ENDPOINT = "/api/2.0/mlflow/experiments/search"


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / 'mlflow.db'}"


def display_uri() -> str:
    """The tracking URI as it may be printed: credentials masked."""
    return redact(tracking_uri())


def _artifact_location(uri: str) -> str | None:
    # For the embedded SQLite store keep artifacts beside the database, not in ./mlruns.
    if uri.startswith("sqlite:///"):
        return (Path(uri[len("sqlite:///") :]).parent / "mlartifacts").resolve().as_uri()
    return None


def check_store(uri: str | None = None, writing: bool = True) -> None:
    """Fail now, in one line, if the store cannot take a run: before anything is written.

    A SQLite file needs an existing folder (none is created: a missing one is more often a typo
    than a wish) that is writable when `writing` (SQLite writes its journal beside the file); a
    server must answer one request (`probe_server`). Other stores are left to MLflow."""
    uri = uri or tracking_uri()
    if uri.startswith("sqlite:///"):
        _check_sqlite(uri, writing)
    elif uri.startswith(("http://", "https://")):
        probe_server(uri)


def _check_sqlite(uri: str, writing: bool) -> None:
    path_text = uri[len("sqlite:///") :].split("?")[0]
    if not path_text or path_text == ":memory:":
        return
    path = Path(path_text).absolute()
    shown = f"MLFLOW_TRACKING_URI {redact(uri)}"
    fix = (
        "or point MLFLOW_TRACKING_URI at a database file in a writable folder "
        "(or unset it for ./mlflow.db)"
    )
    if path.is_dir():
        raise TrackingStoreError(
            f"{shown}: {path} is a folder, not a database file; name a file "
            f"in it (sqlite:///{path / 'mlflow.db'}) {fix}"
        )
    folder = path.parent
    if not folder.is_dir():
        existing = next(p for p in (folder, *folder.parents) if p.exists() or p == p.parent)
        if existing.exists() and not existing.is_dir():
            raise TrackingStoreError(
                f"{shown}: {existing} is a file, not a folder; move it away {fix}"
            )
        raise TrackingStoreError(
            f"{shown}: the folder {folder} does not exist; create it (mkdir -p {folder}) {fix}"
        )
    if not writing:
        return
    if not os.access(folder, os.W_OK | os.X_OK):
        raise TrackingStoreError(
            f"{shown}: the folder {folder} is not writable (SQLite writes "
            f"its journal beside the database); make it writable {fix}"
        )
    if path.exists() and not os.access(path, os.R_OK | os.W_OK):
        raise TrackingStoreError(
            f"{shown}: the database {path} is read-only; make it writable (chmod u+rw {path}) {fix}"
        )
    artifacts = folder / "mlartifacts"  # where _artifact_location keeps the runs' artifacts
    if artifacts.exists() and not (artifacts.is_dir() and os.access(artifacts, os.W_OK | os.X_OK)):
        raise TrackingStoreError(
            f"{shown}: the artifact folder {artifacts} beside it is "
            f"{'not a folder' if not artifacts.is_dir() else 'not writable'}; "
            f"move it away or make it a writable folder {fix}"
        )


def probe_server(uri: str) -> None:
    """One request to the server with MLflow's own client, auth and TLS settings, no retries
    and a short timeout: a TrackingError naming the URI and the fix unless it answers."""
    from mlflow.tracking._tracking_service.utils import get_default_host_creds
    from mlflow.utils.rest_utils import http_request

    try:
        response = http_request(
            get_default_host_creds(uri),
            PROBE_ENDPOINT,
            "GET",
            max_retries=0,
            backoff_factor=0,
            backoff_jitter=0,
            timeout=PROBE_TIMEOUT,
            raise_on_status=False,
            params={"max_results": 1},
        )
    except Exception as exc:
        if "CERTIFICATE_VERIFY_FAILED" in str(exc) or "SSLError" in str(exc):
            raise TrackingError(
                redact(
                    f"MLflow tracking server at {uri} presented a TLS certificate this client does "
                    "not trust; set MLFLOW_TRACKING_SERVER_CERT_PATH to the CA bundle that signed "
                    "it (a file in the pod: mount it from a secret)"
                )
            ) from None
        raise _unreachable(uri, exc) from None
    if response.status_code in (401, 403):
        raise TrackingError(
            redact(
                f"MLflow tracking server at {uri} refused the request ({response.status_code} "
                f"{response.reason}); set MLFLOW_TRACKING_TOKEN (a bearer token, e.g. for an "
                "ingress) or MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD to credentials "
                "it accepts"
            )
        )


def _unreachable(uri: str, exc: BaseException) -> TrackingError:
    text = str(exc)
    if "refused" in text.lower():
        detail = "connection refused"
    elif "timed out" in text.lower() or "timeout" in text.lower():
        detail = f"no answer within {PROBE_TIMEOUT[0]} s"
    else:
        detail = f"{type(exc).__name__}: {(text.splitlines() or [''])[0][:200]}"
    return TrackingError(
        redact(
            f"MLflow tracking server at {uri} cannot be reached ({detail}). Start it (mlflow "
            f"server --host 127.0.0.1 --port 5000), "
            "fix MLFLOW_TRACKING_URI, or unset it to use the embedded SQLite store."
        )
    )


def connect(uri: str | None = None, writing: bool = True) -> MlflowClient:
    """Point MLflow at the store and check it answers, so a dead server fails now and clearly.
    `writing` False (reading runs only) lets a SQLite store lie in a read-only folder."""
    uri = uri or tracking_uri()
    if redact(uri) != uri:  # MLflow would print the URI, credentials and all, on every run's end
        os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"
    check_store(uri, writing)
    mlflow.set_tracking_uri(uri)
    if uri.startswith("http"):
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
    try:
        client = MlflowClient(uri)
        client.search_experiments(max_results=1)
    except Exception as exc:
        if not uri.startswith("sqlite:"):
            raise _unreachable(uri, exc) from None
        detail = (str(exc).splitlines() or [""])[0][:200]
        raise TrackingStoreError(
            redact(
                f"MLFLOW_TRACKING_URI {uri} cannot be opened as an MLflow store "
                f"({type(exc).__name__}: {detail}); point it at a new file, or move the damaged "
                f"one "
                "away"
            )
        ) from None
    return client


def run_name(config: RunConfig) -> str:
    """The config's run name, else one a person can read in a list: method-model-dataset-seed."""
    return config.run_name or f"{config.method}-{config.model}-{config.dataset}-seed{config.seed}"


def setup_params(method_options: dict[str, Any], recipe: dict[str, Any]) -> dict[str, Any]:
    """What the config leaves implicit, resolved: every option of the method with its value,
    defaults included (`method.KEY`), and the augmentation recipe with the normalisation
    constants it used (`recipe.KEY`)."""
    params = {f"method.{k}": v for k, v in sorted(method_options.items())}
    params.update({f"recipe.{k}": v for k, v in sorted(recipe.items())})
    return params


class Tracker:
    """One MLflow run. `Tracker(config, run_id=...)` resumes that run instead of starting one.
    `system_metrics`: MLflow samples CPU, memory and (through nvidia-ml-py) GPU utilisation and
    memory as system/* metrics while the run is open; False leaves it to MLflow's own setting
    (MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING)."""

    def __init__(
        self,
        config: RunConfig,
        data_hash: str,
        run_id: str | None = None,
        extra_tags: dict[str, str] | None = None,
        system_metrics: bool = False,
    ):
        self.uri = tracking_uri()
        self.client = connect(self.uri)
        experiment = self.client.get_experiment_by_name(config.experiment)
        experiment_id = (
            experiment.experiment_id
            if experiment
            else self.client.create_experiment(
                config.experiment, artifact_location=_artifact_location(self.uri)
            )
        )
        output_dir = str(Path(config.output_dir).resolve())
        stale = _running_runs(self.client, experiment_id, output_dir, besides=run_id)
        for run in stale:  # a kill leaves its run RUNNING; nothing else will end it
            self.client.set_tag(run, FAILURE_TAG, "killed: its process ended without closing it")
            self.client.set_terminated(run, "KILLED")
            log.info("marked MLflow run %s of %s KILLED: its process is gone", run, output_dir)
        self.previous_status = None
        if run_id:
            # what the run was before this resumed it: a later evaluation must not turn a
            # FAILED or KILLED training into a FINISHED one
            self.previous_status = self.client.get_run(run_id).info.status
            self.run = mlflow.start_run(run_id=run_id, log_system_metrics=system_metrics or None)
            log.info("resumed MLflow run %s", run_id)
            return
        commit = git_commit()
        tags = {
            "method": config.method,
            "model": config.model,
            "dataset": config.dataset,
            "seed": str(config.seed),
            "git_commit": commit,
            "mlflow.source.git.commit": commit,
            "data_hash": data_hash,
            "machine": machine(),
            **running_image().tags(),
            OUTPUT_DIR_TAG: output_dir,
            **(extra_tags or {}),
        }
        self.run = mlflow.start_run(
            experiment_id=experiment_id,
            run_name=run_name(config),
            tags=tags,
            log_system_metrics=system_metrics or None,
        )
        mlflow.log_params(config.flat())
        mlflow.log_dict(config.to_dict(), "config.json")

    @property
    def run_id(self) -> str:
        return self.run.info.run_id

    def log_params(self, params: dict[str, Any]) -> None:
        """Params not yet logged (a resumed run logged its own already; MLflow refuses a
        changed value)."""
        known = mlflow.get_run(self.run_id).data.params
        fresh = {k: v for k, v in params.items() if k not in known}
        if fresh:
            mlflow.log_params(fresh)

    def log_dataset(self, name: str, digest: str, source: str, context: str = "training") -> None:
        """The dataset as an MLflow input: its version as the digest, where it lives as the
        source (a DVC remote's URL, or the local folder)."""
        from mlflow.data.dataset_source_registry import resolve_dataset_source
        from mlflow.data.meta_dataset import MetaDataset

        # MLflow keeps at most 36 characters of a digest: a DVC hash (32 hex digits and ".dir")
        # fits whole; a sha256 content hash keeps its first 36 digits (in full: tag data_hash).
        digest = digest[:DIGEST_LENGTH]
        known = {
            (d.dataset.name, d.dataset.digest)
            for d in mlflow.get_run(self.run_id).inputs.dataset_inputs
        }
        if (name, digest) in known:
            return
        with warnings.catch_warnings():
            # a local path resolves to MLflow's local artifact source by two equal rules
            warnings.filterwarnings("ignore", message=".*interpreted in multiple ways")
            resolved = resolve_dataset_source(source)
        mlflow.log_input(MetaDataset(resolved, name=name, digest=digest), context=context)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, step=step)

    def log_figure(self, figure: Any, name: str) -> None:
        mlflow.log_figure(figure, name)

    def log_image(self, image: Any, name: str) -> None:
        """A PIL image or an H×W×C uint8 array, stored as PNG."""
        mlflow.log_image(image, name)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        mlflow.log_artifact(str(path), artifact_path)

    def log_dict(self, values: dict[str, Any], name: str) -> None:
        mlflow.log_dict(values, name)

    def set_tags(self, tags: dict[str, str]) -> None:
        mlflow.set_tags(tags)

    def log_model(
        self, network: Any, example: Any, mean: Sequence[float], std: Sequence[float]
    ) -> str:
        """The network as an MLflow PyTorch model that takes images in [0, 1] (N×C×H×W float32)
        and normalises them itself with `mean` and `std`; `example` is a batch of such images,
        which gives the signature and the input example. Returns the logged model's URI."""
        import copy

        import mlflow.pytorch
        import torch
        from mlflow.models import infer_signature

        from .models.serving import NormalizedInput, uses_torchvision

        served = NormalizedInput(copy.deepcopy(network), mean, std).to(example.device).eval()
        with torch.inference_mode():
            outputs = served(example).float().cpu().numpy()
        inputs = example.float().cpu().numpy()
        # Pickled, not torch.export-ed: export takes seconds and not every network traces. The
        # model carries this package's code so it loads where adautomix is not installed; naming
        # the requirements spares MLflow a subprocess that guesses them.
        requirements = [
            f"torch=={_release(torch.__version__)}",
            f"cloudpickle=={_installed('cloudpickle')}",
        ]
        if uses_torchvision(network):
            import torchvision

            requirements.append(f"torchvision=={_release(torchvision.__version__)}")
        info = mlflow.pytorch.log_model(
            served,
            name="model",
            input_example=inputs,
            signature=infer_signature(inputs, outputs),
            serialization_format="pickle",
            pip_requirements=requirements,
            code_paths=[str(Path(__file__).resolve().parent)],
        )
        return info.model_uri

    def log_resume(self, changes: dict[str, tuple[Any, Any]], epoch: int) -> None:
        """Record the config changes a resume made (params keep the first values: MLflow params
        cannot change), as the tag resume_changes and the artifact resumes/epoch_NNNN.json."""
        shown = ", ".join(f"{k} {old!r} -> {new!r}" for k, (old, new) in sorted(changes.items()))
        previous = self.client.get_run(self.run_id).data.tags.get("resume_changes")
        mlflow.set_tag("resume_changes", f"{previous}; {shown}" if previous else shown)
        mlflow.log_dict(
            {"epoch": epoch, "changes": {k: list(c) for k, c in changes.items()}},
            f"resumes/epoch_{epoch:04d}.json",
        )
        log.info("resumed at epoch %d with %s", epoch, shown)

    def finish(self, status: str = "FINISHED", reason: str = "") -> None:
        """End the run; a FAILED or KILLED one says why in its failure_reason tag."""
        if reason:
            mlflow.set_tag(FAILURE_TAG, redact(reason)[:5000])
        mlflow.end_run(status=status)


def _release(version: str) -> str:
    return version.split("+")[0]  # a local build tag (+cpu, +cu128) is no pip version


def _installed(name: str) -> str:
    from importlib.metadata import version

    return version(name)


def _running_runs(
    client: MlflowClient, experiment_id: str, output_dir: str, besides: str | None
) -> list[str]:
    """The RUNNING runs tagged with `output_dir`, except `besides`."""
    if "'" in output_dir:
        if '"' in output_dir:  # no quoting can hold both; such a folder keeps its stale runs
            return []
        quoted = f'"{output_dir}"'
    else:
        quoted = f"'{output_dir}'"
    found = client.search_runs(
        [experiment_id],
        f"tags.{OUTPUT_DIR_TAG} = {quoted} and attributes.status = 'RUNNING'",
        max_results=100,
    )
    return [r.info.run_id for r in found if r.info.run_id != besides]


# A seed group's summary run (adautomix/seed_groups.py) carries this tag; the runs it summarises
# are the experiment's training runs, and a summary is never one of them.
SUMMARY_TAG = "seed_group_summary"


def experiment_runs(
    experiment: str, statuses: tuple[str, ...] = ("FINISHED",), summaries: bool = False
) -> list[dict[str, Any]]:
    """The runs of an experiment in `statuses` (FINISHED by default): {"run_id", "name",
    "status", "start_time", "end_time" (ms), "params", "tags", "metrics"} each, the metrics at
    their last logged value. Seed groups' summary runs only with `summaries`."""
    client = connect(writing=False)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        names = ", ".join(e.name for e in client.search_experiments(max_results=50))
        raise TrackingError(
            f"MLflow at {display_uri()} has no experiment {experiment!r}; it has: {names or 'none'}"
        )
    # (MLflow's filter takes a list of values for run ids only)
    only = f"attributes.status = '{statuses[0]}'" if len(statuses) == 1 else ""
    runs, token = [], None
    while True:
        page = client.search_runs([found.experiment_id], only, max_results=1000, page_token=token)
        runs += [
            {
                "run_id": r.info.run_id,
                "name": r.info.run_name,
                "status": r.info.status,
                "start_time": r.info.start_time,
                "end_time": r.info.end_time,
                "params": r.data.params,
                "tags": r.data.tags,
                "metrics": r.data.metrics,
            }
            for r in page
            if r.info.status in statuses and (summaries or SUMMARY_TAG not in r.data.tags)
        ]
        token = page.token
        if not token:
            return runs


# What a pipeline step cost from its process's start (interpreter, imports, data check) to its
# end: the run's step_seconds_<step> metric, so the pipeline's fixed cost per run is read from
# the store beside the training time (train_seconds, eval_seconds per epoch).
STEP_SECONDS = "step_seconds_"


def process_seconds() -> float:
    """Seconds since this process started (its creation time, as the kernel records it)."""
    import time

    import psutil

    return time.time() - psutil.Process().create_time()


def log_step_seconds(run_id: str, step: str) -> None:
    """Log `step_seconds_<step>`, this process's age, to a run, finished or not."""
    connect().log_metric(run_id, f"{STEP_SECONDS}{step}", process_seconds())
