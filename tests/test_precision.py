"""The run's precision (adautomix/precision.py): a bf16 step trains (finite loss, weights move,
the convolutions really run in bf16), fp32 is exactly the step with no autocast at all, fp16 is
refused off CUDA in one line before anything is written; on CUDA (marked gpu) bf16 and fp16
steps train and fp16's loss scale is kept in the checkpoint."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from adautomix.config import ConfigError, RunConfig
from adautomix.engine.optim import optimizer_step
from adautomix.engine.train import train
from adautomix.mixers import create_method
from adautomix.models import create_model
from adautomix.precision import autocast, check_precision, grad_scaler
from tests.helpers import small_run

METHODS = ("vanilla", "mixup", "adautomix")


def networks(name: str, device: str = "cpu"):
    torch.manual_seed(0)
    model = create_model("resnet18", 10, in_chans=3, width=8).to(device)
    method = create_method(name, model, 10).to(device)
    optimizer = torch.optim.SGD([*model.parameters(), *method.parameters()], lr=0.1, momentum=0.9)
    return model, method, optimizer


def batch(device: str = "cpu"):
    g = torch.Generator().manual_seed(1)
    images = torch.randn(8, 3, 32, 32, generator=g)
    return images.to(device), torch.randint(0, 10, (8,), generator=g).to(device)


def one_step(name: str, precision: str | None, device: str = "cpu"):
    """(loss, dtype the first convolution computed in, weights before, weights after)."""
    model, method, optimizer = networks(name, device)
    images, labels = batch(device)
    dtypes = []
    first_conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    hook = first_conv.register_forward_hook(lambda m, i, out: dtypes.append(out.dtype))
    before = [p.detach().clone() for p in model.parameters()]
    scaler = grad_scaler(precision or "fp32", device)
    if precision is None:  # the step as it was before precision existed: no context at all
        loss, _ = method.training_step(model, images, labels, 0)
    else:
        with autocast(precision, device):
            loss, _ = method.training_step(model, images, labels, 0)
    optimizer_step(loss, optimizer, scaler)
    hook.remove()
    return loss.detach(), dtypes, before, [p.detach() for p in model.parameters()], scaler


@pytest.mark.parametrize("name", METHODS)
def test_a_bf16_step_on_the_cpu_trains_in_bf16(name):
    loss, dtypes, before, after, _ = one_step(name, "bf16")
    assert torch.isfinite(loss) and 0 < loss.item() < 10
    assert dtypes and set(dtypes) == {torch.bfloat16}
    assert all(p.dtype == torch.float32 for p in after)  # the weights stay fp32
    # the same weights move as in fp32 (the residual branches' zero-initialised last BatchNorm
    # holds their convolutions still in a first step, in either precision)
    _, _, before_fp32, after_fp32, _ = one_step(name, "fp32")
    moved = [not torch.equal(a, b) for a, b in zip(before, after)]
    assert any(moved)
    assert moved == [not torch.equal(a, b) for a, b in zip(before_fp32, after_fp32)]


@pytest.mark.parametrize("name", METHODS)
def test_fp32_is_the_step_without_autocast_bit_for_bit(name):
    loss, dtypes, _, after, _ = one_step(name, "fp32")
    reference_loss, reference_dtypes, _, reference, _ = one_step(name, None)
    assert set(dtypes) == set(reference_dtypes) == {torch.float32}
    assert torch.equal(loss, reference_loss)
    assert all(torch.equal(a, b) for a, b in zip(after, reference))


def test_fp16_off_cuda_is_refused_in_one_line(tmp_path):
    with pytest.raises(ConfigError, match="precision fp16 needs a CUDA device"):
        check_precision("fp16", "cpu")
    check_precision("bf16", "cpu")
    # device auto on a machine without CUDA: refused by the engine before anything is written
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="precision fp16 needs a CUDA device"):
            train(
                RunConfig(precision="fp16", output_dir=str(tmp_path / "run"), data_root="nowhere")
            )
        assert not (tmp_path / "run").exists()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "adautomix.cli",
            "train",
            "--precision",
            "fp16",
            "--device",
            "cpu",
            "--output-dir",
            str(tmp_path / "cli"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: precision fp16 needs a CUDA device; use --precision bf16 or fp32 on the CPU"
    ]
    assert not (tmp_path / "cli").exists()


# --- CUDA -------------------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
@pytest.mark.parametrize("name", METHODS)
def test_a_reduced_precision_step_on_cuda_trains(name, precision):
    loss, dtypes, before, after, scaler = one_step(name, precision, "cuda")
    assert torch.isfinite(loss) and 0 < loss.item() < 10
    assert set(dtypes) == {torch.bfloat16 if precision == "bf16" else torch.float16}
    assert any(not torch.equal(a, b) for a, b in zip(before, after))
    assert scaler.is_enabled() == (precision == "fp16")


@pytest.mark.gpu
def test_an_fp16_run_on_cuda_checkpoints_its_loss_scale(fmnist_root, mlflow_sqlite, tmp_path):
    from adautomix.engine.checkpoint import load_checkpoint

    config = small_run(
        fmnist_root,
        tmp_path / "run",
        "test-fp16",
        model_width=8,
        subset=200,
        test_subset=100,
        batch_size=50,
        precision="fp16",
        device="cuda",
    )
    result = train(config)
    assert 0 < result.history[-1]["train_loss"] < 10
    state = load_checkpoint(tmp_path / "run")
    assert state["scaler"]["scale"] > 0
