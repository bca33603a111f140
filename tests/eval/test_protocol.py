"""evaluate(network, loader, metrics): the batch metrics share one pass, protocols make their
own, options come with the metric's name, and every result is reproducible."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from adautomix.config import EVAL_METRICS, ConfigError
from adautomix.data import build_loader, prepare
from adautomix.eval import METRICS, check_metrics, create_metric, evaluate
from adautomix.eval.corruption import CorruptionAccuracy
from tests.tiny_backbone import TinyBackbone
from tests.data.fixtures import make_fashion_mnist


class Counting(nn.Module):
    def __init__(self, network):
        super().__init__()
        self.network, self.calls = network, 0

    def forward(self, images):
        self.calls += 1
        return self.network(images)


def test_the_light_name_list_is_the_metric_table():
    assert tuple(METRICS) == EVAL_METRICS


def test_batch_metrics_share_one_pass():
    torch.manual_seed(0)
    network = Counting(TinyBackbone(in_chans=1).eval())
    loader = [(torch.randn(4, 1, 16, 16), torch.randint(0, 10, (4,))) for _ in range(3)]
    values = evaluate(network, loader, ["top1", "top5", "loss", "ece"])
    assert network.calls == 3
    assert set(values) == {"top1", "top5", "loss", "ece", "ece_paper"}


def test_options_reach_the_metric():
    assert create_metric("fgsm:epsilon=0.0157").epsilon == 0.0157
    assert create_metric("ece:bins=15").bins == 15
    metric = create_metric("corruption:severities=1+5:corruptions=fog+snow")
    assert (metric.severities, metric.corruptions) == ((1, 5), ("fog", "snow"))
    assert create_metric("occlusion:ratios=0+0.25:patch=4").ratios == (0.0, 0.25)


@pytest.mark.parametrize(
    "specs, message",
    [
        (["top1", "accuracy"], "unknown metric 'accuracy'; valid: top1, top5, loss, ece, fgsm"),
        (["fgsm:eps=0.1"], "metric fgsm has no option(s) ['eps']; valid: epsilon"),
        (["fgsm:epsilon"], "is not KEY=VALUE"),
        ([""], "no metric given"),
    ],
)
def test_bad_specs_are_refused_with_the_valid_ones(specs, message):
    with pytest.raises(ConfigError) as error:
        check_metrics(specs)
    assert message in str(error.value)


class PixelVote(nn.Module):
    """Logits = the first ten pixels of the image: predictions that follow the image content.
    Equal pixels are frequent (uint8 levels), so a small rising offset breaks their ties the same
    way whatever the float rounding of the normalisation (levels differ by 1/255/std > 0.01)."""

    def forward(self, images):
        return images.flatten(1)[:, :10] + 1e-3 * torch.arange(10)


@pytest.fixture(scope="module")
def clean_loader(tmp_path_factory):
    root = tmp_path_factory.mktemp("protocol")
    manifest = prepare(
        "fashion-mnist", source=make_fashion_mnist(root / "raw", n_test=12), data_root=root / "data"
    )
    return build_loader(manifest, "test", batch_size=5, train=False, kind="memory", subset=10)


def test_corruption_accuracy_pools_the_splits_as_their_unweighted_mean(clean_loader):
    """Each split's top-1 recomputed from the stored arrays by hand, then pooled."""
    network = PixelVote()
    metric = CorruptionAccuracy(corruptions=["fog", "pixelate", "impulse_noise"], progress=False)
    values = evaluate(network, clean_loader, [metric])
    root = clean_loader.manifest.root.parent / "fashion-mnist-c"
    chosen = clean_loader.indices()  # the subset: same images in every split
    mean, std = clean_loader.mean[0], clean_loader.std[0]
    expected = {}
    for corruption in metric.corruptions:
        for severity in range(1, 6):
            images = np.load(root / f"{corruption}-{severity}_images.npy")[chosen]
            labels = np.load(root / f"{corruption}-{severity}_labels.npy")[chosen]
            x = (torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255 - mean) / std
            with torch.no_grad():
                hit = (network(x).argmax(1).numpy() == labels).mean()
            expected[corruption, severity] = 100 * hit
    assert values["corruption_top1"] == pytest.approx(np.mean(list(expected.values())))
    assert values["corruption_top1_fog"] == pytest.approx(
        np.mean([expected["fog", s] for s in range(1, 6)])
    )
    assert values["corruption_top1_s2"] == pytest.approx(
        np.mean([expected[c, 2] for c in metric.corruptions])
    )
    assert len(set(expected.values())) > 1  # the splits differ, so the mean is a real test
    assert len(metric.details) == 15
    assert len(metric.figure().axes[0].patches) == 3  # one bar per corruption


def test_every_metric_is_deterministic_under_a_seed(clean_loader):
    specs = ["top1", "ece", "fgsm", "occlusion", "corruption:corruptions=glass_blur+spatter"]

    def once():
        torch.manual_seed(0)
        network = TinyBackbone(in_chans=1).eval()
        return evaluate(network, clean_loader, [create_metric(s, progress=False) for s in specs])

    assert once() == once()


def test_images_limits_a_protocol_to_the_first_images_of_the_split(clean_loader):
    """FGSM and the corruptions with images=4 give what they give on a loader of the first 4."""
    torch.manual_seed(0)
    network = TinyBackbone(in_chans=1).eval()
    first = build_loader(
        clean_loader.manifest, "test", batch_size=5, train=False, kind="memory", subset=4
    )
    corruption = "corruption:corruptions=fog+contrast:severities=1+5"
    limited = evaluate(
        network,
        clean_loader,
        [create_metric(f"{corruption}:images=4", progress=False), create_metric("fgsm:images=4")],
    )
    expected = evaluate(
        network, first, [create_metric(corruption, progress=False), create_metric("fgsm")]
    )
    assert limited == pytest.approx(expected)
    whole = evaluate(network, clean_loader, [create_metric("fgsm")])
    assert whole != pytest.approx({k: v for k, v in expected.items() if k in whole})
    # images beyond the loader's own subset read no further than it
    assert evaluate(network, clean_loader, [create_metric("fgsm:images=100")]) == whole
    with pytest.raises(ConfigError, match="images option is a count"):
        create_metric("fgsm:images=-1")
