"""The random draws every mixing method makes: mixing ratios λ ~ Beta(α, α) and the partner
permutations that pair each image with the ones mixed into it.

All draw from torch's global generators, so one seed governs the whole run."""

from __future__ import annotations

import torch


def sample_beta(alpha: float, count: int) -> list[float]:
    """`count` i.i.d. Beta(α, α) draws on the host, from torch's global generator (one seed)."""
    concentration = torch.full((count,), float(alpha))
    return torch.distributions.Beta(concentration, concentration).sample().tolist()


def random_permutations(batch_size: int, count: int, device: torch.device) -> torch.Tensor:
    """B×count: column i is a uniform random permutation. Drawn on the device (argsort of uniform
    noise), so no host-to-device copy stalls the step."""
    return torch.rand(count, batch_size, device=device).argsort(dim=1).T


def mix_partner(batch_size: int, device: torch.device) -> torch.Tensor:
    """A random permutation pairing each sample with a partner (a sample may be its own)."""
    return random_permutations(batch_size, 1, device)[:, 0]


def derangement(batch_size: int, device: torch.device, tries: int = 10) -> torch.Tensor:
    """A partner permutation without fixed points, as OpenMixup draws it: up to `tries`
    permutations, the first with no sample paired with itself (the last one otherwise)."""
    identity = torch.arange(batch_size, device=device)
    for _ in range(tries):
        index = mix_partner(batch_size, device)
        if batch_size < 2 or not bool((index == identity).any()):
            break
    return index


def pair_with_identity(batch_size: int, device: torch.device) -> torch.Tensor:
    """B×2 for two-image mixes: each image itself, then a random partner."""
    identity = torch.arange(batch_size, device=device).view(-1, 1)
    return torch.cat([identity, random_permutations(batch_size, 1, device)], dim=1)
