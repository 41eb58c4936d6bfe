"""Image/mask folders for the SAM task, and the real nuclei tiles shipped by ``stardist``.

A data folder holds pairs matched by file stem::

    folder/
      images/  a.png  b.tif ...     grey, RGB or RGBA; uint8 kept, other dtypes scaled to 0..255
      masks/   a.png  b.tif ...     2-D, same height and width as the image: 0 is background,
                                    every other value one object (instance labels) or the
                                    foreground of a binary mask (1 or 255)

Images are PNG, TIFF or JPEG, masks PNG or TIFF (lossless). ``nuclei_folder(tile_size)`` builds
such a folder once under ``$EFFICIENT_SEARCH_CACHE`` from ``stardist``'s ``img2d.tif`` and
``mask2d.tif`` (a real fluorescence image of nuclei with a 125-instance mask, BSD-3).
"""

from __future__ import annotations

import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from efficient_search.validate import check_int

IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg")
MASK_SUFFIXES = (".png", ".tif", ".tiff")
NUCLEI_SIZE = 512
"""Height and width of stardist's ``img2d.tif``."""


@dataclass(frozen=True)
class Pair:
    """One image and its mask, as arrays: image (H, W, 3) uint8, mask (H, W) int64 labels."""

    name: str
    image: np.ndarray
    mask: np.ndarray


def data_cache_root() -> Path:
    """Where built data folders live: ``$EFFICIENT_SEARCH_CACHE/sam-data``."""
    root = os.environ.get("EFFICIENT_SEARCH_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "efficient-search")
    return Path(root) / "sam-data"


def _by_stem(folder: Path, suffixes: tuple[str, ...]) -> dict[str, Path]:
    files: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.suffix.lower() in suffixes:
            if path.stem in files:
                raise ValueError(f"Two files share the stem {path.stem!r} in {folder}: "
                                 f"{files[path.stem].name} and {path.name}. Fix: keep one file per stem.")
            files[path.stem] = path
    return files


def find_pairs(folder: str | os.PathLike[str]) -> list[tuple[str, Path, Path]]:
    """(stem, image path, mask path) of every pair under ``folder``; raises on a bad layout."""
    root = Path(folder)
    images, masks = root / "images", root / "masks"
    if not images.is_dir() or not masks.is_dir():
        raise ValueError(f"`task_options.data` {str(folder)!r} must be a folder with `images/` and `masks/` "
                         "subfolders (files matched by stem), or 'nuclei'. Fix: point it at such a folder.")
    image_files = _by_stem(images, IMAGE_SUFFIXES)
    mask_files = _by_stem(masks, MASK_SUFFIXES)
    if not image_files:
        raise ValueError(f"`task_options.data` {str(folder)!r}: no images ({', '.join(IMAGE_SUFFIXES)}) "
                         f"in {images}. Fix: add image files there.")
    unmatched = sorted(set(image_files) ^ set(mask_files))
    if unmatched:
        raise ValueError(f"`task_options.data` {str(folder)!r}: images and masks must match by stem, but "
                         f"{len(unmatched)} do not (e.g. {', '.join(unmatched[:5])}). Fix: give every image "
                         "in images/ a mask with the same stem in masks/ (PNG or TIFF), and no extras.")
    return [(stem, image_files[stem], mask_files[stem]) for stem in sorted(image_files)]


def _read(path: Path) -> np.ndarray:
    if path.suffix.lower() in (".tif", ".tiff"):
        import tifffile

        return np.asarray(tifffile.imread(path))
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image)


def to_uint8_rgb(image: np.ndarray, where: str = "image") -> np.ndarray:
    """(H, W, 3) uint8: grey replicated, alpha dropped, non-uint8 scaled by its 1-99.8 percentiles."""
    if image.ndim == 3 and image.shape[0] in (1, 3, 4) and image.shape[-1] not in (1, 3, 4):
        image = np.moveaxis(image, 0, -1)  # TIFFs may store channels first
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if image.ndim == 3 and image.shape[-1] == 4:
        image = image[..., :3]
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[-1] != 3):
        raise ValueError(f"{where}: images must be 2-D grey or (H, W, 3|4) colour, but got shape "
                         f"{image.shape}. Fix: save it as a grey or RGB image.")
    if image.dtype != np.uint8:
        values = image.astype(np.float64)
        low, high = np.percentile(values, (1.0, 99.8))
        image = (np.clip((values - low) / max(high - low, 1e-12), 0.0, 1.0) * 255.0).round().astype(np.uint8)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    return np.ascontiguousarray(image)


def to_labels(mask: np.ndarray, where: str = "mask") -> np.ndarray:
    """(H, W) int64 labels; a colour mask is accepted when its channels agree."""
    if mask.ndim == 3 and np.all(mask == mask[..., :1]):
        mask = mask[..., 0]
    if mask.ndim != 2:
        raise ValueError(f"{where}: masks must be 2-D label images, but got shape {mask.shape}. Fix: save "
                         "one integer label per pixel (0 = background).")
    if mask.dtype.kind == "f" and not np.all(mask == np.round(mask)):
        raise ValueError(f"{where}: mask values must be integer labels, but it holds fractions. Fix: save "
                         "integer labels (0 = background).")
    if mask.min() < 0:
        raise ValueError(f"{where}: mask labels must be >= 0, but got {mask.min()}.")
    return mask.astype(np.int64)


def load_pairs(folder: str | os.PathLike[str]) -> list[Pair]:
    """Every image/mask pair of ``folder`` (see the module docstring), sorted by stem."""
    pairs = []
    for stem, image_path, mask_path in find_pairs(folder):
        image = to_uint8_rgb(_read(image_path), str(image_path))
        mask = to_labels(_read(mask_path), str(mask_path))
        if image.shape[:2] != mask.shape:
            raise ValueError(f"Image {image_path} is {image.shape[:2]} but its mask {mask_path} is "
                             f"{mask.shape}. Fix: give each mask the height and width of its image.")
        pairs.append(Pair(stem, image, mask))
    return pairs


def stardist_nuclei() -> tuple[np.ndarray, np.ndarray]:
    """stardist's 2-D nuclei image (512, 512) uint16 and its instance mask, read without importing it."""
    import tifffile

    spec = importlib.util.find_spec("stardist")  # importing stardist would pull TensorFlow
    if spec is None or not spec.submodule_search_locations:
        raise ValueError("`task_options.data` 'nuclei' is read from the `stardist` package, which is not "
                         "installed. Fix: pip install --no-deps stardist (`make install` does it).")
    folder = Path(next(iter(spec.submodule_search_locations))) / "data" / "images"
    return tifffile.imread(folder / "img2d.tif"), tifffile.imread(folder / "mask2d.tif")


def write_nuclei_tiles(folder: str | os.PathLike[str], tile_size: int = 128) -> int:
    """Cut the nuclei image and mask into non-overlapping ``tile_size`` tiles under ``folder``.

    Images are written as grey uint8 PNG, masks as uint16 TIFF with labels renumbered 1..K per
    tile. Returns the number of tiles.
    """
    import tifffile
    from PIL import Image

    check_int("task_options.tile_size", tile_size, min=16, max=NUCLEI_SIZE,
              expected=f"an int in [16, {NUCLEI_SIZE}]", fix="e.g. 128.")
    image, mask = stardist_nuclei()
    grey = to_uint8_rgb(image)[..., 0]
    root = Path(folder)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    count = 0
    for top in range(0, grey.shape[0] - tile_size + 1, tile_size):
        for left in range(0, grey.shape[1] - tile_size + 1, tile_size):
            name = f"nuclei_{top:03d}_{left:03d}"
            tile = mask[top : top + tile_size, left : left + tile_size]
            values, labels = np.unique(tile, return_inverse=True)  # values[0] == 0 when background shows
            labels = labels.reshape(tile.shape) + (0 if values[0] == 0 else 1)
            Image.fromarray(grey[top : top + tile_size, left : left + tile_size]).save(
                root / "images" / f"{name}.png")
            tifffile.imwrite(root / "masks" / f"{name}.tif", labels.astype(np.uint16))
            count += 1
    return count


def nuclei_folder(tile_size: int = 128) -> Path:
    """The nuclei tiles as a data folder, built once under :func:`data_cache_root`."""
    from efficient_search.tasks.supernets import build_once

    def build(out: Path) -> None:
        count = write_nuclei_tiles(out, tile_size)
        (out / "config.json").write_text(json.dumps(
            {"source": "stardist data/images/img2d.tif + mask2d.tif (BSD-3)", "tile_size": tile_size,
             "tiles": count}))

    return build_once(data_cache_root() / f"nuclei-{tile_size}", build)


__all__ = ["Pair", "data_cache_root", "find_pairs", "load_pairs", "nuclei_folder", "stardist_nuclei",
           "to_labels", "to_uint8_rgb", "write_nuclei_tiles"]
