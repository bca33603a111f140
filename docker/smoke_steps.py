"""One stage of the image smoke check, run inside the image by docker/smoke.sh: each pipeline
step's own function (what the component runs in its pod) with the pipeline's checked arguments,
on a small Fashion-MNIST subset. Each stage leaves its outputs in STATE/NAME.json for the next;
the workspace and the MLflow store are in the mounted folder.
    python3 smoke_steps.py data|train|evaluate|register STATE"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from kfp.dsl import Dataset, Markdown, Metrics, Model

STAGES = ("data", "train", "evaluate", "register")


def arguments() -> dict:
    from pipeline.run import training_arguments

    return training_arguments(
        method="mixup",
        epochs=1,
        subset=512,
        test_subset=256,
        experiment="image-smoke",
        project=os.environ["ADAUTOMIX_PROJECT"],
    )


def run(stage: str, state: Path) -> dict:
    from components.data import data
    from components.evaluate import evaluate
    from components.register import register
    from components.train import train

    args, workspace = arguments(), str(state / "workspace")
    done = {
        name: json.loads((state / f"{name}.json").read_text())
        for name in STAGES[: STAGES.index(stage)]
    }
    if stage == "data":
        prepared = Dataset(uri=str(state / "prepared.json"), metadata={})
        version = data.python_func(
            dataset=args["dataset"],
            data_version=args["data_version"],
            workspace=workspace,
            remote="",
            prepared=prepared,
        )
        return {"version": version, "metadata": prepared.metadata}
    if stage == "train":
        prepared = Dataset(uri=str(state / "prepared.json"), metadata=done["data"]["metadata"])
        checkpoint = Model(uri=str(state / "checkpoint"), metadata={})
        run_id = train.python_func(
            prepared=prepared,
            data_version=done["data"]["version"],
            config=args["config"],
            overrides={},
            workspace=workspace,
            checkpoint=checkpoint,
            pipeline_name="image-smoke",
            pipeline_run_id="smoke",
            pipeline_run_name="smoke",
        )
        return {"run_id": run_id, "metadata": checkpoint.metadata}
    if stage == "evaluate":
        checkpoint = Model(uri=str(state / "checkpoint"), metadata=done["train"]["metadata"])
        metrics = Metrics(uri=str(state / "metrics"))
        model_uri, score, metric, chance = evaluate.python_func(
            checkpoint=checkpoint,
            data_version=done["data"]["version"],
            test_metrics=list(args["test_metrics"]),
            metrics=metrics,
            mlflow_run=Markdown(uri=str(state / "mlflow_run.md")),
        )
        return {
            "model_uri": model_uri,
            "score": score,
            "metric": metric,
            "chance": chance,
            "metrics": metrics.metadata,
        }
    version, aliases, tracking_uri = register.python_func(
        model_uri=done["evaluate"]["model_uri"],
        score=done["evaluate"]["score"],
        metric=done["evaluate"]["metric"],
        chance=done["evaluate"]["chance"],
        dataset=args["dataset"],
        data_version=done["data"]["version"],
        registered_model=args["registered_model"],
        chance_margin=args["chance_margin"],
        min_score=args["min_score"],
    )
    return {"version": version, "aliases": list(aliases), "tracking_uri": tracking_uri}


def main(argv: list[str]) -> int:
    stage, state = argv[0], Path(argv[1])
    if os.getuid() == 0:
        print("the smoke check must run as the image's user, not root", file=sys.stderr)
        return 1
    result = run(stage, state)
    (state / f"{stage}.json").write_text(json.dumps(result, indent=2, default=str))
    print(json.dumps(result, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
