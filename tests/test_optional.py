"""Nothing optional breaks everything (adautomix/optional.py): with gco-wrapper, OpenCV and DALI
all hidden from the import system, as on a machine where they are not installed (gco-wrapper has
no wheel for Python 3.12), the package imports, every other method builds and trains a step, the
loaders and the corruptions that need no OpenCV work, and what does need a hidden package says
so in one line naming the package and the fix."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

HIDDEN = ("gco", "cv2", "nvidia.dali")

# Runs in a fresh interpreter. The path finder stops finding the hidden modules, so `import gco`
# fails with ModuleNotFoundError and importlib.util.find_spec returns None, exactly as when the
# package is not installed.
SCRIPT = textwrap.dedent("""
    import importlib.machinery, json, sys
    HIDDEN = %r
    original = importlib.machinery.PathFinder.find_spec.__func__
    def find_spec(cls, name, path=None, target=None):
        if any(name == h or name.startswith(h + ".") for h in HIDDEN):
            return None
        return original(cls, name, path, target)
    importlib.machinery.PathFinder.find_spec = classmethod(find_spec)

    import numpy as np
    import torch
    import adautomix.cli, adautomix.engine.train, adautomix.eval, adautomix.data.corrupted  # noqa
    from adautomix.cli import main
    from adautomix.data import build_loader, dali
    from adautomix.data.corruptions import corrupt
    from adautomix.errors import one_line
    from adautomix.mixers import available_methods, create_method, unavailable_reason
    from adautomix.models import create_model

    data_root, out = sys.argv[1], sys.argv[2]
    report = {"imported": sorted(m for m in HIDDEN if m in sys.modules), "steps": {},
              "refused": {}, "reasons": {}}
    torch.manual_seed(0)
    images, labels = torch.randn(6, 3, 32, 32), torch.arange(6) %% 4
    for name in available_methods():
        report["reasons"][name] = unavailable_reason(name)
        model = create_model("resnet18", 4, in_chans=3, width=4)
        try:
            method = create_method(name, model, 4)
        except Exception as exc:
            report["refused"][name] = one_line(exc)
            continue
        before = [p.detach().clone() for p in model.parameters()]
        optimizer = torch.optim.SGD([*model.parameters(), *method.parameters()], lr=0.1)
        loss, _ = method.training_step(model, images, labels, 0)
        loss.backward()
        optimizer.step()
        changed = any(not torch.equal(a, p) for a, p in zip(before, model.parameters()))
        report["steps"][name] = [float(loss), changed]

    pixels = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    report["gaussian_noise_shape"] = list(corrupt(pixels, "gaussian_noise", 1).shape)
    try:
        corrupt(pixels, "defocus_blur", 1)
    except Exception as exc:
        report["defocus_blur"] = one_line(exc)
    report["dali_available"] = [dali.installed(), dali.available()]
    try:
        build_loader("fashion-mnist", "test", data_root=data_root, batch_size=10, train=False,
                     kind="dali")
    except Exception as exc:
        report["dali_loader"] = one_line(exc)
    report["memory_loader_batch"] = list(next(iter(build_loader(
        "fashion-mnist", "test", data_root=data_root, batch_size=10, train=False,
        kind="auto")))[0].shape)
    report["cli_puzzlemix"] = main(["train", "--method", "puzzlemix", "--data-root", data_root,
                                    "--output-dir", out, "--subset", "100", "--batch-size",
                                    "50", "--epochs", "1"])
    print(json.dumps(report))
""") % (HIDDEN,)


def test_without_gco_opencv_and_dali_every_other_part_runs(fmnist_root, tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(fmnist_root), str(tmp_path / "run")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])

    assert report["imported"] == []  # nothing reached a hidden module
    refused = report["refused"]
    assert set(refused) == {"puzzlemix", "saliencymix"}
    assert "pip install gco-wrapper" in refused["puzzlemix"]
    assert "opencv-contrib-python-headless" in refused["saliencymix"]
    assert all(line.startswith("error: ") and "\n" not in line for line in refused.values())
    assert {k for k, v in report["reasons"].items() if v} == set(refused)

    steps = report["steps"]
    assert set(steps) == {
        "vanilla",
        "mixup",
        "cutmix",
        "fmix",
        "resizemix",
        "manifoldmix",
        "automix",
        "adautomix",
    }
    for name, (loss, changed) in steps.items():
        assert 0 < loss < 100 and changed, name

    assert report["gaussian_noise_shape"] == [2, 32, 32, 3]
    assert "opencv-contrib-python-headless" in report["defocus_blur"]
    assert report["dali_available"] == [False, False]
    assert "DALI is not installed" in report["dali_loader"]
    assert report["memory_loader_batch"] == [10, 1, 28, 28]
    # the CLI: exit 2 (bad input) with the one line on stderr, no traceback
    assert report["cli_puzzlemix"] == 2
    assert "error: method 'puzzlemix' needs the package gco-wrapper" in result.stderr
    assert "Traceback" not in result.stderr
