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

from . import models
from .checkpoint import atomic_write, load_checkpoint, save_checkpoint, split_prefix
from .data import CLASSES, iterate_batches, num_batches
from .init import default_generator
from .optim import SGD, ExponentialLR
from .threads import set_num_threads

# Defaults per model: each reaches the accuracy quoted in the README.
DEFAULTS = {
    "article": dict(epochs=6, batch_size=100, lr=0.02, momentum=0.9, weight_decay=0.0, lr_gamma=1.0),
    "notebook": dict(epochs=10, batch_size=64, lr=0.01, momentum=0.5, weight_decay=0.0, lr_gamma=1.0),
    "notebook-bn": dict(epochs=10, batch_size=64, lr=0.05, momentum=0.9, weight_decay=0.0, lr_gamma=0.7),
}


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
        """The model's documented defaults, with the non-None ``overrides`` applied."""
        if model not in DEFAULTS:
            raise ValueError(f"unknown model {model!r}; choose one of {', '.join(DEFAULTS)}")
        values = dict(DEFAULTS[model], model=model)
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
    (x_train, y_train), (x_test, y_test) = train, test
    steps_per_epoch = num_batches(len(x_train), config.batch_size)
    epoch, step, history = 0, 0, []
    partial = dict(loss_sum=0.0, correct=0, seen=0, seconds=0.0)
    if resume is not None:
        arrays, meta = load_checkpoint(resume)
        engine.load_state(arrays)
        epoch, step, history, partial = meta["epoch"], meta["step"], meta["history"], meta["partial"]
        default_generator().bit_generator.state = meta["rng"]
        log(f"resumed from {resume}: epoch {epoch + 1}, step {step}/{steps_per_epoch}")

    def checkpoint():
        meta = dict(config=dataclasses.asdict(config), engine=engine.name, epoch=epoch, step=step,
                    history=history, partial=partial, rng=default_generator().bit_generator.state)
        save_checkpoint(out_dir / "checkpoint.npz", engine.state(), meta)

    predictions = None
    while epoch < config.epochs:
        rng = np.random.default_rng([config.seed, epoch])
        bar = _progress(steps_per_epoch, step, f"epoch {epoch + 1}/{config.epochs}", progress)
        started = time.perf_counter() - partial["seconds"]
        try:
            for xb, yb in iterate_batches(x_train, y_train, config.batch_size, shuffle=True, rng=rng, start=step):
                if interrupt_at == (epoch, step):
                    raise KeyboardInterrupt
                loss, correct = engine.train_step(xb, yb)
                if not math.isfinite(loss):
                    raise TrainingDiverged(
                        f"the loss became {loss} at epoch {epoch + 1}, step {step + 1} (global step "
                        f"{epoch * steps_per_epoch + step + 1}) with learning rate {engine.lr:g}; "
                        f"try a smaller --lr")
                step += 1
                partial["loss_sum"] += loss * len(yb)
                partial["correct"] += correct
                partial["seen"] += len(yb)
                if bar is not None:
                    elapsed = time.perf_counter() - started
                    bar.set_postfix(loss=f"{partial['loss_sum'] / partial['seen']:.4f}",
                                    acc=f"{partial['correct'] / partial['seen']:.4f}",
                                    img_s=f"{partial['seen'] / max(elapsed, 1e-9):.0f}", refresh=False)
                    bar.update(1)
        except KeyboardInterrupt:
            partial["seconds"] = time.perf_counter() - started
            checkpoint()
            if bar is not None:
                bar.close()
            log(f"\ninterrupted at epoch {epoch + 1}, step {step}; checkpoint saved to "
                f"{out_dir / 'checkpoint.npz'}\nresume with: {resume_hint} --resume {out_dir / 'checkpoint.npz'}")
            raise
        finally:
            if bar is not None:
                bar.close()
        seconds = time.perf_counter() - started
        test_loss, test_accuracy, predictions = evaluate(engine, x_test, y_test, config.eval_batch_size)
        correct = int(round(test_accuracy * len(y_test)))
        history.append(dict(epoch=epoch + 1, train_loss=partial["loss_sum"] / partial["seen"],
                            train_accuracy=partial["correct"] / partial["seen"], test_loss=test_loss,
                            test_accuracy=test_accuracy, seconds=seconds,
                            images_per_second=partial["seen"] / seconds))
        e = history[-1]
        log(f"epoch {epoch + 1}/{config.epochs}: train loss {e['train_loss']:.4f}, accuracy "
            f"{e['train_accuracy']:.4f} | test loss {test_loss:.4f}, accuracy {correct}/{len(y_test)} "
            f"({100 * test_accuracy:.2f}%) | {seconds:.1f} s, {e['images_per_second']:.0f} images/s")
        epoch, step = epoch + 1, 0
        partial = dict(loss_sum=0.0, correct=0, seen=0, seconds=0.0)
        engine.end_epoch()
        checkpoint()
        write_outputs(out_dir, config, history, x_test, y_test, predictions, engine.name)
    return history


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
