"""The ``minicnn`` command: ``train``, ``evaluate`` and ``summary``.

``python -m reference.train`` reuses ``add_train_arguments`` and ``run_train``
with a torch engine, so the two share every flag and every output.
"""
import argparse
import dataclasses
import datetime
import pathlib
import sys

import numpy as np

from ..runtime import set_num_threads
from . import models
from .checkpoint import load_checkpoint
from .data import CLASSES, DataError, load_fashion_mnist
from .loop import Config, MinicnnEngine, TrainingDiverged, evaluate, fit


def _defaults_help():
    return "; ".join(f"{name}: " + ", ".join(f"{k}={v}" for k, v in spec.defaults.items())
                     for name, spec in models.MODELS.items())


def add_train_arguments(parser):
    parser.add_argument("--model", choices=list(models.MODELS), default="article",
                        help="the network (default: article)")
    parser.add_argument("--epochs", type=int, help="epochs to train (default: per model)")
    parser.add_argument("--batch-size", type=int, help="training batch size (default: per model)")
    parser.add_argument("--lr", type=float, help="learning rate (default: per model)")
    parser.add_argument("--momentum", type=float, help="SGD momentum (default: per model)")
    parser.add_argument("--weight-decay", type=float, help="SGD weight decay (default: per model)")
    parser.add_argument("--lr-gamma", type=float,
                        help="multiply the learning rate by this after each epoch (default: per model)")
    parser.add_argument("--seed", type=int, default=0, help="seed for weights and shuffling (default: 0)")
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--threads", type=int, help="CPU threads (default: all cores)")
    parser.add_argument("--out", type=pathlib.Path, help="output folder (default: a new folder under runs/)")
    parser.add_argument("--resume", type=pathlib.Path, metavar="CHECKPOINT",
                        help="continue a run from its checkpoint.npz (with its saved settings; "
                             "--epochs may extend it)")
    parser.add_argument("--data-dir", type=pathlib.Path, help="folder holding the Fashion-MNIST files")
    parser.add_argument("--train-limit", type=int, help="train on the first N images only (default: all)")
    parser.add_argument("--test-limit", type=int, help="test on the first N images only (default: all)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.epilog = "Per-model defaults: " + _defaults_help()
    return parser


def config_from_args(args):
    if args.resume is not None:
        _, meta = load_checkpoint(args.resume)
        config = Config(**meta["config"])
        if args.epochs is not None:
            config.epochs = args.epochs
        return config
    return Config.for_model(args.model, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                            momentum=args.momentum, weight_decay=args.weight_decay, lr_gamma=args.lr_gamma,
                            seed=args.seed,
                            dtype=args.dtype, train_limit=args.train_limit, test_limit=args.test_limit)


def load_splits(config, data_dir=None, loader=load_fashion_mnist):
    """(train, test) pairs of (images, labels), cut to the config's limits."""
    splits = []
    for split, limit in (("train", config.train_limit), ("test", config.test_limit)):
        images, labels = loader(split, data_dir)
        splits.append((images[:limit], labels[:limit]) if limit else (images, labels))
    return splits


def run_train(args, engine_cls=MinicnnEngine, loader=load_fashion_mnist, command="minicnn train"):
    config = config_from_args(args)
    threads = engine_cls.set_threads(args.threads)
    out = args.out or (args.resume.parent if args.resume else
                       pathlib.Path("runs") / f"{config.model}-{datetime.datetime.now():%Y%m%d-%H%M%S}")
    train, test = load_splits(config, args.data_dir, loader)
    print(f"{engine_cls.name}: training {config.model} on {len(train[1])} images, testing on {len(test[1])}; "
          f"{threads} thread(s); output in {out}")
    print("settings: " + ", ".join(f"{k}={v}" for k, v in dataclasses.asdict(config).items()))
    engine = engine_cls(config)
    hint = f"{command} --out {out}" + (f" --data-dir {args.data_dir}" if args.data_dir else "")
    history = fit(config, engine, train, test, out, resume=args.resume, progress=not args.no_progress,
                  resume_hint=hint)
    best = max(e["test_accuracy"] for e in history) if history else float("nan")
    print(f"done: final test accuracy {history[-1]['test_accuracy']:.4f} (best {best:.4f}); "
          f"history, checkpoint and figures in {out}")
    return 0


def run_evaluate(args):
    arrays, meta = load_checkpoint(args.checkpoint)
    config = Config(**meta["config"])
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
    ev.add_argument("--threads", type=int)
    sm = sub.add_parser("summary", help="per-layer output shapes, parameter counts and size formulas")
    sm.add_argument("--model", choices=list(models.MODELS), default="article")
    sm.add_argument("--batch", type=int, default=1)
    return parser


def guarded(prog, command):
    """Run ``command()``: exit code 130 on Ctrl-C (after its checkpoint), 1 with a one-line error."""
    try:
        return command()
    except KeyboardInterrupt:
        return 130
    except (DataError, TrainingDiverged, FileNotFoundError, ValueError) as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 1


def main(argv=None):
    args = build_parser().parse_args(argv)
    commands = {"train": run_train, "evaluate": run_evaluate, "summary": run_summary}
    return guarded(f"minicnn {args.command}", lambda: commands[args.command](args))


if __name__ == "__main__":
    sys.exit(main())
