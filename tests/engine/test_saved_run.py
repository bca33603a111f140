"""A run folder loaded back (adautomix/engine/saved_run.py), including one written before the
renames of its config fields: no earlier run is stranded."""

from __future__ import annotations

import json

import pytest
import torch

import adautomix.engine.train as engine
from adautomix.config import RunConfig
from adautomix.data import prepare
from adautomix.engine.checkpoint import CHECKPOINT_NAME, SELECTED_NAME
from adautomix.engine.saved_run import evaluate_networks, load_run
from tests.tiny_backbone import TinyBackbone
from tests.data.fixtures import make_fashion_mnist
from tests.helpers import old_format, small_run

pytestmark = pytest.mark.slow


def rewrite_in_the_old_format(run_dir) -> None:
    """config.json and the checkpoints' configs as a run of an earlier version wrote them."""
    path = run_dir / "config.json"
    path.write_text(json.dumps(old_format(RunConfig.load(path))))
    for name in (CHECKPOINT_NAME, SELECTED_NAME):
        if (run_dir / name).exists():
            state = torch.load(run_dir / name, weights_only=True)
            state["config"] = old_format(RunConfig.from_dict(state["config"]))
            torch.save(state, run_dir / name)


def test_a_run_written_under_the_old_names_evaluates_and_resumes(
    tmp_path, mlflow_http, monkeypatch, caplog
):
    monkeypatch.setattr(
        engine,
        "create_model",
        lambda name, num_classes, in_chans, pretrained, width: TinyBackbone(num_classes, in_chans),
    )
    prepare(
        "fashion-mnist", source=make_fashion_mnist(tmp_path / "raw"), data_root=tmp_path / "data"
    )
    config = small_run(
        tmp_path / "data",
        tmp_path / "run",
        "old-names",
        method="automix",
        batch_size=10,
        test_subset=6,
        method_args={"teacher_momentum": 0.9},
        deterministic=True,
    )
    trained = engine.train(config)
    run = load_run(tmp_path / "run", device="cpu")
    before = evaluate_networks(run, ["top1", "loss"]).metrics
    rewrite_in_the_old_format(tmp_path / "run")
    assert "val_subset" in json.loads((tmp_path / "run" / "config.json").read_text())

    with caplog.at_level("WARNING", logger="adautomix.config"):
        old = load_run(tmp_path / "run", device="cpu")
    assert old.config == config and old.loader.subset == 6
    assert evaluate_networks(old, ["top1", "loss"]).metrics == pytest.approx(before)
    assert any("val_subset -> test_subset" in m for m in caplog.messages)

    longer = RunConfig.load(tmp_path / "run" / "config.json").replace(epochs=2)
    resumed = engine.train(longer, resume="must")
    assert resumed.run_id == trained.run_id
    assert [e["epoch"] for e in resumed.history] == [1, 2]
