"""Write a raw dataset once into the canonical on-disk format under DATA_ROOT/NAME/.

Array format (images of at most 64 px), plain .npy that torch and DALI both read memory-mapped
(DALI through fn.external_source: dali.py says why not fn.readers.numpy):
    train_images.npy  uint8 N×H×W×C (C = 1 for Fashion-MNIST)     train_labels.npy  int64 N
    test_images.npy                                               test_labels.npy
Folder format (larger images), the encoded files copied byte for byte (no re-encoding, so the copy
is lossless and deterministic), with the file lists DALI's fn.readers.file reads:
    train/<class:04d>/<index:06d>.<ext>   train_list.txt ("train/0003/000012.jpg 3" per line)
    test/...                              test_list.txt
Both formats get a manifest.json: classes, counts, image size, per-channel mean and std over the
train split, and a content hash of every data file and of the manifest's own description of them
(every field but the hash itself and the raw source's path), so editing the classes, channels or
statistics is a change of content like editing a pixel.

A run checks the bytes it trains on against that hash (`ensure_dataset`): in full once per
prepared version, then by each file's size, mtime and ctime, recorded beside the dataset in
DATA_ROOT/.NAME.verified.json. A write to any file changes its ctime (which no user can set
back), so the next run hashes it again; `data verify` always hashes in full.

The statistics of a folder dataset come from a fixed sample of at most 500 train images, decoded
and resized to 64×64: decoding a whole ImageNet for a mean is not worth it, and 500 images pin
the mean and std to about two decimals, more than normalisation needs.

Every image of a folder dataset is fully decoded once here: Image.verify() only parses headers,
so a truncated JPEG would pass it and fail hours into training in a loader worker. JPEGs decode in
draft mode (reduced DCT scale), which still reads the whole compressed stream.

Writing is atomic: everything goes to a temporary folder beside the target (DATA_ROOT/.NAME.tmp-*)
that is renamed into place at the end and removed on any error, so DATA_ROOT never holds half a
dataset. The same source always gives the same bytes and so the same hash.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from adautomix.data.errors import DataError
from adautomix.data.sources import RawDataset, decode_image, read_source
from adautomix.progress import progress

log = logging.getLogger("adautomix.data")

# 2: the content hash covers the manifest's description of the data (format 1 hashed the files only)
FORMAT_VERSION = 2
MANIFEST = "manifest.json"
# Manifest fields outside the content hash: the hash itself, and where the raw files were read
# from (a path on one machine, which says nothing about the data).
UNHASHED_FIELDS = ("sha256", "source")
VERIFIED_SUFFIX = ".verified.json"
STATS_SAMPLE = 500
STATS_SIZE = 64
# What a writer reports: counts per split, image size (H, W) or None, channels, (mean, std).
Written = tuple[dict[str, int], tuple[int, int] | None, int, tuple[np.ndarray, np.ndarray]]

log = logging.getLogger("adautomix.data")


@dataclass(frozen=True)
class Manifest:
    name: str
    format: str  # "array" or "folder"
    classes: list[str]
    num_classes: int
    counts: dict[str, int]
    image_size: tuple[int, int] | None  # (H, W) of an array dataset; folders vary
    channels: int
    mean: tuple[float, ...]  # per channel, in [0, 1], over the train split
    std: tuple[float, ...]
    sha256: str  # content hash of the data files (see content_hash)
    format_version: int
    source: str
    root: Path = dataclasses.field(compare=False)  # where it lives now; not written

    def to_dict(self) -> dict:
        values = dataclasses.asdict(self)
        del values["root"]
        return values

    @classmethod
    def from_dict(cls, values: dict, root: Path) -> Manifest:
        size = values["image_size"]
        return cls(
            **{
                **values,
                "image_size": tuple(size) if size else None,
                "mean": tuple(values["mean"]),
                "std": tuple(values["std"]),
                "root": root,
            }
        )


def prepare(
    name: str,
    source: str | Path | None = None,
    data_root: str | Path = "data",
    force: bool = False,
    verify: bool = False,
) -> Manifest:
    """Prepare dataset `name` from `source` into data_root/name/ and return its manifest.

    An already prepared dataset is returned as it is (its hash checked when `verify`), unless
    `force`, which rebuilds it and swaps it in only once the new copy is complete."""
    data_root = Path(data_root)
    target = data_root / name
    if target.exists() and not force:
        if not (target / MANIFEST).exists():
            raise DataError(
                f"{target} exists but has no {MANIFEST}: it is not a prepared "
                f"dataset; remove it or run `adautomix data prepare {name} --force`"
            )
        manifest = load_manifest(name, data_root)
        return _check_hash(manifest) if verify else manifest
    log.info("%s: reading the source %s", name, source or "(the system's copy)")
    raw = read_source(name, source, download_dir=data_root / ".downloads")
    return write_atomically(target, lambda staging: _write(raw, staging))


def write_atomically(target: Path, write: Callable[[Path], Manifest]) -> Manifest:
    """Run `write(staging)` in a temporary folder beside `target` and swap it into place only
    when it returned; on any error the staging folder goes and `target` stays as it was."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; the dataset it becomes is not
    try:
        manifest = write(staging)
        _move_into_place(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return dataclasses.replace(manifest, root=target)


def load_manifest(name: str, data_root: str | Path = "data") -> Manifest:
    root = Path(data_root) / name
    path = root / MANIFEST
    if not path.exists():
        raise DataError(
            f"dataset {name} is not prepared in {data_root} (no {path}); run "
            f"`adautomix data prepare {name} --source PATH` or `dvc pull`"
        )
    try:
        values = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise DataError(
            f"{path} is not valid JSON ({error}); re-run `adautomix data prepare {name} --force`"
        ) from None
    if values.get("format_version") != FORMAT_VERSION:
        raise DataError(
            f"{path} has format version {values.get('format_version')}, this code "
            f"reads {FORMAT_VERSION}; re-run `adautomix data prepare {name} --force`"
        )
    return Manifest.from_dict(values, root)


def verify(name: str, data_root: str | Path = "data") -> Manifest:
    """Recompute the content hash of a prepared dataset and check its labels; raise DataError if
    either is wrong."""
    return _check_labels(_check_hash(load_manifest(name, data_root)))


def ensure_dataset(name: str, data_root: str | Path = "data") -> Manifest:
    """The prepared dataset's manifest, its bytes checked against its content hash (in full the
    first time, by file stamps after: see `verify_cached`). Fashion-MNIST is prepared on first
    use, since it needs no source; any other dataset must have been prepared (or pulled with
    DVC) beforehand."""
    if (Path(data_root) / name / MANIFEST).exists():
        return verify_cached(load_manifest(name, data_root))
    if name == "fashion-mnist":
        return verify_cached(prepare(name, data_root=data_root))
    raise DataError(
        f"dataset {name} is not prepared in {data_root}; run "
        f"`adautomix data prepare {name} --source PATH` (or `dvc pull`) first"
    )


def read_list(root: str | Path, split: str) -> tuple[list[str], list[int]]:
    """A folder dataset's `SPLIT_list.txt`: (image paths relative to `root`, labels), in order."""
    pairs = [
        line.rsplit(" ", 1) for line in (Path(root) / f"{split}_list.txt").read_text().splitlines()
    ]
    return [path for path, _ in pairs], [int(label) for _, label in pairs]


def content_hash(folder: str | Path, description: dict | None = None) -> str:
    """sha256 over each data file's relative path, size and bytes, in sorted path order, then
    over the manifest's description of them: `description` (manifest fields), or else the
    folder's manifest.json, less UNHASHED_FIELDS."""
    folder = Path(folder)
    files = sorted(
        (p.relative_to(folder).as_posix(), p)
        for p in folder.rglob("*")
        if p.is_file() and p != folder / MANIFEST
    )
    digest = hashlib.sha256()
    for relative, path in progress(files, f"hashing {folder.name}", unit="file"):
        digest.update(f"{relative}\0{path.stat().st_size}\0".encode())
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
    if description is None:
        manifest = folder / MANIFEST
        description = json.loads(manifest.read_text()) if manifest.exists() else {}
    described = {k: v for k, v in description.items() if k not in UNHASHED_FIELDS}
    digest.update(f"{MANIFEST}\0{json.dumps(described, sort_keys=True)}".encode())
    return digest.hexdigest()


def verify_cached(manifest: Manifest) -> Manifest:
    """`verify` at the cost of a stat per file once a version has been hashed here.

    The full check (content hash and label range) runs when no record beside the dataset shows
    every file at the size, mtime and ctime it had when this hash was last confirmed; a data
    root that cannot be written is hashed every time."""
    record = manifest.root.parent / f".{manifest.name}{VERIFIED_SUFFIX}"
    seen = {"sha256": manifest.sha256, "files": _file_stamps(manifest.root)}
    try:
        if json.loads(record.read_text()) == seen:
            return manifest
    except (OSError, ValueError):
        pass
    _check_labels(_check_hash(manifest))
    try:
        record.write_text(json.dumps(seen, sort_keys=True))
    except OSError as error:
        log.debug("cannot record the verified hash in %s (%s)", record, error)
    return manifest


def _file_stamps(folder: Path) -> dict[str, list[int]]:
    stamps = {}
    for path in folder.rglob("*"):
        if path.is_file():
            stat = path.stat()
            stamps[path.relative_to(folder).as_posix()] = [
                stat.st_size,
                stat.st_mtime_ns,
                stat.st_ctime_ns,
            ]
    return stamps


def _check_hash(manifest: Manifest) -> Manifest:
    actual = content_hash(manifest.root)
    if actual != manifest.sha256:
        raise DataError(
            f"dataset {manifest.name} in {manifest.root} does not match its manifest: "
            f"content hash {actual} != recorded {manifest.sha256}. Re-run "
            f"`adautomix data prepare {manifest.name} --force` or `dvc pull`"
        )
    return manifest


def _check_labels(manifest: Manifest) -> Manifest:
    """Every label names one of the manifest's classes: a label out of range would otherwise
    fail deep in the loss, or worse, index a wrong row without failing."""
    if manifest.num_classes != len(manifest.classes):
        raise DataError(
            f"{manifest.root / MANIFEST} lists {len(manifest.classes)} classes but "
            f"num_classes {manifest.num_classes}; re-run `adautomix data prepare "
            f"{manifest.name} --force`"
        )
    for split in manifest.counts:
        if manifest.format == "array":
            labels = np.load(manifest.root / f"{split}_labels.npy", mmap_mode="r")
        else:
            lines = (manifest.root / f"{split}_list.txt").read_text().split("\n")
            labels = np.array([int(line.rsplit(" ", 1)[1]) for line in lines if line.strip()])
        if len(labels) and not (0 <= labels.min() and labels.max() < manifest.num_classes):
            raise DataError(
                f"dataset {manifest.name}: {split} labels span {labels.min()}.."
                f"{labels.max()}, outside the manifest's {manifest.num_classes} "
                f"classes (0..{manifest.num_classes - 1}); re-run `adautomix data "
                f"prepare {manifest.name} --force`"
            )
    return manifest


def _move_into_place(staging: Path, target: Path) -> None:
    if not target.exists():
        os.replace(staging, target)
        return
    # A directory cannot be renamed over a non-empty one: move the old copy aside first.
    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
    os.replace(target, old / target.name)
    os.replace(staging, target)
    shutil.rmtree(old)


def _write(raw: RawDataset, out: Path) -> Manifest:
    write = _write_arrays if raw.format == "array" else _write_folders
    counts, image_size, channels, stats = write(raw, out)
    return write_manifest(
        out,
        raw.name,
        raw.format,
        list(raw.classes),
        counts,
        image_size,
        channels,
        stats,
        str(Path(raw.source).resolve()),
    )


def write_manifest(
    out: Path,
    name: str,
    format: str,
    classes: list[str],
    counts: dict[str, int],
    image_size: tuple[int, int] | None,
    channels: int,
    stats: tuple[np.ndarray, np.ndarray],
    source: str,
) -> Manifest:
    """The manifest of the data files already written to `out`, hashed, written beside them."""
    mean, std = stats
    manifest = Manifest(
        name=name,
        format=format,
        classes=classes,
        num_classes=len(classes),
        counts=counts,
        image_size=image_size,
        channels=channels,
        mean=tuple(round(float(m), 6) for m in mean),
        std=tuple(round(float(s), 6) for s in std),
        sha256="",
        format_version=FORMAT_VERSION,
        source=source,
        root=out,
    )
    # hashed as it will read back from JSON (tuples become lists)
    manifest = dataclasses.replace(
        manifest, sha256=content_hash(out, json.loads(json.dumps(manifest.to_dict())))
    )
    text = json.dumps(manifest.to_dict(), indent=2, sort_keys=True) + "\n"
    (out / MANIFEST).write_text(text)
    return manifest


def _write_arrays(raw: RawDataset, out: Path) -> Written:
    shapes = {split: images.shape[1:] for split, (images, _) in raw.splits.items()}
    if len(set(shapes.values())) != 1:
        raise DataError(f"{raw.name}: the splits hold images of different shapes {shapes}")
    for split, (images, labels) in raw.splits.items():
        log.info("%s/%s: writing %d images", raw.name, split, len(labels))
        np.save(out / f"{split}_images.npy", np.ascontiguousarray(images, np.uint8))
        np.save(out / f"{split}_labels.npy", np.ascontiguousarray(labels, np.int64))
    counts = {split: len(labels) for split, (_, labels) in raw.splits.items()}
    height, width, channels = shapes["train"]
    return counts, (height, width), channels, channel_stats(raw.splits["train"][0])


def channel_stats(images: np.ndarray, chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std in [0, 1] of uint8 N×H×W×C images, summed in float64 chunks so
    that a dataset's worth of pixels never exists as floats at once."""
    channels = images.shape[-1]
    total, squares = np.zeros(channels), np.zeros(channels)
    for start in range(0, len(images), chunk):
        pixels = images[start : start + chunk].reshape(-1, channels).astype(np.float64)
        total += pixels.sum(axis=0)
        squares += np.square(pixels).sum(axis=0)
    count = images.size // channels
    mean = total / count
    return mean / 255.0, np.sqrt(squares / count - mean**2) / 255.0


def _copy_checked(source: Path, destination: Path, keep: bool) -> np.ndarray | None:
    """Decode-check one image, copy its bytes, and return it at 64×64 if it is a stats sample."""
    image = decode_image(source, draft_size=(STATS_SIZE, STATS_SIZE))
    shutil.copyfile(source, destination)
    if keep:
        return np.asarray(image.resize((STATS_SIZE, STATS_SIZE), Image.BILINEAR))
    return None


def _write_folders(raw: RawDataset, out: Path) -> Written:
    train_count = len(raw.splits["train"])
    sample = np.random.default_rng(0).choice(
        train_count, min(STATS_SAMPLE, train_count), replace=False
    )
    sampled = np.zeros(train_count, bool)
    sampled[sample] = True
    kept = []
    for split, items in raw.splits.items():
        width = max(6, len(str(len(items) - 1)))
        lines, jobs = [], []
        for i, (source, label) in enumerate(items):
            relative = f"{split}/{label:04d}/{i:0{width}d}{source.suffix.lower()}"
            lines.append(f"{relative} {label}\n")
            jobs.append((source, out / relative, split == "train" and sampled[i]))
        for label in sorted({label for _, label in items}):
            (out / split / f"{label:04d}").mkdir(parents=True)
        with ThreadPoolExecutor(os.cpu_count()) as pool:
            try:
                results = list(
                    progress(
                        pool.map(lambda job: _copy_checked(*job), jobs),
                        f"{raw.name}/{split}: checking and copying images",
                        total=len(jobs),
                        unit="image",
                    )
                )
            except BaseException:
                pool.shutdown(cancel_futures=True)  # do not decode the rest of the dataset first
                raise
        (out / f"{split}_list.txt").write_text("".join(lines))
        if split == "train":
            kept = [image for image in results if image is not None]
    counts = {split: len(items) for split, items in raw.splits.items()}
    return counts, None, 3, channel_stats(np.stack(kept))
