"""A training run that never lies: exact resume after a real SIGINT/SIGTERM at any point of a step or of an
epoch's end, divergence named with its cause, one run per folder, clear errors for bad flags, damaged
checkpoints and unwritable outputs, and the library's own guards."""
import json
import os
import shlex
import signal
import zipfile

import numpy as np
import pytest

import minicnn as mc
from minicnn.training import checkpoint, cli, plots
from minicnn.training.checkpoint import CheckpointError, OutputError
from minicnn.training.loop import Config, MinicnnEngine, TrainingDiverged, fit
from minicnn.training.safety import Interrupted, RunLock

TIMING = ("seconds", "images_per_second")
quiet = lambda *a: None  # noqa: E731


def without_timing(history):
    return [{k: v for k, v in e.items() if k not in TIMING} for e in history]


@pytest.fixture(scope="module")
def small(fashion_mnist):
    (x_train, y_train), (x_test, y_test) = fashion_mnist
    return (x_train[:448], y_train[:448]), (x_test[:200], y_test[:200])


def config_for(model):
    return Config.for_model(model, epochs=2, batch_size=64, dtype="float64", seed=1, lr=0.02)


@pytest.fixture(scope="module")
def uninterrupted(small, tmp_path_factory):
    """One uninterrupted run per model: its history and final checkpoint."""
    runs = {}
    for model in ("notebook-bn", "article"):
        out = tmp_path_factory.mktemp(f"full-{model}")
        history = fit(config_for(model), MinicnnEngine(config_for(model)), *small, out, progress=False, log=quiet)
        runs[model] = (history, checkpoint.load_checkpoint(out / "checkpoint.npz")[0])
    return runs


class Trigger:
    """Send a real signal to this process on the ``n``-th call (counting from 1)."""

    def __init__(self, n, signum=signal.SIGINT):
        self.n, self.signum, self.calls = n, signum, 0

    def tick(self):
        self.calls += 1
        if self.calls == self.n:
            os.kill(os.getpid(), self.signum)


def wrap(monkeypatch, owner, name, trigger):
    original = getattr(owner, name)

    def wrapped(*args, **kwargs):
        trigger.tick()
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, wrapped)


class SignalInsideSGD(list):
    """SGD's momentum buffers; reading the buffer of parameter ``index`` (half the update is done) signals."""

    def __init__(self, buffers, index, trigger):
        super().__init__(buffers)
        self.index, self.trigger = index, trigger

    def __getitem__(self, i):
        if i == self.index:
            self.trigger.tick()
        return super().__getitem__(i)


# (where, how to plant the trigger, the call on which it fires): forward and backward of a layer in the middle
# of the model, the middle of SGD.step, the end-of-epoch evaluation and figure writing, in both epochs.
POINTS = [
    ("forward", lambda mp, engine, t: wrap(mp, engine.model[3], "forward", t), 4),
    ("backward", lambda mp, engine, t: wrap(mp, engine.model[3], "backward", t), 9),
    ("inside SGD.step", lambda mp, engine, t: setattr(engine.optimizer, "momentum_buffers",
                                                      SignalInsideSGD(engine.optimizer.momentum_buffers, 2, t)), 3),
    ("inside SGD.step, first step", lambda mp, engine, t: setattr(engine.optimizer, "momentum_buffers",
                                                                  SignalInsideSGD(engine.optimizer.momentum_buffers,
                                                                                  1, t)), 1),
    ("evaluation", lambda mp, engine, t: wrap(mp, engine, "evaluate", t), 1),
    ("figure writing", lambda mp, engine, t: wrap(mp, plots, "plot_curves", t), 1),
    ("backward, second epoch", lambda mp, engine, t: wrap(mp, engine.model[3], "backward", t), 10),
]


@pytest.mark.parametrize("model", ["notebook-bn", "article"])
@pytest.mark.parametrize("where, plant, n", POINTS, ids=[p[0] for p in POINTS])
def test_a_real_signal_anywhere_then_resume_equals_the_uninterrupted_run(small, uninterrupted, tmp_path, monkeypatch,
                                                                          model, where, plant, n):
    config = config_for(model)
    engine = MinicnnEngine(config)
    trigger = Trigger(n)
    plant(monkeypatch, engine, trigger)
    messages = []
    with pytest.raises(Interrupted) as stop:
        fit(config, engine, *small, tmp_path, progress=False, log=messages.append, resume_hint="minicnn train")
    assert trigger.calls >= n and stop.value.signum == signal.SIGINT and not stop.value.immediate
    assert "resume with: minicnn train --resume" in messages[-1]
    monkeypatch.undo()
    resumed_engine = MinicnnEngine(config)
    resumed = fit(config, resumed_engine, *small, tmp_path, resume=tmp_path / "checkpoint.npz", progress=False,
                  log=quiet)
    full_history, full_arrays = uninterrupted[model]
    assert without_timing(resumed) == without_timing(full_history)
    final, _ = checkpoint.load_checkpoint(tmp_path / "checkpoint.npz")
    assert sorted(final) == sorted(full_arrays)
    for key in full_arrays:
        assert np.array_equal(final[key], full_arrays[key]), key  # bit for bit, num_batches_tracked included


def test_sigterm_is_deferred_the_same_way_and_a_second_signal_stops_at_once(small, tmp_path, monkeypatch):
    config = config_for("notebook-bn")
    engine = MinicnnEngine(config)
    trigger = Trigger(2, signal.SIGTERM)
    wrap(monkeypatch, engine.model[0], "forward", trigger)
    with pytest.raises(Interrupted) as stop:
        fit(config, engine, *small, tmp_path, progress=False, log=quiet)
    assert stop.value.signum == signal.SIGTERM and stop.value.exit_code == 143
    _, meta = checkpoint.load_checkpoint(tmp_path / "checkpoint.npz")
    assert (meta["epoch"], meta["step"]) == (0, 2)  # the step in which the signal came was completed

    # two signals in one step: stop inside it, and write no checkpoint (the one on disk stays as it was)
    before = (tmp_path / "checkpoint.npz").read_bytes()
    engine = MinicnnEngine(config)
    twice = Trigger(1)
    monkeypatch.setattr(engine.model[0], "forward", lambda x, f=engine.model[0].forward: (
        twice.tick(), os.kill(os.getpid(), signal.SIGINT), f(x))[-1])
    with pytest.raises(Interrupted) as stop:
        fit(config, engine, *small, tmp_path, resume=tmp_path / "checkpoint.npz", progress=False, log=quiet)
    assert stop.value.immediate and (tmp_path / "checkpoint.npz").read_bytes() == before


def test_the_cli_exits_130_and_prints_a_resume_command_that_is_shell_quoted(fashion_mnist_dir, tmp_path, monkeypatch,
                                                                           capsys):
    out = tmp_path / "a run with spaces $(touch pwned)"
    trigger = Trigger(3)
    wrap(monkeypatch, MinicnnEngine, "train_step", trigger)
    args = ["train", "--model", "article", "--epochs", "1", "--train-limit", "640", "--test-limit", "100",
            "--data-dir", str(fashion_mnist_dir), "--out", str(out), "--no-progress"]
    assert cli.main(args) == 130
    printed = capsys.readouterr().out
    command = printed.strip().splitlines()[-1].removeprefix("resume with: ")
    words = shlex.split(command)
    assert words[:2] == ["minicnn", "train"] and words[words.index("--out") + 1] == str(out)
    assert words[words.index("--resume") + 1] == str(out / "checkpoint.npz")
    monkeypatch.undo()
    assert cli.main(words[1:] + ["--no-progress"]) == 0
    assert not (tmp_path / "pwned").exists() and not os.path.exists("pwned")


# ---------------------------------------------------------------------------
# Divergence and bad data, named with their cause
# ---------------------------------------------------------------------------
def run_cli(fashion_mnist_dir, tmp_path, *flags, out="run"):
    return cli.main(["train", "--model", "article", "--epochs", "1", "--train-limit", "640", "--test-limit", "100",
                     "--data-dir", str(fashion_mnist_dir), "--out", str(tmp_path / out), "--no-progress", *flags])


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning", "ignore:invalid value encountered:RuntimeWarning")
def test_an_exploding_loss_is_divergence_not_an_epoch(fashion_mnist_dir, tmp_path, capsys):
    assert run_cli(fashion_mnist_dir, tmp_path, "--lr", "1e6") == 1
    err = capsys.readouterr().err
    assert "learning rate 1e+06" in err and ("the loss grew from" in err or "weights became NaN" in err)
    assert not (tmp_path / "run" / "history.json").exists()


@pytest.mark.parametrize("flags, message", [
    (["--lr", "inf"], "--lr: must be finite"), (["--lr", "0"], "--lr: must be a finite number > 0"),
    (["--epochs", "0"], "--epochs: must be a positive integer, got 0"),
    (["--batch-size", "0"], "--batch-size: must be a positive integer"),
    (["--batch-size", "-3"], "--batch-size: must be a positive integer, got -3"),
    (["--seed", "-1"], "--seed: must be an integer from 0"),
    (["--train-limit", "-59800"], "--train-limit: must be an integer >= 0"),
    (["--test-limit", "-1"], "--test-limit: must be an integer >= 0"),
    (["--momentum", "1.5"], "--momentum: must be in [0, 1)"), (["--lr-gamma", "0"], "--lr-gamma: must be in (0, 1]"),
    (["--threads", "0"], "--threads: must be a positive integer"),
])
def test_every_numeric_flag_is_range_checked(fashion_mnist_dir, tmp_path, capsys, flags, message):
    with pytest.raises(SystemExit) as exit_:
        run_cli(fashion_mnist_dir, tmp_path, *flags)
    assert exit_.value.code == 2 and message in capsys.readouterr().err


def test_summary_batch_is_range_checked(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["summary", "--batch", "-1"])
    assert exit_.value.code == 2 and "--batch: must be a positive integer, got -1" in capsys.readouterr().err


def test_out_of_memory_is_one_line_naming_the_batch_size(fashion_mnist_dir, tmp_path, monkeypatch, capsys):
    def no_memory(self, x, y):
        raise MemoryError

    monkeypatch.setattr(MinicnnEngine, "train_step", no_memory)
    assert run_cli(fashion_mnist_dir, tmp_path, "--batch-size", "20000") == 1
    assert capsys.readouterr().err.strip() == "minicnn train: error: out of memory; a smaller --batch-size needs less"


def test_nan_in_the_data_is_blamed_on_the_data(small, tmp_path):
    (x, y), test = small
    x = x.copy()
    x[5, 0, 3, 3] = np.nan
    config = config_for("article")
    with pytest.raises(TrainingDiverged, match=r"the training data holds NaN or infinite pixels \(image 5 of 448\): "
                                               r"fix the data, not the learning rate"):
        fit(config, MinicnnEngine(config), (x, y), test, tmp_path, progress=False, log=quiet)


def test_a_nan_test_loss_stops_the_run(small, tmp_path, monkeypatch):
    config = config_for("article")
    engine = MinicnnEngine(config)
    monkeypatch.setattr(engine, "evaluate", lambda x, y: (float("nan"), np.zeros(len(y), np.int64)))
    with pytest.raises(TrainingDiverged, match="the test loss is nan after epoch 1"):
        fit(config, engine, *small, tmp_path, progress=False, log=quiet)


def test_nan_weights_are_caught_after_the_step(small, tmp_path, monkeypatch):
    config = config_for("article")
    engine = MinicnnEngine(config)
    step = engine.optimizer.step

    def poisoned():
        step()
        engine.model[0].weight.data[0, 0, 0, 0] = np.inf

    monkeypatch.setattr(engine.optimizer, "step", poisoned)
    with pytest.raises(TrainingDiverged, match=r"the weights became NaN or infinite at epoch 1, step 1 .*learning rate"):
        fit(config, engine, *small, tmp_path, progress=False, log=quiet)
    assert not (tmp_path / "checkpoint.npz").exists()  # no diverged state is saved


# ---------------------------------------------------------------------------
# Settings and folders
# ---------------------------------------------------------------------------
def test_resume_refuses_conflicting_settings_and_extends_epochs(fashion_mnist_dir, tmp_path, capsys):
    assert run_cli(fashion_mnist_dir, tmp_path) == 0
    resume = ["--resume", str(tmp_path / "run" / "checkpoint.npz")]
    capsys.readouterr()
    for flags, named in ((["--model", "notebook"], "--model notebook (the checkpoint has article)"),
                         (["--lr", "0.5"], "--lr 0.5 (the checkpoint has 0.02)"),
                         (["--batch-size", "32"], "--batch-size 32 (the checkpoint has 100)")):
        assert run_cli(fashion_mnist_dir, tmp_path, *resume, *flags) == 1
        assert named in capsys.readouterr().err
    # --epochs may extend the run: the folder's run continues into its second epoch
    assert run_cli(fashion_mnist_dir, tmp_path, *resume, "--epochs", "2") == 0
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert [e["epoch"] for e in history["epochs"]] == [1, 2]


def test_a_finished_runs_folder_is_not_overwritten(fashion_mnist_dir, tmp_path, capsys):
    assert run_cli(fashion_mnist_dir, tmp_path) == 0
    before = (tmp_path / "run" / "checkpoint.npz").read_bytes()
    assert run_cli(fashion_mnist_dir, tmp_path) == 1
    assert "already holds a run; continue it with --resume" in capsys.readouterr().err
    assert (tmp_path / "run" / "checkpoint.npz").read_bytes() == before


def test_two_runs_cannot_share_a_folder(fashion_mnist_dir, tmp_path, capsys):
    with RunLock(tmp_path / "run"):
        assert run_cli(fashion_mnist_dir, tmp_path) == 1
    assert f"another run (pid {os.getpid()}) is writing into {tmp_path / 'run'}" in capsys.readouterr().err


def test_orphans_of_a_killed_writer_are_removed_at_the_next_start(fashion_mnist_dir, tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    orphan = folder / ".checkpoint.npz.k1ll3d.tmp"
    orphan.write_bytes(b"\0" * 1000)
    assert run_cli(fashion_mnist_dir, tmp_path) == 0
    assert not orphan.exists() and not list(folder.glob(".*.tmp"))


def test_out_that_is_a_file_or_a_full_disk_is_one_clear_line(fashion_mnist_dir, tmp_path, monkeypatch, capsys):
    (tmp_path / "file").write_text("x")
    assert run_cli(fashion_mnist_dir, tmp_path, out="file") == 1
    assert capsys.readouterr().err.strip() == f"minicnn train: error: --out {tmp_path / 'file'} is a file, not a folder"

    def full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint.os, "fsync", full)
    assert run_cli(fashion_mnist_dir, tmp_path) == 1
    err = capsys.readouterr().err
    assert f"cannot write {tmp_path / 'run'}" in err and "No space left on device" in err
    assert not list((tmp_path / "run").glob(".*.tmp"))


# ---------------------------------------------------------------------------
# Damaged checkpoints
# ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def good_checkpoint(fashion_mnist_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("good")
    assert cli.main(["train", "--model", "article", "--epochs", "1", "--train-limit", "200", "--test-limit", "100",
                     "--data-dir", str(fashion_mnist_dir), "--out", str(out), "--no-progress"]) == 0
    return out / "checkpoint.npz"


def rewrite(path, target, meta=None, arrays=None):
    loaded, loaded_meta = checkpoint.load_checkpoint(path)
    payload = {k: v for k, v in (arrays if arrays is not None else loaded).items()}
    payload["meta"] = np.array(meta if isinstance(meta, str) else json.dumps(meta if meta is not None else loaded_meta))
    np.savez(target, **payload)


def _huge_header(path, target):
    """A member whose .npy header claims 4 TiB."""
    with zipfile.ZipFile(path) as archive, zipfile.ZipFile(target, "w") as out:
        for info in archive.infolist():
            data = archive.read(info)
            if info.filename == "model/7.bias.npy":
                data = data.replace(b"(10,)", b"(1099511627776,)".ljust(5))
            out.writestr(info, data)


def _meta(path):
    return checkpoint.load_checkpoint(path)[1]


DAMAGE = {
    "truncated": lambda p, t: t.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]),
    "bit-flipped": lambda p, t: t.write_bytes(p.read_bytes()[:300] + bytes([p.read_bytes()[300] ^ 0x40])
                                              + p.read_bytes()[301:]),
    "not a zip": lambda p, t: t.write_bytes(b"<html>not a checkpoint</html>"),
    "metadata not JSON": lambda p, t: rewrite(p, t, meta="{not json"),
    "no config": lambda p, t: rewrite(p, t, meta={k: v for k, v in _meta(p).items() if k != "config"}),
    "unknown config field": lambda p, t: rewrite(p, t, meta=dict(_meta(p), config=dict(_meta(p)["config"], wat=1))),
    "batch size 0": lambda p, t: rewrite(p, t, meta=dict(_meta(p), config=dict(_meta(p)["config"], batch_size=0))),
    "4 TiB header": _huge_header,
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_checkpoint_is_not_a_minicnn_checkpoint(good_checkpoint, tmp_path, capsys, damage):
    target = tmp_path / "damaged.npz"
    DAMAGE[damage](good_checkpoint, target)
    assert cli.main(["evaluate", str(target)]) == 1
    err = capsys.readouterr().err
    assert f"{target} is not a minicnn checkpoint: " in err and "Traceback" not in err and len(err.splitlines()) == 1


def test_a_failed_load_leaves_the_model_and_optimizer_as_they_were(good_checkpoint):
    arrays, meta = checkpoint.load_checkpoint(good_checkpoint)
    engine = MinicnnEngine(Config.from_dict(meta["config"]))
    before = engine.state()
    broken = dict(arrays)
    broken["optim/momentum_buffer.3"] = np.zeros(7)  # the model part is fine, the optimizer part is not
    with pytest.raises(ValueError, match=r"momentum_buffer.3 must have shape \(32,\)"):
        engine.load_state(broken)
    after = engine.state()
    assert all(np.array_equal(before[k], after[k]) for k in before)
    model = engine.model
    weights = model[0].weight.data.copy()
    state = model.state_dict()
    state["7.bias"] = np.array(["a"] * 10)  # cannot become float
    with pytest.raises(ValueError, match=r"7.bias cannot become float32"):
        model.load_state_dict(state)
    assert np.array_equal(model[0].weight.data, weights)


# ---------------------------------------------------------------------------
# The library's guards
# ---------------------------------------------------------------------------
def test_a_second_backward_of_one_forward_raises_instead_of_doubling_grad():
    conv = mc.Conv2d(1, 2, 3)
    out = conv(np.ones((1, 1, 4, 4), np.float32))
    conv.backward(np.ones_like(out))
    grad = conv.weight.grad.copy()
    with pytest.raises(RuntimeError, match=r"backward was already called for this forward"):
        conv.backward(np.ones_like(out))
    assert np.array_equal(conv.weight.grad, grad)
    conv(np.ones((1, 1, 4, 4), np.float32))  # a new forward: .grad accumulates, as torch's does
    conv.backward(np.ones_like(out))
    np.testing.assert_allclose(conv.weight.grad, 2 * grad)
    conv.retain_cache()  # torch's retain_graph=True: asked for before the backward, as in torch
    conv(np.ones((1, 1, 4, 4), np.float32))
    conv.backward(np.ones_like(out))
    conv.backward(np.ones_like(out))
    np.testing.assert_allclose(conv.weight.grad, 4 * grad)


def test_a_backward_lets_go_of_the_arrays_its_forward_saved_as_torch_frees_its_graph():
    """After the backward nothing holds the activations any more (so a training step's peak memory
    is torch's, not that plus every cache until the next forward), and a second backward, even of
    a module without parameters, raises; retain_cache() keeps them."""
    import weakref
    model = mc.Sequential(mc.Conv2d(1, 2, 3), mc.ReLU(), mc.Flatten(), mc.Linear(8, 3))
    x = np.ones((2, 1, 4, 4), np.float32)
    hidden = model[1](model[0](x))                     # ReLU keeps its output for its backward
    saved = weakref.ref(hidden)
    out = model[3](model[2](hidden))
    del hidden
    assert saved() is not None
    model.backward(np.ones_like(out))
    assert saved() is None
    with pytest.raises(RuntimeError, match=r"ReLU\(\)\.backward was already called for this forward"):
        model[1].backward(np.ones((2, 2, 2, 2), np.float32))
    model.retain_cache()
    out = model(x)
    first = model.backward(np.ones_like(out))
    np.testing.assert_array_equal(model.backward(np.ones_like(out)), first)


@pytest.mark.parametrize("make, message", [
    (lambda: mc.LogSoftmax(dim=1.0), r"LogSoftmax: dim must be an int or None, got 1.0"),
    (lambda: mc.LogSoftmax(dim=True), r"LogSoftmax: dim must be an int or None, got True"),
    (lambda: mc.CrossEntropyLoss(ignore_index=None), r"CrossEntropyLoss: ignore_index must be an int, got None"),
])
def test_arguments_are_checked_where_torch_checks_them(make, message):
    with pytest.raises(TypeError, match=message):
        make()


def test_library_errors_name_the_layer_and_argument():
    flatten = mc.Flatten()
    flatten(np.zeros((2, 3, 4), np.float32))
    with pytest.raises(ValueError, match=r"Flatten\(start_dim=1, end_dim=-1\).backward: grad_output must have the "
                                         r"forward output's shape \(2, 12\), got \(4, 6\)"):
        flatten.backward(np.zeros((4, 6), np.float32))
    conv = mc.Conv2d(1, 16, 5)
    with pytest.raises(ValueError, match=r"Conv2d.weight.data: expected an array of shape \(16, 1, 5, 5\), got \(3,\)"):
        conv.weight.data = np.zeros(3, np.float32)
    sgd = mc.SGD(conv.parameters(), lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match=r"SGD.load_state_dict: 'momentum_buffer.x' names no parameter"):
        sgd.load_state_dict({"momentum_buffer.x": np.zeros(3)})
    assert mc.LogSoftmax(dim=None).dim is None
    with pytest.warns(UserWarning, match="Implicit dimension choice"):
        assert mc.LogSoftmax()(np.zeros((2, 3))).shape == (2, 3)


def test_load_checkpoint_refuses_pickles(tmp_path):
    path = tmp_path / "evil.npz"
    np.savez(path, meta=np.array("{}"), payload=np.array([object()], dtype=object))
    with pytest.raises(CheckpointError, match="holds Python objects"):
        checkpoint.load_checkpoint(path)


def test_atomic_write_names_the_file_it_could_not_write(tmp_path, monkeypatch):
    (tmp_path / "history.json").write_text("old")

    def full(f):
        raise OSError(28, "No space left on device")

    with pytest.raises(OutputError, match=r"cannot write .*history.json: No space left on device"):
        checkpoint.atomic_write(tmp_path / "history.json", full)
    assert (tmp_path / "history.json").read_text() == "old" and not list(tmp_path.glob(".*.tmp"))


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_atomic_write_gives_a_new_file_the_permissions_open_would(tmp_path, umask):
    previous = os.umask(umask)
    try:
        (tmp_path / "by-open.json").write_text("{}")
        checkpoint.atomic_write(tmp_path / "metrics.json", lambda f: f.write(b"{}"))
    finally:
        os.umask(previous)
    assert oct(os.stat(tmp_path / "metrics.json").st_mode & 0o777) == oct(0o666 & ~umask)
    assert os.stat(tmp_path / "metrics.json").st_mode == os.stat(tmp_path / "by-open.json").st_mode


def test_atomic_write_keeps_the_permissions_of_the_file_it_replaces(tmp_path):
    path = tmp_path / "model.npz"
    path.write_bytes(b"old")
    os.chmod(path, 0o640)
    checkpoint.atomic_write(path, lambda f: f.write(b"new"))
    assert path.read_bytes() == b"new" and oct(os.stat(path).st_mode & 0o777) == oct(0o640)


@pytest.mark.parametrize("error", [(13, "Permission denied"), (30, "Read-only file system")])
def test_an_unwritable_or_read_only_out_is_one_clear_line(fashion_mnist_dir, tmp_path, monkeypatch, capsys, error):
    """The tests run as root, which chmod cannot stop, so the OS's refusal is simulated where the run first writes."""
    from minicnn.training import safety
    real_open = os.open

    def refuse(path, *args, **kwargs):
        if str(path).startswith(str(tmp_path)):
            raise OSError(error[0], error[1])
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(safety.os, "open", refuse)
    assert run_cli(fashion_mnist_dir, tmp_path) == 1
    assert capsys.readouterr().err.strip() == f"minicnn train: error: cannot write into {tmp_path / 'run'}: {error[1]}"
