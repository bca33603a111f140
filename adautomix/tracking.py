"""MLflow tracking: start or resume a run, log the config, metrics, images and models.

The embedded default is a SQLite store in the working directory (`mlflow.db`, artifacts under
`mlartifacts/`); `MLFLOW_TRACKING_URI` points anywhere else (an `http://` server, another file).
Only this module and registry.py import mlflow."""

from __future__ import annotations

import logging
import os
import subprocess
from pathlib import Path
from typing import Any

import mlflow
from mlflow.tracking import MlflowClient

from .config import RunConfig

log = logging.getLogger("adautomix.tracking")


class TrackingError(RuntimeError):
    """The tracking server cannot be used; the message names the URI and the fix."""


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / 'mlflow.db'}"


def _artifact_location(uri: str) -> str | None:
    # For the embedded SQLite store keep artifacts beside the database, not in ./mlruns.
    if uri.startswith("sqlite:///"):
        return (Path(uri[len("sqlite:///"):]).parent / "mlartifacts").resolve().as_uri()
    return None


def git_commit() -> str:
    """The commit the code came from: $ADAUTOMIX_GIT_COMMIT (set in images) or git, else 'unknown'."""
    if os.environ.get("ADAUTOMIX_GIT_COMMIT"):
        return os.environ["ADAUTOMIX_GIT_COMMIT"]
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def connect(uri: str | None = None) -> MlflowClient:
    """Point MLflow at the store and check it answers, so a dead server fails now and clearly."""
    uri = uri or tracking_uri()
    mlflow.set_tracking_uri(uri)
    if uri.startswith("http"):
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
    client = MlflowClient(uri)
    try:
        client.search_experiments(max_results=1)
    except Exception as exc:
        raise TrackingError(
            f"MLflow tracking server at {uri} cannot be reached ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:200]}). Start it (mlflow server --host 127.0.0.1 --port 5000), "
            "fix MLFLOW_TRACKING_URI, or unset it to use the embedded SQLite store.") from exc
    return client


class Tracker:
    """One MLflow run. `Tracker(config, run_id=...)` resumes that run instead of starting one."""

    def __init__(self, config: RunConfig, data_hash: str, run_id: str | None = None,
                 extra_tags: dict[str, str] | None = None):
        self.uri = tracking_uri()
        self.client = connect(self.uri)
        experiment = self.client.get_experiment_by_name(config.experiment)
        experiment_id = (experiment.experiment_id if experiment else self.client.create_experiment(
            config.experiment, artifact_location=_artifact_location(self.uri)))
        self.previous_status = None
        if run_id:
            # what the run was before this resumed it: a later evaluation must not turn a
            # FAILED or KILLED training into a FINISHED one
            self.previous_status = self.client.get_run(run_id).info.status
            self.run = mlflow.start_run(run_id=run_id)
            log.info("resumed MLflow run %s", run_id)
            return
        tags = {
            "method": config.method, "model": config.model, "dataset": config.dataset,
            "seed": str(config.seed), "git_commit": git_commit(), "data_hash": data_hash,
            "image": os.environ.get("ADAUTOMIX_IMAGE", "local"),
            **(extra_tags or {}),
        }
        self.run = mlflow.start_run(experiment_id=experiment_id, run_name=config.run_name or None,
                                    tags=tags)
        mlflow.log_params(config.flat())
        mlflow.log_dict(config.to_dict(), "config.json")

    @property
    def run_id(self) -> str:
        return self.run.info.run_id

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

    def log_model(self, network: Any, example: Any) -> str:
        """The network as an MLflow PyTorch model whose signature and input example come from
        `example`, a batch as the network takes it; returns the logged model's URI."""
        import mlflow.pytorch
        import torch
        from mlflow.models import infer_signature

        was_training = network.training
        network.eval()
        with torch.inference_mode():
            outputs = network(example).float().cpu().numpy()
        network.train(was_training)
        inputs = example.float().cpu().numpy()
        # Pickled, not torch.export-ed: export takes seconds and not every network traces. The
        # model carries this package's code so it loads where adautomix is not installed; naming
        # torch spares MLflow a subprocess that guesses the requirements.
        info = mlflow.pytorch.log_model(
            network, name="model", input_example=inputs, signature=infer_signature(inputs, outputs),
            serialization_format="pickle",
            pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"],
            code_paths=[str(Path(__file__).resolve().parent)])
        return info.model_uri

    def finish(self, status: str = "FINISHED") -> None:
        mlflow.end_run(status=status)


def experiment_runs(experiment: str) -> list[dict[str, Any]]:
    """The finished runs of an experiment: {"run_id", "name", "start_time" (ms), "params",
    "tags", "metrics"} each, the metrics at their last logged value."""
    client = connect()
    found = client.get_experiment_by_name(experiment)
    if found is None:
        names = ", ".join(e.name for e in client.search_experiments(max_results=50))
        raise TrackingError(f"MLflow at {tracking_uri()} has no experiment {experiment!r}; "
                            f"it has: {names or 'none'}")
    runs, token = [], None
    while True:
        page = client.search_runs([found.experiment_id], "attributes.status = 'FINISHED'",
                                  max_results=1000, page_token=token)
        runs += [{"run_id": r.info.run_id, "name": r.info.run_name,
                  "start_time": r.info.start_time, "params": r.data.params, "tags": r.data.tags,
                  "metrics": r.data.metrics} for r in page]
        token = page.token
        if not token:
            return runs

