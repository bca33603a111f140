"""AdAutoMix's training step (spec §2): gradient routing, the reuse of the EMA logits and the
replayed BN updates against the official passes, the EMA schedule, the adversarial alternation,
the λ-margin fallback, sampling, determinism, bad configs, the sample grid, and real learning."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from mlflow.tracking import MlflowClient

from adautomix.config import ConfigError
from adautomix.mixers import create_method
from adautomix.mixers.adautomix import AdAutoMix
from adautomix.mixers.learned_mix import mix_images
from tests.tiny_backbone import TinyBackbone
from tests.helpers import small_run
from tests.mixers.mixer_helpers import all_logs, batch, perturb
from tests.mixers.mixer_helpers import setup as build


def setup(seed=0, **options):
    return build(AdAutoMix, seed, **options)


def test_generator_and_classifier_gradients_stay_on_their_side():
    model, method = setup()
    images, labels = batch()
    generator = list(method.generator.parameters())
    online = list(model.parameters()) + list(method.head_mix_q.parameters())
    parts = [loss for loss, _ in method.loss_parts(model, images, labels, step=0)]
    assert len(parts) == 4  # generator; clean, linear mix and generated mix for the classifier

    to_generator = torch.autograd.grad(parts[0], generator + online, allow_unused=True)
    assert all(g is not None and g.abs().sum() > 0 for g in to_generator[: len(generator)])
    assert all(g is None for g in to_generator[len(generator) :])
    for part in parts[1:]:
        to_classifier = torch.autograd.grad(part, generator + online, allow_unused=True)
        assert all(g is None for g in to_classifier[: len(generator)])
        assert any(g is not None for g in to_classifier[len(generator) :])

    loss, _ = method.training_step(model, images, labels, step=1)
    loss.backward()
    ema = list(method.net_k.parameters()) + list(method.head_mix_k.parameters())
    assert all(not p.requires_grad and p.grad is None for p in ema)
    assert all(p.grad is not None for p in generator + online)


def test_reused_logits_and_replayed_bn_statistics_match_the_official_passes():
    """The official code runs the EMA network on N permuted copies of the clean batch after the
    mixed pass; reusing the clean logits and replaying the BN updates must change nothing."""
    model, method = setup()
    images, labels = batch()
    official = copy.deepcopy(method)
    torch.manual_seed(5)
    _, logs = next(method.loss_parts(model, images, labels, step=0))

    torch.manual_seed(5)
    n, lams, perm, _, _ = official.draw(images.shape[0], images.device)
    net, head = official.net_k, official.head_mix_k
    with torch.no_grad():
        features = net.features(images, upto=3)
        net.run_stages(features, 3)  # the feature pass runs the whole network
        masks = official.generator(features[perm], lams, images.shape[-2:])
        mixed = head(net.pre_logits(net.features(mix_images(images, perm, masks))))
        sources = [head(net.pre_logits(net.features(images[perm[:, i]]))) for i in range(n)]
    cos_sim = sum(lam * F.cosine_similarity(mixed, s, dim=-1) for lam, s in zip(lams, sources))
    torch.testing.assert_close(logs["cos_sim"], cos_sim.mean())

    ours = dict(method.net_k.named_buffers())
    for name, value in official.net_k.named_buffers():
        if "running" in name:
            torch.testing.assert_close(ours[name], value, rtol=1e-5, atol=1e-5, msg=name)


def test_a_backbone_without_batchnorm_has_nothing_to_replay():
    """Swin and ConvNeXt normalise with LayerNorm."""
    torch.manual_seed(0)
    model = TinyBackbone(num_classes=10)
    for block in (model.stem, *model.stages):
        block[1] = torch.nn.Identity()
    method = AdAutoMix(model, num_classes=10)
    assert method.bn_layers == []
    loss, _ = method.training_step(model, *batch(), step=0)
    loss.backward()
    assert all(p.grad is not None for p in method.generator.parameters())


# The teacher's momentum m (spec §2, step 9) worked out by hand for T = 1000 steps: 0.999 before
# 0.1·T, then 0.999999 − (0.999999 − 0.999)·(1 + cos(π t / T)) / 2; at t = 100, cos(0.1π) =
# 0.95105651630, so m = 0.999999 − 0.000999 · 0.97552825815.
@pytest.mark.parametrize(
    "fraction,expected",
    [(0.0, 0.999), (0.1, 0.99902444727), (0.5, 0.9994995), (1.0, 0.999999)],
)
def test_ema_momentum_follows_the_official_schedule(fraction, expected):
    model, method = setup()
    total = 1000
    step = int(fraction * total)
    with torch.no_grad():
        for p in list(method.net_k.parameters()) + list(method.head_mix_k.parameters()):
            p.zero_()
        for p in list(model.parameters()) + list(method.head_mix_q.parameters()):
            p.fill_(1.0)
        for name, buffer in model.named_buffers():
            if "running_mean" in name:
                buffer.fill_(5.0)
    method.after_optimizer_step(model, step, total)
    moved = 1.0 - expected  # m·0 + (1 − m)·1
    for p in list(method.net_k.parameters()) + list(method.head_mix_k.parameters()):
        torch.testing.assert_close(p, torch.full_like(p, moved), rtol=1e-4, atol=0.0)
    for name, buffer in method.net_k.named_buffers():
        if "running_mean" in name:  # parameters only: the teacher keeps its own BN statistics
            assert (buffer == 0).all(), name


@pytest.mark.parametrize("maximise_cosine", [False, True])
def test_steps_alternate_adversarial_and_cooperative(maximise_cosine):
    model, method = setup(maximise_cosine=maximise_cosine)
    images, labels = batch()
    sign = -1.0 if maximise_cosine else 1.0
    for step in range(4):
        torch.manual_seed(0)
        loss, logs = next(method.loss_parts(model, images, labels, step))
        ce, cos_sim = logs["loss_mix_k"], logs["cos_sim"]
        adversarial = -0.3 * ce + sign * 0.7 * cos_sim
        expected = adversarial if step % 2 == 0 else ce
        torch.testing.assert_close(loss.detach(), expected)


def test_lambda_margin_rules():
    _, method = setup()
    assert method.margin_fires((0.02, 0.5, 0.48)) and method.margin_fires((0.98, 0.01, 0.01))
    assert not method.margin_fires((0.5, 0.3, 0.2)) and not method.margin_fires((0.97, 0.02, 0.01))
    assert method.margin_fires((0.98, 0.02)) and not method.margin_fires((0.5, 0.5))
    _, port = setup(lam_margin_rule="openmixup")
    assert port.margin_fires((0.5, 0.3, 0.2))

    draws = torch.rand(20000, 3, generator=torch.Generator().manual_seed(0))  # Beta(1, 1)
    lams = [tuple(row) for row in (draws / draws.sum(1, keepdim=True)).tolist()]
    official_rate = sum(map(method.margin_fires, lams)) / len(lams)
    assert 0.025 < official_rate < 0.04  # spec: ≈3.1% of iterations
    assert sum(map(port.margin_fires, lams)) / len(lams) > 0.995


@pytest.mark.parametrize("lams,fires", [((0.01, 0.49, 0.5), True), ((0.4, 0.3, 0.3), False)])
def test_lambda_margin_fallback_feeds_the_classifier_a_linear_mix(monkeypatch, lams, fires):
    model, method = setup()
    perturb(method.generator)
    draw = method.draw

    def fixed_lams(batch_size, device):
        n, _, perm_mb, _, perm_bb = draw(batch_size, device)
        return n, lams, perm_mb, lams, perm_bb

    monkeypatch.setattr(method, "draw", fixed_lams)
    logs = all_logs(method, model, *batch(), step=0)
    # the generated-mix pass sees exactly the linear-mix pass's images iff the fallback fired
    same = torch.allclose(logs["loss_mix_q"], logs["loss_lin_q"], rtol=1e-5, atol=1e-6)
    assert same == fires


def test_draws_follow_the_official_sampling():
    _, method = setup()
    torch.manual_seed(0)
    n, lams_mb, perm_mb, lams_bb, perm_bb = method.draw(8, torch.device("cpu"))
    assert n == 3 and lams_mb == lams_bb and sum(lams_mb) == pytest.approx(1.0)
    for perm in (perm_mb, perm_bb):
        assert perm.shape == (8, 3)
        assert (perm.sort(dim=0).values == torch.arange(8).view(-1, 1)).all()
    assert not torch.equal(perm_mb, perm_bb)

    _, pairs = setup(mix_samples=2)
    n, lams_mb, perm_mb, lams_bb, perm_bb = pairs.draw(8, torch.device("cpu"))
    assert n == 2 and lams_mb != lams_bb  # independent draws per branch
    assert sum(lams_mb) == pytest.approx(1.0) and sum(lams_bb) == pytest.approx(1.0)
    assert (perm_mb[:, 0] == torch.arange(8)).all() and (perm_bb[:, 0] == torch.arange(8)).all()

    _, random_n = setup(is_random=True)
    assert {random_n.draw(8, torch.device("cpu"))[0] for _ in range(40)} == {2, 3}


@pytest.mark.parametrize(
    "options",
    [{}, {"mix_samples": 2, "lam_concat": True}, {"is_random": True, "upsampling": "nearest"}],
)
def test_a_step_is_deterministic_under_a_seed(options):
    def run(seed):
        model, method = setup(**options)
        torch.manual_seed(seed)
        loss, _ = method.training_step(model, *batch(), step=0)
        loss.backward()
        return loss.detach(), [p.grad for p in model.parameters()] + [
            p.grad for p in method.generator.parameters()
        ]

    loss, grads = run(seed=3)
    again, grads_again = run(seed=3)
    assert torch.equal(loss, again)
    assert all(torch.equal(a, b) for a, b in zip(grads, grads_again))
    assert not torch.equal(loss, run(seed=4)[0])


def test_bad_configs_say_what_to_change(tiny_backbone):
    with pytest.raises(ConfigError, match="mix_samples must be >= 2"):
        create_method("adautomix", tiny_backbone, 10, mix_samples=1)
    with pytest.raises(ConfigError, match="stage-5 features.*stages 1..4.*feature_stage"):
        AdAutoMix(tiny_backbone, 10, feature_stage=5)
    with pytest.raises(ConfigError, match="needs a Backbone.*Linear"):
        AdAutoMix(torch.nn.Linear(4, 4), 10)
    with pytest.raises(ConfigError, match="lam_margin_rule 'port'.*official, openmixup"):
        AdAutoMix(tiny_backbone, 10, lam_margin_rule="port")
    with pytest.raises(ConfigError, match="no option.*'betta'"):
        create_method("adautomix", tiny_backbone, 10, betta=0.3)

    method = AdAutoMix(tiny_backbone, 10, mix_samples=3)
    assert method.min_batch_size == 3
    images, labels = batch(size=2)
    with pytest.raises(ConfigError, match="mixes 3 images.*batch of 2.*batch_size >= 3"):
        method.training_step(tiny_backbone, images, labels, step=0)


def test_sample_grid_shows_sources_masks_and_mixed_images():
    model, method = setup()
    perturb(method.generator)
    images, labels = batch()
    before = {k: v.clone() for k, v in method.net_k.state_dict().items()}
    grid = method.sample_grid(model, images, labels)
    rows = grid.rows
    assert [title for title, _ in rows] == [
        "source 1",
        "source 2",
        "source 3",
        "mask 1",
        "mask 2",
        "mask 3",
        "mixed",
    ]
    sources, masks, mixed = rows[:3], rows[3:6], rows[6][1]
    assert all(t.shape == images.shape for _, t in sources) and mixed.shape == images.shape
    assert all(t.shape == (8, 1, 16, 16) for _, t in masks)
    torch.testing.assert_close(sum(t for _, t in masks), torch.ones(8, 1, 16, 16))
    torch.testing.assert_close(mixed, sum(s * m for (_, s), (_, m) in zip(sources, masks)))
    # the captions' targets: Σ λ_i one-hot(class of source i) with the λ the generator branch
    # drew (not the mask areas), re-drawn here from the same seed
    torch.manual_seed(3)
    grid = method.sample_grid(model, images, labels)
    torch.manual_seed(3)
    _, lams, perm, _, _ = method.draw(8, images.device)
    expected = sum(lam * F.one_hot(labels[perm[:, i]], 10).float() for i, lam in enumerate(lams))
    torch.testing.assert_close(grid.targets, expected)
    for key, value in method.net_k.state_dict().items():  # drawing it must not move the teacher
        assert torch.equal(value, before[key]), key


def test_teacher_is_a_frozen_copy_with_the_clean_head():
    model, method = setup()
    teacher = method.teacher()
    assert all(not p.requires_grad for p in teacher.parameters())
    images, _ = batch()
    model.eval()
    teacher.eval()
    torch.testing.assert_close(teacher(images), model(images))
    # a copy, not the online network itself: training the model leaves the teacher as it was
    with torch.no_grad():
        model.head.weight.add_(1.0)
        model.stages[0][0].weight.mul_(2.0)
    assert (teacher(images) - model(images)).abs().max() > 0.1


@pytest.mark.slow
def test_ema_network_learns_fashion_mnist(fmnist_root, mlflow_sqlite, tmp_path, monkeypatch):
    """300 steps through the real engine, loader and evaluation. A ResNet-18 AdAutoMix step takes
    about a second on two cores, so the engine builds the small TinyBackbone instead; on 28 px
    images its stage-3 map is 7×7, the generator's odd-sized case."""
    import adautomix.engine.train as engine

    monkeypatch.setattr(
        engine,
        "create_model",
        lambda name, num_classes, in_chans, pretrained, width: TinyBackbone(num_classes, in_chans),
    )
    config = small_run(
        fmnist_root,
        tmp_path / "run",
        "test-adautomix",
        method="adautomix",
        method_args={"teacher_momentum": 0.99, "end_momentum": 0.999},
        epochs=3,
        subset=1600,
        test_subset=500,
        batch_size=16,
        lr=0.1,
        log_images_every=1,  # a sample grid every epoch, checked below
    )
    result = engine.train(config)
    assert result.metrics["test_top1_ema"] > 35.0  # chance is 10%
    grids = MlflowClient(mlflow_sqlite).list_artifacts(result.run_id, "samples")
    assert len(grids) == 3 and grids[0].path.endswith(".png")
