"""AdAutoMix: adversarial automatic mixup (Qin, Jin et al., ICLR 2024) and the mixup baselines of
its paper, as a standalone package. Start with `adautomix --help`."""

__version__ = "0.1.0"
