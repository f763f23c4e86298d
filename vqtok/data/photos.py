"""Colour photographs that ship offline, and folders of images, served as seeded random crops.

* ``photos``: the colour photographs bundled with installed Python packages (scikit-image's ``data`` folder,
  scikit-learn's ``china.jpg``/``flower.jpg``, matplotlib's ``grace_hopper.jpg``). Training and test photos are
  disjoint (:data:`TEST_PHOTOS` are never cropped for training). Each split is ``num_examples`` crops of
  ``crop x crop`` pixels at seeded random positions (test crops use another seed), held as uint8.
* ``image_folder``: every JPEG/PNG/WebP under a folder (an ImageNet-style tree), each resized so its short side is
  ``image_size`` and centre-cropped to ``image_size x image_size``; decoded lazily, one file per item.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from ._registry import check_split, register_dataset
from .images import ImageTensorDataset

__all__ = ["ImageFolderDataset", "TEST_PHOTOS", "TRAIN_PHOTOS", "find_photos", "photos"]

# (package, path inside it). Grey, synthetic and near-duplicate pictures are left out.
TRAIN_PHOTOS = (
    ("skimage", "data/astronaut.png"),
    ("skimage", "data/rocket.jpg"),
    ("skimage", "data/motorcycle_left.png"),
    ("skimage", "data/hubble_deep_field.jpg"),
    ("skimage", "data/retina.jpg"),
    ("skimage", "data/ihc.png"),
    ("sklearn", "datasets/images/china.jpg"),
)
TEST_PHOTOS = (
    ("skimage", "data/chelsea.png"),
    ("skimage", "data/coffee.png"),
    ("sklearn", "datasets/images/flower.jpg"),
    ("matplotlib", "mpl-data/sample_data/grace_hopper.jpg"),
)
_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")


def find_photos(split: str) -> list[Path]:
    """Paths of the bundled photos of ``split`` (``"train"`` or ``"test"``).

    Raises:
        FileNotFoundError: Naming a photo whose package is not installed.
    """
    check_split(split)
    out = []
    for package, rel in TRAIN_PHOTOS if split == "train" else TEST_PHOTOS:
        spec = importlib.util.find_spec(package)
        roots = list(spec.submodule_search_locations or []) if spec is not None else []
        found = [Path(r) / rel for r in roots if (Path(r) / rel).is_file()]
        if not found:
            raise FileNotFoundError(
                f"photo {package}/{rel} not found: install scikit-image, scikit-learn and matplotlib "
                "(pip install 'vqtok[data]')"
            )
        out.append(found[0])
    return out


def _read_rgb(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8)


@register_dataset("photos")
def photos(split: str = "train", num_examples: int = 4096, crop: int = 64, seed: int = 0) -> ImageTensorDataset:
    """Seeded random ``(3, crop, crop)`` crops of the bundled photos; crops are spread evenly over the photos."""
    pictures = [_read_rgb(p) for p in find_photos(split)]
    rng = np.random.default_rng(seed + (0 if split == "train" else 1_000_003))
    crops = np.empty((num_examples, crop, crop, 3), dtype=np.uint8)
    for i in range(num_examples):
        pic = pictures[i % len(pictures)]
        h, w = pic.shape[:2]
        if h < crop or w < crop:
            raise ValueError(f"crop {crop} is larger than a {h}x{w} photo")
        y, x = rng.integers(0, h - crop + 1), rng.integers(0, w - crop + 1)
        crops[i] = pic[y : y + crop, x : x + crop]
    return ImageTensorDataset(torch.from_numpy(crops).permute(0, 3, 1, 2).contiguous())


class ImageFolderDataset(Dataset):
    """Images under ``root`` (recursively), each short-side resized and centre-cropped to ``size``; float in [0, 1].

    Args:
        root: Folder to scan; for the ``"train"``/``"test"`` splits ``root/train`` or ``root/val`` is used when it
            exists.
        size: Output side.

    Raises:
        FileNotFoundError: When the folder is missing or holds no images.
    """

    def __init__(self, root: str | os.PathLike[str], size: int = 256) -> None:
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"image folder {str(root)!r} not found")
        self.files = sorted(p for p in root.rglob("*") if p.suffix.lower() in _SUFFIXES)
        if not self.files:
            raise FileNotFoundError(f"image folder {str(root)!r} holds no {'/'.join(_SUFFIXES)} files")
        self.size = size

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> Tensor:
        from PIL import Image

        with Image.open(self.files[index]) as im:
            im = im.convert("RGB")
            w, h = im.size
            scale = self.size / min(w, h)
            im = im.resize((max(self.size, round(w * scale)), max(self.size, round(h * scale))), Image.BICUBIC)
            left, top = (im.size[0] - self.size) // 2, (im.size[1] - self.size) // 2
            im = im.crop((left, top, left + self.size, top + self.size))
            pixels = torch.from_numpy(np.asarray(im, dtype=np.uint8).copy())
        return pixels.permute(2, 0, 1).float() / 255.0


@register_dataset("image_folder")
def image_folder(split: str = "train", root: str = "", image_size: int = 256) -> ImageFolderDataset:
    """An ImageNet-style folder: ``root/train`` and ``root/val`` when present, else ``root`` for both splits."""
    if not root:
        raise FileNotFoundError("image_folder needs data.kwargs.root: a local folder of images (nothing is downloaded)")
    sub = Path(root) / ("train" if split == "train" else "val")
    return ImageFolderDataset(sub if sub.is_dir() else root, image_size)
