"""The IDX reader, dataset discovery (and download), the batch iterator, and the real files."""
import gzip
import hashlib
import http.server
import re
import threading

import numpy as np
import pytest

from minicnn.training import data
from minicnn.training.data import DataError, find_dataset, iterate_batches, read_idx


def idx_bytes(array, type_code=0x08):
    header = bytes([0, 0, type_code, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_round_trip(tmp_path, compress):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    path = tmp_path / ("x.idx.gz" if compress else "x.idx")
    (gzip.open if compress else open)(path, "wb").write(idx_bytes(images))
    np.testing.assert_array_equal(read_idx(path, expected_ndim=3, expected_count=2), images)
    floats = np.linspace(-1, 1, 6).reshape(2, 3)
    (tmp_path / "f.idx").write_bytes(idx_bytes(floats, 0x0E))
    np.testing.assert_array_equal(read_idx(tmp_path / "f.idx"), floats)


@pytest.mark.parametrize("mutate, message", [
    (lambda b: b"\x01" + b[1:], "not an IDX file"),
    (lambda b: b[:2] + b"\x07" + b[3:], "not an IDX file"),
    (lambda b: b[:-5], "truncated: 19 bytes, the header (2, 2, 2) implies 24"),
    (lambda b: b + b"\x00", "has trailing bytes"),
    (lambda b: b[:6], "truncated header"),
    (lambda b: b"", "not an IDX file"),
])
def test_read_idx_rejects_corrupt_files_naming_them(tmp_path, mutate, message):
    path = tmp_path / "bad-images-idx3-ubyte"
    path.write_bytes(mutate(idx_bytes(np.zeros((2, 2, 2), np.uint8))))
    with pytest.raises(DataError, match=rf"bad-images-idx3-ubyte: .*{re.escape(message)}"):
        read_idx(path)


def test_read_idx_checks_dimensions_count_and_gzip(tmp_path):
    path = tmp_path / "labels"
    path.write_bytes(idx_bytes(np.zeros(5, np.uint8)))
    with pytest.raises(DataError, match="labels: expected 3 dimensions, the header says 1"):
        read_idx(path, expected_ndim=3)
    with pytest.raises(DataError, match="labels: expected 60000 items, the header says 5"):
        read_idx(path, expected_count=60000)
    broken = tmp_path / "broken.gz"
    broken.write_bytes(gzip.compress(idx_bytes(np.zeros(5, np.uint8)))[:-12])
    with pytest.raises(DataError, match="broken.gz: cannot read"):
        read_idx(broken)


def fake_dataset(folder, n_train=6, n_test=4, gz=True):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("test", n_test)):
        image_name, label_name = data.FILES[split]
        for name, array in ((image_name, rng.integers(0, 256, (n, 28, 28)).astype(np.uint8)),
                            (label_name, rng.integers(0, 10, n).astype(np.uint8))):
            payload = idx_bytes(array)
            if gz:
                (folder / (name + ".gz")).write_bytes(gzip.compress(payload))
            else:
                (folder / name).write_bytes(payload)
    return folder


@pytest.fixture
def no_dataset(tmp_path, monkeypatch):
    """An environment where none of the four places holds the dataset."""
    monkeypatch.delenv("MINICNN_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(data, "DEBIAN_DIR", tmp_path / "debian")
    return tmp_path


def test_discovery_order(no_dataset, monkeypatch):
    tmp = no_dataset
    cache, debian = fake_dataset(data.cache_dir()), fake_dataset(tmp / "debian")
    env, arg = fake_dataset(tmp / "env", gz=False), fake_dataset(tmp / "arg")
    monkeypatch.setenv("MINICNN_DATA", str(env))
    assert find_dataset(arg) == arg
    assert find_dataset() == env
    monkeypatch.delenv("MINICNN_DATA")
    assert find_dataset() == debian
    monkeypatch.setattr(data, "DEBIAN_DIR", tmp / "nowhere")
    assert find_dataset(allow_download=False) == cache


def test_an_explicit_folder_without_the_files_is_an_error(no_dataset):
    with pytest.raises(DataError, match=r"--data-dir is .*empty, but it does not hold the four Fashion-MNIST files"):
        find_dataset(no_dataset / "empty")


def test_missing_everywhere_says_how_to_get_it(no_dataset):
    with pytest.raises(DataError) as info:
        find_dataset(allow_download=True, mirror="http://127.0.0.1:9/")
    message = str(info.value)
    assert "Looked in" in message and "$MINICNN_DATA: not set" in message
    assert "download from http://127.0.0.1:9/ failed" in message
    assert "apt-get install dataset-fashion-mnist" in message and "make data" in message


class _Mirror:
    """A local HTTP server standing in for the official mirror; ``mangle(name, payload)`` can spoil what it sends."""

    def __init__(self, folder, mangle=None):
        mirror = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                payload = (folder / self.path.lstrip("/")).read_bytes()
                declared = len(payload)
                if mangle is not None:
                    payload, declared = mangle(self.path.lstrip("/"), payload)
                self.send_response(200)
                self.send_header("Content-Length", str(declared))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/"
        del mirror

    def __enter__(self):
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def _fake_checksums(monkeypatch, served):
    sums = {name: hashlib.sha256(gzip.decompress((served / (name + ".gz")).read_bytes())).hexdigest()
            for pair in data.FILES.values() for name in pair}
    monkeypatch.setattr(data, "SHA256", sums)


def test_download_into_the_cache(no_dataset, monkeypatch):
    served = fake_dataset(no_dataset / "mirror")
    _fake_checksums(monkeypatch, served)
    with _Mirror(served) as mirror:
        folder = find_dataset(mirror=mirror.url)
    assert folder == data.cache_dir()
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in served.iterdir())


def test_the_real_checksums_are_the_real_files(fashion_mnist_dir):
    for pair in data.FILES.values():
        for name in pair:
            content = gzip.decompress(data.find_file(fashion_mnist_dir, name).read_bytes())
            assert hashlib.sha256(content).hexdigest() == data.SHA256[name]
    assert data.MIRROR.startswith("https://")


@pytest.mark.parametrize("mangle, message", [
    # a captive portal answers every address with its own HTML page
    (lambda name, payload: (b"<html>Please log in</html>", 26), "is not a gzip file"),
    # the right kind of file with the wrong content
    (lambda name, payload: (gzip.compress(b"\0" * 100), None), "is not the Fashion-MNIST file"),
    # the connection drops halfway: fewer bytes than Content-Length
    (lambda name, payload: (payload[:100], len(payload)), "failed: IncompleteRead"),
])
def test_a_bad_download_is_a_clear_error_and_nothing_is_cached(no_dataset, monkeypatch, mangle, message):
    served = fake_dataset(no_dataset / "mirror")
    _fake_checksums(monkeypatch, served)

    def spoil(name, payload):
        body, declared = mangle(name, payload)
        return body, len(body) if declared is None else declared

    with _Mirror(served, spoil) as mirror, pytest.raises(DataError, match=message):
        data.download(data.cache_dir(), mirror=mirror.url)
    assert not [p for p in data.cache_dir().iterdir() if not p.name.endswith(".part")]
    assert not list(data.cache_dir().glob("*.part"))


def test_load_checks_the_item_counts(no_dataset):
    folder = fake_dataset(no_dataset / "small")
    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz: expected 60000 items, the header says 6"):
        data.load_fashion_mnist("train", folder)


def test_iterate_batches():
    x, y = np.arange(10)[:, None], np.arange(10)
    sizes = [len(b) for b, _ in iterate_batches(x, y, 4)]
    assert sizes == [4, 4, 2]
    assert [len(b) for b, _ in iterate_batches(x, y, 4, drop_last=True)] == [4, 4]
    first = [yb for _, yb in iterate_batches(x, y, 4, shuffle=True, rng=np.random.default_rng(3))]
    again = [yb for _, yb in iterate_batches(x, y, 4, shuffle=True, rng=np.random.default_rng(3))]
    assert all((a == b).all() for a, b in zip(first, again))
    assert sorted(np.concatenate(first)) == list(range(10)) and not (np.concatenate(first) == y).all()
    resumed = [yb for _, yb in iterate_batches(x, y, 4, shuffle=True, rng=np.random.default_rng(3), start=1)]
    assert all((a == b).all() for a, b in zip(first[1:], resumed))
    with pytest.raises(ValueError, match="shuffle=True needs a seeded rng"):
        next(iterate_batches(x, y, 4, shuffle=True))


def test_the_real_dataset(fashion_mnist):
    (x_train, y_train), (x_test, y_test) = fashion_mnist
    assert x_train.shape == (60000, 1, 28, 28) and x_test.shape == (10000, 1, 28, 28)
    assert x_train.dtype == np.float32 and y_train.dtype == np.int64
    assert x_train.min() == 0.0 and x_train.max() == 1.0
    # Fashion-MNIST is balanced: 6,000 training and 1,000 test images per class.
    assert (np.bincount(y_train) == 6000).all() and (np.bincount(y_test) == 1000).all()
    assert len(data.CLASSES) == 10 and data.CLASSES[9] == "Ankle boot"


def test_torchvision_loader_gives_identical_arrays(fashion_mnist, fashion_mnist_dir, tmp_path):
    from reference.data import load_fashion_mnist as load_with_torchvision
    for split, (images, labels) in zip(("train", "test"), fashion_mnist):
        tv_images, tv_labels = load_with_torchvision(split, fashion_mnist_dir, root=tmp_path)
        assert tv_images.dtype == images.dtype and tv_images.shape == images.shape
        np.testing.assert_array_equal(tv_images, images)
        np.testing.assert_array_equal(tv_labels, labels)


@pytest.mark.parametrize("labels, message", [
    (np.array([3, -100, 2], np.int16), r"label -100 at index 1 is not a class \(0 to 9\)"),
    (np.array([3, 10, 2], np.uint8), r"label 10 at index 1 is not a class"),
    (np.array([3.0, 1.7, 2.0], np.float32), r"labels must be integers, got float32"),
])
def test_labels_that_are_not_classes_are_refused(labels, message):
    with pytest.raises(DataError, match=message):
        data.checked_labels(labels, "labels.idx")


def test_images_scale_once_and_bad_pixels_are_refused():
    raw = np.array([[0, 51, 255]], np.uint8)
    np.testing.assert_array_equal(data.images_to_float(raw, "x"), np.array([[0, 0.2, 1]], np.float32))
    scaled = np.array([[0.0, 0.2, 1.0]], np.float32)  # already in [0, 1]: kept, not divided again
    np.testing.assert_array_equal(data.images_to_float(scaled, "x"), scaled)
    with pytest.raises(DataError, match=r"images.idx: float images must lie in \[0, 1\], got values in \[0, 3\]"):
        data.images_to_float(np.array([[0.0, 3.0]]), "images.idx")
    with pytest.raises(DataError, match="NaN or infinite"):
        data.images_to_float(np.array([[0.0, np.nan]], np.float32), "images.idx")


def test_the_loader_applies_both_checks(no_dataset, monkeypatch):
    """Through load_fashion_mnist: an IDX label file holding -100 (signed type) is refused, naming the file."""
    folder = fake_dataset(no_dataset / "bad")
    monkeypatch.setattr(data, "SIZES", {"train": 6, "test": 4})
    labels = np.array([1, 2, -100, 3, 4, 5], np.int16)
    (folder / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(labels, type_code=0x0B)))
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte.gz: label -100 at index 2"):
        data.load_fashion_mnist("train", folder)
    images, labels = data.load_fashion_mnist("test", folder)
    assert images.dtype == np.float32 and 0 <= images.min() and images.max() <= 1 and labels.dtype == np.int64
