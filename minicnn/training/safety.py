"""What keeps a training run honest: signals that wait for the end of a step, and one run per folder.

``DeferredSignals``: while a run is active, SIGINT (Ctrl-C) and SIGTERM only set a flag. The loop
calls ``check()`` between steps, so a step (forward, backward with BatchNorm's running statistics,
every parameter's SGD update, the step counter) is never half applied, and the end of an epoch
(evaluation, checkpoint, figures) is never cut. A second signal while the first is pending stops
at once, without writing a checkpoint (the last one on disk stays valid).

``RunLock``: an exclusive ``flock`` on ``OUT/.lock`` for the whole run, so two runs cannot write
into one folder; holding it, the run deletes the temporary files that a killed writer left behind.
"""
import fcntl
import os
import pathlib
import signal
import threading

from .checkpoint import OutputError, remove_orphans

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """The run stopped on a signal. ``immediate``: a second signal cut a step (no checkpoint was written)."""

    def __init__(self, signum, immediate=False):
        super().__init__(signal.Signals(signum).name)
        self.signum, self.immediate = signum, immediate

    @property
    def exit_code(self):
        return 128 + self.signum  # the shell's convention: 130 for SIGINT, 143 for SIGTERM


class DeferredSignals:
    """A context in which SIGINT and SIGTERM are noted, and acted on only at ``check()``."""

    def __init__(self):
        self.pending, self._previous = None, {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for signum in SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()
        return False

    def _handle(self, signum, frame):
        if self.pending is not None:
            raise Interrupted(signum, immediate=True)
        self.pending = signum
        # os.write, not print: a handler can run while the main thread is inside a print (its buffer's
        # lock held), where a second print would fail with "reentrant call".
        os.write(2, f"\n{signal.Signals(signum).name}: stopping after this step "
                    f"(send it again to stop at once)\n".encode())

    def check(self):
        """Raise ``Interrupted`` if a signal came since the last check."""
        if self.pending is not None:
            raise Interrupted(self.pending)


class RunLocked(OutputError):
    """Another run holds the folder's lock."""


class RunLock:
    """An exclusive lock on a run's output folder, held for the whole run."""

    def __init__(self, folder):
        self.folder = pathlib.Path(folder)
        self.fd = None

    def __enter__(self):
        if self.folder.exists() and not self.folder.is_dir():
            raise OutputError(20, f"--out {self.folder} is a file, not a folder")
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            self.fd = os.open(self.folder / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise OutputError(e.errno, f"cannot write into {self.folder}: {e.strerror or e}") from e
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self.fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(self.fd)
            raise RunLocked(11, f"another run (pid {holder}) is writing into {self.folder}; wait for it, "
                                f"or choose another --out") from None
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, str(os.getpid()).encode(), 0)
        remove_orphans(self.folder)
        return self

    def __exit__(self, *exc):
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)
        return False
