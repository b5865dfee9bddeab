"""The training run's figures: learning curves, misclassified images, confusion matrix.

Each figure is written atomically as a PNG. matplotlib is imported here only,
with the non-interactive Agg backend.
"""
import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .checkpoint import atomic_write  # noqa: E402


def _save(fig, path):
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    atomic_write(path, lambda f: f.write(buffer.getvalue()))


def plot_curves(history, path, title=""):
    """Cost and accuracy per epoch, train and test."""
    epochs = [e["epoch"] for e in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.8))
    for split, style in (("train", "o-"), ("test", "s--")):
        ax_loss.plot(epochs, [e[f"{split}_loss"] for e in history], style, label=split)
        ax_acc.plot(epochs, [e[f"{split}_accuracy"] for e in history], style, label=split)
    ax_loss.set(xlabel="epoch", ylabel="cost (mean loss)", title="cost")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
        ax.set_xticks(epochs)
    if title:
        fig.suptitle(title)
    _save(fig, path)


def plot_misclassified(images, labels, predictions, classes, path, count=24):
    """A grid of the first ``count`` misclassified images, titled predicted / true."""
    wrong = np.flatnonzero(predictions != labels)[:count]
    cols = 6
    rows = max(1, -(-len(wrong) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.8, rows * 2.1))
    for ax in np.atleast_1d(axes).ravel():
        ax.axis("off")
    for ax, i in zip(np.atleast_1d(axes).ravel(), wrong):
        ax.imshow(images[i].reshape(images.shape[-2:]), cmap="gray_r")
        ax.set_title(f"pred: {classes[predictions[i]]}\ntrue: {classes[labels[i]]}", fontsize=8)
    fig.suptitle(f"misclassified test images ({int((predictions != labels).sum())} in all)")
    _save(fig, path)


def plot_confusion(confusion, classes, path):
    """The confusion matrix: rows are true classes, columns predicted ones, with counts."""
    fig, ax = plt.subplots(figsize=(7.5, 6.5))
    ax.imshow(confusion, cmap="Blues")
    ticks = np.arange(len(classes))
    ax.set_xticks(ticks, classes, rotation=45, ha="right")
    ax.set_yticks(ticks, classes)
    ax.set(xlabel="predicted", ylabel="true", title="confusion matrix (test set)")
    threshold = confusion.max() / 2
    for r in range(confusion.shape[0]):
        for c in range(confusion.shape[1]):
            ax.text(c, r, str(confusion[r, c]), ha="center", va="center", fontsize=7,
                    color="white" if confusion[r, c] > threshold else "black")
    _save(fig, path)


def confusion_matrix(labels, predictions, num_classes):
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (labels, predictions), 1)
    return matrix
