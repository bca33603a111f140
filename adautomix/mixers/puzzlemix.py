"""PuzzleMix (Kim et al., 2020): a saliency-aware block mix with optimal transport.

Follows the official algorithm as OpenMixup runs it for CIFAR-100 (spec §10):
1. saliency: the RMS over channels of ∂CE/∂x, with the model in eval mode;
2. labelling: the image is cut into n×n blocks (n drawn from `block_nums`) and each block gets
   one of `n_labels` labels, its share of x against x[π] (1, ½, 0 for three labels), by an
   α-β-swap graph cut that weighs the saliency each choice hides, a prior around λ ~ Beta(α, α)
   (weight η), label smoothness (β) and data smoothness across block edges (γ);
3. transport: within each image, salient t_size² cells move to where that image is visible;
4. λ per sample is the realised mask mean, and the loss is CE against the soft mixed targets.

The graph cut is gco-wrapper, the package the official code uses. It is a CPU algorithm, so the
costs make one trip to the host per batch; everything else runs batched on the images' device.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..optional import LazyModule
from .base import Method, SampleGrid, soft_cross_entropy
from .sampling import mix_partner, sample_beta

# imported on first use: gco-wrapper has no wheel for Python 3.12, and no other method needs it
gco = LazyModule("gco", "method puzzlemix (its graph cut)")


def input_saliency(model: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(B, H, W) RMS over channels of the input gradient of the batch-mean CE, model in eval mode.

    Only the input's gradient is computed, so the parameters' .grad stay untouched."""
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            inputs = images.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(soft_cross_entropy(model(inputs), targets), inputs)
    finally:
        model.train(was_training)
    return grad.float().pow(2).mean(1).sqrt()


def block_counts(height: int, width: int, block_nums: tuple[int, ...]) -> list[int]:
    """The blocks-per-side in `block_nums` that tile the image exactly."""
    if height != width:
        raise ValueError(f"puzzlemix needs square images; got {height}x{width}")
    valid = [n for n in block_nums if height % n == 0]
    if not valid:
        raise ValueError(
            f"puzzlemix: none of block_nums {tuple(block_nums)} divides the image "
            f"side {height}; pass block_nums that do"
        )
    return valid


def edge_penalty(pooled: torch.Tensor, cells: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean |difference| across each block edge, for every pair of sources.

    pooled: (B, S, C, n·cells, n·cells), the S source images average-pooled by the
    neighbourhood size. Returns (B, S, S, n−1, n) for vertical neighbours and (B, S, S, n, n−1)
    for horizontal ones; [a, b] puts source a above (left of) the edge, source b below (right)."""
    above = pooled[:, :, None, :, cells - 1 : -1 : cells, :]
    below = pooled[:, None, :, :, cells::cells, :]
    left = pooled[:, :, None, :, :, cells - 1 : -1 : cells]
    right = pooled[:, None, :, :, :, cells::cells]
    vertical = (above - below).abs().mean(3).unflatten(-1, (-1, cells)).mean(-1)
    horizontal = (left - right).abs().mean(3).unflatten(-2, (-1, cells)).mean(-2)
    return vertical, horizontal


def graph_cut(unary: np.ndarray, weight_v: np.ndarray, weight_h: np.ndarray) -> np.ndarray:
    """α-β swap labelling of B grids of n×n blocks: (B, n, n) labels.

    unary: (B, n, n, L) int32 label costs; weight_v (B, n−1, n) and weight_h (B, n, n−1) int32
    edge weights, multiplied by the squared label difference. The B grids are stacked into one
    tall grid whose edges between consecutive samples weigh nothing, so each sample keeps its
    own labelling and the solver runs once per batch rather than once per sample."""
    batch, side, _, n_labels = unary.shape
    labels = np.arange(n_labels)
    smoothness = ((labels[:, None] - labels[None, :]) ** 2).astype(np.int32)
    tall_v = np.zeros((batch, side, side), np.int32)
    tall_v[:, :-1] = weight_v
    cut = gco.cut_grid_graph(
        np.ascontiguousarray(unary.reshape(batch * side, side, n_labels)),
        smoothness,
        np.ascontiguousarray(tall_v.reshape(batch * side, side)[:-1]),
        np.ascontiguousarray(weight_h.reshape(batch * side, side - 1)),
        algorithm="swap",
    )
    return cut.reshape(batch, side, side)


def transport_sources(visible: torch.Tensor, saliency: torch.Tensor, eps: float) -> torch.Tensor:
    """For each destination cell of each image, the source cell that moves there: (B, m) indices
    with m = side², and m itself where nothing does.

    visible (B, side, side): the image's share of each cell; saliency (B, side, side). Each
    source takes its cheapest destination (eps·squared distance − its saliency where the image
    is visible); where sources collide the cheapest wins (the lowest index among equals) and the
    others pay 1 more for that destination next round; `side` rounds, as in the official code.
    Unlike the official code the winner is chosen among the sources sent there only: the
    official code also counts the unsent ones at cost 0, so a visible cell whose saliency is
    exactly 0 can be won by no one and is left a hole of zeros."""
    batch, side, _ = visible.shape
    cells = side * side
    grid = torch.arange(side, device=visible.device, dtype=torch.float32)
    yx = torch.cartesian_prod(grid, grid)
    distance = (yx[:, None] - yx[None]).pow(2).sum(-1) / (side - 1) ** 2
    cost = eps * distance - saliency.reshape(batch, cells, 1) * (visible > 0).float().reshape(
        batch, 1, cells
    )
    source = torch.arange(cells, device=visible.device).expand(batch, cells)
    for _ in range(side):
        destination = cost.argmin(-1)
        offer = cost.gather(-1, destination[..., None])[..., 0]
        best = torch.full_like(offer, torch.inf).scatter_reduce(1, destination, offer, "amin")
        contender = torch.where(offer == best.gather(1, destination), source, cells)
        winner = torch.full_like(destination, cells).scatter_reduce(
            1, destination, contender, "amin"
        )
        lost = winner.gather(1, destination) != source
        cost.scatter_add_(-1, destination[..., None], lost[..., None].float())
    return winner


def transport_cells(images: torch.Tensor, sources: torch.Tensor, size: int) -> torch.Tensor:
    """Move the size×size cells of each image: destination j gets cell sources[:, j], or zeros."""
    cells = F.unfold(images, size, stride=size)
    cells = F.pad(cells, (0, 1))  # the zero cell that index m points to
    moved = cells.gather(-1, sources[:, None].expand(-1, cells.shape[1], -1))
    return F.fold(moved, images.shape[-2:], size, stride=size)


def normalised_pool(saliency: torch.Tensor, size: int) -> torch.Tensor:
    """Saliency averaged over size×size cells, each image's map summing to one."""
    pooled = F.avg_pool2d(saliency[:, None], size)[:, 0]
    return pooled / pooled.flatten(1).sum(1).clamp_min(1e-12).view(-1, 1, 1)


@torch.no_grad()
def puzzlemix(
    images: torch.Tensor,
    targets: torch.Tensor,
    saliency: torch.Tensor,
    alpha: float = 1.0,
    block_nums: tuple[int, ...] = (2, 4, 8, 16),
    beta: float = 1.2,
    gamma: float = 0.5,
    eta: float = 0.2,
    neigh_size: int = 4,
    n_labels: int = 3,
    transport: bool = True,
    t_eps: float = 0.8,
    t_size: int = 4,
    input_std: float = 0.2,
):
    """Mix a batch by PuzzleMix given its (B, H, W) saliency: (mixed, targets, masks), where
    masks[:, 0] is the per-pixel share of x and masks[:, 1] that of x[π].

    `input_std` converts normalised differences back to pixel units for the data-smoothness
    term (the official code de-normalises first; the mean cancels in a difference). On
    power-of-two images neigh_size and t_size act as in the official code; where they do not
    divide the block side (28-px images), the neighbourhood shrinks to their greatest common
    divisor and transport moves whole blocks, as the official code does when t_size exceeds
    the block."""
    batch, _, height, width = images.shape
    choices = block_counts(height, width, block_nums)
    side = choices[int(torch.randint(len(choices), (1,)))]
    block = height // side
    neigh = math.gcd(neigh_size, block)
    prior_lam = sample_beta(alpha, 1)[0]
    index = mix_partner(batch, images.device)
    partner = images[index]
    beta = beta / side / 16  # the official normalisation by the grid size

    block_saliency = normalised_pool(saliency, block)
    pair = torch.stack([images, partner], 1).flatten(0, 1) * input_std
    pooled = F.avg_pool2d(pair, neigh).unflatten(0, (batch, 2))
    penalty_v, penalty_h = (beta * gamma * p for p in edge_penalty(pooled, block // neigh))

    # Cost of showing source s (0: x, 1: x[π]) in a block: the saliency it hides, plus the
    # data-smoothness term split into its per-block part and a symmetric edge weight.
    cost = torch.stack([block_saliency[index], block_saliency], 1)
    cost[:, :, :-1, :] += penalty_v.mean(2)
    cost[:, :, 1:, :] += penalty_v.mean(1)
    cost[:, :, :, :-1] += penalty_h.mean(2)
    cost[:, :, :, 1:] += penalty_h.mean(1)
    weight_v, weight_h = (
        (p[:, 0, 1] + p[:, 1, 0] - p[:, 0, 0] - p[:, 1, 1]) / 2 for p in (penalty_v, penalty_h)
    )

    # Label i gives x[π] the share i/(L−1); its prior is the binomial chance of that share.
    steps = n_labels - 1
    share = torch.linspace(0.0, 1.0, n_labels, device=images.device)
    prior = torch.tensor(
        [
            -math.log(
                math.comb(steps, i) * prior_lam ** (steps - i) * (1.0 - prior_lam) ** i + 1e-8
            )
            for i in range(n_labels)
        ],
        device=images.device,
    )
    label_cost = (
        (1 - share) * cost[:, 0, ..., None] + share * cost[:, 1, ..., None] + eta * prior / side**2
    )
    # Integer costs at the official scale. The official code passes a float smoothness matrix
    # (i−j)²/(L−1)², which gco rescales so large that salient blocks overflow int32 at n = 8
    # and 16; scaling the unary by (L−1)² instead keeps the same minimiser in range.
    scale = 1000 * side**2
    unary = (scale * label_cost).to(torch.int32) * steps**2
    weights = [(scale * (w + beta)).to(torch.int32) for w in (weight_v, weight_h)]
    labels = graph_cut(*(t.cpu().numpy() for t in (unary, *weights)))
    mask = 1.0 - torch.from_numpy(labels).to(images.device, torch.float32) / steps

    own = images
    if transport:
        cell = t_size if block % t_size == 0 else block
        cell_mask = F.interpolate(mask[:, None], size=height // cell, mode="nearest")[:, 0]
        cell_saliency = normalised_pool(saliency, cell)
        own = transport_cells(images, transport_sources(cell_mask, cell_saliency, t_eps), cell)
        partner = transport_cells(
            partner, transport_sources(1.0 - cell_mask, cell_saliency[index], t_eps), cell
        )

    pixel_mask = F.interpolate(mask[:, None], size=(height, width), mode="nearest")
    lam = pixel_mask.flatten(1).mean(1, keepdim=True)
    mixed = pixel_mask * own + (1.0 - pixel_mask) * partner
    masks = torch.cat([pixel_mask, 1.0 - pixel_mask], 1)
    return mixed, lam * targets + (1.0 - lam) * targets[index], masks


class PuzzleMix(Method):
    name = "puzzlemix"

    def __init__(
        self,
        num_classes: int,
        label_smoothing: float = 0.0,
        alpha: float = 1.0,
        block_nums: tuple[int, ...] = (2, 4, 8, 16),
        beta: float = 1.2,
        gamma: float = 0.5,
        eta: float = 0.2,
        neigh_size: int = 4,
        n_labels: int = 3,
        transport: bool = True,
        t_eps: float = 0.8,
        t_size: int = 4,
        input_std: float = 0.2,
    ):
        super().__init__(num_classes, label_smoothing)
        block_nums = tuple(int(n) for n in block_nums)
        if not block_nums or min(block_nums) < 2:
            raise ValueError(f"puzzlemix block_nums must be blocks per side >= 2; got {block_nums}")
        if n_labels < 2 or neigh_size < 1 or t_size < 1:
            raise ValueError(
                f"puzzlemix needs n_labels >= 2, neigh_size >= 1 and t_size >= 1; "
                f"got {n_labels}, {neigh_size}, {t_size}"
            )
        self.options = dict(
            alpha=alpha,
            block_nums=block_nums,
            beta=beta,
            gamma=gamma,
            eta=eta,
            neigh_size=neigh_size,
            n_labels=n_labels,
            transport=transport,
            t_eps=t_eps,
            t_size=t_size,
            input_std=input_std,
        )

    def mix(self, model, images, labels):
        targets = self.targets(labels)
        return puzzlemix(images, targets, input_saliency(model, images, targets), **self.options)

    def training_step(self, model, images, labels, step):
        mixed, targets, _ = self.mix(model, images, labels)
        return soft_cross_entropy(model(mixed), targets), {}

    @torch.no_grad()
    def sample_grid(self, model, images, labels):
        mixed, targets, masks = self.mix(model, images, labels)
        return SampleGrid(
            [("input", images), ("mask: share of the input", masks[:, :1]), ("mixed", mixed)],
            targets,
        )
