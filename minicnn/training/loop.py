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
import sys
import time

import numpy as np

from ..nn import default_generator
from ..optim import SGD, ExponentialLR
from ..runtime import set_num_threads
from . import models
from .checkpoint import atomic_write, load_checkpoint, save_checkpoint, split_prefix
from .data import CLASSES, iterate_batches, num_batches


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
        return cls(**values)


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


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
        self.model.backward(self.criterion.backward())
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
        self.model.load_state_dict(split_prefix(arrays, "model"))
        self.optimizer.load_state_dict(split_prefix(arrays, "optim"))


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
    if not enabled:
        return None
    from tqdm import tqdm
    return tqdm(total=total, initial=initial, desc=desc, unit="batch", leave=False, dynamic_ncols=True,
                file=sys.stderr)


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

    def to_meta(self):
        return dict(epoch=self.epoch, step=self.step, history=self.history,
                    partial=dict(loss_sum=self.loss_sum, correct=self.correct, seen=self.seen, seconds=self.seconds))

    @classmethod
    def from_meta(cls, meta):
        return cls(meta["epoch"], meta["step"], meta["history"], **meta["partial"])

    def next_epoch(self):
        self.epoch, self.step = self.epoch + 1, 0
        self.loss_sum, self.correct, self.seen, self.seconds = 0.0, 0, 0, 0.0


def run_epoch(config, engine, train, progress, bar=None, interrupt_at=None):
    """Train one epoch (or its remainder, from ``progress.step``), updating ``progress`` after every step.

    The epoch visits the training set in the order of ``default_rng([seed, epoch]).permutation(N)``.
    Raises ``TrainingDiverged`` naming the step and learning rate if the loss stops being finite;
    ``interrupt_at=(epoch, step)`` raises KeyboardInterrupt there (for tests).
    """
    x_train, y_train = train
    steps_per_epoch = num_batches(len(x_train), config.batch_size)
    rng = np.random.default_rng([config.seed, progress.epoch])
    started = time.perf_counter() - progress.seconds
    try:
        for xb, yb in iterate_batches(x_train, y_train, config.batch_size, shuffle=True, rng=rng,
                                      start=progress.step):
            if interrupt_at == (progress.epoch, progress.step):
                raise KeyboardInterrupt
            loss, correct = engine.train_step(xb, yb)
            if not math.isfinite(loss):
                raise TrainingDiverged(
                    f"the loss became {loss} at epoch {progress.epoch + 1}, step {progress.step + 1} (global step "
                    f"{progress.epoch * steps_per_epoch + progress.step + 1}) with learning rate {engine.lr:g}; "
                    f"try a smaller --lr")
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


def fit(config, engine, train, test, out_dir, resume=None, progress=True, log=print, interrupt_at=None,
        resume_hint=""):
    """Train ``engine`` on ``train = (images, labels)``, evaluating on ``test`` after each epoch.

    Writes ``history.json``, ``checkpoint.npz``, ``curves.png``, ``misclassified.png`` and
    ``confusion.png`` into ``out_dir``. ``resume``: a checkpoint path to continue from.
    ``interrupt_at``: (epoch, step) at which to simulate Ctrl-C (for tests).
    Returns the history (a list of per-epoch dicts).
    """
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
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
            run_epoch(config, engine, train, state, bar, interrupt_at)
        except KeyboardInterrupt:
            checkpoint()
            log(f"\ninterrupted at epoch {state.epoch + 1}, step {state.step}; checkpoint saved to "
                f"{out_dir / 'checkpoint.npz'}\nresume with: {resume_hint} --resume {out_dir / 'checkpoint.npz'}")
            raise
        finally:
            if bar is not None:
                bar.close()
        test_loss, test_accuracy, predictions = evaluate(engine, x_test, y_test, config.eval_batch_size)
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
