"""Corrupted test sets (CIFAR-10-C / CIFAR-100-C and their like), stored once as prepared datasets.

A corrupted set of dataset NAME is the prepared array dataset NAME-c (data/NAME-c/, with its own
manifest, content hash and DVC version, `dvc add data/NAME-c`), whose splits are the test split
under every corruption and severity: `gaussian_noise-1` ... `speckle_noise-5`, 19 × 5 = 95 splits,
each `{split}_images.npy` + `{split}_labels.npy` in the canonical array format and each in the
clean test split's order, so the evaluation's `subset` picks the same images in all of them.
It comes from one of two places:
- the official arrays (`adautomix data prepare cifar100-c --source DIR`): DIR holds
  `<corruption>.npy` (uint8, 5·N×32×32×3: severity 1 in the first N rows, then 2, ...) for all 19
  corruptions, and `labels.npy` (5·N labels);
- generated here from the prepared clean test split, at its own resolution and channel count, by
  data/corruptions.py (`adautomix data prepare fashion-mnist-c`), with a fixed seed.
A corrupted set has no train split: its manifest carries the clean dataset's train mean and std
(where the clean dataset is prepared), and an evaluation normalises it with the run's own
constants whatever the manifest says.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from adautomix.data.corruptions import CORRUPTIONS, SEVERITIES, corrupt
from adautomix.data.errors import DataError
from adautomix.optional import require
from adautomix.data.prepare import (
    MANIFEST,
    Manifest,
    channel_stats,
    ensure_dataset,
    load_manifest,
    write_atomically,
    write_manifest,
)

SUFFIX = "-c"
# Clean datasets whose official corrupted arrays `--source` reads.
OFFICIAL = {"cifar10": 10, "cifar100": 100}
log = logging.getLogger("adautomix.data")


def corrupted_name(clean: str) -> str:
    return clean + SUFFIX


def clean_name(corrupted: str) -> str:
    if not corrupted.endswith(SUFFIX):
        raise DataError(f"{corrupted!r} is not a corrupted dataset name (NAME{SUFFIX})")
    return corrupted[: -len(SUFFIX)]


def split_name(corruption: str, severity: int) -> str:
    return f"{corruption}-{severity}"


def prepare_corrupted(
    name: str,
    source: str | Path | None = None,
    data_root: str | Path = "data",
    force: bool = False,
    seed: int = 0,
    progress: bool = False,
) -> Manifest:
    """Prepare the corrupted set `name` (NAME-c) once: from the official arrays in `source`, or,
    without one, generated from the prepared test split of NAME. An existing one is returned
    unless `force`."""
    clean = clean_name(name)
    data_root = Path(data_root)
    target = data_root / name
    if (target / MANIFEST).exists() and not force:
        return load_manifest(name, data_root)
    if source is not None:
        if clean not in OFFICIAL:
            raise DataError(
                f"--source reads the official CIFAR-10-C / CIFAR-100-C arrays; for "
                f"{name} leave it out to generate the corruptions from {clean}"
            )
        write = _official_writer(name, Path(source), data_root)
    else:
        write = _generated_writer(name, ensure_dataset(clean, data_root), seed, progress)
    return write_atomically(target, write)


def ensure_corrupted(clean: Manifest, progress: bool = False) -> Manifest:
    """The corrupted set of a prepared clean dataset, generated on first use if none is stored
    (and never again), checked to fit the clean test split it stands for."""
    name = corrupted_name(clean.name)
    data_root = clean.root.parent
    if not (data_root / name / MANIFEST).exists():
        log.info(
            "%s is not prepared in %s: generating it once (adautomix data prepare %s)",
            name,
            data_root,
            name,
        )
    manifest = prepare_corrupted(name, data_root=data_root, progress=progress)
    expected = clean.counts["test"]
    wrong = {s: n for s, n in manifest.counts.items() if n != expected}
    if wrong or (manifest.channels, manifest.image_size) != (clean.channels, clean.image_size):
        raise DataError(
            f"{manifest.root} does not fit {clean.name}'s test split ({expected} "
            f"images of {clean.image_size} px, {clean.channels} channels); re-run "
            f"`adautomix data prepare {name} --force`"
        )
    return manifest


def _generated_writer(name: str, clean: Manifest, seed: int, progress: bool):
    if clean.format != "array":
        raise DataError(
            f"{clean.name} is stored as image files; corruptions are generated for "
            "array datasets (at most 64 px) with the CIFAR-C constants"
        )
    require("cv2", f"generating {name} (the CIFAR-C corruptions)")  # before any is written

    def write(out: Path) -> Manifest:
        from tqdm import tqdm

        images = np.load(clean.root / "test_images.npy")
        labels = np.load(clean.root / "test_labels.npy")
        jobs = [(c, s) for c in CORRUPTIONS for s in SEVERITIES]
        for corruption, severity in tqdm(jobs, desc=f"generating {name}", disable=not progress):
            split = split_name(corruption, severity)
            np.save(out / f"{split}_images.npy", corrupt(images, corruption, severity, seed))
            np.save(out / f"{split}_labels.npy", labels)
        counts = {split_name(c, s): len(labels) for c, s in jobs}
        source = (
            f"generated from {clean.name} (content hash {clean.sha256}) with the CIFAR-C "
            f"constants, seed {seed}"
        )
        return write_manifest(
            out,
            name,
            "array",
            list(clean.classes),
            counts,
            clean.image_size,
            clean.channels,
            (np.array(clean.mean), np.array(clean.std)),
            source,
        )

    return write


def read_official(source: Path) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The official CIFAR-C folder: {corruption: memory-mapped 5·N×H×W×C array}, labels (5·N),
    checked for every corruption file and for matching counts."""
    if not source.is_dir():
        raise DataError(
            f"CIFAR-C source {source} is not a folder; it must hold the 19 "
            "<corruption>.npy files and labels.npy of CIFAR-10-C or CIFAR-100-C"
        )
    missing = [c for c in CORRUPTIONS if not (source / f"{c}.npy").exists()]
    if not (source / "labels.npy").exists():
        missing.append("labels")
    if missing:
        raise DataError(
            f"CIFAR-C folder {source} lacks {', '.join(m + '.npy' for m in missing)}; "
            "it must hold all 19 corruption files of the official release and "
            "labels.npy"
        )
    labels = np.load(source / "labels.npy").astype(np.int64)
    arrays = {c: np.load(source / f"{c}.npy", mmap_mode="r") for c in CORRUPTIONS}
    for corruption, images in arrays.items():
        if images.dtype != np.uint8 or images.ndim != 4 or len(images) != len(labels):
            raise DataError(
                f"{source / (corruption + '.npy')} holds {images.dtype} "
                f"{images.shape}, but labels.npy has {len(labels)} labels: each file "
                "must be uint8 images, one per label (5 severities × N)"
            )
    if len(labels) % len(SEVERITIES):
        raise DataError(f"{source / 'labels.npy'} has {len(labels)} labels, not 5 severities × N")
    return arrays, labels


def _official_writer(name: str, source: Path, data_root: Path):
    arrays, labels = read_official(source)
    clean = clean_name(name)
    per_severity = len(labels) // len(SEVERITIES)
    if (data_root / clean / MANIFEST).exists():
        clean_manifest = load_manifest(clean, data_root)
        classes, stats = (
            list(clean_manifest.classes),
            (np.array(clean_manifest.mean), np.array(clean_manifest.std)),
        )
    else:
        classes, stats = [str(i) for i in range(OFFICIAL[clean])], None
    if labels.min() < 0 or labels.max() >= len(classes):
        raise DataError(
            f"{source / 'labels.npy'} has labels outside 0-{len(classes) - 1}: is it "
            f"the {name} release?"
        )

    def write(out: Path) -> Manifest:
        counts = {}
        for corruption, images in arrays.items():
            for severity in SEVERITIES:
                rows = slice((severity - 1) * per_severity, severity * per_severity)
                split = split_name(corruption, severity)
                np.save(out / f"{split}_images.npy", np.ascontiguousarray(images[rows]))
                np.save(out / f"{split}_labels.npy", labels[rows])
                counts[split] = per_severity
        height, width, channels = arrays["gaussian_noise"].shape[1:]
        found = stats or channel_stats(arrays["gaussian_noise"][:per_severity])
        return write_manifest(
            out,
            name,
            "array",
            classes,
            counts,
            (height, width),
            channels,
            found,
            str(source.resolve()),
        )

    return write
