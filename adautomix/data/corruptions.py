"""The 19 corruptions of CIFAR-10-C / CIFAR-100-C (Hendrycks & Dietterich, 2019), with the
severity constants of the CIFAR version (`make_cifar_c.py`), for 28-64 px images.

Why not a package: `imagecorruptions` 1.1.2 (the maintained re-implementation) carries the
ImageNet-C constants only (gaussian noise σ 0.08-0.38 where CIFAR-C uses 0.04-0.10, blur radii,
fog and frost maps sized for 224 px), and it no longer imports with this stack: `np.float_`
(gone in numpy 2), `gaussian(..., multichannel=True)` (gone in scikit-image 0.19) and
`pkg_resources`. So the CIFAR-C functions are written here in numpy, scipy and OpenCV, following
the official formulas and constants, with three deliberate differences:
- randomness comes from a seeded numpy Generator, so a corrupted set is reproducible;
- motion blur (motion_blur, and the streaks of snow) is a one-sided Gaussian line kernel, as in
  ImageMagick (which the official code calls through Wand) and in imagecorruptions;
- frost adds a procedural ice texture: the official frost photographs are not redistributed
  here. The official CIFAR-C arrays (`data prepare cifar100-c --source DIR`) have the real one.

Every function takes uint8 N×H×W×C images (C = 1 or 3) and returns uint8 images of the same
shape, truncated to integers as the official generator stores them. Colour operations (HSV,
grey conversion, coloured spatter and frost) run on the grey image repeated to RGB and come back
as its luma, so 1-channel data gets the same corruption family (saturate is then a no-op at
severities 1-3, which only scale a saturation that is zero).
"""

from __future__ import annotations

import io
import math

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from scipy import ndimage

from adautomix.data.errors import DataError
from adautomix.optional import LazyModule

# imported on first use: reading the official CIFAR-C arrays and every other part of the
# package work without OpenCV
cv2 = LazyModule("cv2", "generating corrupted test sets (data/corruptions.py)")
SEVERITIES = (1, 2, 3, 4, 5)
LUMA = np.array([0.299, 0.587, 0.114], np.float32)  # ITU-R 601, as PIL's "L" and OpenCV use


# ---------------------------------------------------------------------------- helpers


def _as_float(images: np.ndarray) -> np.ndarray:
    return images.astype(np.float32) / 255.0


def _to_uint8(x: np.ndarray) -> np.ndarray:
    """[0, 1] floats -> uint8, truncated as `np.uint8(corrupted)` does in make_cifar_c.py."""
    return (np.clip(x, 0, 1) * 255).astype(np.uint8)


def _rgb(x: np.ndarray) -> np.ndarray:
    return np.repeat(x, 3, axis=-1) if x.shape[-1] == 1 else x


def _back(x: np.ndarray, channels: int) -> np.ndarray:
    return (x @ LUMA)[..., None] if channels == 1 else x


def _blur(x: np.ndarray, sigma: float) -> np.ndarray:
    """skimage.filters.gaussian over the two spatial axes of N×H×W×C (mode nearest, truncate 4)."""
    return ndimage.gaussian_filter(x, sigma=(0, sigma, sigma, 0), mode="nearest", truncate=4.0)


def _clipped_zoom(x: np.ndarray, factor: float) -> np.ndarray:
    """Zoom N×H×W×C in by `factor` about the centre, cropped back to H×W (official clipped_zoom)."""
    height = x.shape[1]
    crop = math.ceil(height / factor)
    top = (height - crop) // 2
    # scipy.ndimage.zoom(order=1) as the official code calls it, i.e. linear interpolation with
    # the corner pixels aligned, but batched: scipy's generic spline path is 50x slower here
    window = torch.from_numpy(np.ascontiguousarray(x[:, top : top + crop, top : top + crop]))
    side = round(crop * factor)
    zoomed = (
        F.interpolate(
            window.permute(0, 3, 1, 2).float(),
            size=(side, side),
            mode="bilinear",
            align_corners=True,
        )
        .permute(0, 2, 3, 1)
        .numpy()
    )
    trim = (zoomed.shape[1] - height) // 2
    return zoomed[:, trim : trim + height, trim : trim + height]


def _plasma(count: int, size: int, decay: float, rng: np.random.Generator) -> np.ndarray:
    """Diamond-square plasma fractals, count×size×size in [0, 1] (official plasma_fractal),
    drawn on the next power of two and cropped."""
    mapsize = 1 << max(size - 1, 1).bit_length()
    maps = np.zeros((count, mapsize, mapsize))
    step, wibble = mapsize, 100.0

    def wibbled(array):
        return array / 4 + wibble * rng.uniform(-wibble, wibble, array.shape)

    while step >= 2:
        half = step // 2
        corners = maps[:, 0:mapsize:step, 0:mapsize:step]
        squares = corners + np.roll(corners, -1, axis=1)
        squares = squares + np.roll(squares, -1, axis=2)
        maps[:, half:mapsize:step, half:mapsize:step] = wibbled(squares)
        centres = maps[:, half:mapsize:step, half:mapsize:step]
        corners = maps[:, 0:mapsize:step, 0:mapsize:step]
        left = centres + np.roll(centres, 1, axis=1) + corners + np.roll(corners, -1, axis=2)
        top = centres + np.roll(centres, 1, axis=2) + corners + np.roll(corners, -1, axis=1)
        maps[:, 0:mapsize:step, half:mapsize:step] = wibbled(left)
        maps[:, half:mapsize:step, 0:mapsize:step] = wibbled(top)
        step //= 2
        wibble /= decay
    maps -= maps.min(axis=(1, 2), keepdims=True)
    maps /= maps.max(axis=(1, 2), keepdims=True)
    return maps[:, :size, :size]


def _motion_blur(x: np.ndarray, radius: int, sigma: float, angles: np.ndarray) -> np.ndarray:
    """ImageMagick's motion blur of N×H×W×C: a one-sided Gaussian kernel of 2·radius+1 taps
    along each image's angle (degrees), edges replicated."""
    count, height, width = x.shape[:3]
    taps = 2 * radius + 1
    kernel = np.exp(-(np.arange(taps) ** 2) / (2 * sigma**2))
    kernel /= kernel.sum()
    radians = np.deg2rad(angles)
    step_y, step_x = np.sin(radians), np.cos(radians)
    rows, cols = np.arange(height), np.arange(width)
    batch = np.arange(count)[:, None, None]
    out = np.zeros_like(x)
    for i in range(taps):
        dy = -np.ceil(i * step_y - 0.5).astype(int)
        dx = -np.ceil(i * step_x - 0.5).astype(int)
        r = np.clip(rows[None, :] - dy[:, None], 0, height - 1)[:, :, None]
        c = np.clip(cols[None, :] - dx[:, None], 0, width - 1)[:, None, :]
        out += kernel[i] * x[batch, r, c]
    return out


def _hsv(x: np.ndarray) -> np.ndarray:
    shape = x.shape
    return cv2.cvtColor(x.reshape(-1, shape[2], 3), cv2.COLOR_RGB2HSV).reshape(shape)


def _from_hsv(x: np.ndarray) -> np.ndarray:
    shape = x.shape
    return cv2.cvtColor(x.reshape(-1, shape[2], 3), cv2.COLOR_HSV2RGB).reshape(shape)


# ---------------------------------------------------------------------------- noise


def gaussian_noise(images, severity, rng):
    c = [0.04, 0.06, 0.08, 0.09, 0.10][severity - 1]
    x = _as_float(images)
    return _to_uint8(x + rng.normal(size=x.shape, scale=c))


def shot_noise(images, severity, rng):
    c = [500, 250, 100, 75, 50][severity - 1]
    return _to_uint8(rng.poisson(_as_float(images) * c) / c)


def impulse_noise(images, severity, rng):
    """Salt and pepper on each value with probability c, half of each (skimage's 's&p')."""
    c = [0.01, 0.02, 0.03, 0.05, 0.07][severity - 1]
    x = _as_float(images)
    hit = rng.random(x.shape) < c
    salt = rng.random(x.shape) < 0.5
    return _to_uint8(np.where(hit, salt.astype(np.float32), x))


def speckle_noise(images, severity, rng):
    c = [0.06, 0.1, 0.12, 0.16, 0.2][severity - 1]
    x = _as_float(images)
    return _to_uint8(x + x * rng.normal(size=x.shape, scale=c))


# ---------------------------------------------------------------------------- blur


def gaussian_blur(images, severity, rng):
    c = [0.4, 0.6, 0.7, 0.8, 1][severity - 1]
    return _to_uint8(_blur(_as_float(images), c))


def glass_blur(images, severity, rng):
    """Blur, then locally shuffle pixels (each swapped with a neighbour up to `delta` away,
    sweeping from the bottom-right as the official loop does), then blur again."""
    sigma, delta, iterations = [(0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)][
        severity - 1
    ]
    x = _to_uint8(_blur(_as_float(images), sigma))
    count, height, width = x.shape[:3]
    batch = np.arange(count)
    for _ in range(iterations):
        for h in range(height - delta, delta, -1):
            for w in range(width - delta, delta, -1):
                dx, dy = rng.integers(-delta, delta, size=(2, count))
                hp, wp = h + dy, w + dx
                here, there = x[batch, h, w].copy(), x[batch, hp, wp].copy()
                x[batch, h, w], x[batch, hp, wp] = there, here
    return _to_uint8(_blur(x / 255.0, sigma))


def _disk(radius: float, alias_blur: float) -> np.ndarray:
    size = 8 if radius <= 8 else radius
    grid = np.arange(-size, size + 1)
    xx, yy = np.meshgrid(grid, grid)
    disk = ((xx**2 + yy**2) <= radius**2).astype(np.float32)
    disk /= disk.sum()
    ksize = (3, 3) if radius <= 8 else (5, 5)
    return cv2.GaussianBlur(disk, ksize=ksize, sigmaX=alias_blur)


def defocus_blur(images, severity, rng):
    radius, alias = [(0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)][severity - 1]
    kernel = _disk(radius, alias)
    x = _as_float(images)
    out = np.stack([cv2.filter2D(image, -1, kernel).reshape(image.shape) for image in x])
    return _to_uint8(out)


def motion_blur(images, severity, rng):
    radius, sigma = [(10, 1), (10, 1.5), (10, 2), (10, 2.5), (12, 3)][severity - 1]
    angles = rng.uniform(-45, 45, len(images))
    return _to_uint8(_motion_blur(_as_float(images), radius, sigma, angles))


def zoom_blur(images, severity, rng):
    top = [1.06, 1.11, 1.16, 1.21, 1.26][severity - 1]
    factors = np.arange(1, top, 0.01)
    x = _as_float(images)
    out = np.zeros_like(x)
    for factor in factors:
        out += _clipped_zoom(x, factor)
    return _to_uint8((x + out) / (len(factors) + 1))


# ---------------------------------------------------------------------------- weather


def snow(images, severity, rng):
    loc, scale, zoom, threshold, radius, sigma, keep = [
        (0.1, 0.2, 1, 0.6, 8, 3, 0.95),
        (0.1, 0.2, 1, 0.5, 10, 4, 0.9),
        (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
        (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
        (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8),
    ][severity - 1]
    channels = images.shape[-1]
    x = _rgb(_as_float(images))
    count, height, width = x.shape[:3]
    flakes = rng.normal(size=(count, height, width, 1), loc=loc, scale=scale)
    flakes = _clipped_zoom(flakes, zoom)
    flakes[flakes < threshold] = 0
    # the official code stores the layer as an 8-bit PNG before blurring it
    flakes = np.floor(np.clip(flakes, 0, 1) * 255) / 255
    flakes = _motion_blur(flakes.astype(np.float32), radius, sigma, rng.uniform(-135, -45, count))
    grey = (x @ LUMA)[..., None]
    x = keep * x + (1 - keep) * np.maximum(x, grey * 1.5 + 0.5)
    x = x + flakes + np.rot90(flakes, k=2, axes=(1, 2))
    return _to_uint8(_back(np.clip(x, 0, 1), channels))


def _frost_layer(count: int, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A pale blue ice texture in [0, 255]: a rough plasma field for the crystals, its ridges
    sharpened; the stand-in for the official frost photographs (see the module docstring)."""
    field = _plasma(count, max(height, width), 1.4, rng)[:, :height, :width]
    crystals = np.clip((field - 0.25) / 0.6, 0, 1) ** 0.8
    tint = np.array([0.82, 0.9, 1.0], np.float32)  # RGB: ice is bluish white
    return 255 * crystals[..., None] * tint


def frost(images, severity, rng):
    keep, add = [(1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45)][severity - 1]
    channels = images.shape[-1]
    x = _rgb(images.astype(np.float32))
    layer = _frost_layer(*x.shape[:3], rng)
    out = np.clip(keep * x + add * layer, 0, 255)
    return _back(out, channels).astype(np.uint8)


def fog(images, severity, rng):
    amount, decay = [(0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)][severity - 1]
    x = _as_float(images)
    count, height, width = x.shape[:3]
    peak = x.max(axis=(1, 2, 3), keepdims=True)
    x = x + amount * _plasma(count, max(height, width), decay, rng)[:, :height, :width, None]
    return _to_uint8(x * peak / (peak + amount))


def _water(x: np.ndarray, liquid: np.ndarray, scale: float) -> np.ndarray:
    """Pale turquoise water drops along the edges of the liquid layer (official spatter, c5 = 0)."""
    layer = (liquid * 255).astype(np.uint8)
    dist = 255 - cv2.Canny(layer, 50, 150)
    dist = cv2.distanceTransform(dist, cv2.DIST_L2, 5)
    _, dist = cv2.threshold(dist, 20, 20, cv2.THRESH_TRUNC)
    dist = cv2.blur(dist, (3, 3)).astype(np.uint8)
    dist = cv2.equalizeHist(dist)
    kernel = np.array([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]])
    dist = cv2.filter2D(dist, cv2.CV_8U, kernel)
    dist = cv2.blur(dist, (3, 3)).astype(np.float32)
    m = (layer * dist)[..., None].astype(np.float32)
    peak = m.max()
    m = m / peak * scale if peak > 0 else m
    # (175, 238, 238) lands on R, G, B: the official code calls its RGB array BGR
    colour = np.array([175, 238, 238], np.float32) / 255
    return np.clip(x + m * colour, 0, 1)


def spatter(images, severity, rng):
    loc, scale, sigma, threshold, intensity, mud = [
        (0.62, 0.1, 0.7, 0.7, 0.5, 0),
        (0.65, 0.1, 0.8, 0.7, 0.5, 0),
        (0.65, 0.3, 1, 0.69, 0.5, 0),
        (0.65, 0.1, 0.7, 0.69, 0.6, 1),
        (0.65, 0.1, 0.5, 0.68, 0.6, 1),
    ][severity - 1]
    channels = images.shape[-1]
    x = _rgb(_as_float(images))
    liquid = rng.normal(size=x.shape[:3] + (1,), loc=loc, scale=scale)
    liquid = _blur(liquid, sigma)[..., 0]
    liquid[liquid < threshold] = 0
    if not mud:
        out = np.stack([_water(image, layer, intensity) for image, layer in zip(x, liquid)])
    else:
        m = _blur((liquid > threshold).astype(np.float32)[..., None], intensity)
        m[m < 0.8] = 0
        colour = np.array([63, 42, 20], np.float32) / 255  # mud brown
        out = np.clip(x * (1 - m) + colour * m, 0, 1)
    return _to_uint8(_back(out, channels))


# ---------------------------------------------------------------------------- digital


def contrast(images, severity, rng):
    c = [0.75, 0.5, 0.4, 0.3, 0.15][severity - 1]
    x = _as_float(images)
    means = x.mean(axis=(1, 2), keepdims=True)
    return _to_uint8((x - means) * c + means)


def brightness(images, severity, rng):
    c = [0.05, 0.1, 0.15, 0.2, 0.3][severity - 1]
    channels = images.shape[-1]
    hsv = _hsv(_rgb(_as_float(images)))
    hsv[..., 2] = np.clip(hsv[..., 2] + c, 0, 1)
    return _to_uint8(_back(_from_hsv(hsv), channels))


def saturate(images, severity, rng):
    scale, shift = [(0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2)][severity - 1]
    channels = images.shape[-1]
    hsv = _hsv(_rgb(_as_float(images)))
    hsv[..., 1] = np.clip(hsv[..., 1] * scale + shift, 0, 1)
    return _to_uint8(_back(_from_hsv(hsv), channels))


def jpeg_compression(images, severity, rng):
    quality = [80, 65, 58, 50, 40][severity - 1]
    out = np.empty_like(images)
    for i, image in enumerate(images):
        buffer = io.BytesIO()
        Image.fromarray(image.squeeze(-1) if image.shape[-1] == 1 else image).save(
            buffer, "JPEG", quality=quality
        )
        out[i] = np.asarray(Image.open(buffer)).reshape(image.shape)
    return out


def pixelate(images, severity, rng):
    c = [0.95, 0.9, 0.85, 0.75, 0.65][severity - 1]
    out = np.empty_like(images)
    for i, image in enumerate(images):
        pil = Image.fromarray(image.squeeze(-1) if image.shape[-1] == 1 else image)
        small = pil.resize((int(pil.width * c), int(pil.height * c)), Image.BOX)
        out[i] = np.asarray(small.resize(pil.size, Image.BOX)).reshape(image.shape)
    return out


def elastic_transform(images, severity, rng):
    """A random affine warp of three points, then a smooth random displacement field; the
    constants are fractions of the image side (IMSIZE in the official code)."""
    size = images.shape[1]
    alpha, sigma, affine = (
        size * f
        for f in [
            (0, 0, 0.08),
            (0.05, 0.2, 0.07),
            (0.08, 0.06, 0.06),
            (0.1, 0.04, 0.05),
            (0.1, 0.03, 0.03),
        ][severity - 1]
    )
    x = _as_float(images)
    out = np.empty_like(x)
    height, width, channels = x.shape[1:]
    centre = np.float32([height, width]) // 2
    square = min(height, width) // 3
    points = np.float32(
        [centre + square, [centre[0] + square, centre[1] - square], centre - square]
    )
    yy, xx = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    for i, image in enumerate(x):
        moved = points + rng.uniform(-affine, affine, size=points.shape).astype(np.float32)
        warped = cv2.warpAffine(
            image,
            cv2.getAffineTransform(points, moved),
            (width, height),
            borderMode=cv2.BORDER_REFLECT_101,
        ).reshape(image.shape)
        field = [
            ndimage.gaussian_filter(
                rng.uniform(-1, 1, (height, width)), sigma, mode="reflect", truncate=3
            )
            * alpha
            for _ in range(2)
        ]
        dx, dy = field
        for ch in range(channels):
            out[i, ..., ch] = ndimage.map_coordinates(
                warped[..., ch], [yy + dy, xx + dx], order=1, mode="reflect"
            )
    return _to_uint8(out)


CORRUPTIONS = {
    # the 15 of the benchmark
    "gaussian_noise": gaussian_noise,
    "shot_noise": shot_noise,
    "impulse_noise": impulse_noise,
    "defocus_blur": defocus_blur,
    "glass_blur": glass_blur,
    "motion_blur": motion_blur,
    "zoom_blur": zoom_blur,
    "snow": snow,
    "frost": frost,
    "fog": fog,
    "brightness": brightness,
    "contrast": contrast,
    "elastic_transform": elastic_transform,
    "pixelate": pixelate,
    "jpeg_compression": jpeg_compression,
    # the 4 extra ones CIFAR-C also ships, all of which the paper's protocol pools (spec §7.2)
    "gaussian_blur": gaussian_blur,
    "saturate": saturate,
    "spatter": spatter,
    "speckle_noise": speckle_noise,
}


def check_corruptions(names, severities) -> None:
    """Raise DataError for an unknown corruption name or a severity outside 1-5."""
    unknown = [n for n in names if n not in CORRUPTIONS]
    if unknown:
        raise DataError(f"unknown corruption(s) {unknown}; valid: {', '.join(CORRUPTIONS)}")
    wrong = [s for s in severities if s not in SEVERITIES]
    if wrong:
        raise DataError(f"severity {wrong} outside 1-5; CIFAR-C has severities 1 to 5")


def corrupt(images: np.ndarray, name: str, severity: int, seed: int = 0) -> np.ndarray:
    """`images` (uint8 N×H×W×C) under corruption `name` at `severity`, reproducible by seed."""
    check_corruptions([name], [severity])
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise DataError(
            f"corruptions take uint8 N×H×W×C images with 1 or 3 channels, got "
            f"{images.dtype} {images.shape}"
        )
    index = list(CORRUPTIONS).index(name)
    rng = np.random.default_rng([seed, index, severity])
    out = CORRUPTIONS[name](images, severity, rng)
    return np.ascontiguousarray(out, dtype=np.uint8).reshape(images.shape)
