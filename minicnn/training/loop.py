"""The training loop: one implementation, two engines (minicnn here, torch in ``reference.train``).

An *engine* owns a model, its loss and its optimizer, and offers
``train_step(x, y) -> (loss, correct)``, ``evaluate(x, y) -> (loss_sum, predictions)``,
``state() -> {name: array}`` and ``load_state(arrays)``. ``fit`` drives it:
seeded shuffling, a tqdm progress bar, per-epoch evaluation, ``history.json``,
an atomic checkpoint after every epoch (and on Ctrl-C), and the figures.

Reproducibility: epoch ``e`` visits the training set in the order of
``np.random.default_rng([seed, e]).permutation(N)``, so a checkpoint only needs
the epoch, the step within it and the model and optimizer state to resume
exactly where it stopped.
"""
import dataclasses
import json
import math
import pathlib
import shlex
import signal
import sys
import time

import numpy as np

from ..nn import default_generator
from ..optim import SGD, ExponentialLR
from ..runtime import set_num_threads
from . import models
from .checkpoint import OutputError, atomic_write, load_checkpoint, save_checkpoint, split_prefix
from .data import CLASSES, iterate_batches, num_batches
from .safety import DeferredSignals, Interrupted, RunLock


@dataclasses.dataclass
class Config:
    model: str = "article"
    epochs: int = 6
    batch_size: int = 100
    lr: float = 0.1
    momentum: float = 0.0
    weight_decay: float = 0.0
    lr_gamma: float = 1.0  # the learning rate is multiplied by this after every epoch (ExponentialLR)
    seed: int = 0
    dtype: str = "float32"
    train_limit: int = 0  # 0: all 60,000 training images
    test_limit: int = 0   # 0: all 10,000 test images
    eval_batch_size: int = 1000

    @classmethod
    def for_model(cls, model, **overrides):
        """The model's registered defaults (``models.MODELS``), with the non-None ``overrides`` applied."""
        values = dict(models.spec(model).defaults, model=model)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values).validated()

    @classmethod
    def from_dict(cls, values):
        """A Config from a checkpoint's or history's dict; unknown or missing fields are a ValueError."""
        if not isinstance(values, dict):
            raise ValueError(f"the config must be a dict, got {type(values).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown, missing = sorted(set(values) - names), sorted(names - set(values))
        if unknown or missing:
            raise ValueError("the config " + "; ".join(
                ([f"has unknown fields {unknown}"] if unknown else []) + ([f"lacks {missing}"] if missing else [])))
        return cls(**values).validated()

    def validated(self):
        """Self, if every field is in range; else a ValueError naming the field, its flag and its value."""
        def need(ok, field, what):
            if not ok:
                raise ValueError(f"{field} (--{field.replace('_', '-')}) must be {what}, got {getattr(self, field)!r}")

        def integer(field):
            value = getattr(self, field)
            return isinstance(value, int) and not isinstance(value, bool)

        def number(field):
            value = getattr(self, field)
            return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)

        need(self.model in models.MODELS, "model", f"one of {', '.join(models.MODELS)}")
        for field in ("epochs", "batch_size", "eval_batch_size"):
            need(integer(field) and getattr(self, field) >= 1, field, "a positive integer")
        for field in ("seed", "train_limit", "test_limit"):
            need(integer(field) and getattr(self, field) >= 0, field, "an integer >= 0")
        need(number("lr") and self.lr > 0, "lr", "a finite number > 0")
        need(number("momentum") and 0 <= self.momentum < 1, "momentum", "in [0, 1)")
        need(number("weight_decay") and self.weight_decay >= 0, "weight_decay", "a finite number >= 0")
        need(number("lr_gamma") and 0 < self.lr_gamma <= 1, "lr_gamma", "in (0, 1]")
        need(self.dtype in ("float32", "float64"), "dtype", "float32 or float64")
        return self


class TrainingDiverged(RuntimeError):
    """The run diverged (non-finite or exploding loss, non-finite weights) or its data is not finite."""


# A loss this many times the run's first loss means the run diverged (chance level is log(10) = 2.3 for the
# seed models; a loss 100 times larger is no longer training, as `--lr 1e6` shows with losses of 1e24).
DIVERGENCE_FACTOR = 100.0


class MinicnnEngine:
    """Trains a ``minicnn.models`` network with minicnn's SGD."""

    name = "minicnn"
    set_threads = staticmethod(set_num_threads)

    def __init__(self, config):
        self.dtype = np.dtype(config.dtype)
        self.model = models.build(config.model, dtype=self.dtype, seed=config.seed)
        self.criterion = models.criterion(config.model)
        self.optimizer = SGD(self.model.parameters(), lr=config.lr, momentum=config.momentum,
                             weight_decay=config.weight_decay)
        self.scheduler = ExponentialLR(self.optimizer, config.lr_gamma)

    def end_epoch(self):
        self.scheduler.step()

    @property
    def lr(self):
        return self.optimizer.lr

    def train_step(self, x, y):
        self.model.train()
        self.optimizer.zero_grad()
        output = self.model(x.astype(self.dtype, copy=False))
        loss = float(self.criterion(output, y))
        self.model.backward(self.criterion.backward(), input_grad=False)  # the images need no gradient
        self.optimizer.step()
        return loss, int((output.argmax(axis=1) == y).sum())

    def evaluate(self, x, y):
        """Sum of per-sample losses and the predicted classes, in eval mode."""
        self.model.eval()
        output = self.model(x.astype(self.dtype, copy=False))
        self.criterion.reduction = "sum"
        try:
            loss = float(self.criterion(output, y))
        finally:
            self.criterion.reduction = "mean"
        return loss, output.argmax(axis=1)

    def state(self):
        arrays = {f"model/{k}": v for k, v in self.model.state_dict().items()}
        arrays.update({f"optim/{k}": v for k, v in self.optimizer.state_dict().items()})
        return arrays

    def load_state(self, arrays):
        """Load model and optimizer state; if either fails, both are left as they were."""
        saved_model = self.model.state_dict()
        try:
            self.model.load_state_dict(split_prefix(arrays, "model"))
            self.optimizer.load_state_dict(split_prefix(arrays, "optim"))
        except BaseException:
            self.model.load_state_dict(saved_model)
            raise

    def parameters_finite(self):
        return all(np.isfinite(p.data).all() for p in self.model.parameters())


def evaluate(engine, images, labels, batch_size=1000):
    """Mean loss, accuracy and predictions over a whole split."""
    loss_sum, predictions = 0.0, []
    for xb, yb in iterate_batches(images, labels, batch_size):
        loss, pred = engine.evaluate(xb, yb)
        loss_sum += loss
        predictions.append(pred)
    predictions = np.concatenate(predictions)
    return loss_sum / len(labels), float((predictions == labels).mean()), predictions


def _progress(total, initial, desc, enabled):
    """A progress bar on stderr, or None. tqdm's ``disable=None`` shows it only when stderr is a
    terminal: into a log file (``make train > log 2>&1``, CI) it would write every redraw."""
    if not enabled:
        return None
    from tqdm import tqdm
    return tqdm(total=total, initial=initial, desc=desc, unit="batch", leave=False, dynamic_ncols=True,
                file=sys.stderr, disable=None)


def write_json(path, obj):
    atomic_write(path, lambda f: f.write((json.dumps(obj, indent=2) + "\n").encode()))


@dataclasses.dataclass
class Progress:
    """Where a run stands: the epoch and step to do next, the finished epochs, and the running sums
    of the epoch in progress. A checkpoint stores exactly this, so a run resumes where it stopped."""
    epoch: int = 0
    step: int = 0
    history: list = dataclasses.field(default_factory=list)
    loss_sum: float = 0.0
    correct: int = 0
    seen: int = 0
    seconds: float = 0.0
    first_loss: float = None  # the run's first training loss, the yardstick of divergence

    def to_meta(self):
        return dict(epoch=self.epoch, step=self.step, history=self.history, first_loss=self.first_loss,
                    partial=dict(loss_sum=self.loss_sum, correct=self.correct, seen=self.seen, seconds=self.seconds))

    @classmethod
    def from_meta(cls, meta):
        partial = meta["partial"]
        return cls(int(meta["epoch"]), int(meta["step"]), list(meta["history"]), float(partial["loss_sum"]),
                   int(partial["correct"]), int(partial["seen"]), float(partial["seconds"]), meta.get("first_loss"))

    def next_epoch(self):
        self.epoch, self.step = self.epoch + 1, 0
        self.loss_sum, self.correct, self.seen, self.seconds = 0.0, 0, 0, 0.0


def _where(progress, steps_per_epoch):
    return (f"epoch {progress.epoch + 1}, step {progress.step + 1} (global step "
            f"{progress.epoch * steps_per_epoch + progress.step + 1})")


def check_step(engine, loss, progress, steps_per_epoch):
    """Raise ``TrainingDiverged`` naming the cause if the step just taken diverged."""
    where, lr = _where(progress, steps_per_epoch), engine.lr
    if not engine.parameters_finite():
        raise TrainingDiverged(f"the weights became NaN or infinite at {where}: the SGD update overflowed "
                               f"{engine.dtype}; the learning rate {lr:g} is too large, try a smaller --lr")
    if not math.isfinite(loss):
        raise TrainingDiverged(f"the loss became {loss} at {where} with learning rate {lr:g} while the weights "
                               f"were finite: the logits overflowed; try a smaller --lr")
    first = progress.first_loss if progress.first_loss is not None else loss
    if loss > DIVERGENCE_FACTOR * max(first, 1e-3):
        raise TrainingDiverged(f"the loss grew from {first:.4g} (the first step's) to {loss:.4g} at {where}, "
                               f"more than {DIVERGENCE_FACTOR:g} times: the run diverged with learning rate {lr:g}; "
                               f"try a smaller --lr")


def run_epoch(config, engine, train, progress, bar=None, signals=None):
    """Train one epoch (or its remainder, from ``progress.step``), updating ``progress`` after every step.

    The epoch visits the training set in the order of ``default_rng([seed, epoch]).permutation(N)``.
    Between steps, ``signals.check()`` stops the run on a pending SIGINT or SIGTERM. Raises
    ``TrainingDiverged`` naming the step, the learning rate and the cause if a step diverges.
    """
    x_train, y_train = train
    steps_per_epoch = num_batches(len(x_train), config.batch_size)
    rng = np.random.default_rng([config.seed, progress.epoch])
    started = time.perf_counter() - progress.seconds
    try:
        for xb, yb in iterate_batches(x_train, y_train, config.batch_size, shuffle=True, rng=rng,
                                      start=progress.step):
            if signals is not None:
                signals.check()
            loss, correct = engine.train_step(xb, yb)
            check_step(engine, loss, progress, steps_per_epoch)
            if progress.first_loss is None:
                progress.first_loss = loss
            progress.step += 1
            progress.loss_sum += loss * len(yb)
            progress.correct += correct
            progress.seen += len(yb)
            if bar is not None:
                elapsed = time.perf_counter() - started
                bar.set_postfix(loss=f"{progress.loss_sum / progress.seen:.4f}",
                                acc=f"{progress.correct / progress.seen:.4f}",
                                img_s=f"{progress.seen / max(elapsed, 1e-9):.0f}", refresh=False)
                bar.update(1)
    finally:
        progress.seconds = time.perf_counter() - started


def epoch_record(progress, test_loss, test_accuracy):
    """The history entry of the epoch that ``progress`` has just finished."""
    return dict(epoch=progress.epoch + 1, train_loss=progress.loss_sum / progress.seen,
                train_accuracy=progress.correct / progress.seen, test_loss=test_loss,
                test_accuracy=test_accuracy, seconds=progress.seconds,
                images_per_second=progress.seen / progress.seconds)


class RunExists(OutputError):
    """The output folder already holds a run and no --resume was given."""


def check_data(train, test):
    """The images must be finite: NaN in the data would otherwise be blamed on the learning rate."""
    for split, (images, labels) in (("training", train), ("test", test)):
        bad = ~np.isfinite(images.reshape(len(images), -1)).all(axis=1)
        if bad.any():
            raise TrainingDiverged(f"the {split} data holds NaN or infinite pixels (image {int(np.flatnonzero(bad)[0])}"
                                   f" of {len(images)}): fix the data, not the learning rate")
        if len(images) == 0:
            raise TrainingDiverged(f"the {split} data is empty")


def fit(config, engine, train, test, out_dir, resume=None, progress=True, log=print, resume_hint=""):
    """Train ``engine`` on ``train = (images, labels)``, evaluating on ``test`` after each epoch.

    Writes ``history.json``, ``checkpoint.npz``, ``curves.png``, ``misclassified.png`` and
    ``confusion.png`` into ``out_dir``, which it locks for the run. ``resume``: a checkpoint to continue
    from (without it, a folder that already holds a checkpoint is refused). SIGINT and SIGTERM stop the
    run between steps, after writing a checkpoint, and raise ``Interrupted``. Returns the history.
    """
    out_dir = pathlib.Path(out_dir)
    check_data(train, test)
    with RunLock(out_dir), DeferredSignals() as signals:
        if resume is None and (out_dir / "checkpoint.npz").exists():
            raise RunExists(17, f"{out_dir} already holds a run; continue it with --resume "
                                f"{shlex.quote(str(out_dir / 'checkpoint.npz'))} or choose another --out")
        return _fit(config, engine, train, test, out_dir, resume, progress, log, resume_hint, signals)


def _fit(config, engine, train, test, out_dir, resume, progress, log, resume_hint, signals):
    x_test, y_test = test
    steps_per_epoch = num_batches(len(train[0]), config.batch_size)
    state = Progress()
    if resume is not None:
        arrays, meta = load_checkpoint(resume)
        engine.load_state(arrays)
        state = Progress.from_meta(meta)
        default_generator().bit_generator.state = meta["rng"]
        log(f"resumed from {resume}: epoch {state.epoch + 1}, step {state.step}/{steps_per_epoch}")

    def checkpoint():
        meta = dict(config=dataclasses.asdict(config), engine=engine.name, rng=default_generator().bit_generator.state,
                    **state.to_meta())
        save_checkpoint(out_dir / "checkpoint.npz", engine.state(), meta)

    while state.epoch < config.epochs:
        bar = _progress(steps_per_epoch, state.step, f"epoch {state.epoch + 1}/{config.epochs}", progress)
        try:
            run_epoch(config, engine, train, state, bar, signals)
        except Interrupted as stop:
            if not stop.immediate:
                checkpoint()
                path = shlex.quote(str(out_dir / "checkpoint.npz"))
                log(f"\ninterrupted ({signal_name(stop)}) at epoch {state.epoch + 1}, step {state.step}; checkpoint "
                    f"saved to {out_dir / 'checkpoint.npz'}\nresume with: {resume_hint} --resume {path}")
            raise
        finally:
            if bar is not None:
                bar.close()
        # The end of the epoch runs whole: a signal now is acted on at the next epoch's first step.
        test_loss, test_accuracy, predictions = evaluate(engine, x_test, y_test, config.eval_batch_size)
        if not math.isfinite(test_loss):
            raise TrainingDiverged(f"the test loss is {test_loss} after epoch {state.epoch + 1} (train loss "
                                   f"{state.loss_sum / state.seen:.4g}): the model's outputs overflowed on the test "
                                   f"set; try a smaller --lr")
        state.history.append(epoch_record(state, test_loss, test_accuracy))
        e = state.history[-1]
        log(f"epoch {e['epoch']}/{config.epochs}: train loss {e['train_loss']:.4f}, accuracy "
            f"{e['train_accuracy']:.4f} | test loss {test_loss:.4f}, accuracy "
            f"{int(round(test_accuracy * len(y_test)))}/{len(y_test)} ({100 * test_accuracy:.2f}%) | "
            f"{e['seconds']:.1f} s, {e['images_per_second']:.0f} images/s")
        state.next_epoch()
        engine.end_epoch()
        checkpoint()
        write_outputs(out_dir, config, state.history, x_test, y_test, predictions, engine.name)
    return state.history


def signal_name(stop):
    return "Ctrl-C" if stop.signum == signal.SIGINT else signal.Signals(stop.signum).name


def write_outputs(out_dir, config, history, images, labels, predictions, engine_name):
    """history.json and the three figures."""
    from . import plots
    write_json(out_dir / "history.json", dict(config=dataclasses.asdict(config), engine=engine_name,
                                              epochs=history))
    if predictions is None:
        return
    plots.plot_curves(history, out_dir / "curves.png", f"{engine_name}: {config.model}")
    plots.plot_misclassified(images, labels, predictions, CLASSES, out_dir / "misclassified.png")
    plots.plot_confusion(plots.confusion_matrix(labels, predictions, len(CLASSES)), CLASSES,
                         out_dir / "confusion.png")
