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

Every MLflow call of a run goes through `Tracker._recorded`: a failure becomes a TrackingError
(exit 1) whose message, and the traceback --debug shows (redact.redacted), carry the URI masked.
A server lost mid-run (no connection, no answer, a gateway error) is not tried again by that run:
the record it missed (an epoch's metrics, a figure) waits in the output folder (BACKLOG_NAME)
and the next Tracker there sends it before anything else.

A fresh run records the image it ran from (provenance.running_image: the reference, its digest
and how the digest was learnt) as the tags image, image_digest and image_digest_source."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import mlflow
import requests
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from .config import RunConfig
from .errors import InputError, RunFailure
from .provenance import git_commit, machine, running_image
from .redact import redact, redact_handlers, redact_records, redacted

log = logging.getLogger("adautomix.tracking")
DIGEST_LENGTH = 36

redact_handlers(logging.getLogger("mlflow"))  # MLflow logs URIs on its own handler
# urllib3 logs every retry of a failing request, to whatever handler the application has
redact_records("urllib3.connectionpool", "urllib3.util.retry")

# The tag that ties a run to the folder it checkpoints in.
OUTPUT_DIR_TAG = "output_dir"
# Why a run ended FAILED or KILLED, when it did not end on its own.
FAILURE_TAG = "failure_reason"
# What a resumed run that then FINISHED had failed with: its failure_reason no longer stands.
RECOVERED_TAG = "recovered_from"
# The folder, in a run's output folder, of the records a lost server missed: one folder per
# MLflow run, with metrics.json (a list of {"step", "values"}) and the artifacts under their names.
BACKLOG_NAME = "tracking-backlog"


class TrackingError(RunFailure):
    """The tracking server cannot be used; the message names the URI and the fix. `lost`: the
    server stopped answering mid-run (the run records nothing more)."""

    lost = False


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
    # what access() cannot tell: it reads the mode bits, which a folder on a read-only mount,
    # or /proc, passes while refusing every file, and which root passes whatever they say
    try:
        if path.exists():
            with open(path, "r+b"):
                pass
        else:
            probe, probe_path = tempfile.mkstemp(prefix=".mlflow-write-check-", dir=folder)
            os.close(probe)
            os.unlink(probe_path)
    except OSError as exc:
        target = path if path.exists() else folder
        raise TrackingStoreError(
            f"{shown}: cannot write {'the database' if path.exists() else 'a file in'} "
            f"{target} ({exc.strerror or type(exc).__name__}); make it writable {fix}"
        ) from None
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
        # a blip of a second or two is ridden out; a server gone for good is reported within
        # seconds (MLflow's own 7 retries with a backoff factor of 2 wait minutes)
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
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
    (MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING). A start sends what a lost server missed before
    (BACKLOG_NAME in the output folder) first."""

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
        self.backlog = Path(config.output_dir).resolve() / BACKLOG_NAME
        self.lost: TrackingError | None = None
        self.previous_status = None
        self.failure_reason = ""  # of the run this resumed, if it had one
        self.sent: set[tuple[str, int, float]] = set()  # (key, step, value) already recorded
        self._recorded(
            "the start of the run",
            self._start,
            config,
            data_hash,
            run_id,
            extra_tags,
            system_metrics,
        )
        self._recorded(f"what {self.backlog} holds", self._send_backlog)

    def _start(self, config, data_hash, run_id, extra_tags, system_metrics) -> None:
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
        if run_id:
            # what the run was before this resumed it: a later evaluation must not turn a
            # FAILED or KILLED training into a FINISHED one
            before = self.client.get_run(run_id)
            self.previous_status = before.info.status
            self.failure_reason = before.data.tags.get(FAILURE_TAG, "")
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

    # --- every MLflow call of the run goes through _recorded ------------------------------------

    def _recorded(self, what: str, call, *args, keep=None, **kwargs):
        """`call(*args, **kwargs)`; an MLflow failure becomes a TrackingError that names `what`
        and the URI, credentials masked. A lost server is not asked again; `keep(folder)` saves
        what it missed there, for the next start to send."""
        if self.lost is not None:
            raise self.lost
        try:
            return call(*args, **kwargs)
        except RECORDING_FAILURES as exc:
            failure = exc
        lost = _is_lost(failure)
        detail = _failure_detail(failure)
        if not lost:
            message = f"MLflow at {self.uri} could not record {what} ({detail})"
        else:
            message = (
                f"lost the MLflow tracking server at {self.uri} while recording {what} ({detail})"
            )
            if keep is not None:
                message += self._keep(what, keep)
        error = TrackingError(redact(message))
        error.lost = lost
        cause = redacted(failure)  # for --debug: the frames, the text masked
        del failure  # the original's text may carry the password: nothing may lead to it
        if lost:
            self.lost = error
            # MLflow would end an open run at exit, retries and all, against a lost server
            _drop_active_run(getattr(self, "run", None))
        raise error from cause

    def _keep(self, what: str, keep) -> str:
        folder = self.backlog / self.run_id
        try:
            folder.mkdir(parents=True, exist_ok=True)
            keep(folder)
        except OSError as exc:
            why = exc.strerror or type(exc).__name__
            return f"; it could not be kept for later either ({why}): {what} is missing"
        return f"; that record waits in {self.backlog} for the next start there to send it"

    def _send_backlog(self) -> None:
        """Send what a lost server missed, for every run it was kept for, then forget it; a
        record the server now refuses (a changed value) is dropped with a warning."""
        if not self.backlog.is_dir():
            return
        for folder in sorted(p for p in self.backlog.iterdir() if p.is_dir()):
            run_id, kept = folder.name, folder / "metrics.json"
            try:
                self._send_metrics(run_id, json.loads(kept.read_text()) if kept.exists() else [])
                artifacts = folder / "artifacts"
                for path in sorted(p for p in artifacts.rglob("*") if p.is_file()):
                    where = path.parent.relative_to(artifacts).as_posix()
                    self.client.log_artifact(run_id, str(path), None if where == "." else where)
            except (*RECORDING_FAILURES, ValueError, KeyError, TypeError) as exc:
                if isinstance(exc, RECORDING_FAILURES) and _is_lost(exc):
                    raise
                # kept, it would stop every later start there the same way
                log.warning(
                    "%s",
                    redact(
                        f"dropped what {folder} kept for MLflow run {run_id}: it cannot be "
                        f"sent ({_failure_detail(exc)})"
                    ),
                )
            else:
                log.info("sent MLflow run %s what a lost server missed (%s)", run_id, folder)
            shutil.rmtree(folder, ignore_errors=True)
        with contextlib.suppress(OSError):
            self.backlog.rmdir()

    def _send_metrics(self, run_id: str, entries: list[dict[str, Any]]) -> None:
        from mlflow.entities import Metric

        history: dict[str, set[tuple[int, float]]] = {}
        for key in {k for entry in entries for k in entry["values"]}:
            history[key] = {(m.step, m.value) for m in self.client.get_metric_history(run_id, key)}
        now = int(time.time() * 1000)
        fresh = [
            Metric(key, value, now, entry["step"])
            for entry in entries
            for key, value in entry["values"].items()
            if (entry["step"], value) not in history[key]  # a request may land and its answer not
        ]
        if fresh:
            self.client.log_batch(run_id, metrics=fresh)
        if run_id == self.run_id:  # a later log of the same value at the same step is no news
            self.sent |= {(k, e["step"], v) for e in entries for k, v in e["values"].items()}

    # --- what a run records -----------------------------------------------------------------

    def log_params(self, params: dict[str, Any]) -> None:
        """Params not yet logged (a resumed run logged its own already; MLflow refuses a
        changed value)."""

        def log_fresh():
            known = mlflow.get_run(self.run_id).data.params
            fresh = {k: v for k, v in params.items() if k not in known}
            if fresh:
                mlflow.log_params(fresh)

        self._recorded("its parameters", log_fresh)

    def log_dataset(self, name: str, digest: str, source: str, context: str = "training") -> None:
        """The dataset as an MLflow input: its version as the digest, where it lives as the
        source (a DVC remote's URL, or the local folder)."""
        self._recorded(f"its dataset {name}", self._log_dataset, name, digest, source, context)

    def _log_dataset(self, name: str, digest: str, source: str, context: str) -> None:
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
        values = {k: float(v) for k, v in metrics.items()}
        values = {k: v for k, v in values.items() if (k, step, v) not in self.sent}
        if not values:
            return

        def keep(folder: Path) -> None:
            path = folder / "metrics.json"
            entries = json.loads(path.read_text()) if path.exists() else []
            path.write_text(json.dumps([*entries, {"step": step, "values": values}]))

        self._recorded(
            f"the metrics of step {step}", mlflow.log_metrics, values, step=step, keep=keep
        )

    def log_figure(self, figure: Any, name: str) -> None:
        def keep(folder: Path) -> None:
            path = folder / "artifacts" / name
            path.parent.mkdir(parents=True, exist_ok=True)
            figure.savefig(path)

        self._recorded(name, mlflow.log_figure, figure, name, keep=keep)

    def log_image(self, image: Any, name: str) -> None:
        """A PIL image or an H×W×C uint8 array, stored as PNG."""
        self._recorded(name, mlflow.log_image, image, name)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        self._recorded(Path(path).name, mlflow.log_artifact, str(path), artifact_path)

    def log_dict(self, values: dict[str, Any], name: str) -> None:
        self._recorded(name, mlflow.log_dict, values, name)

    def set_tags(self, tags: dict[str, str]) -> None:
        self._recorded(f"the tags {', '.join(sorted(tags))}", mlflow.set_tags, tags)

    def log_model(
        self, network: Any, example: Any, mean: Sequence[float], std: Sequence[float]
    ) -> str:
        """The network as an MLflow PyTorch model that takes images in [0, 1] (N×C×H×W float32)
        and normalises them itself with `mean` and `std`; `example` is a batch of such images,
        which gives the signature and the input example. Returns the logged model's URI."""
        return self._recorded("the model", self._log_model, network, example, mean, std)

    def _log_model(
        self, network: Any, example: Any, mean: Sequence[float], std: Sequence[float]
    ) -> str:
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

        def record():
            previous = self.client.get_run(self.run_id).data.tags.get("resume_changes")
            mlflow.set_tag("resume_changes", f"{previous}; {shown}" if previous else shown)
            mlflow.log_dict(
                {"epoch": epoch, "changes": {k: list(c) for k, c in changes.items()}},
                f"resumes/epoch_{epoch:04d}.json",
            )

        self._recorded("the resume's changes", record)
        log.info("resumed at epoch %d with %s", epoch, shown)

    def catch_up(self, history: list[dict[str, float]]) -> None:
        """Log what `history` (a checkpoint's, one entry an epoch) holds and the run does not: a
        kill between an epoch's checkpoint and its record (MLflow hears of an epoch only once it
        is checkpointed) leaves that epoch in the checkpoint alone."""
        entries = [
            {
                "step": int(metrics.get("epoch", index + 1)),
                "values": {key: float(value) for key, value in metrics.items()},
            }
            for index, metrics in enumerate(history)
        ]
        self._recorded("the epochs its checkpoint holds", self._send_metrics, self.run_id, entries)

    def finish(self, status: str = "FINISHED", reason: str = "") -> None:
        """End the run; a FAILED or KILLED one says why in its failure_reason tag, and a resumed
        one that FINISHED drops the reason it had failed with (kept as recovered_from). Against
        a lost server there is nothing to end: the run stays RUNNING until a resume continues
        it or a fresh start in its folder marks it KILLED."""
        if self.lost is not None:
            return

        def end():
            if reason:
                mlflow.set_tag(FAILURE_TAG, redact(reason)[:5000])
            elif status == "FINISHED" and self.failure_reason:
                self.client.delete_tag(self.run_id, FAILURE_TAG)
                was = f"{self.previous_status}: {self.failure_reason}"
                mlflow.set_tag(RECOVERED_TAG, was[:5000])
            mlflow.end_run(status=status)

        self._recorded(f"the run's end ({status})", end)


# What a call to MLflow raises when the store fails it (requests' and urllib3's errors reach a
# caller only wrapped in an MlflowException; OSError: a local artifact folder). A bug of ours,
# a TypeError say, is none of these and keeps its traceback.
RECORDING_FAILURES = (MlflowException, requests.RequestException, OSError)
# Answers that say the server behind a gateway or load balancer is gone, not that it refused.
GATEWAY_STATUSES = (502, 503, 504)


def _chain(exc: BaseException) -> list[BaseException]:
    found: list[BaseException] = []
    while exc is not None and exc not in found and len(found) < 20:
        found.append(exc)
        exc = exc.__cause__ or exc.__context__
    return found


def _is_lost(exc: BaseException) -> bool:
    """Whether `exc` says the server could not be reached or did not answer (no connection, a
    timeout, a gateway error after the retries), rather than that it refused the request."""
    for link in _chain(exc):
        if isinstance(
            link,
            (
                requests.ConnectionError,
                requests.Timeout,
                requests.exceptions.RetryError,
                ConnectionError,
                TimeoutError,
            ),
        ):
            return True
        if isinstance(link, MlflowException) and link.get_http_status_code() in GATEWAY_STATUSES:
            return True
    return False


def _failure_detail(exc: BaseException) -> str:
    """What went wrong, in a few words: how the connection failed for a lost server, else the
    first line of the error."""
    if _is_lost(exc):
        text = " ".join(str(link) for link in _chain(exc)).lower()
        if "refused" in text:
            return "connection refused"
        if "timed out" in text or "timeout" in text:
            return f"no answer within {os.environ.get('MLFLOW_HTTP_REQUEST_TIMEOUT', '120')} s"
        if "remotedisconnected" in text or "connection aborted" in text or "reset by" in text:
            return "the connection dropped"
        if "too many" in text and "error responses" in text:
            return "it answered with server errors until the retries ran out"
    first = (str(exc).splitlines() or [""])[0][:200]
    return f"{type(exc).__name__}: {first}"


def _drop_active_run(run: Any) -> None:
    """Forget `run` as MLflow's active run here, without the request that would end it on the
    server (MLflow keeps its active runs in a private stack: a change there leaves it active)."""
    from mlflow.environment_variables import MLFLOW_RUN_ID
    from mlflow.tracking import fluent

    if run is None:
        return
    with contextlib.suppress(Exception):
        stack = fluent._active_run_stack
        runs = stack.get() if hasattr(stack, "get") else stack
        if runs and runs[-1].info.run_id == run.info.run_id:
            runs.pop()
            MLFLOW_RUN_ID.unset()


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


def log_batch(
    client: MlflowClient,
    run_id: str,
    metrics: dict[str, float] | None = None,
    params: dict[str, str] | None = None,
    tags: dict[str, str] | None = None,
    step: int = 0,
) -> None:
    """Metrics (at `step`, now), params and tags into a run, in batches MLflow accepts."""
    import time

    from mlflow.entities import Metric, Param, RunTag

    now = int(time.time() * 1000)
    # MLflow takes at most 1000 metrics, 100 params and 100 tags in one request
    batches = [
        ("metrics", [Metric(k, v, now, step) for k, v in sorted((metrics or {}).items())], 1000),
        ("params", [Param(k, str(v)) for k, v in sorted((params or {}).items())], 100),
        ("tags", [RunTag(k, v) for k, v in (tags or {}).items()], 100),
    ]
    for kind, entries, limit in batches:
        for start in range(0, len(entries), limit):
            client.log_batch(run_id, **{kind: entries[start : start + limit]})


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
