"""Checkpoints: one ``.npz`` file, written atomically, loaded without pickle.

Arrays are stored under their own names (``model/0.weight``, ``optim/momentum_buffer.0``);
everything else (config, history, progress, RNG state) is one JSON string
stored as a numpy unicode array, so ``np.load(..., allow_pickle=False)`` reads it all.
"""
import json
import os
import pathlib
import tempfile

import numpy as np


def atomic_write(path, write):
    """Call ``write(file_object)`` on a temporary file beside ``path``, then rename it into place.

    A crash leaves either the old file or the new one, never half of one.
    """
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_checkpoint(path, arrays, meta):
    """Write ``arrays`` (name -> ndarray) and ``meta`` (JSON-serializable dict) to ``path``."""
    payload = {name: np.asarray(value) for name, value in arrays.items()}
    if "meta" in payload:
        raise ValueError("save_checkpoint: 'meta' is reserved for the metadata")
    payload["meta"] = np.array(json.dumps(meta))
    atomic_write(path, lambda f: np.savez(f, **payload))


def load_checkpoint(path):
    """Return ``(arrays, meta)`` from a checkpoint written by ``save_checkpoint``."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
    except (ValueError, OSError, EOFError) as e:
        raise ValueError(f"checkpoint {path} is not a readable .npz file: {e}") from e
    if "meta" not in arrays:
        raise ValueError(f"checkpoint {path} has no 'meta' entry: it was not written by minicnn")
    meta = json.loads(str(arrays.pop("meta")))
    return arrays, meta


def split_prefix(arrays, prefix):
    """The entries of ``arrays`` under ``prefix/``, with the prefix removed."""
    head = prefix + "/"
    return {name[len(head):]: value for name, value in arrays.items() if name.startswith(head)}
