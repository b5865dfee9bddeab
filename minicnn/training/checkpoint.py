"""Checkpoints: one ``.npz`` file, written atomically, loaded without pickle, checked before it is trusted.

Arrays are stored under their own names (``model/0.weight``, ``optim/momentum_buffer.0``);
everything else (config, history, progress, RNG state) is one JSON string
stored as a numpy unicode array, so ``np.load(..., allow_pickle=False)`` reads it all.

A file that is not a complete minicnn checkpoint (truncated, bit-flipped, not a zip, metadata
that is not JSON or lacks a field, an array header that claims more bytes than the file holds)
raises ``CheckpointError("not a minicnn checkpoint: <why>")``, never a raw Python error.
"""
import json
import os
import pathlib
import stat
import tempfile
import zipfile
import zlib

import numpy as np

TMP_PREFIX, TMP_SUFFIX = ".", ".tmp"
META_FIELDS = ("config", "engine", "epoch", "step", "history", "partial", "rng")


class CheckpointError(ValueError):
    """The file is not a complete minicnn checkpoint; the message says why."""


class OutputError(OSError):
    """A file could not be written; the message names it and the reason (disk full, read-only, ...)."""

    def __str__(self):
        return self.strerror or super().__str__()  # the message alone, without "[Errno N]"


def fsync_folder(folder):
    """Make a rename inside ``folder`` durable (the directory entry itself is flushed)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _umask():
    """The process's file-creation mask (Linux: read from /proc/self/status, so no other thread
    sees it changed; elsewhere set and restored at once)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode(path):
    """The permissions ``path`` gets when rewritten: its own if it exists, else what ``open(path, "w")``
    would give it (0o666 less the umask)."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        return 0o666 & ~_umask()


def atomic_write(path, write):
    """Call ``write(file_object)`` on a temporary file beside ``path``, then rename it into place.

    A crash leaves either the old file or the new one, never half of one; the folder is fsynced
    after the rename. The file keeps its permissions, or a new one gets those of ``open(path,
    "w")`` (``mkstemp``'s own are 0o600). An OS error (disk full, read-only folder, ``path`` is a
    folder) becomes an ``OutputError`` naming ``path``, and the temporary file is removed.
    """
    path = pathlib.Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        mode = file_mode(path)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f"{TMP_PREFIX}{path.name}.", suffix=TMP_SUFFIX)
    except OSError as e:
        raise OutputError(e.errno, f"cannot write {path}: {e.strerror or e}") from e
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_folder(path.parent)
    except OSError as e:
        raise OutputError(e.errno, f"cannot write {path}: {e.strerror or e}") from e
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def remove_orphans(folder):
    """Delete the temporary files that a killed writer left in ``folder`` (``.NAME.*.tmp``); returns them.

    Call it only while holding the folder's run lock, so that no live writer's file is removed.
    """
    removed = []
    for tmp in pathlib.Path(folder).glob(f"{TMP_PREFIX}*{TMP_SUFFIX}"):
        tmp.unlink(missing_ok=True)
        removed.append(tmp)
    return removed


def save_checkpoint(path, arrays, meta):
    """Write ``arrays`` (name -> ndarray) and ``meta`` (JSON-serializable dict) to ``path``."""
    payload = {name: np.asarray(value) for name, value in arrays.items()}
    if "meta" in payload:
        raise ValueError("save_checkpoint: 'meta' is reserved for the metadata")
    payload["meta"] = np.array(json.dumps(meta))
    atomic_write(path, lambda f: np.savez(f, **payload))


def _check_members(path):
    """Every member is a .npy whose header's shape and dtype account for exactly its size."""
    with zipfile.ZipFile(path) as archive:
        bad = archive.testzip()  # reads every member and checks its CRC
        if bad is not None:
            raise CheckpointError(f"member {bad} is corrupt (CRC mismatch)")
        for info in archive.infolist():
            with archive.open(info) as f:
                version = np.lib.format.read_magic(f)
                read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                               else np.lib.format.read_array_header_2_0)
                shape, _, dtype = read_header(f)
                if dtype.hasobject:
                    raise CheckpointError(f"member {info.filename} holds Python objects (pickle), refused")
                need = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
                have = info.file_size - f.tell()
                if need != have:
                    raise CheckpointError(f"member {info.filename} claims shape {shape} of {dtype} ({need} bytes) "
                                          f"but holds {have} bytes")


def load_checkpoint(path):
    """Return ``(arrays, meta)`` from a checkpoint written by ``save_checkpoint``.

    Raises FileNotFoundError if there is no file, and ``CheckpointError`` for anything that is not a
    complete minicnn checkpoint (the members and the metadata's fields are checked before use).
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        _check_members(path)
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
    except CheckpointError as e:
        raise CheckpointError(f"{path} is not a minicnn checkpoint: {e}") from None
    except (zipfile.BadZipFile, zlib.error, ValueError, OSError, EOFError, KeyError, MemoryError) as e:
        raise CheckpointError(f"{path} is not a minicnn checkpoint: {type(e).__name__}: {e}") from None
    if "meta" not in arrays:
        raise CheckpointError(f"{path} is not a minicnn checkpoint: it has no 'meta' entry")
    try:
        meta = json.loads(str(arrays.pop("meta")))
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path} is not a minicnn checkpoint: its metadata is not JSON ({e})") from None
    missing = [k for k in META_FIELDS if not isinstance(meta, dict) or k not in meta]
    if missing:
        raise CheckpointError(f"{path} is not a minicnn checkpoint: its metadata lacks {', '.join(missing)}")
    return arrays, meta


def split_prefix(arrays, prefix):
    """The entries of ``arrays`` under ``prefix/``, with the prefix removed."""
    head = prefix + "/"
    return {name[len(head):]: value for name, value in arrays.items() if name.startswith(head)}
