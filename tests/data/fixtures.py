"""Tiny datasets in the real on-disk format of every source, for tests anywhere in the project.

Each `make_*` writes under `root` and returns the folder to pass as `source` (or `--source`).
Array-format images are seeded noise from `noise_images`, so a test can rebuild what was written;
labels are `index % num_classes`, so with at most num_classes images a label names its image.
Folder-format images are solid colours whose red value is a running image number (`solid_image`),
so an image can still be recognised after it was cropped and resized.
"""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image


def noise_images(count: int, size: int, channels: int, seed: int = 0) -> np.ndarray:
    """uint8 count×size×size×channels noise, reproducible from the seed."""
    return np.random.default_rng(seed).integers(0, 256, (count, size, size, channels), np.uint8)


def cycling_labels(count: int, num_classes: int) -> np.ndarray:
    return np.arange(count, dtype=np.int64) % num_classes


def solid_image(number: int, size: tuple[int, int] = (40, 48)) -> Image.Image:
    """A (width, height) RGB image of one colour; its red value is number % 256."""
    colour = (number % 256, (3 * number + 60) % 256, (7 * number + 120) % 256)
    return Image.new("RGB", size, colour)


def write_idx(path: Path, array: np.ndarray) -> None:
    """A gzipped IDX file of unsigned bytes, as in the Fashion-MNIST distribution."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + np.ascontiguousarray(array, np.uint8).tobytes())


def make_fashion_mnist(root: Path, n_train: int = 20, n_test: int = 10) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for prefix, count, seed in (("train", n_train, 0), ("t10k", n_test, 1)):
        write_idx(root / f"{prefix}-images-idx3-ubyte.gz", noise_images(count, 28, 1, seed)[..., 0])
        write_idx(root / f"{prefix}-labels-idx1-ubyte.gz", cycling_labels(count, 10))
    return root


def _pickle(path: Path, content: dict) -> None:
    with open(path, "wb") as f:
        pickle.dump(content, f)


def _cifar_rows(images: np.ndarray) -> np.ndarray:
    """N×32×32×3 -> the on-disk rows: N×3072, channel-major."""
    return images.transpose(0, 3, 1, 2).reshape(len(images), -1)


def make_cifar10(root: Path, n_train: int = 20, n_test: int = 10) -> Path:
    """cifar-10-batches-py/ with data_batch_1..5, test_batch and batches.meta."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    images, labels = noise_images(n_train, 32, 3, 0), cycling_labels(n_train, 10)
    for i, part in enumerate(np.array_split(np.arange(n_train), 5), 1):
        _pickle(
            folder / f"data_batch_{i}",
            {
                "batch_label": f"training batch {i} of 5",
                "data": _cifar_rows(images[part]),
                "labels": labels[part].tolist(),
            },
        )
    _pickle(
        folder / "test_batch",
        {
            "data": _cifar_rows(noise_images(n_test, 32, 3, 1)),
            "labels": cycling_labels(n_test, 10).tolist(),
        },
    )
    _pickle(folder / "batches.meta", {"label_names": [f"class{i}" for i in range(10)]})
    return root


def make_cifar100(root: Path, n_train: int = 20, n_test: int = 10) -> Path:
    """cifar-100-python/ with train, test and meta (fine and coarse labels)."""
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    for split, count, seed in (("train", n_train, 0), ("test", n_test, 1)):
        fine = cycling_labels(count, 100)
        _pickle(
            folder / split,
            {
                "data": _cifar_rows(noise_images(count, 32, 3, seed)),
                "fine_labels": fine.tolist(),
                "coarse_labels": (fine // 5).tolist(),
            },
        )
    _pickle(
        folder / "meta",
        {
            "fine_label_names": [f"fine{i}" for i in range(100)],
            "coarse_label_names": [f"coarse{i}" for i in range(20)],
        },
    )
    return root


def make_tiny_imagenet(
    root: Path, num_classes: int = 3, per_class: int = 2, n_val: int = 4
) -> Path:
    """tiny-imagenet-200/ with wnids.txt (unsorted, as shipped), words.txt, train/<wnid>/images/
    and val/images/ + val_annotations.txt; 64×64 JPEGs, one of them greyscale as in the real set."""
    folder = root / "tiny-imagenet-200"
    wnids = [f"n{9000000 - 1000 * i:08d}" for i in range(num_classes)]  # descending: unsorted
    (folder / "val" / "images").mkdir(parents=True)
    (folder / "wnids.txt").write_text("\n".join(wnids) + "\n")
    words = [f"{w}\tthing {i}, other name" for i, w in enumerate(wnids)] + ["n00000001\tentity"]
    (folder / "words.txt").write_text("\n".join(words) + "\n")
    pixels = noise_images(num_classes * per_class + n_val, 64, 3)
    number = 0
    for wnid in wnids:
        (folder / "train" / wnid / "images").mkdir(parents=True)
        (folder / "train" / wnid / f"{wnid}_boxes.txt").write_text("")
        for k in range(per_class):
            image = Image.fromarray(pixels[number])
            if number == 0:
                image = image.convert("L")
            image.save(folder / "train" / wnid / "images" / f"{wnid}_{k}.JPEG")
            number += 1
    lines = []
    for k in range(n_val):
        Image.fromarray(pixels[number + k]).save(folder / "val" / "images" / f"val_{k}.JPEG")
        lines.append(f"val_{k}.JPEG\t{wnids[k % num_classes]}\t0\t0\t63\t63")
    (folder / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    return root


def make_image_folder(
    root: Path,
    classes: tuple[str, ...] = ("cat", "dog", "fox"),
    per_class: int = 2,
    per_class_test: int = 1,
    ext: str = "jpg",
    size: tuple[int, int] = (40, 48),
    test_dir: str = "val",
) -> Path:
    """ImageNet layout: train/<class>/*.<ext> and <test_dir>/<class>/*.<ext>."""
    number = 0
    for split, count in (("train", per_class), (test_dir, per_class_test)):
        for name in classes:
            (root / split / name).mkdir(parents=True)
            for k in range(count):
                solid_image(number, size).save(root / split / name / f"img_{k}.{ext}")
                number += 1
    return root


def make_cub200(root: Path, num_classes: int = 3, per_class: int = 3) -> Path:
    """CUB_200_2011/ with images.txt, image_class_labels.txt (1-based), train_test_split.txt,
    classes.txt and images/<class>/*.jpg; the last image of each class is a test image."""
    folder = root / "CUB_200_2011"
    images, labels, split, classes = [], [], [], []
    image_id = 0
    for c in range(1, num_classes + 1):
        class_name = f"{c:03d}.Bird_{c}"
        classes.append(f"{c} {class_name}")
        (folder / "images" / class_name).mkdir(parents=True)
        for k in range(per_class):
            image_id += 1
            relative = f"{class_name}/Bird_{c}_{k}.jpg"
            solid_image(image_id).save(folder / "images" / relative)
            images.append(f"{image_id} {relative}")
            labels.append(f"{image_id} {c}")
            split.append(f"{image_id} {0 if k == per_class - 1 else 1}")
    for name, lines in (
        ("images.txt", images),
        ("image_class_labels.txt", labels),
        ("train_test_split.txt", split),
        ("classes.txt", classes),
    ):
        (folder / name).write_text("\n".join(lines) + "\n")
    return root


def make_aircraft(
    root: Path,
    variants: tuple[str, ...] = ("707-320", "A320", "Cessna 172"),
    per_class: int = 2,
    per_class_test: int = 1,
) -> Path:
    """fgvc-aircraft-2013b/data/ with images/<id>.jpg, variants.txt and the variant lists."""
    folder = root / "fgvc-aircraft-2013b" / "data"
    (folder / "images").mkdir(parents=True)
    (folder / "variants.txt").write_text("\n".join(variants) + "\n")
    number = 0
    for list_name, count in (
        ("images_variant_trainval.txt", per_class),
        ("images_variant_test.txt", per_class_test),
    ):
        lines = []
        for variant in variants:
            for _ in range(count):
                image_id = f"{1000000 + number:07d}"
                solid_image(number).save(folder / "images" / f"{image_id}.jpg")
                lines.append(f"{image_id} {variant}")
                number += 1
        (folder / list_name).write_text("\n".join(lines) + "\n")
    return root


def cars_annotations(names: list[str], labels: list[int]) -> np.ndarray:
    """A 1×N MATLAB struct array like the devkit's: bounding box, class (1-based) and file name."""
    fields = [
        ("bbox_x1", "O"),
        ("bbox_y1", "O"),
        ("bbox_x2", "O"),
        ("bbox_y2", "O"),
        ("class", "O"),
        ("fname", "O"),
    ]
    rows = [(1, 1, 30, 20, label, name) for name, label in zip(names, labels, strict=True)]
    return np.array(rows, dtype=fields).reshape(1, -1)


def make_cars(
    root: Path, num_classes: int = 3, per_class: int = 2, per_class_test: int = 1
) -> Path:
    """Stanford Cars: cars_train/, cars_test/, devkit/cars_meta.mat, devkit/cars_train_annos.mat
    and cars_test_annos_withlabels.mat (classes 1-based)."""
    (root / "devkit").mkdir(parents=True)
    names = np.empty((1, num_classes), object)
    names[0] = [f"Maker Model {c} 2012" for c in range(num_classes)]
    scipy.io.savemat(root / "devkit" / "cars_meta.mat", {"class_names": names})
    number = 0
    for folder, count, annos in (
        ("cars_train", per_class, root / "devkit" / "cars_train_annos.mat"),
        ("cars_test", per_class_test, root / "cars_test_annos_withlabels.mat"),
    ):
        (root / folder).mkdir()
        files, labels = [], []
        for c in range(num_classes):
            for _ in range(count):
                files.append(f"{number + 1:05d}.jpg")
                labels.append(c + 1)
                solid_image(number).save(root / folder / files[-1])
                number += 1
        scipy.io.savemat(annos, {"annotations": cars_annotations(files, labels)})
    return root


# dataset name -> the builder of its raw format
BUILDERS = {
    "fashion-mnist": make_fashion_mnist,
    "cifar10": make_cifar10,
    "cifar100": make_cifar100,
    "tiny-imagenet": make_tiny_imagenet,
    "imagenet": make_image_folder,
    "image-folder": make_image_folder,
    "cub200": make_cub200,
    "aircraft": make_aircraft,
    "cars": make_cars,
}
