"""``python -m reference.train``: train with torch, with the same flags and outputs as ``minicnn train``.

The loop, shuffling, checkpoints and figures are minicnn's (``minicnn.training.loop.fit``);
only the engine differs. Both engines start from the same initial weights (the
minicnn model for ``--seed``, copied into its torch twin), so the two runs can
be compared side by side.
"""
import argparse
import sys

import numpy as np
import torch

from minicnn.testing.interop import to_torch
from minicnn.training import models
from minicnn.training.checkpoint import split_prefix
from minicnn.training.cli import add_train_arguments, guarded, run_train

from .data import load_fashion_mnist


class TorchEngine:
    """The torch twin of ``minicnn.training.loop.MinicnnEngine``."""

    name = "torch"

    @staticmethod
    def set_threads(threads=None):
        """torch's own pool; its BLAS is left to torch."""
        if threads:
            torch.set_num_threads(threads)
        return torch.get_num_threads()

    def __init__(self, config):
        self.model = to_torch(models.build(config.model, dtype=np.dtype(config.dtype), seed=config.seed))
        self.dtype = next(self.model.parameters()).dtype
        loss_cls = getattr(torch.nn, type(models.criterion(config.model)).__name__)
        self.criterion, self.criterion_sum = loss_cls(), loss_cls(reduction="sum")
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=config.lr, momentum=config.momentum,
                                         weight_decay=config.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.ExponentialLR(self.optimizer, config.lr_gamma)

    @property
    def lr(self):
        return self.optimizer.param_groups[0]["lr"]

    def end_epoch(self):
        self.scheduler.step()

    def train_step(self, x, y):
        self.model.train()
        self.optimizer.zero_grad()
        output = self.model(torch.from_numpy(x).to(self.dtype))
        loss = self.criterion(output, torch.from_numpy(y))
        loss.backward()
        self.optimizer.step()
        return float(loss.detach()), int((output.detach().argmax(1).numpy() == y).sum())

    @torch.no_grad()
    def evaluate(self, x, y):
        self.model.eval()
        output = self.model(torch.from_numpy(x).to(self.dtype))
        return float(self.criterion_sum(output, torch.from_numpy(y))), output.argmax(1).numpy()

    def state(self):
        arrays = {f"model/{k}": v.detach().numpy().copy() for k, v in self.model.state_dict().items()}
        arrays["optim/lr"] = np.array(self.lr)
        for i, p in enumerate(self.model.parameters()):
            buf = self.optimizer.state.get(p, {}).get("momentum_buffer")
            if buf is not None:
                arrays[f"optim/momentum_buffer.{i}"] = buf.numpy().copy()
        return arrays

    def parameters_finite(self):
        return all(bool(torch.isfinite(p).all()) for p in self.model.parameters())

    def load_state(self, arrays):
        if "optim/lr" in arrays:
            for group in self.optimizer.param_groups:
                group["lr"] = float(arrays["optim/lr"])
            self.scheduler.last_epoch, self.scheduler._last_lr = 0, [self.lr]
        self.model.load_state_dict({k: torch.from_numpy(np.array(v))
                                    for k, v in split_prefix(arrays, "model").items()})
        for i, p in enumerate(self.model.parameters()):
            key = f"optim/momentum_buffer.{i}"
            if key in arrays:
                self.optimizer.state[p]["momentum_buffer"] = torch.from_numpy(np.array(arrays[key]))


def main(argv=None):
    parser = add_train_arguments(argparse.ArgumentParser(
        prog="python -m reference.train", description="Train a seed model with PyTorch (the twin of minicnn train)."))
    args = parser.parse_args(argv)
    return guarded("reference.train", lambda: run_train(args, TorchEngine, loader=load_fashion_mnist,
                                                        command="python -m reference.train"))


if __name__ == "__main__":
    sys.exit(main())
