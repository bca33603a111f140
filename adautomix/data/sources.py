"""Readers of the raw dataset formats, each with its official train/test split.

A reader returns a RawDataset in one of two shapes:
- "array", for images of at most 64 px: {split: (images uint8 N×H×W×C, labels int64 N)};
- "folder", for larger images: {split: [(path, label), ...]}, the files left encoded.
The splits are always "train" and "test"; where a dataset calls its test split "val"
(Tiny-ImageNet, ImageNet) that split is the test split, as in the papers.

Readers only read. They check labels, counts and structure as they go and raise DataError naming
the file or class folder at fault and the fix; decoding every image of a folder dataset is left to
`prepare`, which has to touch each file anyway.
"""

from __future__ import annotations

import gzip
import math
import os
import pickle
import struct
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image

from adautomix.config import DATASETS
from adautomix.data.errors import DataError

SPLITS = ("train", "test")
# Formats that PIL (prepare's check and the torch loader) and DALI both decode.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp")
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
# What --source must point at, for the error raised when it does not.
LAYOUTS = {
    "fashion-mnist": "a folder with train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
    "t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz",
    "cifar10": "the folder cifar-10-batches-py/ (or its parent) from cifar-10-python.tar.gz",
    "cifar100": "the folder cifar-100-python/ (or its parent) from cifar-100-python.tar.gz",
    "tiny-imagenet": "the folder tiny-imagenet-200/ (or its parent) from tiny-imagenet-200.zip",
    "imagenet": "a folder with train/<class>/*.JPEG and val/<class>/*.JPEG",
    "image-folder": "a folder with train/<class>/*.jpg and val/<class>/*.jpg (or test/<class>/)",
    "cub200": "the folder CUB_200_2011/ (or its parent) from CUB_200_2011.tgz",
    "aircraft": "the folder fgvc-aircraft-2013b/ (or its parent) from fgvc-aircraft-2013b.tar.gz",
    "cars": "a folder with cars_train/, cars_test/, devkit/ and cars_test_annos_withlabels.mat "
    "(torchvision's stanford_cars/ layout)",
}


@dataclass(frozen=True)
class RawDataset:
    name: str
    format: str  # "array" or "folder"
    classes: list[str]
    splits: dict  # arrays: {split: (images, labels)}; folders: {split: [(path, label)]}
    source: str  # where it was read from, recorded in the manifest


def read_source(
    name: str, source: str | Path | None = None, *, download_dir: str | Path = "data/.downloads"
) -> RawDataset:
    """Read dataset `name` from `source`. Only Fashion-MNIST may omit the source: it is then
    taken from Debian's dataset-fashion-mnist package, else downloaded into download_dir."""
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; valid: {', '.join(DATASETS)}")
    if name == "fashion-mnist":
        return read_fashion_mnist(source, download_dir)
    if source is None:
        raise DataError(
            f"dataset {name} needs a source: pass --source PATH with PATH {LAYOUTS[name]}"
        )
    if not Path(source).is_dir():
        raise DataError(f"source {source} for {name} is not a folder; it must be {LAYOUTS[name]}")
    return READERS[name](name, Path(source))


# --- checks and small file helpers ------------------------------------------------------------


def _check_labels(labels: np.ndarray, num_classes: int, where: Path | str) -> None:
    bad = (labels < 0) | (labels >= num_classes)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"{where}: label {int(labels[first])} (item {first}) is outside "
            f"[0, {num_classes}); the file is corrupt or belongs to another dataset"
        )


def _check_not_empty(split: str, count: int, where: Path | str) -> None:
    if count == 0:
        raise DataError(f"the {split} split read from {where} is empty; check the source folder")


def _require(path: Path, name: str) -> Path:
    if not path.exists():
        raise DataError(f"{path} is missing; the source of {name} must be {LAYOUTS[name]}")
    return path


def _descend(source: Path, folder: str) -> Path:
    """Accept either the dataset's own top folder or its parent as the source."""
    return source / folder if (source / folder).is_dir() else source


def _read_table(path: Path, name: str) -> list[tuple[str, str]]:
    """Lines 'KEY REST' of a plain-text annotation file, split at the first whitespace."""
    rows = []
    for number, line in enumerate(_require(path, name).read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split(maxsplit=1)
        if len(parts) != 2:
            raise DataError(f"{path}:{number}: expected 'KEY VALUE', got {line!r}")
        rows.append((parts[0], parts[1].strip()))
    return rows


def image_files(folder: Path) -> list[Path]:
    """Every image under `folder` (recursively, as torchvision's ImageFolder), sorted.

    Files with other extensions are skipped, so a folder with none of IMAGE_EXTENSIONS is empty."""
    files = sorted(
        p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()
    )
    if not files:
        raise DataError(
            f"class folder {folder} has no images ({', '.join(IMAGE_EXTENSIONS)}); "
            "add images or remove the folder"
        )
    return files


def decode_image(path: Path, draft_size: tuple[int, int] | None = None) -> Image.Image:
    """Fully decode an image to RGB; a missing, corrupt or truncated file raises DataError.

    `draft_size` lets JPEGs decode at a reduced DCT scale: far cheaper, yet the whole entropy-coded
    stream is still read, so truncation is still caught (Image.verify() would not catch it)."""
    try:
        with Image.open(path) as image:
            if draft_size is not None:
                image.draft("RGB", draft_size)
            return image.convert("RGB")
    except FileNotFoundError:
        raise DataError(f"image {path} is missing; re-extract the dataset") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise DataError(
            f"cannot decode image {path} ({error}): the file is corrupt or truncated; "
            "replace it with a good copy (re-extract the archive)"
        ) from None


def _decode_all(paths: list[Path], size: tuple[int, int]) -> np.ndarray:
    """Decode equally sized images into one uint8 N×H×W×3 array, in threads (PIL releases the
    GIL while decoding)."""
    out = np.empty((len(paths), *size, 3), np.uint8)

    def decode_into(i: int) -> None:
        image = decode_image(paths[i])
        if image.size[::-1] != size:
            raise DataError(
                f"image {paths[i]} is {image.size[0]}x{image.size[1]}, expected "
                f"{size[1]}x{size[0]} like the rest of the dataset"
            )
        out[i] = np.asarray(image)

    with ThreadPoolExecutor(os.cpu_count()) as pool:
        list(pool.map(decode_into, range(len(paths))))
    return out


# --- Fashion-MNIST: IDX files -----------------------------------------------------------------


def read_idx(path: Path) -> np.ndarray:
    """A gzipped IDX file of unsigned bytes (the MNIST format), checked against its header."""
    try:
        with gzip.open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise DataError(f"IDX file {path} is missing") from None
    except (OSError, EOFError, zlib.error) as error:
        raise DataError(
            f"IDX file {path} is not a readable gzip file ({error}): it is corrupt or "
            "truncated; replace it (apt-get install --reinstall dataset-fashion-mnist, "
            "or download it again)"
        ) from None
    # Header: two zero bytes, a type code (0x08 = unsigned byte), the number of dimensions,
    # then each dimension as a big-endian uint32.
    if len(data) < 4 or data[:2] != b"\0\0" or data[2] != 0x08:
        raise DataError(f"{path} is not an IDX file of unsigned bytes (magic {data[:4].hex()})")
    ndim = data[3]
    offset = 4 + 4 * ndim
    if len(data) < offset:
        raise DataError(f"IDX file {path} is truncated inside its header; replace it")
    dims = struct.unpack(f">{ndim}I", data[4:offset])
    if len(data) - offset != math.prod(dims):
        raise DataError(
            f"IDX file {path} holds {len(data) - offset} bytes of data but its header "
            f"promises {math.prod(dims)} for shape {dims}: it is truncated or corrupt; "
            "replace it"
        )
    return np.frombuffer(data, np.uint8, offset=offset).reshape(dims)


def _fashion_mnist_folder(source: str | Path | None, download_dir: str | Path) -> Path:
    if source is not None:
        return Path(source)
    if DEBIAN_FASHION_MNIST.is_dir():
        return DEBIAN_FASHION_MNIST
    try:
        from torchvision.datasets import FashionMNIST

        FashionMNIST(str(download_dir), train=True, download=True)
    # The download can fail in many ways (DNS, HTTP, proxy, disk); each means the same here.
    except Exception as error:
        raise DataError(
            f"Fashion-MNIST is not installed in {DEBIAN_FASHION_MNIST} and downloading it into "
            f"{download_dir} failed ({error}). Either install it with "
            "`apt-get install dataset-fashion-mnist` or run where the internet can be reached; "
            "or pass --source with a folder holding the four IDX .gz files"
        ) from None
    return Path(download_dir) / "FashionMNIST" / "raw"


def read_fashion_mnist(
    source: str | Path | None = None, download_dir: str | Path = "data/.downloads"
) -> RawDataset:
    folder = _fashion_mnist_folder(source, download_dir)
    splits = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images_file = _require(folder / f"{prefix}-images-idx3-ubyte.gz", "fashion-mnist")
        labels_file = _require(folder / f"{prefix}-labels-idx1-ubyte.gz", "fashion-mnist")
        images, labels = read_idx(images_file), read_idx(labels_file).astype(np.int64)
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise DataError(
                f"{images_file} (shape {images.shape}) and {labels_file} (shape "
                f"{labels.shape}) do not pair up as N images and N labels"
            )
        _check_not_empty(split, len(labels), images_file)
        _check_labels(labels, len(FASHION_MNIST_CLASSES), labels_file)
        splits[split] = (images[..., None], labels)
    return RawDataset("fashion-mnist", "array", list(FASHION_MNIST_CLASSES), splits, str(folder))


# --- CIFAR-10 / CIFAR-100: python pickles -----------------------------------------------------


def _unpickle(path: Path, name: str) -> dict:
    _require(path, name)
    try:
        with open(path, "rb") as f:
            content = pickle.load(f, encoding="latin1")
    # A damaged pickle can fail with almost any exception type.
    except Exception as error:
        raise DataError(
            f"{path} is not a readable CIFAR pickle ({type(error).__name__}: {error}): "
            "it is corrupt or truncated; extract the archive again"
        ) from None
    if not isinstance(content, dict):
        raise DataError(f"{path} holds a {type(content).__name__}, not a CIFAR batch dict")
    return content


def _cifar_batch(
    path: Path, name: str, label_key: str, num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    batch = _unpickle(path, name)
    if "data" not in batch or label_key not in batch:
        raise DataError(f"{path} lacks 'data' or {label_key!r}; is it a {name} file?")
    data = np.asarray(batch["data"], np.uint8)
    labels = np.asarray(batch[label_key], np.int64)
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(data) != len(labels):
        raise DataError(
            f"{path}: data of shape {data.shape} and {len(labels)} labels are not "
            "N rows of 3072 bytes with N labels; the file is corrupt"
        )
    _check_labels(labels, num_classes, path)
    # Rows are channel-major (1024 red, 1024 green, 1024 blue): to N×32×32×3.
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels


def _cifar(
    name: str,
    folder: Path,
    train_files: list[str],
    test_file: str,
    meta_file: str,
    names_key: str,
    label_key: str,
) -> RawDataset:
    classes = list(_unpickle(folder / meta_file, name).get(names_key, []))
    if not classes:
        raise DataError(f"{folder / meta_file} has no {names_key!r}; is it a {name} file?")
    splits = {}
    for split, files in (("train", train_files), ("test", [test_file])):
        parts = [_cifar_batch(folder / f, name, label_key, len(classes)) for f in files]
        images = np.ascontiguousarray(np.concatenate([p[0] for p in parts]))
        labels = np.concatenate([p[1] for p in parts])
        _check_not_empty(split, len(labels), folder / files[0])
        splits[split] = (images, labels)
    return RawDataset(name, "array", classes, splits, str(folder))


def read_cifar10(name: str, source: Path) -> RawDataset:
    folder = _descend(source, "cifar-10-batches-py")
    return _cifar(
        name,
        folder,
        [f"data_batch_{i}" for i in range(1, 6)],
        "test_batch",
        "batches.meta",
        "label_names",
        "labels",
    )


def read_cifar100(name: str, source: Path) -> RawDataset:
    folder = _descend(source, "cifar-100-python")
    return _cifar(name, folder, ["train"], "test", "meta", "fine_label_names", "fine_labels")


# --- Tiny-ImageNet: JPEG tree, decoded into arrays ---------------------------------------------


def read_tiny_imagenet(name: str, source: Path) -> RawDataset:
    root = _descend(source, "tiny-imagenet-200")
    # Sorted, so class indices match torchvision's ImageFolder over train/ (wnids.txt is unsorted).
    wnids = sorted(w for w in _require(root / "wnids.txt", name).read_text().split())
    words = dict(_read_table(root / "words.txt", name))
    index = {wnid: i for i, wnid in enumerate(wnids)}
    train = [
        (path, index[wnid])
        for wnid in wnids
        for path in image_files(_require(root / "train" / wnid / "images", name))
    ]
    annotations = root / "val" / "val_annotations.txt"
    test = []
    for file_name, rest in _read_table(annotations, name):
        wnid = rest.split()[0]
        if wnid not in index:
            raise DataError(
                f"{annotations}: image {file_name} has class {wnid}, which is not in "
                f"{root / 'wnids.txt'}"
            )
        test.append((_require(root / "val" / "images" / file_name, name), index[wnid]))
    splits = {}
    for split, items, where in (("train", train, root / "train"), ("test", test, annotations)):
        _check_not_empty(split, len(items), where)
        splits[split] = (
            _decode_all([p for p, _ in items], (64, 64)),
            np.array([label for _, label in items], np.int64),
        )
    return RawDataset(name, "array", [words.get(w, w) for w in wnids], splits, str(root))


# --- folder datasets: files stay encoded ------------------------------------------------------


def read_image_folder(name: str, source: Path) -> RawDataset:
    """ImageNet layout: train/<class>/* and val/<class>/* (or test/<class>/*)."""
    train_dir = _require(source / "train", name)
    test_dir = source / "val" if (source / "val").is_dir() else _require(source / "test", name)
    classes = sorted(d.name for d in train_dir.iterdir() if d.is_dir())
    _check_not_empty("train", len(classes), train_dir)
    index = {c: i for i, c in enumerate(classes)}
    train = [(path, i) for i, c in enumerate(classes) for path in image_files(train_dir / c)]
    test = []
    for folder in sorted(d for d in test_dir.iterdir() if d.is_dir()):
        if folder.name not in index:
            raise DataError(
                f"class folder {folder} has no counterpart in {train_dir}; "
                "rename or remove it so both splits share one class list"
            )
        test += [(path, index[folder.name]) for path in image_files(folder)]
    _check_not_empty("test", len(test), test_dir)
    return RawDataset(name, "folder", classes, {"train": train, "test": test}, str(source))


def read_cub200(name: str, source: Path) -> RawDataset:
    root = _descend(source, "CUB_200_2011")
    classes = [
        c for _, c in sorted(_read_table(root / "classes.txt", name), key=lambda row: int(row[0]))
    ]
    paths = dict(_read_table(root / "images.txt", name))
    labels_file = root / "image_class_labels.txt"
    labels = {k: int(v) - 1 for k, v in _read_table(labels_file, name)}  # 1-based on disk
    split_file = root / "train_test_split.txt"
    is_train = dict(_read_table(split_file, name))
    splits = {"train": [], "test": []}
    for image_id in sorted(paths, key=int):
        if image_id not in labels or image_id not in is_train:
            raise DataError(
                f"image {image_id} of {root / 'images.txt'} has no entry in "
                f"{labels_file} or {split_file}"
            )
        if not 0 <= labels[image_id] < len(classes):
            raise DataError(
                f"{labels_file}: image {image_id} has class {labels[image_id] + 1}, "
                f"outside 1..{len(classes)} of {root / 'classes.txt'}"
            )
        split = "train" if is_train[image_id] == "1" else "test"
        splits[split].append((root / "images" / paths[image_id], labels[image_id]))
    for split in SPLITS:
        _check_not_empty(split, len(splits[split]), split_file)
    return RawDataset(name, "folder", classes, splits, str(root))


def read_aircraft(name: str, source: Path) -> RawDataset:
    """FGVC-Aircraft 2013b at the variant level (100 classes), trainval for training."""
    root = _descend(source, "fgvc-aircraft-2013b") / "data"
    variants_file = root / "variants.txt"
    classes = [
        line.strip()
        for line in _require(variants_file, name).read_text().splitlines()
        if line.strip()
    ]
    index = {c: i for i, c in enumerate(classes)}
    splits = {}
    for split, list_name in (
        ("train", "images_variant_trainval.txt"),
        ("test", "images_variant_test.txt"),
    ):
        items = []
        for image_id, variant in _read_table(root / list_name, name):
            if variant not in index:
                raise DataError(
                    f"{root / list_name}: image {image_id} has variant {variant!r}, "
                    f"which is not in {variants_file}"
                )
            items.append((root / "images" / f"{image_id}.jpg", index[variant]))
        _check_not_empty(split, len(items), root / list_name)
        splits[split] = items
    return RawDataset(name, "folder", classes, splits, str(root))


def _loadmat(path: Path, key: str, name: str) -> np.ndarray:
    _require(path, name)
    try:
        content = scipy.io.loadmat(path, squeeze_me=True)
    except (OSError, ValueError, TypeError, scipy.io.matlab.MatReadError) as error:
        raise DataError(
            f"{path} is not a readable .mat file ({error}): it is corrupt or "
            "truncated; download it again"
        ) from None
    if key not in content:
        raise DataError(f"{path} has no {key!r} entry; is it the Stanford Cars devkit file?")
    return np.atleast_1d(content[key])


def read_cars(name: str, source: Path) -> RawDataset:
    """Stanford Cars with the official split; test labels from cars_test_annos_withlabels.mat."""
    root = _descend(source, "stanford_cars")
    devkit = root / "devkit"
    classes = [str(c) for c in _loadmat(devkit / "cars_meta.mat", "class_names", name)]
    test_annos = root / "cars_test_annos_withlabels.mat"
    if not test_annos.exists():
        test_annos = devkit / test_annos.name
    splits = {}
    for split, annos_file, folder in (
        ("train", devkit / "cars_train_annos.mat", "cars_train"),
        ("test", test_annos, "cars_test"),
    ):
        annotations = _loadmat(annos_file, "annotations", name)
        if not {"fname", "class"} <= set(annotations.dtype.names or ()):
            raise DataError(f"{annos_file}: 'annotations' lacks the fields 'fname' and 'class'")
        labels = np.atleast_1d(annotations["class"]).astype(np.int64) - 1  # 1-based on disk
        _check_labels(labels, len(classes), annos_file)
        files = [root / folder / str(f) for f in np.atleast_1d(annotations["fname"])]
        _check_not_empty(split, len(files), annos_file)
        splits[split] = list(zip(files, labels.tolist(), strict=True))
    return RawDataset(name, "folder", classes, splits, str(root))


READERS = {
    "cifar10": read_cifar10,
    "cifar100": read_cifar100,
    "tiny-imagenet": read_tiny_imagenet,
    "imagenet": read_image_folder,
    "image-folder": read_image_folder,
    "cub200": read_cub200,
    "aircraft": read_aircraft,
    "cars": read_cars,
}
