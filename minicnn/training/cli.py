"""The ``minicnn`` command: ``train``, ``evaluate`` and ``summary``.

``python -m reference.train`` reuses ``add_train_arguments`` and ``run_train``
with a torch engine, so the two share every flag and every output.
"""
import argparse
import dataclasses
import datetime
import math
import pathlib
import shlex
import sys

import numpy as np

from ..runtime import set_num_threads
from . import models
from .checkpoint import CheckpointError, OutputError, load_checkpoint
from .data import CLASSES, DataError, load_fashion_mnist
from .loop import Config, MinicnnEngine, TrainingDiverged, evaluate, fit
from .safety import Interrupted


def _defaults_help():
    return "; ".join(f"{name}: " + ", ".join(f"{k}={v}" for k, v in spec.defaults.items())
                     for name, spec in models.MODELS.items())


def _ranged(kind, low=None, high=None, low_open=False, what=None):
    """An argparse type: ``kind`` (int or float) within [low, high] (or (low, high] with low_open), finite."""
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {'an integer' if kind is int else 'a number'}, got {text!r}")
        if kind is float and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be finite, got {text}")
        if (low is not None and (value <= low if low_open else value < low)) or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be {what}, got {text}")
        return value
    return parse


POSITIVE = _ranged(int, 1, what="a positive integer")
COUNT = _ranged(int, 0, what="an integer >= 0 (0: all)")
SEED = _ranged(int, 0, 2**63 - 1, what="an integer from 0 to 2**63 - 1")


def add_train_arguments(parser):
    parser.add_argument("--model", choices=list(models.MODELS), help="the network (default: article)")
    parser.add_argument("--epochs", type=POSITIVE, help="epochs to train (default: per model)")
    parser.add_argument("--batch-size", type=POSITIVE, help="training batch size (default: per model)")
    parser.add_argument("--lr", type=_ranged(float, 0, low_open=True, what="a finite number > 0"),
                        help="learning rate (default: per model)")
    parser.add_argument("--momentum", type=_ranged(float, 0, 0.999999, what="in [0, 1)"),
                        help="SGD momentum (default: per model)")
    parser.add_argument("--weight-decay", type=_ranged(float, 0, what="a finite number >= 0"),
                        help="SGD weight decay (default: per model)")
    parser.add_argument("--lr-gamma", type=_ranged(float, 0, 1, low_open=True, what="in (0, 1]"),
                        help="multiply the learning rate by this after each epoch (default: per model)")
    parser.add_argument("--seed", type=SEED, help="seed for weights and shuffling (default: 0)")
    parser.add_argument("--dtype", choices=["float32", "float64"], help="default: float32")
    parser.add_argument("--threads", type=POSITIVE, help="CPU threads (default: all cores)")
    parser.add_argument("--out", type=pathlib.Path, help="output folder (default: a new folder under runs/)")
    parser.add_argument("--resume", type=pathlib.Path, metavar="CHECKPOINT",
                        help="continue a run from its checkpoint.npz (with its saved settings; "
                             "--epochs may extend it)")
    parser.add_argument("--data-dir", type=pathlib.Path, help="folder holding the Fashion-MNIST files")
    parser.add_argument("--train-limit", type=COUNT, help="train on the first N images only (default: all)")
    parser.add_argument("--test-limit", type=COUNT, help="test on the first N images only (default: all)")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bar (there is none when stderr is not a terminal)")
    parser.epilog = "Per-model defaults: " + _defaults_help()
    return parser


# The settings a resumed run keeps from its checkpoint; a different value on the command line is refused.
KEPT_ON_RESUME = ("model", "batch_size", "lr", "momentum", "weight_decay", "lr_gamma", "seed", "dtype",
                  "train_limit", "test_limit")


def config_from_checkpoint(path):
    """The Config saved in a checkpoint; a CheckpointError if it is missing or out of range."""
    _, meta = load_checkpoint(path)
    try:
        return Config.from_dict(meta["config"]), meta
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path} is not a minicnn checkpoint: its config is invalid: {e}") from None


def config_from_args(args):
    given = {k: getattr(args, k) for k in ("model", "epochs", *KEPT_ON_RESUME) if getattr(args, k) is not None}
    if args.resume is not None:
        config, meta = config_from_checkpoint(args.resume)
        conflicts = [f"--{k.replace('_', '-')} {given[k]} (the checkpoint has {getattr(config, k)})"
                     for k in KEPT_ON_RESUME if k in given and given[k] != getattr(config, k)]
        if conflicts:
            raise ValueError(f"--resume {args.resume} continues a run with its own settings; remove "
                             + ", ".join(conflicts) + " (only --epochs may change)")
        if "epochs" in given:
            done = int(meta["epoch"])
            if given["epochs"] < done:
                raise ValueError(f"--epochs {given['epochs']} is fewer than the {done} epochs the checkpoint has done")
            config.epochs = given["epochs"]
        return config
    return Config.for_model(given.pop("model", "article"), **given)


def load_splits(config, data_dir=None, loader=load_fashion_mnist):
    """(train, test) pairs of (images, labels), cut to the config's limits."""
    splits = []
    for split, limit in (("train", config.train_limit), ("test", config.test_limit)):
        images, labels = loader(split, data_dir)
        splits.append((images[:limit], labels[:limit]) if limit else (images, labels))
    return splits


def run_train(args, engine_cls=MinicnnEngine, loader=load_fashion_mnist, command="minicnn train"):
    config = config_from_args(args)
    if args.resume is not None:
        engine_name = load_checkpoint(args.resume)[1]["engine"]
        if engine_name != engine_cls.name:
            raise ValueError(f"{args.resume} was written by the {engine_name} engine; resume it with that engine, "
                             f"not {engine_cls.name}")
    threads = engine_cls.set_threads(args.threads)
    out = args.out or (args.resume.parent if args.resume else
                       pathlib.Path("runs") / f"{config.model}-{datetime.datetime.now():%Y%m%d-%H%M%S}")
    train, test = load_splits(config, args.data_dir, loader)
    print(f"{engine_cls.name}: training {config.model} on {len(train[1])} images, testing on {len(test[1])}; "
          f"{threads} thread(s); output in {out}")
    print("settings: " + ", ".join(f"{k}={v}" for k, v in dataclasses.asdict(config).items()))
    engine = engine_cls(config)
    hint = f"{command} --out {shlex.quote(str(out))}" + (
        f" --data-dir {shlex.quote(str(args.data_dir))}" if args.data_dir else "")
    history = fit(config, engine, train, test, out, resume=args.resume, progress=not args.no_progress,
                  resume_hint=hint)
    best = max(e["test_accuracy"] for e in history) if history else float("nan")
    print(f"done: final test accuracy {history[-1]['test_accuracy']:.4f} (best {best:.4f}); "
          f"history, checkpoint and figures in {out}")
    return 0


def run_evaluate(args):
    config, meta = config_from_checkpoint(args.checkpoint)
    arrays, _ = load_checkpoint(args.checkpoint)
    set_num_threads(args.threads)
    engine = MinicnnEngine(config)
    engine.load_state(arrays)
    images, labels = load_fashion_mnist("test", args.data_dir)
    loss, accuracy, predictions = evaluate(engine, images, labels, config.eval_batch_size)
    from .plots import confusion_matrix
    matrix = confusion_matrix(labels, predictions, len(CLASSES))
    print(f"{config.model} from {args.checkpoint} (epoch {meta['epoch']}): test loss {loss:.4f}, "
          f"accuracy {int((predictions == labels).sum())}/{len(labels)} ({100 * accuracy:.2f}%)")
    print("\nper-class accuracy:")
    for k, name in enumerate(CLASSES):
        print(f"  {k} {name:<12} {matrix[k, k] / max(matrix[k].sum(), 1):.4f}  ({matrix[k, k]}/{matrix[k].sum()})")
    print("\nconfusion matrix (rows: true class, columns: predicted):")
    print("     " + "".join(f"{k:>6}" for k in range(len(CLASSES))))
    for k in range(len(CLASSES)):
        print(f"  {k:>2} " + "".join(f"{v:>6}" for v in matrix[k]))
    return 0


def run_summary(args):
    model = models.build(args.model, dtype=np.float32, seed=0)
    print(f"{args.model} (loss: {type(models.criterion(args.model)).__name__})")
    print(models.summary(model, batch=args.batch))
    return 0


def build_parser():
    parser = argparse.ArgumentParser(prog="minicnn", description="Train and inspect minicnn's Fashion-MNIST CNNs.")
    sub = parser.add_subparsers(dest="command", required=True)
    add_train_arguments(sub.add_parser("train", help="train a model on Fashion-MNIST"))
    ev = sub.add_parser("evaluate", help="test accuracy, per-class accuracy and confusion matrix of a checkpoint")
    ev.add_argument("checkpoint", type=pathlib.Path)
    ev.add_argument("--data-dir", type=pathlib.Path)
    ev.add_argument("--threads", type=POSITIVE)
    sm = sub.add_parser("summary", help="per-layer output shapes, parameter counts and size formulas")
    sm.add_argument("--model", choices=list(models.MODELS), default="article")
    sm.add_argument("--batch", type=POSITIVE, default=1)
    return parser


def guarded(prog, command):
    """Run ``command()``; every expected failure becomes one line on stderr and an exit code.

    130 on Ctrl-C and 143 on SIGTERM (after the checkpoint and the resume command were printed);
    1 for bad data, a diverged run, a damaged checkpoint, a file that cannot be written or too
    little memory. (argparse exits with 2 for a bad flag before any of this runs.)
    """
    try:
        return command()
    except Interrupted as stop:
        return stop.exit_code
    except KeyboardInterrupt:
        return 130
    except MemoryError:
        print(f"{prog}: error: out of memory; a smaller --batch-size needs less", file=sys.stderr)
        return 1
    except (DataError, TrainingDiverged, FileNotFoundError, ValueError, OutputError) as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 1


def main(argv=None):
    args = build_parser().parse_args(argv)
    commands = {"train": run_train, "evaluate": run_evaluate, "summary": run_summary}
    return guarded(f"minicnn {args.command}", lambda: commands[args.command](args))


if __name__ == "__main__":
    sys.exit(main())
