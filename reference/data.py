"""Fashion-MNIST through ``torchvision.datasets.FashionMNIST``, as the tutorials load it.

torchvision reads unpacked IDX files from ``ROOT/FashionMNIST/raw/``. Its own
download cannot run here (no network, and its md5 sums are for the upstream
.gz files, which Debian recompressed), so the .gz files that minicnn finds are
unpacked into that folder first. The arrays returned match ``minicnn.data``'s.
"""
import gzip
import pathlib
import shutil

import numpy as np
import torch
from torchvision import datasets, transforms

from minicnn.training.checkpoint import atomic_write
from minicnn.training.data import FILES, cache_dir, find_dataset, find_file


def prepare_root(data_dir=None, root=None):
    """Unpack the dataset into ``root/FashionMNIST/raw`` (once) and return ``root``."""
    source = find_dataset(data_dir)
    root = pathlib.Path(root) if root else cache_dir().parent / "torchvision"
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for name in (n for pair in FILES.values() for n in pair):
        target = raw / name
        if target.is_file():
            continue
        found = find_file(source, name)
        if found.suffix == ".gz":
            with gzip.open(found, "rb") as f:
                payload = f.read()
            atomic_write(target, lambda out: out.write(payload))
        else:
            shutil.copyfile(found, target)
    return root


def load_fashion_mnist(split="train", data_dir=None, root=None):
    """Images (N, 1, 28, 28) float32 via ``ToTensor`` and labels (N,) int64, from torchvision."""
    dataset = datasets.FashionMNIST(prepare_root(data_dir, root), train=(split == "train"), download=False,
                                    transform=transforms.ToTensor())
    loader = torch.utils.data.DataLoader(dataset, batch_size=10000, shuffle=False)
    images, labels = zip(*loader)
    return torch.cat(images).numpy(), torch.cat(labels).numpy().astype(np.int64)
