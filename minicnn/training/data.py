"""Fashion-MNIST: an IDX reader in numpy, dataset discovery, and a batch iterator.

The dataset is looked for, in order:

1. the ``data_dir`` argument (``--data-dir`` on the command line);
2. the ``MINICNN_DATA`` environment variable;
3. Debian's ``/usr/share/datasets/fashion-mnist`` (package ``dataset-fashion-mnist``);
4. the cache folder ``$XDG_CACHE_HOME/minicnn/fashion-mnist`` (``~/.cache/...``),
   into which it is downloaded from the official mirror when the network allows.

Each folder holds ``{train,t10k}-{images-idx3,labels-idx1}-ubyte`` files,
gzipped (``.gz``) or plain.
"""
import gzip
import hashlib
import http.client
import os
import pathlib
import tempfile
import urllib.error
import urllib.request
import zlib

import numpy as np

CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
           "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
         "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
SIZES = {"train": 60000, "test": 10000}
DEBIAN_DIR = pathlib.Path("/usr/share/datasets/fashion-mnist")
MIRROR = "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/"
# SHA-256 of each file's *uncompressed* IDX bytes: the same for upstream's .gz and Debian's recompressed
# ones, so a download is checked whatever compressed it (a captive portal's HTML page never is cached).
SHA256 = {
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}
HOW_TO_GET_IT = (
    "Get it with one of:\n"
    "  make data                                  (installs Debian's package where apt-get can run)\n"
    "  sudo apt-get install dataset-fashion-mnist (Debian/Ubuntu: /usr/share/datasets/fashion-mnist)\n"
    f"  download the four *-ubyte.gz files from {MIRROR} into a folder,\n"
    "  then pass --data-dir FOLDER or set MINICNN_DATA=FOLDER")

# IDX type codes (third byte of the magic number) -> numpy dtype, big-endian
_IDX_TYPES = {0x08: np.dtype(">u1"), 0x09: np.dtype(">i1"), 0x0B: np.dtype(">i2"),
              0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


class DataError(Exception):
    """A dataset file is missing, truncated or corrupt; the message names it."""


def read_idx(path, expected_ndim=None, expected_count=None):
    """Read an IDX file (gzipped or plain) into an ndarray, checking its header.

    Parameters
    ----------
    path : str or Path
    expected_ndim : int, optional
        The number of dimensions the file must declare (3 for images, 1 for labels).
    expected_count : int, optional
        The number of items (first dimension) it must declare.

    Raises
    ------
    DataError
        naming the file and what is wrong: bad magic number, unexpected
        dimensions or item count, or fewer bytes than the header promises.
    """
    path = pathlib.Path(path)
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise DataError(f"{path}: cannot read: {e}") from e
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
        raise DataError(f"{path}: not an IDX file (magic number {raw[:4].hex() or 'missing'}, "
                        f"expected 0x0000 then a type code and the number of dimensions)")
    dtype, ndim = _IDX_TYPES[raw[2]], raw[3]
    if expected_ndim is not None and ndim != expected_ndim:
        raise DataError(f"{path}: expected {expected_ndim} dimensions, the header says {ndim}")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated header ({len(raw)} bytes, expected at least {header})")
    shape = tuple(int(v) for v in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    if expected_count is not None and shape[0] != expected_count:
        raise DataError(f"{path}: expected {expected_count} items, the header says {shape[0]}")
    need = header + int(np.prod(shape)) * dtype.itemsize
    if len(raw) != need:
        what = "truncated" if len(raw) < need else "has trailing bytes"
        raise DataError(f"{path}: {what}: {len(raw)} bytes, the header {shape} implies {need}")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def find_file(folder, name):
    """``folder/name.gz`` or ``folder/name``, whichever exists first, else None."""
    for candidate in (folder / (name + ".gz"), folder / name):
        if candidate.is_file():
            return candidate
    return None


def _complete(folder):
    return folder is not None and all(find_file(folder, n) for pair in FILES.values() for n in pair)


def cache_dir():
    base = os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache"
    return pathlib.Path(base) / "minicnn" / "fashion-mnist"


def download(folder, mirror=MIRROR, timeout=20):
    """Download the four files into ``folder``, each checked against ``SHA256`` and written atomically.

    Raises ``DataError`` naming the file and the address for a dropped connection, an HTTP error,
    or content that is not the dataset (nothing is kept then).
    """
    folder.mkdir(parents=True, exist_ok=True)
    for name in (n for pair in FILES.values() for n in pair):
        target = folder / (name + ".gz")
        if target.is_file():
            continue
        url = mirror + name + ".gz"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                payload = response.read()
        except (OSError, http.client.HTTPException) as e:  # URLError, timeouts, IncompleteRead, resets
            raise DataError(f"download of {url} failed: {e!r}") from e
        try:
            digest = hashlib.sha256(gzip.decompress(payload)).hexdigest()
        except (OSError, EOFError, zlib.error) as e:
            raise DataError(f"download of {url} is not a gzip file ({len(payload)} bytes: {e}); nothing was saved")
        if digest != SHA256[name]:
            raise DataError(f"download of {url} is not the Fashion-MNIST file {name}: its content has SHA-256 "
                            f"{digest}, expected {SHA256[name]}; nothing was saved")
        with tempfile.NamedTemporaryFile(dir=folder, delete=False, suffix=".part") as tmp:
            tmp.write(payload)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.replace(tmp.name, target)


def find_dataset(data_dir=None, allow_download=True, mirror=MIRROR):
    """The folder that holds Fashion-MNIST, searched in the documented order.

    Raises ``DataError`` listing every place it looked and how to get the data.
    """
    looked = []
    candidates = [("--data-dir", data_dir), ("$MINICNN_DATA", os.environ.get("MINICNN_DATA")),
                  ("Debian package", DEBIAN_DIR), ("cache", cache_dir())]
    for label, folder in candidates:
        if not folder:
            looked.append(f"{label}: not set")
            continue
        folder = pathlib.Path(folder)
        if _complete(folder):
            return folder
        if label in ("--data-dir", "$MINICNN_DATA"):
            raise DataError(f"{label} is {folder}, but it does not hold the four Fashion-MNIST files "
                            f"({', '.join(n for p in FILES.values() for n in p)}, .gz or plain).\n" + HOW_TO_GET_IT)
        looked.append(f"{label}: {folder} (not found)")
    if allow_download:
        folder = cache_dir()
        try:
            download(folder, mirror)
            return folder
        except (OSError, DataError) as e:
            looked[-1] = f"cache: {folder} (download from {mirror} failed: {e})"
    raise DataError("Fashion-MNIST was not found. Looked in:\n  " + "\n  ".join(looked) + "\n" + HOW_TO_GET_IT)


def load_fashion_mnist(split="train", data_dir=None, allow_download=True):
    """Images (N, 1, 28, 28) float32 in [0, 1] (torchvision's ToTensor values) and labels (N,) int64."""
    if split not in FILES:
        raise ValueError(f"load_fashion_mnist: split must be 'train' or 'test', got {split!r}")
    folder = find_dataset(data_dir, allow_download)
    image_name, label_name = FILES[split]
    images = read_idx(find_file(folder, image_name), expected_ndim=3, expected_count=SIZES[split])
    labels = read_idx(find_file(folder, label_name), expected_ndim=1, expected_count=SIZES[split])
    if images.shape[1:] != (28, 28):
        raise DataError(f"{find_file(folder, image_name)}: expected 28x28 images, got {images.shape[1:]}")
    return images_to_float(images, find_file(folder, image_name))[:, None], \
        checked_labels(labels, find_file(folder, label_name))


def checked_labels(labels, source):
    """Labels as int64 class indices 0 to 9; anything else is a DataError naming ``source``.

    Float labels are refused, not truncated, and a negative label (such as -100, which the loss would
    silently ignore as its ``ignore_index``) is refused, not used.
    """
    if labels.dtype.kind not in "iu":
        raise DataError(f"{source}: labels must be integers, got {labels.dtype}")
    bad = (labels < 0) | (labels >= len(CLASSES))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(f"{source}: label {labels[i]} at index {i} is not a class (0 to {len(CLASSES) - 1})")
    return labels.astype(np.int64)


def images_to_float(images, source):
    """Images as float32 in [0, 1], torchvision's ToTensor values.

    Bytes (0 to 255) are divided by 255. Float images must already lie in [0, 1] and are kept as they
    are (dividing them again would make them almost black); NaN, infinite or out-of-range pixels, or
    integers outside 0 to 255, are a DataError naming ``source``.
    """
    if images.dtype.kind == "f":
        finite = np.isfinite(images)
        if not finite.all() or images.min(initial=0.0) < 0 or images.max(initial=0.0) > 1:
            what = "NaN or infinite" if not finite.all() else f"in [{images.min():g}, {images.max():g}]"
            raise DataError(f"{source}: float images must lie in [0, 1], got values {what}")
        return images.astype(np.float32)
    if images.min(initial=0) < 0 or images.max(initial=0) > 255:
        raise DataError(f"{source}: integer images must lie in 0 to 255, got {images.min()} to {images.max()}")
    return images.astype(np.float32) / np.float32(255.0)


def iterate_batches(images, labels, batch_size, shuffle=False, rng=None, drop_last=False, start=0):
    """Yield ``(images, labels)`` batches.

    Parameters
    ----------
    shuffle : bool
        Visit the samples in the order of ``rng.permutation(N)``.
    rng : numpy Generator, required with ``shuffle``
    drop_last : bool
        Drop a last batch smaller than ``batch_size``.
    start : int
        Skip the first ``start`` batches (to resume in the middle of an epoch).
    """
    n = len(images)
    if shuffle and rng is None:
        raise ValueError("iterate_batches: shuffle=True needs a seeded rng")
    order = rng.permutation(n) if shuffle else np.arange(n)
    stop = n - n % batch_size if drop_last else n
    for begin in range(start * batch_size, stop, batch_size):
        index = order[begin:begin + batch_size]
        yield images[index], labels[index]


def num_batches(n, batch_size, drop_last=False):
    return n // batch_size if drop_last else -(-n // batch_size)
